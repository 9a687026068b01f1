"""ops action audit trail (append-only) and one open action per conflicting target

Revision ID: 0002_ops_audit
Revises: 0001
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_ops_audit"
down_revision: Union[str, None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OPEN_STATUSES = "status in ('pending_approval','approved','executing')"


def upgrade() -> None:
    op.create_table(
        "ops_action_audit",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("action_id", sa.String(length=64), nullable=False),
        sa.Column("event_key", sa.String(length=128), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("from_status", sa.String(length=24), nullable=True),
        sa.Column("to_status", sa.String(length=24), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["action_id"], ["ops_actions.id"], name=op.f("fk_ops_action_audit_action_id_ops_actions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ops_action_audit")),
        sa.UniqueConstraint("action_id", "event_key", name="uq_ops_action_audit_action_event_key"),
    )
    # refuse_update_delete() comes from 0001: the audit trail is immutable.
    op.execute(
        "CREATE TRIGGER ops_action_audit_append_only BEFORE UPDATE OR DELETE ON ops_action_audit "
        "FOR EACH ROW EXECUTE FUNCTION refuse_update_delete()"
    )
    op.execute(
        "CREATE TRIGGER ops_action_audit_no_truncate BEFORE TRUNCATE ON ops_action_audit "
        "FOR EACH STATEMENT EXECUTE FUNCTION refuse_update_delete()"
    )
    # Two open actions on one target (two FREEZE on a merchant) are refused by the database.
    op.create_index(
        "uq_ops_actions_open_conflict_key",
        "ops_actions",
        [sa.text("(target ->> 'conflict_key')")],
        unique=True,
        postgresql_where=sa.text(OPEN_STATUSES),
    )


def downgrade() -> None:
    op.drop_index("uq_ops_actions_open_conflict_key", table_name="ops_actions")
    op.execute("DROP TRIGGER IF EXISTS ops_action_audit_append_only ON ops_action_audit")
    op.execute("DROP TRIGGER IF EXISTS ops_action_audit_no_truncate ON ops_action_audit")
    op.drop_table("ops_action_audit")
