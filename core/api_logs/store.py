"""The API request log's SQL: batched inserts, the keyset-paged list, the retention prune."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.api_logs.models import ApiLogEntry
from core.platform.tables import api_request_log as log


async def insert_entries(session: AsyncSession, entries: list[ApiLogEntry]) -> None:
    """One executemany INSERT for a whole flush."""
    if entries:
        await session.execute(insert(log), entries)


async def select_page(
    session: AsyncSession, *, merchant_id: str | None, method: str | None, status: int | None,
    route: str | None, principal: str | None, at_from: datetime | None, at_to: datetime | None,
    after: tuple[datetime, int] | None, limit: int,
) -> list[dict[str, Any]]:
    """Newest first on (at, id); `limit + 1` rows so the caller knows whether a page follows."""
    conds = []
    for column, value in ((log.c.merchant_id, merchant_id), (log.c.method, method), (log.c.status, status),
                          (log.c.route, route), (log.c.principal, principal)):
        if value is not None:
            conds.append(column == value)
    if at_from is not None:
        conds.append(log.c.at >= at_from)
    if at_to is not None:
        conds.append(log.c.at < at_to)
    if after is not None:
        at, row_id = after
        conds.append(or_(log.c.at < at, and_(log.c.at == at, log.c.id < row_id)))
    stmt = select(log).where(*conds).order_by(log.c.at.desc(), log.c.id.desc()).limit(limit + 1)
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


async def delete_older_than(session: AsyncSession, cutoff: datetime, batch: int) -> int:
    """Delete at most `batch` rows logged before `cutoff` (short transactions, no long lock)."""
    doomed = select(log.c.id).where(log.c.at < cutoff).limit(batch).scalar_subquery()
    result = await session.execute(delete(log).where(log.c.id.in_(doomed)))
    return result.rowcount or 0
