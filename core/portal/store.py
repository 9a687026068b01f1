"""The merchant portal's SQL: the activity feed (one UNION over the tables the existing writers
already fill, no second copy of any event) and the audit of ops "view as" sessions.

The feed reads, newest first, per kind:
- payment:    `transactions` (synced payments; occurred_at), by merchant_id;
- payout:     `payout_events` of the merchant's payouts (every status change but `settled`);
- settlement: `payout_events` whose new status is `settled` (the money reached the beneficiary);
- webhook:    `webhook_attempts` (delivered / failing) and `webhook_endpoints` disabled for failing;
- ops:        `ops_action_audit` of actions whose target or params name the merchant, and
              `view_as_sessions` (an ops user looked at the merchant's portal, and ended the
              session before it expired).

Each branch is ordered by (at, uid) and limited on its own before the UNION, so a page reads at
most `limit` rows per branch through its (merchant_id, time) index; `uid` ('tx:<zero-padded id>',
'pe:…', 'wa:…', 'we:<endpoint>', 'oa:…', 'va:…', 've:…') is the unique tie-break the cursor carries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

KINDS = ("payment", "payout", "settlement", "webhook", "ops")


def _branches(scoped: bool) -> dict[str, list[str]]:
    m = "AND {col} = :merchant_id" if scoped else ""

    def where(col: str) -> str:
        return m.format(col=col)

    return {
        "payment": [f"""
SELECT t.occurred_at AS at, 'tx:' || lpad(t.id::text, 20, '0') AS uid, 'payment' AS kind,
       t.status AS event, t.merchant_id, t.source_id AS ref, t.amount_minor, t.currency,
       jsonb_build_object('source', t.source, 'transaction_id', t.id, 'project', t.project) AS detail
FROM transactions t
WHERE t.occurred_at <= :at {where("t.merchant_id")}
  AND (t.occurred_at, 'tx:' || lpad(t.id::text, 20, '0')) < (:at, :uid)
ORDER BY t.occurred_at DESC, 2 DESC LIMIT :limit"""],
        "payout": [f"""
SELECT pe.created_at AS at, 'pe:' || lpad(pe.id::text, 20, '0') AS uid, 'payout' AS kind,
       pe.to_status AS event, p.merchant_id, p.id AS ref, p.amount_minor, p.currency,
       jsonb_build_object('from_status', pe.from_status, 'reason', pe.reason, 'rail', p.rail) AS detail
FROM payout_events pe JOIN payouts p ON p.id = pe.payout_id
WHERE pe.created_at <= :at AND pe.to_status <> 'settled' {where("p.merchant_id")}
  AND (pe.created_at, 'pe:' || lpad(pe.id::text, 20, '0')) < (:at, :uid)
ORDER BY pe.created_at DESC, 2 DESC LIMIT :limit"""],
        "settlement": [f"""
SELECT pe.created_at AS at, 'pe:' || lpad(pe.id::text, 20, '0') AS uid, 'settlement' AS kind,
       pe.to_status AS event, p.merchant_id, p.id AS ref, p.amount_minor, p.currency,
       jsonb_build_object('from_status', pe.from_status, 'rail', p.rail) AS detail
FROM payout_events pe JOIN payouts p ON p.id = pe.payout_id
WHERE pe.created_at <= :at AND pe.to_status = 'settled' {where("p.merchant_id")}
  AND (pe.created_at, 'pe:' || lpad(pe.id::text, 20, '0')) < (:at, :uid)
ORDER BY pe.created_at DESC, 2 DESC LIMIT :limit"""],
        "webhook": [f"""
SELECT wa.created_at AS at, 'wa:' || lpad(wa.id::text, 20, '0') AS uid, 'webhook' AS kind,
       CASE WHEN wa.outcome = 'succeeded' THEN 'delivered' ELSE 'failing' END AS event,
       wa.merchant_id, wa.event_id AS ref, NULL::bigint AS amount_minor, NULL::text AS currency,
       jsonb_build_object('endpoint_id', wa.endpoint_id, 'attempt', wa.attempt, 'status_code', wa.status_code,
                          'latency_ms', wa.latency_ms, 'outcome', wa.outcome) AS detail
FROM webhook_attempts wa
WHERE wa.created_at <= :at {where("wa.merchant_id")}
  AND (wa.created_at, 'wa:' || lpad(wa.id::text, 20, '0')) < (:at, :uid)
ORDER BY wa.created_at DESC, 2 DESC LIMIT :limit""", f"""
SELECT we.updated_at AS at, 'we:' || we.id AS uid, 'webhook' AS kind, 'disabled' AS event,
       we.merchant_id, we.id AS ref, NULL::bigint AS amount_minor, NULL::text AS currency,
       jsonb_build_object('endpoint_id', we.id, 'reason', we.disabled_reason) AS detail
FROM webhook_endpoints we
WHERE NOT we.enabled AND we.disabled_reason IS NOT NULL AND we.deleted_at IS NULL
  AND we.updated_at <= :at {where("we.merchant_id")}
  AND (we.updated_at, 'we:' || we.id) < (:at, :uid)
ORDER BY we.updated_at DESC, 2 DESC LIMIT :limit"""],
        "ops": [f"""
SELECT a.created_at AS at, 'oa:' || lpad(a.id::text, 20, '0') AS uid, 'ops' AS kind,
       o.action_type || '.' || a.event AS event,
       coalesce(o.params->>'merchant_id', o.target->>'id') AS merchant_id, o.id AS ref,
       NULL::bigint AS amount_minor, NULL::text AS currency,
       jsonb_build_object('action_type', o.action_type, 'event', a.event, 'actor', a.actor,
                          'to_status', a.to_status, 'reason', o.reason) AS detail
