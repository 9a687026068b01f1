"""Dashboard, transactions and alerts responses (what the OpenAPI document shows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class Pair(BaseModel):
    value: Any = Field(description="this window")
    previous: Any = Field(description="the window of the same length just before it")


class TimeWindow(BaseModel):
    from_: datetime = Field(alias="from")
    to: datetime


class PayoutGroup(BaseModel):
    count: Pair
    amount_minor: Pair


class CurrencyKpis(BaseModel):
    currency: str
    gmv: Pair
    net_revenue: Pair
    fees: Pair
    refunds: Pair
    average_transaction: Pair
    float_available: Pair = Field(description="merchants' available balances on the ledger (now / at window start)")
    payouts: dict[str, PayoutGroup] = Field(
        description="payouts created in the window by current status: pending, in_flight, settled, failed, "
                    "cancelled, dlq")


class Overview(BaseModel):
    window: TimeWindow
    previous_window: TimeWindow
    merchant_id: str | None
    kpis: dict[str, Pair] = Field(description="transactions, succeeded, failed, fraud_flagged, success_rate, "
                                              "conversion_rate, fraud_rate")
    by_currency: list[CurrencyKpis]


class TrendPoint(BaseModel):
    t: str
    value: Any


class TrendSeries(BaseModel):
    currency: str | None
    points: list[TrendPoint]


class Trends(BaseModel):
    metric: str
    granularity: str
    tz: str
    exact: bool = Field(description="true for every zone whose UTC offset is a multiple of 15 minutes (all "
                                    "zones in use today, including +05:30 and +05:45); false only for older "
                                    "local mean times")
    window: TimeWindow
    merchant_id: str | None
    series: list[TrendSeries]


class Breakdown(BaseModel):
    by: str
    window: TimeWindow
    merchant_id: str | None
    items: list[dict[str, Any]]


class HeatmapCell(BaseModel):
    weekday: int = Field(description="ISO weekday, 1 = Monday")
    hour: int
    value: int


class Heatmap(BaseModel):
    metric: str
    tz: str
    exact: bool = Field(description="as for trends: false only for offsets that are not a multiple of 15 minutes")
    window: TimeWindow
    merchant_id: str | None
    cells: list[HeatmapCell]


class TransactionOut(BaseModel):
    id: int
    source: str
    source_id: str
    client_operation_id: str | None
    merchant_id: str | None
    project: str | None
    amount_minor: int
    currency: str
    fee_minor: int
    status: str
    original_status: str | None
    payer_email: str | None
    payer_name: str | None
    utr: str | None
    occurred_at: datetime
    updated_at: datetime


class TransactionPage(BaseModel):
    data: list[TransactionOut]
    next_cursor: str | None


class Reconciliation(BaseModel):
    status: str = Field(description="the latest result's category, or `unreconciled`")
    results: list[dict[str, Any]]


class TransactionDetail(TransactionOut):
    payer_id: str | None
    source_updated_at: datetime | None
    created_at: datetime
    raw: dict[str, Any] = Field(description="the provider's record as received")
    reconciliation: Reconciliation


class AlertOut(BaseModel):
    id: int
    rule: str
    severity: str
    status: str
    dedupe_key: str
    message: str
    data: dict[str, Any]
    occurrences: int
    created_at: datetime
    last_seen_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    expired_at: datetime | None = Field(
        default=None, description="when it expired: not acknowledged within its severity's lifetime "
        "(PAYOPS_ALERT_TTL_HOURS); a later firing opens a new alert")


class AlertPage(BaseModel):
    data: list[AlertOut]
    next_cursor: str | None


class AlertRuleOut(BaseModel):
    id: str
    metric: str
    operator: str
    threshold: float
    window_minutes: int
    severity: str
    scope: str
    params: dict[str, Any]
    enabled: bool
    description: str | None
