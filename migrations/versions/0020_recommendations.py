"""recommendations: explainable suggestions with impact, confidence and an ops action (issue 20)

Revision ID: 0020_recommendations
Revises: 0019_api_request_log

One row per recommendation. While one is pending its dedupe key is unique (a partial unique
index), so a recomputation refreshes it instead of adding a second; once applied, dismissed or
expired, the key is free again.
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020_recommendations"
down_revision: Union[str, Sequence[str], None] = "0019_api_request_log"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "recommendations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=True),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("impact_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("impact_arithmetic", sa.Text(), nullable=False),
        sa.Column("confidence", sa.Numeric(4, 3), nullable=False),
        sa.Column("confidence_explanation", sa.Text(), nullable=False),
        sa.Column("evidence", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("action_type", sa.String(length=32), nullable=True),
        sa.Column("action_params", postgresql.JSONB(), nullable=True),
        sa.Column("action_id", sa.String(length=64), nullable=True),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_recommendations"),
        sa.CheckConstraint("status in ('pending','applied','dismissed','expired')", name="ck_recommendations_status"),
        sa.CheckConstraint("confidence >= 0 AND confidence <= 1", name="ck_recommendations_confidence"),
    )
    op.create_index("uq_recommendations_pending_dedupe_key", "recommendations", ["dedupe_key"], unique=True,
                    postgresql_where=sa.text("status = 'pending'"))
    op.create_index("ix_recommendations_merchant_created", "recommendations", ["merchant_id", "created_at", "id"])
    op.create_index("ix_recommendations_created", "recommendations", ["created_at", "id"])


def downgrade() -> None:
    op.drop_table("recommendations")
