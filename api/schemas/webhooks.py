"""Webhook endpoint and event models."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.payouts import PayoutOut
from core.webhooks.models import EventType


class WebhookEndpointCreate(BaseModel):
    """A URL that receives signed events. `merchant_id` is for platform roles only."""

    model_config = ConfigDict(extra="forbid")

    merchant_id: str | None = Field(default=None, max_length=64)
    url: str = Field(min_length=8, max_length=2048, examples=["https://example.com/payops/webhooks"])
    event_types: list[EventType] | None = Field(
        default=None, description="the event types to receive; all of them when omitted"
    )
    description: str | None = Field(default=None, max_length=500)
    enabled: bool = True


class WebhookEndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=8, max_length=2048)
    event_types: list[EventType] | None = Field(default=None, min_length=1)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = Field(default=None, description="true also clears a disable for failing deliveries")


class SecretRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_seconds: int | None = Field(
        default=None, ge=0, le=7 * 24 * 3600,
        description="how long the old secret keeps signing too (default from settings; 0 revokes it now)",
    )


class WebhookEndpointOut(BaseModel):
    id: str
    merchant_id: str
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None = Field(description="start of the current run of failed deliveries")
    previous_secret_expires_at: datetime | None = Field(
        default=None, description="while a rotated-out secret still signs: until when"
    )
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpointOut):
    secret: str = Field(description="the signing secret: shown only in this response, store it now")


class WebhookEndpointList(BaseModel):
    data: list[WebhookEndpointOut]


class EventOut(BaseModel):
    id: str = Field(examples=["evt_3f1c..."])
    type: str
    created: datetime
    payout_version: int | None = Field(description="ignore an event older than one you already processed")
    data: PayoutOut = Field(description="the payout as the API returned it when the event happened")


class EventPage(BaseModel):
    data: list[EventOut]
    next_cursor: str | None


class WebhookAttemptOut(BaseModel):
    endpoint_id: str
    attempt: int
    outcome: str
    status_code: int | None
    latency_ms: int | None
    response_excerpt: str | None
    error: str | None
    created_at: datetime


class EventDetail(EventOut):
    attempts: list[WebhookAttemptOut] = Field(default_factory=list, description="every delivery attempt, oldest first")


class RedeliverBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint_id: str | None = Field(default=None, description="only this endpoint; default: every subscribed one")


class RedeliveryStarted(BaseModel):
    endpoint_id: str
    workflow_id: str


class RedeliverResult(BaseModel):
    deliveries: list[RedeliveryStarted]
