"""Bank notifications: every bank webhook durable in PostgreSQL before it is acknowledged (issue 17).

Revision ID: 0012_bank_notifications
Revises: 0011_rollups_deferred

A row per delivery (unique by the bank's event id, whichever connector URL it arrived at),
written before the 2xx; `delivered_at` is set once the payout's workflow has it or, for a payout
whose workflow has ended, once it has been reconciled against the payout's stored status.
`outcome` says which, and a notification contradicting payops's state keeps its discrepancy
until ops repair it.
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012_bank_notifications"
down_revision: Union[str, Sequence[str], None] = "0011_rollups_deferred"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "bank_notifications",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(255), nullable=False),
        sa.Column("bank_status", sa.String(32), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivery_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("payout_status", sa.String(32), nullable=True),
        sa.Column("discrepancy", sa.String(64), nullable=True),
        sa.Column("alert_id", sa.BigInteger(), nullable=True),
        sa.Column("repaired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("repaired_by", sa.String(128), nullable=True),
        sa.Column("repair", postgresql.JSONB(), nullable=True),
        sa.UniqueConstraint("event_id", name="uq_bank_notifications_event_id"),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('signalled', 'consistent', 'contradiction', 'unknown_payout')",
            name="ck_bank_notifications_outcome",
        ),
    )
    op.create_index(
        "ix_bank_notifications_undelivered", "bank_notifications", ["received_at"],
        postgresql_where=sa.text("delivered_at IS NULL"),
    )
    op.create_index("ix_bank_notifications_reference", "bank_notifications", ["reference"])
    op.create_index(
        "ix_bank_notifications_open_discrepancies", "bank_notifications", ["id"],
        postgresql_where=sa.text("discrepancy IS NOT NULL AND repaired_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("bank_notifications")
