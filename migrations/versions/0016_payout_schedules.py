"""payout schedules: merchant or platform batches of payouts on a calendar or cron (issue 22, item 2)

Revision ID: 0016_payout_schedules
Revises: 0015_bulk_payouts

`payout_schedules` holds the spec (normalised to one cron expression + IANA time zone), the
template of payout items (encrypted, as payouts' beneficiaries are; `items` keeps them masked for
display) and whether it is enabled; each row is mirrored by a Temporal Schedule
`payout-schedule-<id>`. `payout_schedule_runs` records what each fire time made (the bulk payout,
or why nothing), one row per (schedule, fire time).
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016_payout_schedules"
down_revision: Union[str, Sequence[str], None] = "0015_bulk_payouts"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "payout_schedules",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("owner", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", postgresql.JSONB(), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("items", postgresql.JSONB(), nullable=False),
        sa.Column("items_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_payout_schedules"),
        sa.CheckConstraint("owner in ('merchant','platform')", name="ck_payout_schedules_owner"),
        sa.CheckConstraint("mode in ('all_or_nothing','partial')", name="ck_payout_schedules_mode"),
    )
    op.create_index("ix_payout_schedules_merchant_created", "payout_schedules", ["merchant_id", "created_at", "id"])
    op.create_table(
        "payout_schedule_runs",
        sa.Column("schedule_id", sa.String(length=64),
                  sa.ForeignKey("payout_schedules.id", ondelete="CASCADE"), nullable=False),
        sa.Column("fire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bulk_payout_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("schedule_id", "fire_time", name="pk_payout_schedule_runs"),
    )


def downgrade() -> None:
    op.drop_table("payout_schedule_runs")
    op.drop_table("payout_schedules")
