"""bulk payouts: a batch of up to 10,000 payouts taken in one request (issue 19, bulk payouts)

Revision ID: 0015_bulk_payouts
Revises: 0014_bank_reconciliation

`bulk_payouts` is the batch (mode, approval, counts, totals); `bulk_payout_items` its per-item
report, and for accepted items everything the payout row needs, so a batch that waits for
approval creates its payouts only once approved.
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015_bulk_payouts"
down_revision: Union[str, Sequence[str], None] = "0014_bank_reconciliation"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "bulk_payouts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("approval_required", sa.Boolean(), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("accepted_count", sa.Integer(), nullable=False),
        sa.Column("rejected_count", sa.Integer(), nullable=False),
        sa.Column("totals", postgresql.JSONB(), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("intake_completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bulk_payouts"),
        sa.UniqueConstraint("merchant_id", "idempotency_key", name="uq_bulk_payouts_merchant_idempotency_key"),
        sa.CheckConstraint("mode in ('all_or_nothing','partial')", name="ck_bulk_payouts_mode"),
    )
    op.create_index("ix_bulk_payouts_merchant_created", "bulk_payouts", ["merchant_id", "created_at", "id"])
    op.create_index("ix_bulk_payouts_created", "bulk_payouts", ["created_at", "id"])
    op.create_table(
        "bulk_payout_items",
        sa.Column("bulk_payout_id", sa.String(length=64), sa.ForeignKey("bulk_payouts.id"), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=40), nullable=True),
        sa.Column("error_field", sa.String(length=200), nullable=True),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("existing_payout_id", sa.String(length=64), nullable=True),
        sa.Column("payout_id", sa.String(length=64), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("fee_minor", sa.BigInteger(), nullable=True),
        sa.Column("method", sa.String(length=32), nullable=True),
        sa.Column("priority", sa.String(length=16), nullable=True),
        sa.Column("rail", sa.String(length=32), nullable=True),
        sa.Column("beneficiary_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("beneficiary_masked", postgresql.JSONB(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("metadata", postgresql.JSONB(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("bulk_payout_id", "line", name="pk_bulk_payout_items"),
    )
    op.create_index("ix_bulk_payout_items_payout_id", "bulk_payout_items", ["payout_id"])
    op.create_index("ix_bulk_payout_items_merchant_reference", "bulk_payout_items", ["merchant_id", "reference"])
    op.create_index(
        "ix_bulk_payout_items_unstarted", "bulk_payout_items", ["bulk_payout_id", "line"],
        postgresql_where=sa.text("status = 'accepted' AND started_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("bulk_payout_items")
    op.drop_table("bulk_payouts")
