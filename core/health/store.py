"""The merchant health view's SQL: one aggregate statement per figure group over [since, until)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.platform.tables import ready_probes

_WEBHOOKS = text("""
SELECT count(*) AS attempts,
       count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS latency_p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS latency_p95_ms
FROM webhook_attempts
WHERE merchant_id = :merchant_id AND created_at >= :since AND created_at < :until
""")

_API = text("""
SELECT count(*) AS requests,
       count(*) FILTER (WHERE status >= 500) AS errors_5xx,
       count(*) FILTER (WHERE status >= 400 AND status < 500) AS errors_4xx,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS latency_p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS latency_p95_ms
FROM api_request_log
WHERE merchant_id = :merchant_id AND at >= :since AND at < :until
""")

_UPTIME = text("""
SELECT component, count(*) AS probes, count(*) FILTER (WHERE up) AS up
FROM ready_probes
WHERE at >= :since AND at < :until
GROUP BY component ORDER BY component
""")

_RAILS = text("""
SELECT rail, connector, count(*) AS payouts,
       count(*) FILTER (WHERE status = 'settled') AS settled,
       count(*) FILTER (WHERE status IN ('settled', 'returned', 'failed')) AS finished
FROM payouts
WHERE merchant_id = :merchant_id AND rail IS NOT NULL AND created_at >= :since AND created_at < :until
GROUP BY rail, connector ORDER BY rail, connector NULLS FIRST
""")


async def webhook_figures(session: AsyncSession, merchant_id: str, since: datetime, until: datetime) -> dict[str, Any]:
    row = (await session.execute(_WEBHOOKS, {"merchant_id": merchant_id, "since": since, "until": until})).mappings().one()
    return dict(row)


async def api_figures(session: AsyncSession, merchant_id: str, since: datetime, until: datetime) -> dict[str, Any]:
    row = (await session.execute(_API, {"merchant_id": merchant_id, "since": since, "until": until})).mappings().one()
    return dict(row)


async def uptime_figures(session: AsyncSession, since: datetime, until: datetime) -> list[dict[str, Any]]:
    return [dict(r) for r in (await session.execute(_UPTIME, {"since": since, "until": until})).mappings()]


async def rail_figures(session: AsyncSession, merchant_id: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    rows = await session.execute(_RAILS, {"merchant_id": merchant_id, "since": since, "until": until})
    return [dict(r) for r in rows.mappings()]


async def insert_probes(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """One row per component of one `/ready` probe: at, component, up, latency_ms."""
    if rows:
        await session.execute(insert(ready_probes), rows)


async def delete_probes_older_than(session: AsyncSession, cutoff: datetime, batch: int) -> int:
    doomed = select(ready_probes.c.id).where(ready_probes.c.at < cutoff).limit(batch).scalar_subquery()
    result = await session.execute(delete(ready_probes).where(ready_probes.c.id.in_(doomed)))
    return result.rowcount or 0
