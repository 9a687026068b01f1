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
from sqlalchemy import Exists, Insert, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.payouts.models import TERMINAL_STATUSES, PayoutStatus
from core.platform.errors import NotFound
from core.platform.tables import controls, ledger_holds, payout_events, payouts
from core.webhooks.events import record_payout_event

log = logging.getLogger("payops.payouts")

PAYOUT_UPDATES_CHANNEL = "payops:updates:payouts"


# The workflow's first activity records that the workflow exists, so the API need not (the
# sweeper starts the workflows of payouts that never got this far): `extra_columns` of its transition.
WORKFLOW_STARTED = {"workflow_started_at": func.coalesce(payouts.c.workflow_started_at, func.now())}


async def get_payout_row(session: AsyncSession, payout_id: str, *, for_update: bool = False) -> dict:
    stmt = select(payouts).where(payouts.c.id == payout_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).mappings().first()
    if row is None:
        raise NotFound(f"payout {payout_id} not found")
    return dict(row)


def event_key_seen(payout_id: str, event_key: str) -> Exists:
    """Whether the payout already has an audit event with this key (retried activities)."""
    return (
        select(payout_events.c.id)
        .where(payout_events.c.payout_id == payout_id, payout_events.c.data["event_key"].astext == event_key)
        .exists()
    )


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
    """Set the payout's status and append the event. Returns (row, applied).

    Three statements: lock the row and ask whether the event key was seen; update the row with
    the audit event as a CTE; the merchant event (outbox), for statuses merchants hear about."""
    found = (
        await session.execute(
            select(payouts, event_key_seen(payout_id, event_key).label("_seen")).where(payouts.c.id == payout_id).with_for_update(of=payouts)
        )
    ).mappings().first()
    if found is None:
        raise NotFound(f"payout {payout_id} not found")
    row = dict(found)
    if row.pop("_seen"):
        return row, False
    values: dict = {"status": to_status, "updated_at": func.now(), "version": payouts.c.version + 1}
    if failure_code is not None:
        values["failure_code"] = failure_code
        values["failure_message"] = failure_message
    values.update(extra_columns or {})
    audit = event_insert(
        payout_id=payout_id, actor=actor, from_status=row["status"], to_status=to_status, reason=reason,
        data={**(data or {}), "event_key": event_key},
    )
    result = await session.execute(
        update(payouts)
        .where(payouts.c.id == payout_id)
        .values(**values)
        .returning(*payouts.c)
        .add_cte(audit.cte("transition_audit_event"))
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


async def record_note(session: AsyncSession, *, payout_id: str, event_key: str, actor: str, reason: str,
                      data: dict) -> bool:
    """Append an audit event that changes no status, once per event key (the payout row locked);
    False when the payout does not exist or the key was seen."""
    row = (await session.execute(
        select(payouts.c.status, event_key_seen(payout_id, event_key).label("seen"))
        .where(payouts.c.id == payout_id).with_for_update(of=payouts)
    )).mappings().first()
    if row is None or row["seen"]:
        return False
    await session.execute(event_insert(
        payout_id=payout_id, actor=actor, from_status=row["status"], to_status=row["status"],
        reason=reason, data={**data, "event_key": event_key},
    ))
    return True


async def gate_controls(session: AsyncSession, targets: list[tuple[str, str | None]]) -> list:
    """The active controls among (kind, target) pairs: what holds a payout at the submission gate."""
    return list((await session.execute(
        select(controls.c.kind, controls.c.target, controls.c.params, controls.c.reason).where(
            controls.c.active,
            or_(*[and_(controls.c.kind == k, controls.c.target == t) for k, t in targets]),
        )
    )).mappings().all())


async def lock_submission_state(session: AsyncSession, payout_id: str):
    """(status, bank_payment_id, connector, rail) of the payout, its row locked; None when there is none."""
    return (await session.execute(
        select(payouts.c.status, payouts.c.bank_payment_id, payouts.c.connector, payouts.c.rail)
        .where(payouts.c.id == payout_id).with_for_update()
    )).first()


async def lock_payout_status(session: AsyncSession, payout_id: str) -> str | None:
    """The payout's status, its row locked (None when there is none)."""
    return await session.scalar(select(payouts.c.status).where(payouts.c.id == payout_id).with_for_update())


async def open_payouts_past_target(session: AsyncSession) -> dict[str, int]:
    """Open (not terminal) payouts whose settlement target has passed, by rail: the
    `payouts_past_target_date` gauge (api/routers/health.py refreshes it at each scrape)."""
    open_statuses = [s.value for s in PayoutStatus if s not in TERMINAL_STATUSES]
    rail = func.coalesce(payouts.c.rail, "unknown").label("rail")
    rows = await session.execute(
        select(rail, func.count())
        .where(payouts.c.status.in_(open_statuses), payouts.c.settlement_target_at < func.now())
        .group_by(rail)
    )
    return {rail: count for rail, count in rows}


# payouts that wait before submission (the gate runs right after routing)
WAITING_STATUSES = (PayoutStatus.HELD.value, PayoutStatus.ROUTED.value)


def _matching(merchant_id: str | None, rail: str | None, connector: str | None) -> list:
    return [column == value for column, value in
            ((payouts.c.merchant_id, merchant_id), (payouts.c.rail, rail), (payouts.c.connector, connector))
            if value is not None]


_PLAN_COLUMNS = (
    payouts.c.id, payouts.c.merchant_id, payouts.c.status, payouts.c.amount_minor, payouts.c.fee_minor,
    payouts.c.currency, payouts.c.rail, payouts.c.connector, payouts.c.created_at,
    ledger_holds.c.amount_minor.label("hold_minor"), ledger_holds.c.status.label("hold_status"),
)


def _with_holds():
    return payouts.outerjoin(ledger_holds, ledger_holds.c.payout_id == payouts.c.id)


# The selections an ops action's execution acts on. Each is one statement returning rows (with the
# payout's hold): the execution (activities/ops_actions.py) takes their ids, an approver's plan
# (core/ops_actions/plan.py) the rows, so the plan cannot select other payouts than execution.


async def waiting_payouts(session: AsyncSession, *, merchant_id: str | None = None, rail: str | None = None,
                          connector: str | None = None) -> list[dict]:
    """Payouts waiting before submission (held or routed) of a merchant, a rail or a connector:
    those to wake when a control on it changes (or to cancel, for a freeze with cancel_queued)."""
    rows = await session.execute(
        select(*_PLAN_COLUMNS).select_from(_with_holds())
        .where(payouts.c.status.in_(WAITING_STATUSES), *_matching(merchant_id, rail, connector))
        .order_by(payouts.c.created_at, payouts.c.id))
    return [dict(r) for r in rows.mappings().all()]


async def waiting_payout_ids(session: AsyncSession, *, merchant_id: str | None = None, rail: str | None = None,
                             connector: str | None = None) -> list[str]:
    return [r["id"] for r in await waiting_payouts(session, merchant_id=merchant_id, rail=rail, connector=connector)]


async def dlq_payouts(session: AsyncSession, *, merchant_id: str | None, rail: str | None, connector: str | None,
                      limit: int) -> list[dict]:
    """Up to `limit` dead-lettered payouts matching the filter, oldest first."""
    conditions = [payouts.c.status == PayoutStatus.DLQ.value, *_matching(merchant_id, rail, connector)]
    rows = await session.execute(
        select(*_PLAN_COLUMNS).select_from(_with_holds()).where(and_(*conditions))
        .order_by(payouts.c.created_at).limit(limit))
    return [dict(r) for r in rows.mappings().all()]


async def dlq_payout_ids(session: AsyncSession, *, merchant_id: str | None, rail: str | None, connector: str | None,
                         limit: int) -> list[str]:
    return [r["id"] for r in await dlq_payouts(session, merchant_id=merchant_id, rail=rail, connector=connector,
                                               limit=limit)]


async def payouts_with_holds(session: AsyncSession, payout_ids: list[str]) -> dict[str, dict]:
    """payout id -> its row with its hold (ids with no payout are absent)."""
    rows = await session.execute(
        select(*_PLAN_COLUMNS).select_from(_with_holds()).where(payouts.c.id.in_(payout_ids)))
    return {r["id"]: dict(r) for r in rows.mappings().all()}


async def payout_status(session: AsyncSession, payout_id: str) -> str | None:
    """The payout's status (None when there is no such payout)."""
    return await session.scalar(select(payouts.c.status).where(payouts.c.id == payout_id))


async def active_holds_by_status(session: AsyncSession, merchant_id: str) -> list[dict]:
    """A merchant's active holds summed per (currency, payout status): what its held balance is
    made of (the settlement panel splits it into pending and in flight)."""
    rows = await session.execute(
        select(ledger_holds.c.currency, payouts.c.status, func.sum(ledger_holds.c.amount_minor).label("held_minor"),
               func.count().label("payouts"))
        .select_from(ledger_holds.join(payouts, payouts.c.id == ledger_holds.c.payout_id))
        .where(ledger_holds.c.merchant_id == merchant_id, ledger_holds.c.status == "active")
        .group_by(ledger_holds.c.currency, payouts.c.status))
    return [{"currency": r.currency, "status": r.status, "held_minor": int(r.held_minor), "payouts": int(r.payouts)}
            for r in rows]


async def payout_id_for_key(session: AsyncSession, merchant_id: str, idempotency_key: str) -> str | None:
    """The payout a merchant's Idempotency-Key created, if any (the key stays on the payout for good)."""
    return await session.scalar(select(payouts.c.id).where(
        payouts.c.merchant_id == merchant_id, payouts.c.idempotency_key == idempotency_key))
