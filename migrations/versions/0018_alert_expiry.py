"""alert expiry: an unacknowledged alert expires after its lifetime (issue 20, build item 4)

Revision ID: 0018_alert_expiry
Revises: 0017_sla_rules

`alerts.status` gains `expired` (and `expired_at`); the open-alert unique index now covers only
open and acknowledged alerts, so a condition that fires again after its alert expired opens a new
alert. `alert_audit` records who changed an alert after it opened (the expiry workflow's entries).
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018_alert_expiry"
down_revision: Union[str, Sequence[str], None] = "0017_sla_rules"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OLD_OPEN = "status <> 'resolved'"
NEW_OPEN = "status in ('open','acknowledged')"


def upgrade() -> None:
    op.add_column("alerts", sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint(op.f("ck_alerts_status"), "alerts", type_="check")
    op.create_check_constraint(op.f("ck_alerts_status"), "alerts", "status in ('open','acknowledged','resolved','expired')")
    # one transaction: no firing sees the table without its open-alert index
    op.drop_index("uq_alerts_open_dedupe_key", table_name="alerts", postgresql_where=sa.text(OLD_OPEN))
    op.create_index("uq_alerts_open_dedupe_key", "alerts", ["dedupe_key"], unique=True,
                    postgresql_where=sa.text(NEW_OPEN))
    op.create_table(
        "alert_audit",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=True),
        sa.Column("data", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_alert_audit_alert_id_alerts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_audit")),
    )
    op.create_index("ix_alert_audit_alert_id", "alert_audit", ["alert_id"])


def downgrade() -> None:
    op.drop_index("ix_alert_audit_alert_id", table_name="alert_audit")
    op.drop_table("alert_audit")
    # an expired alert becomes resolved (the old schema has no expired)
    op.execute("UPDATE alerts SET status = 'resolved', resolved_at = expired_at, resolved_by = 'alert-expiry' "
               "WHERE status = 'expired'")
    op.drop_index("uq_alerts_open_dedupe_key", table_name="alerts", postgresql_where=sa.text(NEW_OPEN))
    op.create_index("uq_alerts_open_dedupe_key", "alerts", ["dedupe_key"], unique=True,
                    postgresql_where=sa.text(OLD_OPEN))
    op.drop_constraint(op.f("ck_alerts_status"), "alerts", type_="check")
    op.create_check_constraint(op.f("ck_alerts_status"), "alerts", "status in ('open','acknowledged','resolved')")
    op.drop_column("alerts", "expired_at")
