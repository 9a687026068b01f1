"""SLA rules keyed by rail, connector, beneficiary country and priority (issue 22, item 3)

Revision ID: 0017_sla_rules
Revises: 0016_payout_schedules

`sla_rules`: a settlement target (seconds, or business days after the rail's cutoff) for the
payouts whose rail / connector / country / priority match (NULL = any); the most specific
enabled rule applies (core/sla/rules.py). Seeded with one rail-only rule per rail equal to the
rail's own settlement terms, so targets are unchanged until ops add more specific rules.
`sla_rule_changes`: the audit trail of every change to a rule.
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017_sla_rules"
down_revision: Union[str, Sequence[str], None] = "0016_payout_schedules"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "sla_rules",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("rail", sa.String(length=32), nullable=True),
        sa.Column("connector", sa.String(length=64), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("priority", sa.String(length=16), nullable=True),
        sa.Column("target_seconds", sa.Integer(), nullable=True),
        sa.Column("target_business_days", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("(target_seconds IS NULL) <> (target_business_days IS NULL)",
                           name=op.f("ck_sla_rules_one_target")),
        sa.CheckConstraint("target_seconds IS NULL OR target_seconds > 0", name=op.f("ck_sla_rules_target_seconds")),
        sa.CheckConstraint("target_business_days IS NULL OR target_business_days >= 0",
                           name=op.f("ck_sla_rules_target_business_days")),
        sa.ForeignKeyConstraint(["rail"], ["rail_rules.rail"], name=op.f("fk_sla_rules_rail_rail_rules")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_rules")),
    )
    op.create_table(
        "sla_rule_changes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.BigInteger(), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("before", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("after", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_rule_changes")),
    )
    op.create_index("ix_sla_rule_changes_rule_id", "sla_rule_changes", ["rule_id", "id"])
    # Today's per-rail targets as rules: a cutoff rail's business days (counted from its cutoff),
    # a 24/7 rail's seconds; the same targets routing computed from rail_rules before.
    op.execute("""
        INSERT INTO sla_rules (rail, target_seconds, target_business_days, description, created_by)
        SELECT rail,
               CASE WHEN cutoff_time IS NULL THEN greatest(coalesce(settlement_seconds, 1), 1) END,
               CASE WHEN cutoff_time IS NOT NULL THEN settlement_business_days END,
               'seeded from the rail''s own settlement terms', 'migration'
          FROM rail_rules ORDER BY rail
    """)
    op.execute("""
        INSERT INTO sla_rule_changes (rule_id, change, actor, after)
        SELECT id, 'created', 'migration', jsonb_build_object('rail', rail, 'target_seconds', target_seconds,
               'target_business_days', target_business_days, 'enabled', enabled)
          FROM sla_rules
    """)


def downgrade() -> None:
    op.drop_index("ix_sla_rule_changes_rule_id", table_name="sla_rule_changes")
    op.drop_table("sla_rule_changes")
    op.drop_table("sla_rules")
