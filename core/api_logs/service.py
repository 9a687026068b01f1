"""The API request log: the list the API and GraphQL serve, and the retention prune."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.api_logs import store
from core.platform.errors import Unprocessable
from core.platform.pagination import decode_time_id_cursor, time_id_cursor

PRUNE_BATCH = 5000


def _after(cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor:
        return None
    at, row_id = decode_time_id_cursor(cursor)
    try:
        return at, int(row_id)
    except ValueError:
        raise Unprocessable("cursor is not one this API returned") from None


async def list_api_logs(
    session: AsyncSession, *, merchant_id: str | None, method: str | None = None, status: int | None = None,
    route: str | None = None, principal: str | None = None, at_from: datetime | None = None,
    at_to: datetime | None = None, limit: int = 50, cursor: str | None = None,
) -> dict[str, Any]:
    """Requests, newest first, keyset-paginated on (at, id). `merchant_id` None = every merchant's
    (and the platform's own) requests: the caller decides the scope."""
    rows = await store.select_page(
        session, merchant_id=merchant_id, method=method.upper() if method else None, status=status, route=route,
        principal=principal, at_from=at_from, at_to=at_to, after=_after(cursor), limit=limit)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"data": rows, "next_cursor": time_id_cursor(rows[-1]["at"], str(rows[-1]["id"])) if more else None}


async def prune_api_logs(sessionmaker: async_sessionmaker[AsyncSession], *, retention_days: float,
                         now: datetime | None = None) -> int:
    """Delete rows older than the retention, in batches of PRUNE_BATCH, each its own transaction."""
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=retention_days)
    total = 0
    while True:
        async with sessionmaker.begin() as session:
            deleted = await store.delete_older_than(session, cutoff, PRUNE_BATCH)
        total += deleted
        if deleted < PRUNE_BATCH:
            return total
