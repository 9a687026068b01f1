"""payops against the bank: reconciliation runs and their discrepancies (issue 17, item 6)

Revision ID: 0014_bank_reconciliation
Revises: 0011_rollups_deferred

A run compares every connector's payments of the last N days (the bank's report, or a status
inquiry by reference) with payops's payouts; each disagreement that survives a second look is a
row of `bank_discrepancies` (and an alert).
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014_bank_reconciliation"
down_revision: Union[str, Sequence[str], None] = "0013_sync_versions_quarantine"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "bank_reconciliation_runs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=True),
        sa.Column("summary", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("errors", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"),
                  nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status in ('ok','discrepancies','incomplete')",
                           name=op.f("ck_bank_reconciliation_runs_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_reconciliation_runs")),
    )
    op.create_index("ix_bank_reconciliation_runs_created_at", "bank_reconciliation_runs", ["created_at"],
                    unique=False)
    op.create_table(
        "bank_discrepancies",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("payout_id", sa.String(length=64), nullable=True),
        sa.Column("connector", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("payops_status", sa.String(length=24), nullable=True),
        sa.Column("bank_status", sa.String(length=16), nullable=True),
        sa.Column("payops_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("bank_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["bank_reconciliation_runs.id"],
                                name=op.f("fk_bank_discrepancies_run_id_bank_reconciliation_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_discrepancies")),
    )
    op.create_index("ix_bank_discrepancies_run_id", "bank_discrepancies", ["run_id"], unique=False)
    op.create_index("ix_bank_discrepancies_reference", "bank_discrepancies", ["reference"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_bank_discrepancies_reference", table_name="bank_discrepancies")
    op.drop_index("ix_bank_discrepancies_run_id", table_name="bank_discrepancies")
    op.drop_table("bank_discrepancies")
    op.drop_index("ix_bank_reconciliation_runs_created_at", table_name="bank_reconciliation_runs")
    op.drop_table("bank_reconciliation_runs")
