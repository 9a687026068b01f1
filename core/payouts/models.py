"""Payout domain types shared by the API, the workflow and its activities.

Pure pydantic models and constants: no I/O, safe to import from workflow code. One input and
one result model per workflow, activity, signal, update and query, so fields can be added
without breaking running workflows.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class PayoutStatus(StrEnum):
    PENDING = "pending"  # persisted, workflow starting
    HELD = "held"  # funds held on the ledger
    ROUTED = "routed"  # rail and connector chosen; waiting for its cutoff if any
    SUBMITTING = "submitting"  # a submission attempt is under way
    RETRYING = "retrying"  # a retryable connector error; backing off before the next attempt
    SUBMITTED = "submitted"  # the bank accepted it; waiting for settlement
    SETTLED = "settled"  # paid: the hold is released into the final ledger entries
    RETURNED = "returned"  # the bank returned it after settlement; reversed
    FAILED = "failed"  # a permanent error (or an expired dlq); the hold is reversed
    CANCELLED = "cancelled"  # cancelled before submission; the hold is reversed
    REJECTED = "rejected"  # refused before any hold (insufficient funds, frozen merchant)
    DLQ = "dlq"  # retry budget exhausted; waiting for an ops retry or cancel


# Statuses after which no money moves any more (settled can still become returned within
# the return window, but it is a final state for the merchant's balance).
TERMINAL_STATUSES = frozenset(
    {PayoutStatus.SETTLED, PayoutStatus.RETURNED, PayoutStatus.FAILED, PayoutStatus.CANCELLED, PayoutStatus.REJECTED}
)
# Cancel is allowed only while nothing has (or may have) reached the bank.
CANCELLABLE_STATUSES = frozenset(
    {PayoutStatus.PENDING, PayoutStatus.HELD, PayoutStatus.ROUTED, PayoutStatus.DLQ}
)


class Method(StrEnum):
    SEPA = "sepa"
    ACH = "ach"
    WIRE = "wire"
    FASTER_PAYMENTS = "faster_payments"
    MOBILE_MONEY = "mobile_money"


class Priority(StrEnum):
    BATCH = "batch"
    STANDARD = "standard"
    INSTANT = "instant"
    PRIORITY = "priority"


# --- workflow input / state -------------------------------------------------------------------


class PayoutWorkflowInput(BaseModel):
    payout_id: str
    merchant_id: str
    amount_minor: int
    fee_minor: int
    currency: str
    method: str
    priority: str
    created_at: datetime
    # Retry policy for connector submissions (from settings at creation time).
    retry_initial_seconds: float = 2.0
    retry_backoff: float = 2.0
    retry_max_interval_seconds: float = 300.0
    retry_max_attempts: int = 5
    dlq_expiry_seconds: float = 72 * 3600
    return_window_seconds: float = 72 * 3600
    settlement_poll_seconds: float = 60.0
    hold_expiry_seconds: float = 168 * 3600
    gate_recheck_seconds: float = 300.0
    # Rails: retryable error codes that move the payout to its next routing candidate, after this
    # many attempts on one connector (empty: never fail over).
    failover_codes: list[str] = Field(default_factory=list)
    failover_attempts_per_connector: int = 2
    # Return watch (patch return-poll-v1): after settlement, ask the bank for the payment's status
    # after each of these gaps (seconds; the last repeats) until the return window closes.
    return_poll_intervals: list[float] = Field(default_factory=lambda: [3600.0, 21600.0, 86400.0])
    # Bounded history (patch inquiry-continue-as-new-v1): after this many unanswered status
    # inquiries in one run, the workflow continues as new, carrying what it knows in `resume`,
    # and goes on asking in the next run; a long bank outage never grows one history without end.
    # The same number bounds the settlement wait and the return watch (patch
    # settlement-wait-continue-as-new-v1): after this many polls of the bank in one run (about
    # one per settlement_poll_seconds while the bank has not settled), it continues as new too.
    inquiry_continue_as_new_after: int = Field(default=200, ge=1)
    resume: PayoutResume | None = None  # set only on a run continued as new


class PayoutWorkflowResult(BaseModel):
    payout_id: str
    status: str
    failure_code: str | None = None


class PayoutState(BaseModel):
    """What the `state` Query returns: everything ops need to see about a running payout."""

    payout_id: str
    status: str
    step: str
    attempts: int = 0
    last_error: str | None = None
    failure_code: str | None = None
    rail: str | None = None
    connector: str | None = None
    bank_payment_id: str | None = None
    hold_status: str | None = None
    hold_amount_minor: int | None = None
    next_attempt_at: datetime | None = None
    timestamps: dict[str, datetime] = Field(default_factory=dict)
    settlement_target_at: datetime | None = None
    sla_breached: bool = False
    routing_why: str | None = None
    batch_id: str | None = None
    batch_cutoff_at: datetime | None = None
    cutoff_at: datetime | None = None  # a standard payout waits for this cutoff before submitting
    failovers: list[str] = Field(default_factory=list)


class CancelRequest(BaseModel):
    actor: str  # as typed; verified only by `grant` (core/ops_actions/grants.py), else audited as unverified
    reason: str = Field(min_length=1, max_length=500)
    grant: str | None = Field(default=None, max_length=4000)


class RetryRequest(BaseModel):
    actor: str  # as typed; verified only by `grant` (core/ops_actions/grants.py), else audited as unverified
    reason: str | None = None
    grant: str | None = Field(default=None, max_length=4000)


class OpsDecision(BaseModel):
    """Result of a cancel or retry update."""

    accepted: bool
    status: str
    detail: str


class BankNotificationSignal(BaseModel):
    event_id: str
    type: str  # payment.settled | payment.failed | payment.returned
    status: str
    bank_payment_id: str | None = None
    failure_code: str | None = None
    return_code: str | None = None


class PayoutResume(BaseModel):
    """What a payout's run hands to the next when it continues as new: where it was (`stage`:
    submit | batch | dlq while its outcome at the bank is unknown, patch
    inquiry-continue-as-new-v1; settlement | return_watch while it waits for the bank to settle or
    watches for a return, patch settlement-wait-continue-as-new-v1), why, and its workflow state."""

    stage: str
    why: str
    code: str = ""  # the error code that made the outcome unknown (failover after a confirmed "no")
    state: PayoutState
    rails: bool = False
    route: dict | None = None  # RailRouteDecision (its remaining fallbacks)
    sla_everywhere: bool = False
    sla_alerted: bool = False
    unknown_safe: bool = True  # unknown outcomes resolved by inquiry (patch unknown-outcome-v1)
    connector_attempts: int = 0
    inquiry_delay_seconds: float | None = 1.0  # None: the next inquiry backs off from the start
    inquiries: int = 0  # unanswered inquiries so far, over every run
    settlement_polls: int = 0  # the bank asked about settlement or a return so far, over every run
    runs: int = 1  # how many runs this payout had before this one
    seen_events: list[str] = Field(default_factory=list)
    notifications: list[BankNotificationSignal] = Field(default_factory=list)
    temporal_cancels: int = 0
    # stage return_watch: when the return window closes, and the return polls made so far (the
    # next gap is return_poll_intervals[min(return_polls, len - 1)])
    return_window_ends_at: datetime | None = None
    return_polls: int = 0


PayoutWorkflowInput.model_rebuild()


# --- activity inputs / results ----------------------------------------------------------------


class TransitionInput(BaseModel):
    """Move a payout to `to_status`, appending an audit event (idempotent per `event_key`)."""

    payout_id: str
    to_status: str
    actor: str = "workflow"
    reason: str | None = None
    event_key: str  # unique per transition within the workflow, e.g. "submitted"
    failure_code: str | None = None
    failure_message: str | None = None
    data: dict = Field(default_factory=dict)


class TransitionResult(BaseModel):
    payout_id: str
    status: str
    version: int
    applied: bool


class HoldInput(BaseModel):
    payout_id: str
    merchant_id: str
    amount_minor: int
    fee_minor: int
    currency: str
    expires_at: datetime


class HoldResult(BaseModel):
    placed: bool
    status: str  # held | rejected
    failure_code: str | None = None
    detail: str | None = None


class RouteInput(BaseModel):
    payout_id: str
    method: str
    currency: str
    priority: str


class RouteDecision(BaseModel):
    rail: str
    connector: str
    explanation: dict = Field(default_factory=dict)


class SubmitInput(BaseModel):
    payout_id: str
    connector: str
    rail: str
    attempt: int


class SubmitResult(BaseModel):
    bank_payment_id: str
    bank_status: str
    # Where the bank accepted it. A submission replayed by a Reset (or a REPAIR_PAYOUT restart)
    # returns the acceptance recorded on the payout row, which may be on another connector/rail
    # than the one the new run routed to: the workflow follows this one (patch
    # reset-follows-accepted-connector-v1). None from workers older than that patch.
    connector: str | None = None
    rail: str | None = None
    replayed: bool = False  # True: not sent now; the acceptance recorded earlier


class StatusPollInput(BaseModel):
    payout_id: str
    connector: str


class StatusPollResult(BaseModel):
    known: bool
    status: str | None = None  # accepted | settled | failed | returned
    bank_payment_id: str | None = None
    failure_code: str | None = None
    return_code: str | None = None


class InquiryInput(BaseModel):
    """Ask `connector` (the one the payout was last sent to) about the payout's reference."""

    payout_id: str
    connector: str
    why: str = ""  # what made the outcome unknown (for the audit event)
    record: bool = True  # record a found payment as submitted (bank payment id, submitted_at)


