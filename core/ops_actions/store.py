"""Ops action rows, approvals and their immutable audit trail.

Every change goes through `record_step` / `record_vote`, which append an ops_action_audit row in
the same transaction, once per event key, so a retried activity never writes twice.
`publish_ops_action_update` fans the change out on Redis for live views.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from redis.asyncio import Redis
from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.platform.errors import NotFound
from core.platform.tables import controls, ops_action_audit, ops_actions, ops_approvals

log = logging.getLogger("payops.ops_actions")

OPS_ACTION_UPDATES_CHANNEL = "payops:updates:ops_actions"


async def get_action_row(session: AsyncSession, action_id: str, *, for_update: bool = False) -> dict:
    stmt = select(ops_actions).where(ops_actions.c.id == action_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).mappings().first()
    if row is None:
        raise NotFound(f"ops action {action_id} not found")
    return dict(row)


async def append_audit(
    session: AsyncSession,
    *,
    action_id: str,
    event_key: str,
    event: str,
    actor: str,
    from_status: str | None = None,
    to_status: str | None = None,
    data: dict | None = None,
) -> bool:
    """Append an audit row; a second append of the same (action, event key) is a no-op."""
    inserted = await session.scalar(
        insert(ops_action_audit)
        .values(action_id=action_id, event_key=event_key, event=event, actor=actor,
                from_status=from_status, to_status=to_status, data=data or {})
        .on_conflict_do_nothing(index_elements=["action_id", "event_key"])
        .returning(ops_action_audit.c.id)
    )
    return inserted is not None


async def record_step(
    session: AsyncSession,
    *,
    action_id: str,
    event_key: str,
    event: str,
    actor: str,
    to_status: str | None = None,
    data: dict | None = None,
    result: dict | None = None,
    error: str | None = None,
    executed: bool = False,
) -> tuple[dict, bool]:
    """Set the action's status (and result/error) and append the audit entry. Returns (row, applied)."""
    row = await get_action_row(session, action_id, for_update=True)
    applied = await append_audit(
        session, action_id=action_id, event_key=event_key, event=event, actor=actor,
        from_status=row["status"], to_status=to_status, data=data,
    )
    if not applied:
        return row, False
    values: dict = {"updated_at": func.now()}
    if to_status is not None:
        values["status"] = to_status
    if result is not None:
        values["result"] = result
    if error is not None:
        values["error"] = error
    if executed:
        values["executed_at"] = func.now()
    new = await session.execute(
        update(ops_actions).where(ops_actions.c.id == action_id).values(**values).returning(*ops_actions.c)
    )
    return dict(new.mappings().one()), True


async def record_vote(
    session: AsyncSession, *, action_id: str, decision: str, actor: str, roles: list[str], comment: str | None
) -> bool:
    """The approval/rejection row plus its audit entry; idempotent per (action, approver)."""
    inserted = await session.scalar(
        insert(ops_approvals)
        .values(action_id=action_id, approver=actor, roles=sorted(roles), decision=decision, comment=comment)
        .on_conflict_do_nothing(index_elements=["action_id", "approver"])
        .returning(ops_approvals.c.id)
    )
    await append_audit(
        session, action_id=action_id, event_key=f"{decision}:{actor}",
        event="approval" if decision == "approve" else "rejection", actor=actor, data={"roles": sorted(roles), "comment": comment},
    )
    return inserted is not None


async def list_approvals(session: AsyncSession, action_id: str) -> list[dict]:
    rows = await session.execute(
        select(ops_approvals).where(ops_approvals.c.action_id == action_id).order_by(ops_approvals.c.id)
    )
    return [dict(r) for r in rows.mappings().all()]


async def list_audit(session: AsyncSession, action_id: str) -> list[dict]:
    rows = await session.execute(
        select(ops_action_audit).where(ops_action_audit.c.action_id == action_id).order_by(ops_action_audit.c.id)
    )
    return [dict(r) for r in rows.mappings().all()]


def ops_action_update_message(row: dict, event: str) -> dict:
    return {
        "type": "ops_action.updated",
        "event": event,
        "action_id": row["id"],
        "action_type": row["action_type"],
        "status": row["status"],
        "risk_level": row["risk_level"],
        "at": datetime.now(timezone.utc).isoformat(),
    }


async def publish_ops_action_update(redis: Redis | None, row: dict, event: str) -> None:
    """Best effort: a live view missing one message must never fail an ops action."""
    if redis is None:
        return
    try:
        await redis.publish(OPS_ACTION_UPDATES_CHANNEL, json.dumps(ops_action_update_message(row, event)))
    except Exception as exc:  # noqa: BLE001
        log.warning("could not publish ops action update for %s: %s", row.get("id"), exc)


# --- the controls an ops action activates and lifts -------------------------------------------------


def active_control_clause(kind: str, target: str):
    return and_(controls.c.kind == kind, controls.c.target == target, controls.c.active)


async def lock_active_control(session: AsyncSession, kind: str, target: str):
    """(id, action_id) of the active control of this kind on this target, its row locked; None if none."""
    return (await session.execute(
        select(controls.c.id, controls.c.action_id).where(active_control_clause(kind, target)).with_for_update()
    )).first()


async def active_controls(session: AsyncSession, kind: str, target: str) -> list[dict]:
    """The active controls of a kind on a target (what a lift ends, what an activation collides with)."""
    rows = await session.execute(
        select(controls.c.id, controls.c.action_id, controls.c.params, controls.c.ends_at)
        .where(active_control_clause(kind, target)).order_by(controls.c.id))
    return [dict(r) for r in rows.mappings().all()]


async def insert_control(session: AsyncSession, *, kind: str, target: str, params: dict, reason: str,
                         created_by: str, action_id: str, ends_at: datetime | None = None) -> int:
    """An active control; its id."""
    return await session.scalar(
        controls.insert().values(
            kind=kind, target=target, params=params, active=True,
            reason=reason, created_by=created_by,
            action_id=action_id, ends_at=ends_at,
        ).returning(controls.c.id)
    )


async def deactivate_controls(session: AsyncSession, kind: str, target: str) -> list[int]:
    """Lift the active controls of this kind on this target; their ids."""
    rows = await session.execute(
        update(controls)
        .where(active_control_clause(kind, target))
        .values(active=False, ended_at=func.now())
        .returning(controls.c.id)
    )
    return [r[0] for r in rows]
