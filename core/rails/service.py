"""Reads for the rails API: payout batches (with their files) and connector health."""

from __future__ import annotations


from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from connectors.registry import ConnectorRegistry
from core.platform.errors import NotFound
from core.platform.pagination import decode_time_id_cursor, time_id_cursor
from core.platform.settings import Settings
from core.platform.tables import connector_health, payout_batch_entries, payout_batches
from core.rails import store
from core.rails.rules import RailRule
from core.rails.schedules import ensure_rail_schedules

BATCH_COLUMNS = [c for c in payout_batches.c if c.name != "file_content"]


def batch_view(row: dict) -> dict:
    bid = row["id"]
    return {
        **{c.name: row[c.name] for c in BATCH_COLUMNS},
        "links": {"self": f"/api/v1/payouts/batches/{bid}",
                  "file": f"/api/v1/payouts/batches/{bid}/file" if row.get("file_sha256") else None},
    }


def _cursor(row: dict) -> str:
    return time_id_cursor(row["cutoff_at"], row["id"])


async def list_batches(session: AsyncSession, *, rail: str | None, status: str | None, limit: int,
                       cursor: str | None) -> tuple[list[dict], str | None]:
    stmt = select(*BATCH_COLUMNS)
    if rail:
        stmt = stmt.where(payout_batches.c.rail == rail)
    if status:
        stmt = stmt.where(payout_batches.c.status == status)
    if cursor:
        at, bid = decode_time_id_cursor(cursor)
        stmt = stmt.where(tuple_(payout_batches.c.cutoff_at, payout_batches.c.id) < (at, bid))
    rows = (await session.execute(
        stmt.order_by(payout_batches.c.cutoff_at.desc(), payout_batches.c.id.desc()).limit(limit + 1)
    )).mappings().all()
    page = [dict(r) for r in rows[:limit]]
    return [batch_view(r) for r in page], (_cursor(page[-1]) if len(rows) > limit else None)


async def get_batch(session: AsyncSession, batch_id: str) -> dict:
    row = (await session.execute(select(*BATCH_COLUMNS).where(payout_batches.c.id == batch_id))).mappings().one_or_none()
    if row is None:
        raise NotFound(f"batch {batch_id} not found")
    entries = (await session.execute(
        select(payout_batch_entries.c.payout_id, payout_batch_entries.c.sequence, payout_batch_entries.c.amount_minor,
               payout_batch_entries.c.currency, payout_batch_entries.c.outcome,
               payout_batch_entries.c.bank_payment_id, payout_batch_entries.c.error)
        .where(payout_batch_entries.c.batch_id == batch_id).order_by(payout_batch_entries.c.sequence).limit(1000)
    )).mappings().all()
    return {**batch_view(dict(row)), "entries": [dict(e) for e in entries]}


async def batch_file(session: AsyncSession, batch_id: str) -> tuple[str, bytes, str]:
    row = (await session.execute(select(payout_batches.c.file_name, payout_batches.c.file_content,
                                        payout_batches.c.file_format)
                                 .where(payout_batches.c.id == batch_id))).one_or_none()
    if row is None:
        raise NotFound(f"batch {batch_id} not found")
    if row.file_content is None:
        raise NotFound(f"batch {batch_id} has no file yet")
    media = "application/xml" if row.file_format.startswith("pain") else "text/plain"
    return row.file_name, row.file_content, media


async def connectors_health(session: AsyncSession, registry: ConnectorRegistry) -> list[dict]:
    rows = {r["connector"]: dict(r) for r in (await session.execute(select(connector_health))).mappings().all()}
    out = []
    for c in registry:
        h = rows.get(c.name, {})
        requests, errors = h.get("window_requests", 0), h.get("window_errors", 0)
        out.append({
            "connector": c.name,
            "rails": sorted(c.rails),
            "routable": c.routable,
            "state": h.get("state", "closed"),
            "healthy": h.get("state", "closed") == "closed",
            "last_checked_at": h.get("last_checked_at"),
            "last_ok": h.get("last_ok"),
            "last_latency_ms": h.get("last_latency_ms"),
            "last_error": h.get("last_error"),
            "consecutive_failures": h.get("consecutive_failures", 0),
            "recent_requests": requests,
            "recent_errors": errors,
            "recent_error_rate": round(errors / requests, 4) if requests else None,
            "opened_at": h.get("opened_at"),
            "open_reason": h.get("open_reason"),
        })
    return out


async def update_rule(session: AsyncSession, temporal: Client | None, settings: Settings, rail: str, changes: dict,
                      actor: str) -> dict:
    """Change a rail's rule and commit; then move a batch rail's Schedule to the new cutoff (when
    Temporal is reachable; every worker's start ensures it otherwise)."""
    row = await store.update_rule(session, rail, changes, actor)
    await session.commit()
    if temporal is not None:
        rule = RailRule.model_validate({k: row[k] for k in RailRule.model_fields})
        await ensure_rail_schedules(temporal, settings, rules=[rule])
    return row
