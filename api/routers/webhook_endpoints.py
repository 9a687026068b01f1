"""Merchant webhook endpoints: register, list, change, delete, rotate the signing secret."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import PayoutRead, PayoutWrite, Session, SettingsDep, merchant_scope
from api.routers.payouts import _creating_merchant
from api.schemas.common import problems
from api.schemas.webhooks import (
    SecretRotation,
    WebhookEndpointCreate,
    WebhookEndpointList,
    WebhookEndpointOut,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
)
from core.webhooks import service as webhook_service
from core.webhooks.service import cipher_for, endpoint_view

router = APIRouter(prefix="/webhook-endpoints", tags=["webhooks"])

# Managing endpoints needs payouts:write (merchant admins, ops admins); reading, payouts:read.
WebhooksManage, WebhooksRead = PayoutWrite, PayoutRead


@router.post("", response_model=WebhookEndpointWithSecret, status_code=201, responses=problems(401, 403, 404, 422))
async def create_endpoint(body: WebhookEndpointCreate, principal: WebhooksManage, session: Session,
                          settings: SettingsDep):
    """Register an endpoint. The response carries its signing `secret`: it is never shown again
    (rotate it to get a new one). The URL must be https in production and may not point into a
    private network (422 `webhook_target_refused`)."""
    merchant_id = _creating_merchant(principal, body.merchant_id)
    row, secret = await webhook_service.create_endpoint(
        session, settings, merchant_id=merchant_id, url=body.url,
        event_types=[t.value for t in body.event_types] if body.event_types else None,
        description=body.description, enabled=body.enabled,
    )
    return {**endpoint_view(row), "secret": secret}


@router.get("", response_model=WebhookEndpointList, responses=problems(401, 403))
async def list_endpoints(principal: WebhooksRead, session: Session, settings: SettingsDep,
                         merchant_id: str | None = None):
    """Endpoints of your merchant (platform roles: all, or `merchant_id`)."""
    rows = await webhook_service.list_endpoints(session, merchant_scope(principal, merchant_id))
    cipher = cipher_for(settings.codec_keys)
    return {"data": [endpoint_view(r, cipher) for r in rows]}


@router.get("/{endpoint_id}", response_model=WebhookEndpointOut, responses=problems(401, 403, 404))
async def get_endpoint(endpoint_id: str, principal: WebhooksRead, session: Session, settings: SettingsDep):
    row = await webhook_service.get_endpoint(session, endpoint_id, merchant_scope(principal, None))
    return endpoint_view(row, cipher_for(settings.codec_keys))


@router.patch("/{endpoint_id}", response_model=WebhookEndpointOut, responses=problems(401, 403, 404, 422))
async def update_endpoint(endpoint_id: str, body: WebhookEndpointUpdate, principal: WebhooksManage,
                          session: Session, settings: SettingsDep):
    """Change the URL, event types, description, or enable/disable it. Enabling an endpoint that was
    disabled for failing deliveries starts a fresh failure count; missed events can be redelivered."""
    changes = body.model_dump(exclude_unset=True, mode="json")
    row = await webhook_service.update_endpoint(session, settings, endpoint_id, merchant_scope(principal, None), changes)
    return endpoint_view(row, cipher_for(settings.codec_keys))


@router.delete("/{endpoint_id}", status_code=204, responses=problems(401, 403, 404))
async def delete_endpoint(endpoint_id: str, principal: WebhooksManage, session: Session):
    """Delete the endpoint: nothing more is sent to it (deliveries under way stop at their next try)."""
    await webhook_service.delete_endpoint(session, endpoint_id, merchant_scope(principal, None))
    return Response(status_code=204)


@router.post("/{endpoint_id}/rotate-secret", response_model=WebhookEndpointWithSecret,
             responses=problems(401, 403, 404, 422))
async def rotate_secret(endpoint_id: str, principal: WebhooksManage, session: Session, settings: SettingsDep,
                        body: SecretRotation | None = None):
    """A new signing secret, shown once. During the overlap every delivery carries two `v1=`
    signatures (old and new secret), so you can switch your receiver at any moment."""
    overlap = body.overlap_seconds if body and body.overlap_seconds is not None else (
        settings.webhook_secret_overlap_hours * 3600)
    row, secret = await webhook_service.rotate_secret(
        session, settings, endpoint_id, merchant_scope(principal, None), overlap
    )
    return {**endpoint_view(row, cipher_for(settings.codec_keys)), "secret": secret}
