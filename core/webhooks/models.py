"""Merchant webhook domain types: event types and the workflow/activity contracts.

Pure pydantic models and constants: no I/O, safe to import from workflow code.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel


class EventType(StrEnum):
    PAYOUT_CREATED = "payout.created"
    PAYOUT_SUBMITTED = "payout.submitted"
    PAYOUT_SETTLED = "payout.settled"
    PAYOUT_FAILED = "payout.failed"
    PAYOUT_RETURNED = "payout.returned"
    PAYOUT_DLQ = "payout.dlq"
    PAYOUT_CANCELLED = "payout.cancelled"


# The payout statuses merchants hear about. Internal steps (held, routed, submitting, retrying)
# are not events; a payout rejected before any hold (insufficient funds, frozen merchant) is a
# payout.failed whose data says status "rejected" and the failure code.
EVENT_TYPE_OF_STATUS: dict[str, EventType] = {
    "pending": EventType.PAYOUT_CREATED,
    "submitted": EventType.PAYOUT_SUBMITTED,
    "settled": EventType.PAYOUT_SETTLED,
    "failed": EventType.PAYOUT_FAILED,
    "rejected": EventType.PAYOUT_FAILED,
    "returned": EventType.PAYOUT_RETURNED,
    "dlq": EventType.PAYOUT_DLQ,
    "cancelled": EventType.PAYOUT_CANCELLED,
}

SIGNATURE_HEADER = "Payops-Signature"
NOTIFY_CHANNEL = "payops_webhook_events"


class RetrySchedule(BaseModel):
    """Exponential backoff between attempts, bounded by a total budget from the first attempt."""

    initial_seconds: float = 30.0
    backoff: float = 2.0
    max_interval_seconds: float = 3600.0
    budget_seconds: float = 72 * 3600
    disable_after_seconds: float = 48 * 3600

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return min(self.initial_seconds * self.backoff ** (attempt - 1), self.max_interval_seconds)


# --- workflows ------------------------------------------------------------------------------


class WebhookDeliveryInput(BaseModel):
    event_id: str
    endpoint_id: str
    retry: RetrySchedule = RetrySchedule()
    redelivery: bool = False


class WebhookDeliveryResult(BaseModel):
    event_id: str
    endpoint_id: str
    outcome: str  # delivered | exhausted | endpoint_disabled | endpoint_gone
    attempts: int
    last_status_code: int | None = None


class WebhookDispatcherInput(BaseModel):
    # Loops of the dispatch activity before continue-as-new keeps the history short.
    iterations_per_run: int = 200
    max_wait_seconds: float = 30.0
    poll_seconds: float = 5.0


# --- activities -----------------------------------------------------------------------------


class DispatchInput(BaseModel):
    max_wait_seconds: float = 30.0
    poll_seconds: float = 5.0
    batch_size: int = 200


class DispatchResult(BaseModel):
    events: int
    deliveries_started: int


class DeliveryAttemptInput(BaseModel):
    event_id: str
    endpoint_id: str
    workflow_id: str
    attempt: int
    # The workflow's clock: "failing continuously for X" is measured on it, so timers skipped in
    # tests and real time in production agree.
    now: datetime
    disable_after_seconds: float


class DeliveryAttemptResult(BaseModel):
    outcome: str  # succeeded | failed | refused | endpoint_disabled | endpoint_gone
    status_code: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    endpoint_disabled_now: bool = False
