"""Contracts of Temporal-native ops on payouts: a Temporal cancel handled as an ops cancel
(the bank's recall, the refusal's audit note) and the workflow reaper that finds rows whose
workflow closed under them (terminate, a cancel handled by old code, a reset gone wrong)."""

from __future__ import annotations

from pydantic import BaseModel, Field

# The actor of a change requested through Temporal's own tools (UI Request Cancellation,
# `temporal workflow cancel`): payops cannot tell who pressed the button, so it says so.
TEMPORAL_ACTOR = "temporal"


class RecallInput(BaseModel):
    payout_id: str
    connector: str
    bank_payment_id: str | None = None


class RecallOutcome(BaseModel):
    recalled: bool
    detail: str


class PayoutNoteInput(BaseModel):
    """An audit event with no status change (a refused Temporal cancel)."""

    payout_id: str
    event_key: str
    actor: str
    reason: str
    data: dict = Field(default_factory=dict)


class ReaperInput(BaseModel):
    # rows younger than this are left alone: their workflow may not have started yet
    min_age_seconds: float = 60.0
    limit: int = 500


class OrphanedWorkflow(BaseModel):
    kind: str  # "payout" | "ops_action"
    id: str
    workflow_id: str
    status: str  # the row's status
    workflow_status: str  # Temporal's: TERMINATED, CANCELED, COMPLETED, FAILED, TIMED_OUT, NOT_FOUND
    hold_active: bool = False


class ReaperResult(BaseModel):
    checked: int = 0
    orphaned: list[OrphanedWorkflow] = Field(default_factory=list)
    alerts_raised: int = 0
