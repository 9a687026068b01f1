"""What every bank connector offers payops, and the errors it raises.

A connector submits a payout to a bank idempotently on the payout's reference, reads its status,
and turns the bank's signed webhooks into `BankNotification`s. Errors say whether a retry can
help (`TransientConnectorError`) or not (`PermanentConnectorError`); the payout workflow branches
on `code` and `retryable`, never on HTTP details.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

BankPaymentState = Literal["accepted", "settled", "failed", "returned"]
NotificationType = Literal["payment.settled", "payment.failed", "payment.returned"]
# What a submission's outcome means for the money (see `ConnectorError.outcome`):
#   accepted  the bank took the payment;
#   refused   the bank says it did not and will not pay it: the hold may be released;
#   unknown   the bank may have it (timeouts, 5xx, connection errors after sending, a reference
#             conflict): nothing is released or sent elsewhere until an inquiry answers.
SubmitOutcome = Literal["accepted", "refused", "unknown"]
InquiryAnswer = Literal["found", "not_found", "unknown"]
# Error codes that mean "the bank already has a payment with this reference".
UNKNOWN_OUTCOME_CODES = frozenset({"reference_conflict"})


class SubmitRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    reference: str = Field(min_length=1, description="the payout id: idempotency and end-to-end reference")
    amount_minor: int = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    rail: str
    beneficiary: dict
    description: str | None = None


class SubmitResult(BaseModel):
    payment_id: str
    status: BankPaymentState
    accepted_at: datetime
    replayed: bool = False  # True when the bank answered with an earlier acceptance of this reference


class PaymentStatus(BaseModel):
    reference: str
    payment_id: str
    status: BankPaymentState
    failure_code: str | None = None
    return_code: str | None = None


class InquiryResult(BaseModel):
    """The bank's answer to "do you have a payment with this reference?" (`BankConnector.inquire`).

    `found` with its status, `not_found` (the bank confirms it has none: only then may the payout
    go to another rail), or `unknown` (the inquiry itself failed: ask again later)."""

    reference: str
    answer: InquiryAnswer
    status: BankPaymentState | None = None
    payment_id: str | None = None
    failure_code: str | None = None
    return_code: str | None = None
    detail: str | None = None


class BankPaymentRecord(BaseModel):
    """One payment as the bank's report lists it (`BankConnector.list_payments`)."""

    reference: str
    payment_id: str
    status: BankPaymentState
    amount_minor: int | None = None  # None when the source (a status inquiry) does not say
    currency: str | None = None
    rail: str | None = None
    accepted_at: datetime | None = None
    failure_code: str | None = None
    return_code: str | None = None


class RecallResult(BaseModel):
    """The bank's answer to a recall (stop a payment it accepted but has not settled)."""

    recalled: bool
    detail: str


class BankNotification(BaseModel):
    event_id: str
    type: NotificationType
    reference: str
    payment_id: str
    status: BankPaymentState
    amount_minor: int
    currency: str
    failure_code: str | None = None
    return_code: str | None = None
    occurred_at: datetime


class ConnectorHealth(BaseModel):
    connector: str
    healthy: bool
    latency_ms: float | None = None
    detail: str | None = None


# --- errors ---------------------------------------------------------------------------------


class ConnectorError(Exception):
    """A bank call that did not succeed. `code` is stable and safe to branch on."""

    retryable: bool = False

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        retryable: bool | None = None,
        retry_after: float | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message or code
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after
        self.status_code = status_code

    def __reduce__(self):  # keep code/retry_after across pickling (process pools, test tooling)
        return (
            _rebuild_error,
            (type(self), self.code, self.message, self.retryable, self.retry_after, self.status_code),
        )

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message != self.code else self.code

    @property
    def outcome(self) -> SubmitOutcome:
        """`refused` only when the bank said it will not pay; anything else may have reached it."""
        return "unknown" if self.retryable or self.code in UNKNOWN_OUTCOME_CODES else "refused"


def _rebuild_error(cls, code, message, retryable, retry_after, status_code):
    return cls(code, message, retryable=retryable, retry_after=retry_after, status_code=status_code)


class TransientConnectorError(ConnectorError):
    """Timeouts, connection errors, 5xx, 429: retrying the same reference is safe and may succeed."""

    retryable = True


class PermanentConnectorError(ConnectorError):
    """Retrying the same request cannot help: the bank refused the payment (account_closed,
    invalid_account, other 4xx), or answered 409 reference_conflict, which is not a refusal but
    "a payment with this reference exists" (its `outcome` is unknown: resolve it by inquiry)."""

    retryable = False


class WebhookSignatureError(PermanentConnectorError):
    """A webhook whose signature is missing, malformed, wrong, or outside the time tolerance."""


class WebhookPayloadError(PermanentConnectorError):
    """A correctly signed webhook whose body is not a notification we understand."""


# --- the connector contract -----------------------------------------------------------------


class BankConnector(abc.ABC):
    name: str
    rails: frozenset[str]
    # Routing: lower preference wins among equally good candidates; a connector that is not
    # routable is only used when a route override names it (or by payouts routed before rails).
    preference: int = 100
    routable: bool = True

    @abc.abstractmethod
    async def submit(self, req: SubmitRequest) -> SubmitResult:
        """Submit a payment, idempotent on `req.reference`: a replay returns the first acceptance."""

    @abc.abstractmethod
    async def poll_status(self, reference: str) -> PaymentStatus:
        """The bank's current view of the payment with this reference."""

    @abc.abstractmethod
    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> BankNotification:
        """Verify the signature and parse; raises `WebhookSignatureError` / `WebhookPayloadError`."""

    @abc.abstractmethod
    async def health(self) -> ConnectorHealth:
        """Never raises: an unreachable bank is reported as unhealthy."""

    async def inquire(self, reference: str) -> InquiryResult:
        """Ask the bank about the payment with this reference. Never raises for the bank's
        errors: a 404 / payment_not_found is `not_found`, any other failure `unknown`."""
        try:
            status = await self.poll_status(reference)
        except ConnectorError as exc:
            if exc.code == "payment_not_found":
                return InquiryResult(reference=reference, answer="not_found", detail=str(exc))
            return InquiryResult(reference=reference, answer="unknown", detail=str(exc))
        return InquiryResult(
            reference=reference, answer="found", status=status.status, payment_id=status.payment_id,
            failure_code=status.failure_code, return_code=status.return_code,
        )

    async def list_payments(self, since: datetime) -> list[BankPaymentRecord] | None:
        """Every payment the bank accepted through this connector since `since` (its report or
        statement), or None when the bank offers no such list: payops's reconciliation against
        the bank then asks `poll_status` payout by payout. Raises `ConnectorError`."""
        return None

    async def recall(self, reference: str) -> RecallResult:
        """Ask the bank to stop the accepted payment with this reference before it settles.
        A bank that offers no recall refuses; payops then keeps the payout in flight."""
        return RecallResult(recalled=False, detail=f"recall_not_supported: {self.name} offers no recall")

    def serves(self, rail: str) -> bool:
        return rail in self.rails

    async def aclose(self) -> None:
        """Release network resources the connector owns."""
