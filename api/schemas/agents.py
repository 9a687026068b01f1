"""Agent map requests and responses (what the OpenAPI document shows). Money is integer minor units."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class AgentFloat(BaseModel):
    currency: str
    amount_minor: int = Field(description="the agent's float in minor units")
    low_threshold_minor: int | None = Field(description="below this, `agent_low_float` alerts; null: no threshold")
    low: bool = Field(description="amount_minor < low_threshold_minor")


class AgentSales(BaseModel):
    currency: str
    amount_minor: int = Field(description="successful transactions of the last 30 days, minor units")
    count: int


class AgentOut(BaseModel):
    id: str
    name: str
    lat: float
    lon: float
    operator: str | None
    merchant_id: str | None
    country: str
    city: str
    status: str = Field(description="active | suspended | closed")
    floats: list[AgentFloat]
    sales_30d: list[AgentSales] = Field(description="per currency, from transactions.agent_id, last 30 days")
    created_at: datetime
    updated_at: datetime


class NearbyAgentOut(AgentOut):
    distance_km: float = Field(description="great-circle distance on the mean Earth radius (6371.0088 km)")


class NearbyOut(BaseModel):
    data: list[NearbyAgentOut] = Field(description="nearest first")


class AgentPage(BaseModel):
    data: list[AgentOut]
    next_cursor: str | None


class ClusterAgent(BaseModel):
    id: str
    name: str
    status: str


class ClusterOut(BaseModel):
    count: int
    lat: float = Field(description="centroid (mean latitude of the cell's agents)")
    lon: float
    float_totals: dict[str, int] = Field(description="currency -> total float of the cell's agents, minor units")
    agent: ClusterAgent | None = Field(description="the agent, when the cell holds exactly one")


class ClustersOut(BaseModel):
    zoom: int
    cell_deg: float = Field(description="the grid's cell size in degrees at this zoom")
    bbox: list[float]
    total: int = Field(description="agents in the box (the sum of the clusters' counts)")
    clusters: list[ClusterOut]


class FloatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str = Field(pattern=r"^[A-Z]{3}$")
    amount_minor: int = Field(ge=0, le=10**15)
    low_threshold_minor: int | None = Field(
        default=None, ge=0, le=10**15, description="omit to keep the stored threshold; null removes it")


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    name: str = Field(min_length=1, max_length=200)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    operator: str | None = Field(default=None, max_length=64)
    merchant_id: str | None = Field(default=None, max_length=64)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    city: str = Field(min_length=1, max_length=100)
    status: str = Field(default="active", pattern="^(active|suspended|closed)$")
    floats: list[FloatIn] | None = Field(default=None, max_length=20, description="set as by PUT …/{id}/floats")


class AgentsUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agents: list[AgentIn] = Field(min_length=1, max_length=5000)


class AgentsUpserted(BaseModel):
    upserted: int
    floats: int = Field(description="floats set")
    low_float_alerts: int = Field(description="floats below their threshold: alerts raised or counted again")


class FloatsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    floats: list[FloatIn] = Field(min_length=1, max_length=20)


class FloatAlert(BaseModel):
    id: int
    opened: bool
    status: str
    occurrences: int


class FloatOut(BaseModel):
    agent_id: str
    currency: str
    amount_minor: int
    low_threshold_minor: int | None
    alert: FloatAlert | None = Field(description="the low-float alert raised (or counted again) by this update")


class CashTransactionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, description="the reporter's id for it: a repeat is skipped")
    agent_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(pattern="^(cash_in|cash_out)$")
    amount_minor: int = Field(gt=0, le=10**15)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    occurred_at: AwareDatetime = Field(description="with an offset")


class CashTransactionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transactions: list[CashTransactionIn] = Field(min_length=1, max_length=5000)


class CashTransactionsRecorded(BaseModel):
    recorded: int
    duplicates: int = Field(description="ids already recorded, skipped")
