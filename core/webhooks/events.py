"""Events: what happened to a merchant's payouts, stored once and delivered to its webhooks.

`record_payout_event` runs inside the transaction that changes the payout (core.payouts.store.
transition, and payout creation), so an event exists if and only if the change committed. The
row is also the outbox: the webhook dispatcher picks up rows whose `dispatched_at` is NULL.
"""

from __future__ import annotations

import json
import uuid

from sqlalchemy import Insert, insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from core.platform.errors import NotFound
from core.platform.pagination import decode_time_id_cursor, time_id_cursor
from core.platform.settings import Settings, get_settings
from core.platform.tables import events, webhook_attempts
from core.payouts.view import PayoutOut, payout_view
from core.webhooks.models import EVENT_TYPE_OF_STATUS, EventType


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


async def record_payout_event(
    session: AsyncSession, row: dict, *, event_type: EventType | None = None, settings: Settings | None = None
) -> str | None:
    """Insert the event for the payout `row` (just changed, same transaction). The type follows
    from the row's status unless given; statuses merchants do not hear about insert nothing."""
    if event_type is None:
        if row["status"] == "pending":  # only creation announces a pending payout
            return None
        event_type = EVENT_TYPE_OF_STATUS.get(row["status"])
        if event_type is None:
            return None
    event_id, stmt = payout_event_insert(row, event_type, settings)
    await session.execute(stmt)
    return event_id


def payout_event_values(row: dict, event_type: EventType, settings: Settings | None = None) -> dict:
    """The `events` row (its column values) for the payout `row`."""
    # serialized exactly as GET /api/v1/payouts/{id} serializes it, so the two compare equal
    data = PayoutOut.model_validate(payout_view(row, settings or get_settings())).model_dump(mode="json")
    return {
        "id": new_event_id(),
        "merchant_id": row["merchant_id"],
        "type": event_type.value,
        "payout_id": row["id"],
        "payout_version": row["version"],
        "data": data,
    }


def payout_event_insert(row: dict, event_type: EventType, settings: Settings | None = None) -> tuple[str, Insert]:
    """(event id, its INSERT) for the payout `row`, for callers that batch it with other writes."""
    values = payout_event_values(row, event_type, settings)
    return values["id"], insert(events).values(**values)


def envelope(row: dict) -> dict:
    """The event as the API returns it and webhooks carry it."""
    return {
        "id": row["id"],
        "type": row["type"],
        "created": row["created_at"].isoformat(),
        "payout_version": row["payout_version"],
        "data": row["data"],
    }


def envelope_body(row: dict) -> bytes:
    """The exact bytes a webhook carries (and its signature covers)."""
    return json.dumps(envelope(row), separators=(",", ":"), sort_keys=True).encode()


async def get_event(session: AsyncSession, event_id: str, scope_merchant_id: str | None) -> dict:
    row = (await session.execute(select(events).where(events.c.id == event_id))).mappings().first()
    if row is None or (scope_merchant_id is not None and row["merchant_id"] != scope_merchant_id):
        raise NotFound(f"event {event_id} not found")
    return dict(row)


_encode_cursor = time_id_cursor  # (created_at, event id)
_decode_cursor = decode_time_id_cursor


async def list_events(
    session: AsyncSession,
    *,
    merchant_id: str | None,
    event_type: str | None = None,
    payout_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict], str | None]:
    """Newest first, keyset-paginated on (created_at, id)."""
    conditions = []
    if merchant_id is not None:
        conditions.append(events.c.merchant_id == merchant_id)
    if event_type is not None:
        conditions.append(events.c.type == event_type)
    if payout_id is not None:
        conditions.append(events.c.payout_id == payout_id)
    if cursor:
        c_created, c_id = _decode_cursor(cursor)
        conditions.append(tuple_(events.c.created_at, events.c.id) < tuple_(c_created, c_id))
    stmt = select(events).where(*conditions).order_by(events.c.created_at.desc(), events.c.id.desc()).limit(limit + 1)
    rows = [dict(r) for r in (await session.execute(stmt)).mappings().all()]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1]["created_at"], rows[-1]["id"])
    return rows, next_cursor


async def event_attempts(session: AsyncSession, event_id: str) -> list[dict]:
    """Every delivery attempt made for the event, oldest first."""
    rows = (await session.execute(
        select(webhook_attempts).where(webhook_attempts.c.event_id == event_id)
        .order_by(webhook_attempts.c.created_at, webhook_attempts.c.id)
    )).mappings().all()
    return [dict(a) for a in rows]
