"""Merchant webhook endpoints (registry, secrets, rotation), dispatching events to delivery
workflows, and manual redelivery.

Deliveries are Temporal workflows, one per (event, endpoint), with the id from
core.platform.names.webhook_delivery_workflow_id and reuse policy REJECT_DUPLICATE: dispatching a pair
twice (a dispatcher retried after a crash, two dispatchers racing) starts one delivery.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from core.platform.crypto import FieldCipher
from core.platform.errors import InvalidState, NotFound
from core.merchants.service import get_merchant
from core.platform.names import WEBHOOK_DELIVERY_WORKFLOW, WEBHOOK_DISPATCH_WORKFLOW, webhook_delivery_workflow_id, webhook_dispatcher_workflow_id
from core.platform.settings import Settings
from core.platform.tables import events, webhook_endpoints
from core.webhooks.events import get_event
from core.webhooks.models import (
    EventType,
    RetrySchedule,
    WebhookDeliveryInput,
    WebhookDispatcherInput,
)
from core.webhooks.signing import new_secret
from core.webhooks.targets import check_webhook_url

log = logging.getLogger("payops.webhooks")

ALL_EVENT_TYPES = [t.value for t in EventType]


@lru_cache(maxsize=4)
def cipher_for(keys_spec: str) -> FieldCipher:
    return FieldCipher(keys_spec)


# --- secrets ------------------------------------------------------------------------------------


def live_secrets(stored: dict, now: datetime) -> list[str]:
    """The secrets that sign now: the current one and any still in their rotation overlap."""
    out = []
    for entry in stored.get("secrets", []):
        expires = entry.get("expires_at")
        if expires is None or datetime.fromisoformat(expires) > now:
            out.append(entry["secret"])
    return out


def _rotated(stored: dict, new: str, now: datetime, overlap_seconds: float) -> dict:
    kept = []
    if overlap_seconds > 0:
        until = now + timedelta(seconds=overlap_seconds)
        for entry in stored.get("secrets", []):
            expires = datetime.fromisoformat(entry["expires_at"]) if entry.get("expires_at") else until
            if expires > now:
                kept.append({"secret": entry["secret"], "expires_at": min(expires, until).isoformat()})
    return {"secrets": [{"secret": new, "expires_at": None}, *kept]}


# --- presentation -------------------------------------------------------------------------------


def endpoint_view(row: dict, cipher: FieldCipher | None = None, now: datetime | None = None) -> dict:
    """The endpoint as the API returns it: never a secret (those are shown once, when made)."""
    view = {
        "id": row["id"],
        "merchant_id": row["merchant_id"],
        "url": row["url"],
        "description": row["description"],
        "event_types": row["event_types"],
        "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"],
        "failing_since": row["failing_since"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "previous_secret_expires_at": None,
    }
    if cipher is not None:
        now = now or datetime.now(timezone.utc)
        pending = [e["expires_at"] for e in cipher.decrypt_json(row["secrets_encrypted"])["secrets"]
                   if e.get("expires_at") and datetime.fromisoformat(e["expires_at"]) > now]
        view["previous_secret_expires_at"] = max(pending) if pending else None
    return view


# --- registry -----------------------------------------------------------------------------------


def _event_types(values: list[str] | None) -> list[str]:
    if not values:
        return list(ALL_EVENT_TYPES)
    return sorted({EventType(v).value for v in values})


async def get_endpoint(session: AsyncSession, endpoint_id: str, scope_merchant_id: str | None,
                       *, for_update: bool = False) -> dict:
    stmt = select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id,
                                           webhook_endpoints.c.deleted_at.is_(None))
    if for_update:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).mappings().first()
    if row is None or (scope_merchant_id is not None and row["merchant_id"] != scope_merchant_id):
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return dict(row)


async def create_endpoint(
    session: AsyncSession, settings: Settings, *, merchant_id: str, url: str, event_types: list[str] | None,
    description: str | None, enabled: bool,
) -> tuple[dict, str]:
    """Register an endpoint; returns (row, secret). The secret is never readable again."""
    await get_merchant(session, merchant_id)
    await check_webhook_url(url, settings)
    secret = new_secret()
    stored = {"secrets": [{"secret": secret, "expires_at": None}]}
    row = (await session.execute(
        webhook_endpoints.insert().values(
            id=f"we_{uuid.uuid4().hex}", merchant_id=merchant_id, url=url, description=description,
            event_types=_event_types(event_types), enabled=enabled,
            secrets_encrypted=cipher_for(settings.codec_keys).encrypt_json(stored),
        ).returning(*webhook_endpoints.c)
    )).mappings().one()
    return dict(row), secret


async def list_endpoints(session: AsyncSession, merchant_id: str | None) -> list[dict]:
    stmt = select(webhook_endpoints).where(webhook_endpoints.c.deleted_at.is_(None))
    if merchant_id is not None:
        stmt = stmt.where(webhook_endpoints.c.merchant_id == merchant_id)
    stmt = stmt.order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id)
    return [dict(r) for r in (await session.execute(stmt)).mappings().all()]


async def update_endpoint(
    session: AsyncSession, settings: Settings, endpoint_id: str, scope_merchant_id: str | None, changes: dict
) -> dict:
    """Change url, event types, description or enabled. Re-enabling starts a fresh failure run."""
    await get_endpoint(session, endpoint_id, scope_merchant_id, for_update=True)
    values: dict = {"updated_at": func.now()}
    if changes.get("url") is not None:
        await check_webhook_url(changes["url"], settings)
        values["url"] = changes["url"]
    if "event_types" in changes and changes["event_types"] is not None:
        values["event_types"] = _event_types(changes["event_types"])
    if "description" in changes:
        values["description"] = changes["description"]
    if changes.get("enabled") is not None:
        values["enabled"] = changes["enabled"]
        values["disabled_reason"] = None if changes["enabled"] else "disabled through the API"
        if changes["enabled"]:
            values["failing_since"] = None
    row = (await session.execute(
        update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id).values(**values)
        .returning(*webhook_endpoints.c)
    )).mappings().one()
    return dict(row)


async def delete_endpoint(session: AsyncSession, endpoint_id: str, scope_merchant_id: str | None) -> None:
    """Soft delete: its delivery attempts stay readable; running deliveries stop at their next try."""
    await get_endpoint(session, endpoint_id, scope_merchant_id, for_update=True)
    await session.execute(
        update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
        .values(deleted_at=func.now(), enabled=False, updated_at=func.now())
    )


async def rotate_secret(
    session: AsyncSession, settings: Settings, endpoint_id: str, scope_merchant_id: str | None,
    overlap_seconds: float,
) -> tuple[dict, str]:
    """A new signing secret; the previous one keeps signing for `overlap_seconds` (0: revoke now)."""
    row = await get_endpoint(session, endpoint_id, scope_merchant_id, for_update=True)
    cipher = cipher_for(settings.codec_keys)
    secret = new_secret()
    stored = _rotated(cipher.decrypt_json(row["secrets_encrypted"]), secret, datetime.now(timezone.utc),
                      overlap_seconds)
    row = (await session.execute(
        update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
        .values(secrets_encrypted=cipher.encrypt_json(stored), updated_at=func.now())
        .returning(*webhook_endpoints.c)
    )).mappings().one()
    return dict(row), secret


# --- delivery workflows -------------------------------------------------------------------------


def retry_schedule(settings: Settings) -> RetrySchedule:
    return RetrySchedule(
        initial_seconds=settings.webhook_retry_initial_seconds,
        backoff=settings.webhook_retry_backoff,
        max_interval_seconds=settings.webhook_retry_max_interval_seconds,
        budget_seconds=settings.webhook_retry_budget_hours * 3600,
        disable_after_seconds=settings.webhook_disable_after_hours * 3600,
    )


async def start_delivery(
    temporal: Client, settings: Settings, event_id: str, endpoint_id: str, *, redelivery: str | None = None
) -> str:
    """Start the delivery of one event to one endpoint; a pair already dispatched is left alone."""
    workflow_id = webhook_delivery_workflow_id(event_id, endpoint_id, redelivery)
    try:
        await temporal.start_workflow(
            WEBHOOK_DELIVERY_WORKFLOW,
            WebhookDeliveryInput(event_id=event_id, endpoint_id=endpoint_id, retry=retry_schedule(settings),
                                 redelivery=redelivery is not None),
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        pass
    return workflow_id


async def dispatch_pending_events(
    sessionmaker: async_sessionmaker[AsyncSession], temporal: Client, settings: Settings, *, batch_size: int = 200,
    concurrency: int = 50,
) -> tuple[int, int]:
    """Start deliveries for undispatched events (oldest first) and mark them dispatched.
    Returns (events, deliveries started). Safe to run concurrently (SKIP LOCKED) and to repeat."""
    async with sessionmaker() as session, session.begin():
        pending = (await session.execute(
            select(events.c.id, events.c.merchant_id, events.c.type)
            .where(events.c.dispatched_at.is_(None))
            .order_by(events.c.created_at)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )).all()
        if not pending:
            return 0, 0
        endpoints = (await session.execute(
            select(webhook_endpoints.c.id, webhook_endpoints.c.merchant_id, webhook_endpoints.c.event_types).where(
                webhook_endpoints.c.merchant_id.in_({e.merchant_id for e in pending}),
                webhook_endpoints.c.enabled,
                webhook_endpoints.c.deleted_at.is_(None),
            )
        )).all()
        pairs = [(e.id, ep.id) for e in pending for ep in endpoints
                 if ep.merchant_id == e.merchant_id and e.type in ep.event_types]
        gate = asyncio.Semaphore(concurrency)

        async def start(pair: tuple[str, str]) -> None:
            async with gate:
                await start_delivery(temporal, settings, *pair)

        outcomes = await asyncio.gather(*(start(p) for p in pairs), return_exceptions=True)
        failed_events = {pair[0] for pair, out in zip(pairs, outcomes) if isinstance(out, BaseException)}
        for pair, out in zip(pairs, outcomes):
            if isinstance(out, BaseException):
                log.warning("could not start delivery %s -> %s: %s", *pair, out)
        done = [e.id for e in pending if e.id not in failed_events]
        if done:
            await session.execute(update(events).where(events.c.id.in_(done)).values(dispatched_at=func.now()))
    if failed_events:
        raise RuntimeError(f"could not start deliveries for {len(failed_events)} event(s); they stay pending")
    return len(pending), len(pairs)


async def redeliver(
    session: AsyncSession, temporal: Client, settings: Settings, event_id: str, scope_merchant_id: str | None,
    endpoint_id: str | None,
) -> list[dict]:
    """Deliver an event again: to one endpoint, or to every enabled endpoint subscribed to it."""
    event = await get_event(session, event_id, scope_merchant_id)
    if endpoint_id is not None:
        endpoint = await get_endpoint(session, endpoint_id, event["merchant_id"])
        if not endpoint["enabled"]:
            raise InvalidState(f"webhook endpoint {endpoint_id} is disabled; enable it first")
        targets = [endpoint]
    else:
        targets = [ep for ep in await list_endpoints(session, event["merchant_id"])
                   if ep["enabled"] and event["type"] in ep["event_types"]]
        if not targets:
            raise InvalidState("no enabled webhook endpoint is subscribed to this event's type")
    await session.commit()
    tag = uuid.uuid4().hex[:12]
    started = []
    for ep in targets:
        wid = await start_delivery(temporal, settings, event_id, ep["id"], redelivery=tag)
        started.append({"endpoint_id": ep["id"], "workflow_id": wid})
    return started


async def ensure_dispatcher(temporal: Client, settings: Settings) -> str:
    """Start this deployment's webhook dispatcher unless it already runs (every worker calls this)."""
    workflow_id = webhook_dispatcher_workflow_id(settings.temporal_task_queue)
    await temporal.start_workflow(
        WEBHOOK_DISPATCH_WORKFLOW,
        WebhookDispatcherInput(poll_seconds=settings.webhook_dispatch_poll_seconds),
        id=workflow_id,
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return workflow_id
