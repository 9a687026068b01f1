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


def _rebuild_error(cls, code, message, retryable, retry_after, status_code):  # noqa: ANN001
    return cls(code, message, retryable=retryable, retry_after=retry_after, status_code=status_code)


class TransientConnectorError(ConnectorError):
    """Timeouts, connection errors, 5xx, 429: retrying the same reference is safe and may succeed."""

    retryable = True


class PermanentConnectorError(ConnectorError):
    """The bank refused the payment (account_closed, invalid_account, reference_conflict, other 4xx)."""

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

    def serves(self, rail: str) -> bool:
        return rail in self.rails

    async def aclose(self) -> None:
        """Release network resources the connector owns."""
