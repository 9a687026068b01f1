"""merchant profile and KYC, KYC history, merchant audit, payout bank accounts (issue 21, items 2 and 6)

Revision ID: 0025_w21money_merchant_money
Revises: 0024_w20widgets_widgets

The merchant's profile (company name, account type) and KYC status on `merchants`, every KYC
change in `merchant_kyc_history`, profile and bank-account changes in `merchant_audit`, and the
merchant's own payout bank accounts (`merchant_bank_accounts`: details encrypted like a payout's
beneficiary, a masked copy for display, status and `effective_at`, the end of the cool-off).
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0025_w21money_merchant_money"
down_revision: Union[str, Sequence[str], None] = "0024_w20widgets_widgets"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("merchants", sa.Column("company_name", sa.String(length=200), nullable=True))
    op.add_column("merchants", sa.Column("account_type", sa.String(length=16), nullable=False,
                                         server_default="business"))
    op.add_column("merchants", sa.Column("kyc_status", sa.String(length=16), nullable=False,
                                         server_default="pending"))
    op.add_column("merchants", sa.Column("kyc_updated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint("ck_merchants_account_type", "merchants",
                               "account_type in ('individual','business')")
    op.create_check_constraint("ck_merchants_kyc_status", "merchants",
                               "kyc_status in ('pending','verified','rejected','needs_info')")
    op.create_table(
        "merchant_kyc_history",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("merchant_id", sa.String(length=64), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("action_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_merchant_kyc_history"),
    )
    op.create_index("ix_merchant_kyc_history_merchant", "merchant_kyc_history", ["merchant_id", "id"])
    op.create_index("uq_merchant_kyc_history_action", "merchant_kyc_history", ["action_id"], unique=True)
    op.create_table(
        "merchant_audit",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("merchant_id", sa.String(length=64), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("data", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_merchant_audit"),
    )
    op.create_index("ix_merchant_audit_merchant", "merchant_audit", ["merchant_id", "id"])
    op.create_table(
        "merchant_bank_accounts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("rail", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("details_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("details_masked", postgresql.JSONB(), nullable=False),
        sa.Column("checks", postgresql.JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replaces_id", sa.String(length=64), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by", sa.String(length=128), nullable=True),
        sa.Column("review_reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_merchant_bank_accounts"),
        sa.CheckConstraint("status in ('pending_verification','verified','rejected')",
                           name="ck_merchant_bank_accounts_status"),
    )
    op.create_index("ix_merchant_bank_accounts_merchant", "merchant_bank_accounts",
                    ["merchant_id", "rail", "currency", "created_at"])


def downgrade() -> None:
    op.drop_table("merchant_bank_accounts")
    op.drop_table("merchant_audit")
    op.drop_table("merchant_kyc_history")
    op.drop_constraint("ck_merchants_kyc_status", "merchants", type_="check")
    op.drop_constraint("ck_merchants_account_type", "merchants", type_="check")
    for column in ("kyc_updated_at", "kyc_status", "account_type", "company_name"):
        op.drop_column("merchants", column)
