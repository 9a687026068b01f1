"""Reads and writes of recommendations, and the aggregates over payouts and the ledger that the
recommendation kinds are computed from."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.platform.errors import NotFound
from core.platform.tables import recommendations
from core.recommendations.models import Draft, RecommendationStatus

# --- what the kinds are computed from --------------------------------------------------------


async def settled_corridor_payouts(session: AsyncSession, since: datetime) -> list[dict[str, Any]]:
    """Settled payouts since `since` with their corridor (currency, the routed country, rail),
    connector, fee paid and settlement target, ordered by corridor."""
    rows = (await session.execute(text("""
        SELECT merchant_id, currency, coalesce(routing->>'country', '') AS country, rail, connector,
               method, priority, amount_minor, fee_minor, created_at, settlement_target_at
          FROM payouts
         WHERE status = 'settled' AND created_at >= :since AND rail IS NOT NULL AND connector IS NOT NULL
         ORDER BY merchant_id, currency, country, rail, created_at, id"""), {"since": since})).mappings().all()
    return [dict(r) for r in rows]


async def daily_outflows(session: AsyncSession, since: datetime) -> list[dict[str, Any]]:
    """Per merchant, currency and UTC day: the amount + fee of payouts that take money out (all
    but the refused, cancelled and failed ones), and their count."""
    rows = (await session.execute(text("""
        SELECT merchant_id, currency, (created_at AT TIME ZONE 'UTC')::date AS day,
               sum(amount_minor + fee_minor) AS outflow_minor, count(*) AS payouts
          FROM payouts
         WHERE created_at >= :since AND status NOT IN ('rejected', 'cancelled', 'failed')
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""), {"since": since})).mappings().all()
    return [dict(r) for r in rows]


async def available_balances(session: AsyncSession) -> dict[tuple[str, str], int]:
    """(merchant_id, currency) -> available balance in minor units, from the ledger."""
    rows = (await session.execute(text("""
        SELECT split_part(code, ':', 2) AS merchant_id, currency, -balance_minor AS available
          FROM ledger_accounts WHERE code LIKE :pattern"""), {"pattern": "merchant:%:available"})).mappings().all()
    return {(r["merchant_id"], r["currency"]): int(r["available"]) for r in rows}


async def connector_outcomes(session: AsyncSession, since: datetime) -> list[dict[str, Any]]:
    """Per connector and currency since `since`: payouts that reached an outcome at the bank,
    how many of them failed (failed or parked in dlq) and the failed amount."""
    rows = (await session.execute(text("""
        SELECT connector, currency, count(*) AS payouts,
               count(*) FILTER (WHERE status IN ('failed', 'dlq')) AS failed,
               coalesce(sum(amount_minor) FILTER (WHERE status IN ('failed', 'dlq')), 0) AS failed_minor
          FROM payouts
         WHERE connector IS NOT NULL AND created_at >= :since
           AND status IN ('submitted', 'settled', 'returned', 'failed', 'dlq')
         GROUP BY 1, 2 ORDER BY 1, 2"""), {"since": since})).mappings().all()
    return [dict(r) for r in rows]


# --- recommendation rows ---------------------------------------------------------------------

# The pending index's predicate, literal (see tables.ALERT_OPEN_PREDICATE for why not a parameter)
_UPSERT = text("""
    INSERT INTO recommendations (id, kind, merchant_id, dedupe_key, status, title, impact_minor, currency,
                                 impact_arithmetic, confidence, confidence_explanation, evidence, action_type,
                                 action_params, expires_at, created_at, updated_at)
    VALUES (:id, :kind, :merchant_id, :dedupe_key, 'pending', :title, :impact_minor, :currency, :impact_arithmetic,
            :confidence, :confidence_explanation, CAST(:evidence AS jsonb), :action_type,
            CAST(:action_params AS jsonb), :expires_at, :now, :now)
    ON CONFLICT (dedupe_key) WHERE status = 'pending' DO UPDATE SET
        title = EXCLUDED.title, impact_minor = EXCLUDED.impact_minor, currency = EXCLUDED.currency,
        impact_arithmetic = EXCLUDED.impact_arithmetic, confidence = EXCLUDED.confidence,
        confidence_explanation = EXCLUDED.confidence_explanation, evidence = EXCLUDED.evidence,
        action_type = EXCLUDED.action_type, action_params = EXCLUDED.action_params, updated_at = EXCLUDED.updated_at
    RETURNING id, (xmax = 0) AS created
""")


