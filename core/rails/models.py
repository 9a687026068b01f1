"""Inputs and results of the rails activities, the BatchWorkflow, the connector-health workflow
and the payout workflow's batch signal. Pure pydantic: safe to import from workflow code."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class RailRouteInput(BaseModel):
    payout_id: str
    at: datetime  # the moment cutoffs and targets are computed from (the payout's creation)
    avoid_connectors: list[str] = Field(default_factory=list)
    event_key: str = "routed"


class RailRouteDecision(BaseModel):
    rail: str
    connector: str
    batch: bool = False  # wait for the rail's next batch file
    cutoff_at: datetime | None = None
    settlement_target_at: datetime | None = None
    fallbacks: list[dict] = Field(default_factory=list)  # [{"rail", "connector"}], best first
    why: str = ""


class FailoverInput(BaseModel):
    payout_id: str
    from_connector: str
    rail: str
    connector: str
    reason: str
    attempt: int


class BatchEnqueueInput(BaseModel):
    payout_id: str
    rail: str
    connector: str
    cutoff_at: datetime


class BatchEnqueueResult(BaseModel):
    cutoff_at: datetime
    batch_id: str | None = None


class BatchWithdrawInput(BaseModel):
    payout_id: str


class BatchWithdrawResult(BaseModel):
    withdrawn: bool
    batch_id: str | None = None


class BatchOutcomeSignal(BaseModel):
    """Sent by the BatchWorkflow to each payout of its file."""

    batch_id: str
    outcome: str  # accepted | rejected | file_rejected
    bank_payment_id: str | None = None
    error: str | None = None


class SlaBreachInput(BaseModel):
    payout_id: str
    rail: str | None
    connector: str | None
    settlement_target_at: datetime
    status: str


class SlaBreachResult(BaseModel):
    raised: bool  # False: this payout's breach was raised before


class BatchInput(BaseModel):
    rail: str
    cutoff_at: datetime | None = None  # None: the schedule's nominal time (or now)


class BatchInfo(BaseModel):
    batch_id: str | None
    rail: str
    cutoff_at: datetime
    status: str  # collecting | built | submitted | rejected | empty
    entry_count: int = 0
    total_amount_minor: int = 0


class BatchIdInput(BaseModel):
    batch_id: str


class BatchSubmitResult(BaseModel):
    batch_id: str
    status: str
    accepted_count: int = 0
    rejected_count: int = 0
    error: str | None = None


class BatchSignalResult(BaseModel):
    signalled: int


class BatchResult(BaseModel):
    batch_id: str | None
    rail: str
    cutoff_at: datetime
    status: str
    entry_count: int = 0
    accepted_count: int = 0
    rejected_count: int = 0


class HealthRunInput(BaseModel):
    requested_by: str = "schedule"


class HealthRunResult(BaseModel):
    checked: int
    open: list[str] = Field(default_factory=list)
