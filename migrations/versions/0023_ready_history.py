"""ready probe history: one row per component per `/ready` probe (issue 21, merchant health)

Revision ID: 0023_ready_history
Revises: 0022_transaction_country

What the merchant health view's per-component uptime is computed from. Kept like the API request
log (PAYOPS_API_LOG_RETENTION_DAYS).
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0023_ready_history"
down_revision: Union[str, Sequence[str], None] = "0022_transaction_country"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "ready_probes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("component", sa.String(length=32), nullable=False),
        sa.Column("up", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ready_probes"),
    )
    op.create_index("ix_ready_probes_at", "ready_probes", ["at", "id"])


def downgrade() -> None:
    op.drop_table("ready_probes")
