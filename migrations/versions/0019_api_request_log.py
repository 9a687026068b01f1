"""api request log: one row per authenticated API request (issue 21, merchant portal)

Revision ID: 0019_api_request_log
Revises: 0018_alert_expiry

Who called what (route template, never the raw path), the outcome and how long it took; never a
body or a header beyond the idempotency key and request id. Pruned by the api-log retention
Schedule (PAYOPS_API_LOG_RETENTION_DAYS).
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0019_api_request_log"
down_revision: Union[str, Sequence[str], None] = "0018_alert_expiry"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "api_request_log",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=True),
        sa.Column("principal", sa.String(length=128), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("route", sa.String(length=255), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_request_log"),
    )
    op.create_index("ix_api_request_log_at", "api_request_log", ["at", "id"])
    op.create_index("ix_api_request_log_merchant_at", "api_request_log", ["merchant_id", "at", "id"])


def downgrade() -> None:
    op.drop_table("api_request_log")
