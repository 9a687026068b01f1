"""Bank webhooks: HMAC-signed settlement, failure and return notifications. Authenticated by the
connector's own signature (each connector has its own secrets), not by a JWT.

A notification is answered 2xx only once it is durable in PostgreSQL (`bank_notifications`),
then delivered to the payout's workflow as a signal, or, for a payout whose workflow has ended,
reconciled against its stored status (core/payouts/bank_notifications.py). Redis plays no part.

`/bank-notifications` lets ops see what the banks sent and repair a contradiction."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from api.deps import Session, require
from api.schemas.common import problems
from connectors.base import WebhookPayloadError, WebhookSignatureError
from connectors.registry import ConnectorRegistry, UnknownConnectorError, build_registry
from core.payouts import bank_notifications
from core.platform.auth_tokens import Principal
from core.platform.errors import NotFound, PayopsError, Unauthorized, Unprocessable
from core.ledger.service import InsufficientFundsError
from core.platform.roles import Permission

router = APIRouter(prefix="/webhooks/banks", tags=["bank webhooks"])
ops_router = APIRouter(prefix="/bank-notifications", tags=["bank webhooks"])

TEMPORAL_CONNECT_TIMEOUT_S = 1.0  # intake never waits long for Temporal: the sweeper redelivers


class WebhookAck(BaseModel):
    status: Literal["accepted", "duplicate"]
    outcome: str | None = Field(None, description="signalled | consistent | contradiction | unknown_payout; "
                                                    "null while delivery is pending (it is durable: redelivered)")


InvalidWebhookPayload = type("InvalidWebhookPayloadError", (PayopsError,), {"type": "invalid_webhook_payload", "title": "Invalid webhook payload"})


def _registry(request: Request) -> ConnectorRegistry:
    # The lifespan should own this; until it does, build it once per app on first use.
    registry = getattr(request.app.state, "connectors", None)
    if registry is None:
        registry = build_registry(request.app.state.settings)
        request.app.state.connectors = registry
    return registry


async def _temporal(request: Request):
    holder = request.app.state.temporal_holder
    if holder.client is not None:
        return holder.client
    try:
        return await asyncio.wait_for(holder.get(), TEMPORAL_CONNECT_TIMEOUT_S)
    except (asyncio.TimeoutError, Exception):  # noqa: BLE001 — delivery is retried by the sweeper
        return None


@router.post("/{connector}", response_model=WebhookAck, responses=problems(400, 401, 404, 503))
async def receive_bank_webhook(connector: str, request: Request):
    """A bank's notification that a payment settled, failed or was returned.

    The signature (`Payops-Signature: t=...,v1=HMAC-SHA256`) must match the raw body under one
    of this connector's secrets and be fresh, else 401 (a webhook signed for another connector
    is refused). The notification is stored before the answer (503 if it cannot be, so the bank
    retries); deliveries are deduplicated by the notification's `event_id` whichever connector
    URL they arrive at: a repeat is answered `{"status": "duplicate"}` and not delivered again.
    A notification for a payout in any state is accepted: one that contradicts payops's state
    raises a critical alert and opens a repair (`POST /bank-notifications/{id}/repair`)."""
    try:
        bank = _registry(request).get(connector)
    except UnknownConnectorError:
        raise NotFound(f"no bank connector named {connector!r}") from None
    body = await request.body()
    try:
        notification = bank.parse_webhook(request.headers, body)
    except WebhookSignatureError as exc:
        raise Unauthorized(f"bad webhook signature ({exc.code})") from None
    except WebhookPayloadError as exc:
        raise InvalidWebhookPayload(exc.message) from None
    sessionmaker = request.app.state.sessionmaker
    row, created = await bank_notifications.record(sessionmaker, connector, notification)
    if not created and row["delivered_at"] is not None:
        return {"status": "duplicate", "outcome": row["outcome"]}
    # durable from here on: whatever happens to the delivery, the answer is 2xx
    row = await bank_notifications.deliver(sessionmaker, await _temporal(request), row)
    return {"status": "accepted" if created else "duplicate", "outcome": row["outcome"]}


# --- ops: what the banks sent, and repairs ---------------------------------------------------------


class BankNotificationOut(BaseModel):
    id: int
    connector: str
    event_id: str
    type: str
    reference: str
    bank_status: str
    received_at: datetime
    delivered_at: datetime | None
    delivery_attempts: int
    last_error: str | None
    outcome: str | None
    payout_status: str | None
    discrepancy: str | None
    alert_id: int | None
    repaired_at: datetime | None
    repaired_by: str | None
    repair: dict[str, Any] | None
    payload: dict[str, Any]


class BankNotificationList(BaseModel):
    data: list[BankNotificationOut]


class RepairRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


LedgerRead = Annotated[Principal, Depends(require(Permission.LEDGER_READ))]
ReconciliationManage = Annotated[Principal, Depends(require(Permission.RECONCILIATION_MANAGE))]


@ops_router.get("", response_model=BankNotificationList, responses=problems(401, 403))
async def list_bank_notifications(
    session: Session, principal: LedgerRead,
    reference: Annotated[str | None, Query(max_length=255)] = None,
    open_discrepancies: bool = False,
    undelivered: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
):
    """Stored bank notifications, newest first; `open_discrepancies=true` lists those that
    contradict payops and are not repaired yet."""
    rows = await bank_notifications.list_notifications(
        session, reference=reference, open_discrepancies=open_discrepancies, undelivered=undelivered, limit=limit)
    return {"data": [bank_notifications.public(r) for r in rows]}


@ops_router.post("/{notification_id}/repair", response_model=BankNotificationOut,
                 responses=problems(401, 403, 404, 409, 422))
async def repair_bank_notification(
    notification_id: Annotated[int, Path(ge=1, le=2**63 - 1)], body: RepairRequest,
    session: Session, principal: ReconciliationManage,
):
    """Make payops agree with the bank for a contradicting notification: post the ledger entries
    (a settlement payops had reversed, a missed return, or a settlement the bank failed), move the
    payout to the bank's state with an audit event, and resolve the alert. Idempotent."""
    try:
        row = await bank_notifications.repair(session, notification_id, actor=principal.sub, reason=body.reason)
    except InsufficientFundsError as exc:
        raise Unprocessable(f"the merchant cannot cover the repair: {exc}; fund the merchant first") from None
    return bank_notifications.public(row)
