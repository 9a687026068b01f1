"""Alert rows: the one statement that opens an alert, or counts it again while it is open.

One open alert per dedupe key (a partial unique index on open and acknowledged alerts: a resolved
or expired alert no longer counts, so the next firing opens a new one). Raising an open
alert again adds an occurrence and refreshes the columns the caller names; `refresh=None` leaves
the open alert as it is. Every alert payops raises goes through here: rule firings and
event-raised alerts (core/alerts/service.py), the reconciliation's match-rate alert (on its
asyncpg connection), bank disagreements, SLA breaches and disabled webhook endpoints.
"""

from __future__ import annotations

import json
import re
from typing import Any

import asyncpg
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.platform.tables import alert_audit, alerts

REFRESH_ALL = ("message", "data", "severity")
_COLUMNS = {"message", "data", "severity"}


def upsert_sql(refresh: tuple[str, ...] | None = REFRESH_ALL) -> str:
    """The INSERT ... ON CONFLICT, with :named parameters (rule, severity, key, message, data)."""
    if refresh is not None and not set(refresh) <= _COLUMNS:
        raise ValueError(f"an alert refreshes only {sorted(_COLUMNS)}, not {refresh}")
    on_conflict = "DO NOTHING" if refresh is None else "DO UPDATE SET " + ", ".join(
        ["occurrences = alerts.occurrences + 1", "last_seen_at = now()"] + [f"{c} = EXCLUDED.{c}" for c in refresh])
    return f"""
    INSERT INTO alerts (rule, severity, dedupe_key, message, data)
    VALUES (:rule, :severity, :key, :message, CAST(:data AS jsonb))
    ON CONFLICT (dedupe_key) WHERE status in ('open','acknowledged') {on_conflict}
    RETURNING id, (xmax = 0) AS opened, status, occurrences
"""


def _params(rule: str, severity: str, dedupe_key: str, message: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"rule": rule, "severity": severity, "key": dedupe_key, "message": message,
            "data": json.dumps(data, default=str)}


async def upsert_alert(session: AsyncSession, *, rule: str, severity: str, dedupe_key: str, message: str,
                       data: dict[str, Any], refresh: tuple[str, ...] | None = REFRESH_ALL) -> dict[str, Any] | None:
    """{id, opened, status, occurrences}; None when `refresh` is None and the alert was open."""
    row = (await session.execute(text(upsert_sql(refresh)),
                                 _params(rule, severity, dedupe_key, message, data))).mappings().first()
    return dict(row) if row is not None else None


async def upsert_alert_asyncpg(conn: asyncpg.Connection, *, rule: str, severity: str, dedupe_key: str, message: str,
                               data: dict[str, Any], refresh: tuple[str, ...] | None = REFRESH_ALL) -> int | None:
    """The same statement on a raw asyncpg connection (the set-based reconciliation's); its id."""
    names: list[str] = []

    def positional(m: re.Match[str]) -> str:
        names.append(m.group(1))
        return f"${len(names)}"

    sql = re.sub(r"(?<!:):(\w+)", positional, upsert_sql(refresh))
    params = _params(rule, severity, dedupe_key, message, data)
    return await conn.fetchval(sql, *(params[n] for n in names))


async def alert_id_by_dedupe_key(session: AsyncSession, dedupe_key: str) -> int | None:
    """The id of an alert (open or resolved) raised under `dedupe_key`, or None."""
    return await session.scalar(select(alerts.c.id).where(alerts.c.dedupe_key == dedupe_key))


async def open_alert_ids_by_dedupe_keys(session: AsyncSession, dedupe_keys: list[str]) -> dict[str, int]:
    """dedupe key -> id of its open or acknowledged alert (at most one each), for the keys that have one."""
    if not dedupe_keys:
        return {}
    rows = await session.execute(select(alerts.c.dedupe_key, alerts.c.id).where(
        alerts.c.dedupe_key.in_(dedupe_keys), alerts.c.status.in_(("open", "acknowledged"))))
    return {k: i for k, i in rows}


# --- expiry (AlertExpiryWorkflow) ------------------------------------------------------------------

EXPIRY_ACTOR = "alert-expiry"


async def expire_unacknowledged(session: AsyncSession, lifetimes_hours: dict[str, float],
                                *, limit: int = 5000) -> list[dict[str, Any]]:
    """Mark `expired` (with expired_at) the open alerts whose severity has a lifetime (hours > 0)
    and that last fired longer ago than it, at most `limit` per call, oldest first; one
    alert_audit row each, in the same statement. Acknowledged alerts never expire. Returns
    the expired rows (id, rule, severity, dedupe_key, last_seen_at, expired_at)."""
    lifetimes = {sev: hours for sev, hours in lifetimes_hours.items() if hours > 0}
    if not lifetimes:
        return []
    values = ", ".join(f"(CAST(:sev_{i} AS text), CAST(:hours_{i} AS double precision))"
                       for i in range(len(lifetimes)))
    params: dict[str, Any] = {"limit": limit, "actor": EXPIRY_ACTOR}
    for i, (sev, hours) in enumerate(sorted(lifetimes.items())):
        params[f"sev_{i}"], params[f"hours_{i}"] = sev, float(hours)
    rows = (await session.execute(text(f"""
        WITH lifetime(severity, hours) AS (VALUES {values}),
        due AS (
            SELECT a.id, l.hours FROM alerts a JOIN lifetime l ON l.severity = a.severity
             WHERE a.status = 'open' AND a.last_seen_at < now() - make_interval(secs => l.hours * 3600)
             ORDER BY a.last_seen_at LIMIT :limit FOR UPDATE OF a SKIP LOCKED),
        expired AS (
            UPDATE alerts SET status = 'expired', expired_at = now() FROM due
             WHERE alerts.id = due.id AND alerts.status = 'open'
            RETURNING alerts.id, alerts.rule, alerts.severity, alerts.dedupe_key, alerts.last_seen_at,
                      alerts.expired_at, due.hours),
        audited AS (
            INSERT INTO alert_audit (alert_id, event, actor, from_status, to_status, data)
            SELECT id, 'expired', :actor, 'open', 'expired',
                   jsonb_build_object('lifetime_hours', hours, 'last_seen_at', last_seen_at, 'severity', severity)
              FROM expired)
        SELECT id, rule, severity, dedupe_key, last_seen_at, expired_at FROM expired ORDER BY id"""), params)
    ).mappings().all()
    return [dict(r) for r in rows]


async def alert_audit_entries(session: AsyncSession, alert_id: int) -> list[dict[str, Any]]:
    rows = await session.execute(select(alert_audit).where(alert_audit.c.alert_id == alert_id)
                                 .order_by(alert_audit.c.id))
    return [dict(r) for r in rows.mappings().all()]
