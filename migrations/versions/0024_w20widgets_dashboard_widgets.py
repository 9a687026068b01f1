"""dashboard widgets: per-tenant layouts of pluggable widgets, and their audit trail (issue 20, item 2)

Revision ID: 0024_w20widgets_widgets
Revises: 0023_ready_history

`dashboard_layouts`: one row per tenant (tenant_kind platform | merchant | agent, tenant_id) whose
layout exists; a tenant's first read creates it with a copy of the default widgets
(core/dashboards/widgets.py DEFAULT_WIDGETS), so a layout emptied on purpose stays empty.
`dashboard_widgets`: the widgets of each layout, ordered by `position`.
`dashboard_widget_changes`: every change (seeded, created, updated, deleted, reordered), who,
before and after; append-only (the database refuses UPDATE, DELETE and TRUNCATE).
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0024_w20widgets_widgets"
down_revision: Union[str, Sequence[str], None] = "0023_ready_history"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

KINDS = "'kpi','trend','breakdown','gauge','table','alerts','map'"
TENANT_KINDS = "'platform','merchant','agent'"


def upgrade() -> None:
    op.create_table(
        "dashboard_layouts",
        sa.Column("tenant_kind", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(f"tenant_kind in ({TENANT_KINDS})", name=op.f("ck_dashboard_layouts_tenant_kind")),
        sa.PrimaryKeyConstraint("tenant_kind", "tenant_id", name=op.f("pk_dashboard_layouts")),
    )
    op.create_table(
        "dashboard_widgets",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_kind", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("config", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(f"kind in ({KINDS})", name=op.f("ck_dashboard_widgets_kind")),
        sa.ForeignKeyConstraint(["tenant_kind", "tenant_id"], ["dashboard_layouts.tenant_kind", "dashboard_layouts.tenant_id"],
                                name=op.f("fk_dashboard_widgets_tenant_kind_dashboard_layouts"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dashboard_widgets")),
    )
    op.create_index("ix_dashboard_widgets_tenant_position", "dashboard_widgets",
                    ["tenant_kind", "tenant_id", "position", "id"])
    op.create_table(
        "dashboard_widget_changes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant_kind", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("widget_id", sa.String(length=64), nullable=True),  # NULL: the layout (seeded, reordered)
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("before", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("after", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("change in ('seeded','created','updated','deleted','reordered')",
                           name=op.f("ck_dashboard_widget_changes_change")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dashboard_widget_changes")),
    )
    op.create_index("ix_dashboard_widget_changes_tenant", "dashboard_widget_changes", ["tenant_kind", "tenant_id", "id"])
    # append-only, like the other audit trails (refuse_update_delete: migration 0001)
    op.execute("CREATE TRIGGER dashboard_widget_changes_append_only BEFORE UPDATE OR DELETE ON dashboard_widget_changes "
               "FOR EACH ROW EXECUTE FUNCTION refuse_update_delete()")
    op.execute("CREATE TRIGGER dashboard_widget_changes_no_truncate BEFORE TRUNCATE ON dashboard_widget_changes "
               "FOR EACH STATEMENT EXECUTE FUNCTION refuse_update_delete()")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS dashboard_widget_changes_no_truncate ON dashboard_widget_changes")
    op.execute("DROP TRIGGER IF EXISTS dashboard_widget_changes_append_only ON dashboard_widget_changes")
    op.drop_index("ix_dashboard_widget_changes_tenant", table_name="dashboard_widget_changes")
    op.drop_table("dashboard_widget_changes")
    op.drop_index("ix_dashboard_widgets_tenant_position", table_name="dashboard_widgets")
    op.drop_table("dashboard_widgets")
    op.drop_table("dashboard_layouts")