async def recently_decided_keys(session: AsyncSession, now: datetime) -> set[str]:
    """Dedupe keys of applied or dismissed recommendations still within their lifetime: the same
    suggestion is not raised again until then."""
    return set(await session.scalars(select(recommendations.c.dedupe_key).distinct().where(
        recommendations.c.status.in_([RecommendationStatus.APPLIED.value, RecommendationStatus.DISMISSED.value]),
        recommendations.c.expires_at > now,
    )))


async def upsert_pending(session: AsyncSession, draft: Draft, *, now: datetime, ttl: timedelta) -> tuple[str, bool]:
    """Open a pending recommendation, or refresh the pending one with the same dedupe key
    (its id and expiry stay). Returns (id, created)."""
    row = (await session.execute(_UPSERT, {
        "id": f"rec_{uuid.uuid4().hex}", "kind": draft.kind.value, "merchant_id": draft.merchant_id,
        "dedupe_key": draft.dedupe_key, "title": draft.title, "impact_minor": draft.impact_minor,
        "currency": draft.currency, "impact_arithmetic": draft.impact_arithmetic, "confidence": draft.confidence,
        "confidence_explanation": draft.confidence_explanation, "evidence": json.dumps(draft.evidence, default=str),
        "action_type": draft.action_type,
        "action_params": None if draft.action_params is None else json.dumps(draft.action_params, default=str),
        "expires_at": now + ttl, "now": now,
    })).one()
    return row.id, bool(row.created)


async def expire_due(session: AsyncSession, now: datetime) -> int:
    """Mark pending recommendations past their expiry as expired; how many."""
    result = await session.execute(
        update(recommendations)
        .where(recommendations.c.status == RecommendationStatus.PENDING.value, recommendations.c.expires_at <= now)
        .values(status=RecommendationStatus.EXPIRED.value, updated_at=now)
    )
    return result.rowcount or 0


def _visible(merchant_id: str | None):
    return [] if merchant_id is None else [recommendations.c.merchant_id == merchant_id]


async def get_row(session: AsyncSession, rec_id: str, *, merchant_id: str | None, for_update: bool = False) -> dict:
    """One recommendation; NotFound also when it belongs to another merchant than `merchant_id`."""
    stmt = select(recommendations).where(recommendations.c.id == rec_id, *_visible(merchant_id))
    if for_update:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).mappings().one_or_none()
    if row is None:
        raise NotFound(f"recommendation {rec_id} not found")
    return dict(row)


async def list_rows(session: AsyncSession, *, merchant_id: str | None, kind: str | None, status: str | None,
                    now: datetime, after: tuple[datetime, str] | None, by_impact: bool, limit: int) -> list[dict]:
    conds = _visible(merchant_id)
    if kind:
        conds.append(recommendations.c.kind == kind)
    # a pending one past its expiry reads as expired even before the next run marks it
    pending, expired = RecommendationStatus.PENDING.value, RecommendationStatus.EXPIRED.value
    if status == pending:
        conds += [recommendations.c.status == pending, recommendations.c.expires_at > now]
    elif status == expired:
        conds.append(or_(recommendations.c.status == expired,
                         and_(recommendations.c.status == pending, recommendations.c.expires_at <= now)))
    elif status:
        conds.append(recommendations.c.status == status)
    if by_impact:
        stmt = select(recommendations).where(*conds).order_by(
            recommendations.c.impact_minor.desc(), recommendations.c.confidence.desc(), recommendations.c.id.desc())
    else:
        if after is not None:
            at, rid = after
            conds.append(or_(recommendations.c.created_at < at,
                             and_(recommendations.c.created_at == at, recommendations.c.id < rid)))
        stmt = select(recommendations).where(*conds).order_by(
            recommendations.c.created_at.desc(), recommendations.c.id.desc())
    return [dict(r) for r in (await session.execute(stmt.limit(limit))).mappings()]


async def set_decision(session: AsyncSession, rec_id: str, *, status: RecommendationStatus, actor: str,
                       now: datetime, action_id: str | None = None) -> dict:
    values: dict[str, Any] = {"status": status.value, "decided_by": actor, "decided_at": now, "updated_at": now}
    if action_id is not None:
        values["action_id"] = action_id
    return dict((await session.execute(
        update(recommendations).where(recommendations.c.id == rec_id).values(**values).returning(*recommendations.c)
    )).mappings().one())
