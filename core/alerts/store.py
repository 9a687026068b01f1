"""Alert rows: the one statement that opens an alert, or counts it again while it is open.

One open alert per dedupe key (a partial unique index: status <> 'resolved'). Raising an open
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

from core.platform.tables import alerts

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
    ON CONFLICT (dedupe_key) WHERE status <> 'resolved' {on_conflict}
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
