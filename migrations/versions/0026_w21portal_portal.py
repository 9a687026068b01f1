"""merchant portal: provider account → merchant mapping, view-as sessions, activity-feed indexes (issue 21)

Revision ID: 0026_w21portal_portal
Revises: 0025_w21money_merchant_money

`provider_accounts` says which merchant a synced provider account (source + project) belongs to;
the sync sets `transactions.merchant_id` from it, so merchant users see (and receive live) their
own synced transactions. `view_as_sessions` is the audit of every ops "view as" session (who,
which merchant, why, until when). Two indexes serve the activity feed's per-merchant, newest-first
reads of payout events and webhook attempts.
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0026_w21portal_portal"
down_revision: Union[str, Sequence[str], None] = "0025_w21money_merchant_money"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "provider_accounts",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("project", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name="fk_provider_accounts_merchant_id_merchants"),
        sa.PrimaryKeyConstraint("source", "project", name="pk_provider_accounts"),
    )
    op.create_table(
        "view_as_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("actor_roles", sa.dialects.postgresql.JSONB(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name="fk_view_as_sessions_merchant_id_merchants"),
        sa.PrimaryKeyConstraint("id", name="pk_view_as_sessions"),
    )
    op.create_index("ix_view_as_sessions_merchant_created", "view_as_sessions", ["merchant_id", "created_at", "id"])
    op.create_index("ix_payout_events_created", "payout_events", ["created_at", "id"])
    op.create_index("ix_webhook_attempts_merchant_created", "webhook_attempts", ["merchant_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_attempts_merchant_created", table_name="webhook_attempts")
    op.drop_index("ix_payout_events_created", table_name="payout_events")
    op.drop_table("view_as_sessions")
    op.drop_table("provider_accounts")
