"""Dashboard export jobs (issue 8).

Revision ID: 0010_exports
Revises: 0009_merge

`export_jobs`: one row per export run as an ExportWorkflow (very large exports: the file is written
by a worker, then downloaded, then removed after the retention).
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_exports"
down_revision: Union[str, Sequence[str], None] = "0009_merge"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

EXPORT_STATUSES = "('queued','running','succeeded','failed','expired')"


def upgrade() -> None:
    op.create_table(
        "export_jobs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        # the requester's tenant: a merchant user's merchant, NULL for platform roles
        sa.Column("tenant_merchant_id", sa.String(64), nullable=True),
        sa.Column("merchant_id", sa.String(64), nullable=True),  # the rows' scope (forced for merchant users)
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("filters", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("status", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("rows_total", sa.BigInteger(), nullable=True),
        sa.Column("rows_written", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("file_path", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("workflow_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_export_jobs"),
        sa.CheckConstraint(f"status in {EXPORT_STATUSES}", name="ck_export_jobs_status"),
        sa.CheckConstraint("kind in ('transactions','payouts','discrepancies')", name="ck_export_jobs_kind"),
        sa.CheckConstraint("format in ('csv','xlsx')", name="ck_export_jobs_format"),
    )
    op.create_index("ix_export_jobs_tenant_created", "export_jobs", ["tenant_merchant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_export_jobs_tenant_created", table_name="export_jobs")
    op.drop_table("export_jobs")
