"""Reads and writes of `sla_rules` and its audit trail `sla_rule_changes`."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.platform.tables import payouts, rail_rules, sla_rule_changes, sla_rules
from core.sla.rules import SlaRule

RULE_COLUMNS = ("rail", "connector", "country", "priority", "target_seconds", "target_business_days", "enabled",
                "description")


def _audit_view(row: dict | None) -> dict | None:
    return None if row is None else {k: row[k] for k in RULE_COLUMNS}


async def list_rules(session: AsyncSession) -> list[dict]:
    rows = (await session.execute(select(sla_rules).order_by(sla_rules.c.id))).mappings().all()
    return [dict(r) for r in rows]


async def load_rules(session: AsyncSession) -> list[SlaRule]:
    """Every rule (disabled ones too: the resolver skips them and explains so)."""
    return [SlaRule.model_validate(r) for r in await list_rules(session)]


async def get_rule(session: AsyncSession, rule_id: int, *, for_update: bool = False) -> dict | None:
    stmt = select(sla_rules).where(sla_rules.c.id == rule_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).mappings().one_or_none()
    return dict(row) if row else None


async def rail_names(session: AsyncSession) -> list[str]:
    return list((await session.execute(select(rail_rules.c.rail).order_by(rail_rules.c.rail))).scalars())


async def _audit(session: AsyncSession, rule_id: int, change: str, actor: str, before: dict | None,
                 after: dict | None) -> None:
    await session.execute(sla_rule_changes.insert().values(
        rule_id=rule_id, change=change, actor=actor, before=_audit_view(before), after=_audit_view(after)))


async def insert_rule(session: AsyncSession, values: dict, actor: str) -> dict:
    row = dict((await session.execute(
        sla_rules.insert().values(**values, created_by=actor, updated_by=actor).returning(*sla_rules.c)
    )).mappings().one())
    await _audit(session, row["id"], "created", actor, None, row)
    return row


async def update_rule(session: AsyncSession, before: dict, values: dict, actor: str) -> dict:
    row = dict((await session.execute(
        update(sla_rules).where(sla_rules.c.id == before["id"])
        .values(**values, updated_by=actor, updated_at=datetime.now(timezone.utc)).returning(*sla_rules.c)
    )).mappings().one())
    await _audit(session, row["id"], "updated", actor, before, row)
    return row


async def delete_rule(session: AsyncSession, before: dict, actor: str) -> None:
    await session.execute(sla_rules.delete().where(sla_rules.c.id == before["id"]))
    await _audit(session, before["id"], "deleted", actor, before, None)


async def list_changes(session: AsyncSession, rule_id: int | None = None, limit: int = 100) -> list[dict]:
    stmt = select(sla_rule_changes).order_by(sla_rule_changes.c.id.desc()).limit(limit)
    if rule_id is not None:
        stmt = stmt.where(sla_rule_changes.c.rule_id == rule_id)
    return [dict(r) for r in (await session.execute(stmt)).mappings().all()]


async def payout_sla_rule(session: AsyncSession, payout_id: str) -> dict | None:
    """The SLA rule routing recorded on a payout (None: none did, or no such payout)."""
    routing = await session.scalar(select(payouts.c.routing).where(payouts.c.id == payout_id))
    return (routing or {}).get("sla_rule")
