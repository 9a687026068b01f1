"""The rows a webhook delivery attempt reads and writes: its endpoint and event, the attempt
itself, and the endpoint's failure bookkeeping (failing_since, auto-disable)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.platform.tables import events, webhook_attempts, webhook_endpoints


async def endpoint_and_event(session: AsyncSession, endpoint_id: str,
                             event_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The endpoint's row (deleted ones too) and the event's row; None for one that does not exist."""
    endpoint = (await session.execute(
        select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
    )).mappings().first()
    event = (await session.execute(select(events).where(events.c.id == event_id))).mappings().first()
    return (None if endpoint is None else dict(endpoint)), (None if event is None else dict(event))


async def record_attempt(session: AsyncSession, *, event_id: str, endpoint_id: str, merchant_id: str,
                         workflow_id: str, attempt: int, url: str, outcome: str, status_code: int | None,
                         latency_ms: int | None, response_excerpt: str | None, error: str | None) -> None:
    """One attempt's row; the same (workflow, attempt) recorded twice (a retried activity) stays one row."""
    await session.execute(
        insert(webhook_attempts).values(
            event_id=event_id, endpoint_id=endpoint_id, merchant_id=merchant_id,
            workflow_id=workflow_id, attempt=attempt, url=url,
            outcome=outcome, status_code=status_code, latency_ms=latency_ms,
            response_excerpt=response_excerpt, error=error,
        ).on_conflict_do_nothing(constraint="uq_webhook_attempts_workflow_attempt")
    )


async def clear_failing(session: AsyncSession, endpoint_id: str) -> None:
    """A delivery succeeded: the endpoint's failure run ends."""
    ep = webhook_endpoints.c
    await session.execute(
        update(webhook_endpoints).where(ep.id == endpoint_id, ep.failing_since.is_not(None))
        .values(failing_since=None)
    )


async def mark_failing(session: AsyncSession, endpoint_id: str, now: datetime) -> datetime:
    """A delivery failed: the start of the endpoint's failure run (`now` when this one starts it)."""
    ep = webhook_endpoints.c
    return await session.scalar(
        update(webhook_endpoints).where(ep.id == endpoint_id)
        .values(failing_since=func.coalesce(ep.failing_since, now))
        .returning(ep.failing_since)
    )


async def disable_endpoint(session: AsyncSession, endpoint_id: str, reason: str) -> str | None:
    """Disable the endpoint if it is enabled; its id when this call disabled it, else None."""
    ep = webhook_endpoints.c
    return await session.scalar(
        update(webhook_endpoints).where(ep.id == endpoint_id, ep.enabled)
        .values(enabled=False, disabled_reason=reason, updated_at=func.now())
        .returning(ep.id)
    )