class InquiryOutcome(BaseModel):
    answer: str  # found | not_found | unknown
    status: str | None = None  # accepted | settled | failed | returned (when found)
    bank_payment_id: str | None = None
    failure_code: str | None = None
    return_code: str | None = None
    detail: str | None = None


class SettleInput(BaseModel):
    payout_id: str
    connector: str
    bank_payment_id: str | None = None


class ReverseInput(BaseModel):
    payout_id: str
    to_status: str  # failed | cancelled | returned
    failure_code: str | None = None
    reason: str
    actor: str = "workflow"
    return_code: str | None = None
    connector: str | None = None
    data: dict = Field(default_factory=dict)  # audit data (e.g. how an ops cancel was attributed)


class GateInput(BaseModel):
    payout_id: str
    merchant_id: str
    rail: str
    connector: str


class GateDecision(BaseModel):
    """Whether controls (frozen merchant, paused rail/connector) let the payout go to the bank."""

    action: str  # proceed | wait | cancel
    reasons: list[str] = Field(default_factory=list)


class ControlsChanged(BaseModel):
    """Signal sent to waiting payouts when a freeze/pause is lifted or changed."""

    reason: str = ""


# Error types activities raise (ApplicationError.type) that the workflow branches on.
ERR_CONNECTOR_TRANSIENT = "ConnectorTransient"
ERR_CONNECTOR_PERMANENT = "ConnectorPermanent"


# --- bulk payouts: the intake workflow's contracts (workflows/bulk_payouts.py) ---

class BulkPayoutIntakeInput(BaseModel):
    bulk_payout_id: str
    chunk_size: int = 500
    started_so_far: int = 0


class StartChunkInput(BaseModel):
    bulk_payout_id: str
    chunk_size: int


class StartChunkResult(BaseModel):
    started: int
    remaining: int


# --- payout schedules: the fire workflow's contracts (workflows/payout_schedules.py) ---

class PayoutScheduleFireInput(BaseModel):
    schedule_id: str
    # None when the Temporal Schedule starts it: the fire time is then its TemporalScheduledStartTime
    fire_time: datetime | None = None


class ScheduledBatchInput(BaseModel):
    schedule_id: str
    fire_time: datetime


class ScheduledBatchResult(BaseModel):
    outcome: str  # created | skipped (schedule deleted or paused)
    bulk_payout_id: str | None = None
    detail: str | None = None
