"""Payout rows and their append-only audit trail.

Every status change goes through `transition`, which appends a payout_events row in the same
transaction (idempotent per event key, so a retried activity never writes twice) and bumps the
payout's version. `publish_payout_update` fans the change out on Redis for live views.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from redis.asyncio import Redis
from sqlalchemy import Insert, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.tables import payout_events, payouts
from core.webhook_events import record_payout_event

log = logging.getLogger("payops.payouts")

PAYOUT_UPDATES_CHANNEL = "payops:updates:payouts"


async def get_payout_row(session: AsyncSession, payout_id: str, *, for_update: bool = False) -> dict:
    stmt = select(payouts).where(payouts.c.id == payout_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).mappings().first()
    if row is None:
        raise NotFound(f"payout {payout_id} not found")
    return dict(row)


async def append_event(
    session: AsyncSession,
    *,
    payout_id: str,
    actor: str,
    from_status: str | None,
    to_status: str,
    reason: str | None = None,
    data: dict | None = None,
    event_key: str | None = None,
) -> bool:
    """Append an audit event; with `event_key`, a second append of the same key is a no-op."""
    data = dict(data or {})
    if event_key is not None:
        data["event_key"] = event_key
        exists = await session.execute(
            select(payout_events.c.id).where(
                payout_events.c.payout_id == payout_id,
                payout_events.c.data["event_key"].astext == event_key,
            )
        )
        if exists.first() is not None:
            return False
    await session.execute(
        event_insert(payout_id=payout_id, actor=actor, from_status=from_status, to_status=to_status,
                     reason=reason, data=data)
    )
    return True


def event_insert(
    *, payout_id: str, actor: str, from_status: str | None, to_status: str, reason: str | None, data: dict
) -> Insert:
    """The INSERT of the payout's next audit event (for callers that batch it with other writes)."""
    next_seq = (
        select(func.coalesce(func.max(payout_events.c.sequence), 0) + 1)
        .where(payout_events.c.payout_id == payout_id)
        .scalar_subquery()
    )
    return insert(payout_events).values(
        payout_id=payout_id,
        sequence=next_seq,
        actor=actor,
        from_status=from_status,
        to_status=to_status,
        reason=reason,
        data=data,
    )


async def transition(
    session: AsyncSession,
    *,
    payout_id: str,
    to_status: str,
    event_key: str,
    actor: str = "workflow",
    reason: str | None = None,
    failure_code: str | None = None,
    failure_message: str | None = None,
    data: dict | None = None,
    extra_columns: dict | None = None,
) -> tuple[dict, bool]:
    """Set the payout's status and append the event. Returns (row, applied)."""
    row = await get_payout_row(session, payout_id, for_update=True)
    applied = await append_event(
        session,
        payout_id=payout_id,
        actor=actor,
        from_status=row["status"],
        to_status=to_status,
        reason=reason,
        data=data,
        event_key=event_key,
    )
    if not applied:
        return row, False
    values: dict = {"status": to_status, "updated_at": func.now(), "version": payouts.c.version + 1}
    if failure_code is not None:
        values["failure_code"] = failure_code
        values["failure_message"] = failure_message
    values.update(extra_columns or {})
    result = await session.execute(
        update(payouts).where(payouts.c.id == payout_id).values(**values).returning(*payouts.c)
    )
    row = dict(result.mappings().one())
    # the merchant-facing event (webhooks' outbox) commits with the change or not at all
    await record_payout_event(session, row)
    return row, True


def payout_update_message(row: dict) -> dict:
    """What live views receive: no beneficiary details, ever."""
    return {
        "type": "payout.updated",
        "payout_id": row["id"],
        "merchant_id": row["merchant_id"],
        "status": row["status"],
        "amount_minor": row["amount_minor"],
        "currency": row["currency"],
        "rail": row.get("rail"),
        "failure_code": row.get("failure_code"),
        "version": row["version"],
        "at": datetime.now(timezone.utc).isoformat(),
    }


async def publish_payout_update(redis: Redis | None, row: dict) -> None:
    """Best effort: a live view missing one message must never fail a money movement."""
    if redis is None:
        return
    try:
        await redis.publish(PAYOUT_UPDATES_CHANNEL, json.dumps(payout_update_message(row)))
    except Exception as exc:  # noqa: BLE001
        log.warning("could not publish payout update for %s: %s", row.get("id"), exc)
