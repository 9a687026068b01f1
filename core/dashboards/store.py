"""Reads and writes of the dashboard widget layouts (`dashboard_layouts`, `dashboard_widgets`) and
their append-only audit trail `dashboard_widget_changes`."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.platform.tables import dashboard_layouts, dashboard_widget_changes, dashboard_widgets

W = dashboard_widgets.c

AUDITED = ("id", "kind", "title", "config", "position")


def audit_view(row: dict | None) -> dict | None:
    return None if row is None else {k: row[k] for k in AUDITED}


async def create_layout(session: AsyncSession, tenant_kind: str, tenant_id: str, actor: str) -> bool:
    """Create the tenant's layout row; False when it already exists (someone else seeded it)."""
    created = await session.scalar(
        insert(dashboard_layouts).values(tenant_kind=tenant_kind, tenant_id=tenant_id, created_by=actor)
        .on_conflict_do_nothing().returning(dashboard_layouts.c.tenant_id))
    return created is not None


async def lock_layout(session: AsyncSession, tenant_kind: str, tenant_id: str) -> bool:
    """Lock the tenant's layout row for an edit (edits of one layout run one at a time); False if
    the layout does not exist yet."""
    row = await session.scalar(select(dashboard_layouts.c.tenant_id).where(
        dashboard_layouts.c.tenant_kind == tenant_kind, dashboard_layouts.c.tenant_id == tenant_id).with_for_update())
    return row is not None


async def list_widgets(session: AsyncSession, tenant_kind: str, tenant_id: str) -> list[dict[str, Any]]:
    rows = await session.execute(select(dashboard_widgets).where(
        W.tenant_kind == tenant_kind, W.tenant_id == tenant_id).order_by(W.position, W.id))
    return [dict(r) for r in rows.mappings()]


async def get_widget(session: AsyncSession, tenant_kind: str, tenant_id: str, widget_id: str) -> dict | None:
    """The widget if it belongs to this tenant (another tenant's id reads as absent)."""
    row = (await session.execute(select(dashboard_widgets).where(
        W.id == widget_id, W.tenant_kind == tenant_kind, W.tenant_id == tenant_id))).mappings().one_or_none()
    return dict(row) if row else None


async def next_position(session: AsyncSession, tenant_kind: str, tenant_id: str) -> tuple[int, int]:
    """(how many widgets the layout has, the position after the last one)."""
    n, top = (await session.execute(select(func.count(), func.max(W.position)).where(
        W.tenant_kind == tenant_kind, W.tenant_id == tenant_id))).one()
    return int(n), (-1 if top is None else int(top)) + 1


async def insert_widget(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    return dict((await session.execute(
        dashboard_widgets.insert().values(**values).returning(*dashboard_widgets.c))).mappings().one())


async def update_widget(session: AsyncSession, widget_id: str, values: dict[str, Any], actor: str) -> dict[str, Any]:
    return dict((await session.execute(
        update(dashboard_widgets).where(W.id == widget_id)
        .values(**values, updated_by=actor, updated_at=datetime.now(timezone.utc))
        .returning(*dashboard_widgets.c))).mappings().one())


async def delete_widget(session: AsyncSession, widget_id: str) -> None:
    await session.execute(dashboard_widgets.delete().where(W.id == widget_id))


async def set_positions(session: AsyncSession, ordered_ids: list[str], actor: str) -> None:
    now = datetime.now(timezone.utc)
    for position, widget_id in enumerate(ordered_ids):
        await session.execute(update(dashboard_widgets).where(W.id == widget_id)
                              .values(position=position, updated_by=actor, updated_at=now))


async def audit(session: AsyncSession, tenant_kind: str, tenant_id: str, *, change: str, actor: str,
                widget_id: str | None = None, before: Any = None, after: Any = None) -> None:
    await session.execute(dashboard_widget_changes.insert().values(
        tenant_kind=tenant_kind, tenant_id=tenant_id, widget_id=widget_id, change=change, actor=actor,
        before=before, after=after))


async def list_changes(session: AsyncSession, tenant_kind: str, tenant_id: str, limit: int = 100) -> list[dict]:
    rows = await session.execute(select(dashboard_widget_changes).where(
        dashboard_widget_changes.c.tenant_kind == tenant_kind, dashboard_widget_changes.c.tenant_id == tenant_id,
    ).order_by(dashboard_widget_changes.c.id.desc()).limit(limit))
    return [dict(r) for r in rows.mappings()]