FROM ops_action_audit a JOIN ops_actions o ON o.id = a.action_id
WHERE a.created_at <= :at
  AND ((o.target->>'kind' = 'merchant' {where("o.target->>'id'")}) OR (o.params ? 'merchant_id' {where("o.params->>'merchant_id'")}))
  AND (a.created_at, 'oa:' || lpad(a.id::text, 20, '0')) < (:at, :uid)
ORDER BY a.created_at DESC, 2 DESC LIMIT :limit""", f"""
SELECT v.created_at AS at, 'va:' || v.id AS uid, 'ops' AS kind, 'view_as.started' AS event,
       v.merchant_id, v.id AS ref, NULL::bigint AS amount_minor, NULL::text AS currency,
       jsonb_build_object('actor', v.actor, 'reason', v.reason, 'expires_at', v.expires_at) AS detail
FROM view_as_sessions v
WHERE v.created_at <= :at {where("v.merchant_id")}
  AND (v.created_at, 'va:' || v.id) < (:at, :uid)
ORDER BY v.created_at DESC, 2 DESC LIMIT :limit""", f"""
SELECT v.ended_at AS at, 've:' || v.id AS uid, 'ops' AS kind, 'view_as.ended' AS event,
       v.merchant_id, v.id AS ref, NULL::bigint AS amount_minor, NULL::text AS currency,
       jsonb_build_object('actor', v.actor, 'ended_by', v.ended_by, 'expires_at', v.expires_at) AS detail
FROM view_as_sessions v
WHERE v.ended_at IS NOT NULL AND v.ended_at <= :at {where("v.merchant_id")}
  AND (v.ended_at, 've:' || v.id) < (:at, :uid)
ORDER BY v.ended_at DESC, 2 DESC LIMIT :limit"""],
    }


async def activity_page(session: AsyncSession, *, merchant_id: str | None, kinds: list[str], before: tuple[datetime, str],
                        limit: int) -> list[dict[str, Any]]:
    """Up to `limit` events strictly older than `before` = (at, uid), newest first."""
    branches = _branches(merchant_id is not None)
    parts = [f"({sql})" for kind in kinds for sql in branches[kind]]
    sql = "SELECT * FROM (" + "\nUNION ALL\n".join(parts) + ") feed ORDER BY at DESC, uid DESC LIMIT :limit"
    params: dict[str, Any] = {"at": before[0], "uid": before[1], "limit": limit}
    if merchant_id is not None:
        params["merchant_id"] = merchant_id
    # Each branch is a LIMITed index scan; the planner's cost estimate of the UNION over the
    # partitioned transactions can still pass jit_above_cost, and compiling costs seconds.
    await session.execute(text("SET LOCAL jit = off"))
    rows = (await session.execute(text(sql), params)).mappings().all()
    return [dict(r) for r in rows]


# --- view-as sessions -------------------------------------------------------------------------

_VIEW_AS_COLUMNS = "id, merchant_id, actor, actor_roles, reason, expires_at, created_at, ended_at, ended_by"

_INSERT_VIEW_AS = text(f"""
INSERT INTO view_as_sessions (id, merchant_id, actor, actor_roles, reason, expires_at)
VALUES (:id, :merchant_id, :actor, CAST(:actor_roles AS jsonb), :reason, :expires_at)
RETURNING {_VIEW_AS_COLUMNS}
""")


async def insert_view_as_session(session: AsyncSession, **values: Any) -> dict[str, Any]:
    return dict((await session.execute(_INSERT_VIEW_AS, values)).mappings().one())


async def list_view_as_sessions(session: AsyncSession, merchant_id: str | None, limit: int) -> list[dict[str, Any]]:
    cond = "WHERE merchant_id = :merchant_id" if merchant_id else ""
    rows = await session.execute(text(
        f"SELECT {_VIEW_AS_COLUMNS} FROM view_as_sessions {cond} "
        "ORDER BY created_at DESC, id DESC LIMIT :limit"), {"merchant_id": merchant_id, "limit": limit})
    return [dict(r) for r in rows.mappings().all()]


async def get_view_as_session(session: AsyncSession, session_id: str, *, for_update: bool = False) -> dict | None:
    lock = " FOR UPDATE" if for_update else ""
    row = (await session.execute(text(f"SELECT {_VIEW_AS_COLUMNS} FROM view_as_sessions WHERE id = :id{lock}"),
                                 {"id": session_id})).mappings().one_or_none()
    return dict(row) if row else None


async def end_view_as_session(session: AsyncSession, session_id: str, ended_by: str) -> dict | None:
    """Ends it now unless it already ended (then None: the first end stands)."""
    row = (await session.execute(text(
        f"UPDATE view_as_sessions SET ended_at = now(), ended_by = :by WHERE id = :id AND ended_at IS NULL "
        f"RETURNING {_VIEW_AS_COLUMNS}"), {"id": session_id, "by": ended_by})).mappings().one_or_none()
    return dict(row) if row else None


async def view_as_session_ended(session: AsyncSession, session_id: str) -> bool:
    """True when the session ended early, or when no such session was ever recorded."""
    ended = (await session.execute(text("SELECT ended_at IS NOT NULL FROM view_as_sessions WHERE id = :id"),
                                   {"id": session_id})).scalar_one_or_none()
    return ended is None or bool(ended)
