"""Bank webhooks: HMAC-signed settlement and return notifications, delivered to the payout's
workflow as a signal. Authenticated by the connector's signature, not by a JWT."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.deps import RedisDep, TemporalDep
from api.schemas.common import problems
from connectors.base import WebhookPayloadError, WebhookSignatureError
from connectors.registry import ConnectorRegistry, UnknownConnectorError, build_registry
from core import payout_service
from core.errors import NotFound, PayopsError, Unauthorized

router = APIRouter(prefix="/webhooks/banks", tags=["bank webhooks"])


class WebhookAck(BaseModel):
    status: Literal["accepted", "duplicate"]


InvalidWebhookPayload = type("InvalidWebhookPayloadError", (PayopsError,), {"type": "invalid_webhook_payload", "title": "Invalid webhook payload"})


def _registry(request: Request) -> ConnectorRegistry:
    # The lifespan should own this; until it does, build it once per app on first use.
    registry = getattr(request.app.state, "connectors", None)
    if registry is None:
        registry = build_registry(request.app.state.settings)
        request.app.state.connectors = registry
    return registry


@router.post("/{connector}", response_model=WebhookAck, responses=problems(400, 401, 404, 503))
async def receive_bank_webhook(connector: str, request: Request, temporal: TemporalDep, redis: RedisDep):
    """A bank's notification that a payment settled, failed or was returned.

    The signature (`Payops-Signature: t=...,v1=HMAC-SHA256`) must match the raw body and be
    fresh, else 401. Deliveries are deduplicated by the notification's `event_id`: a repeat is
    answered `{"status": "duplicate"}` and not signalled again."""
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
    status = await payout_service.deliver_bank_notification(temporal, redis, connector, notification)
    return {"status": status}
