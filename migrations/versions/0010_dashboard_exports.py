"""Dashboard export jobs (issue 8).

Revision ID: 0010_exports
Revises: 0009_merge

`export_jobs`: one row per export run as an ExportWorkflow (very large exports: the file is written
by a worker, then downloaded, then removed after the retention).

Exact reporting time zones whose offset is not a whole hour (Asia/Kolkata +05:30, Asia/Kathmandu
+05:45, Australia/Adelaide, America/St_Johns): each hourly rollup row also keeps its sums over
the first 15, 30 and 45 minutes of the hour (`*_lt15`, `*_lt30`, `*_lt45`), so a read splits an
hour at the zone's local hour or midnight without touching the raw rows. The row count of the
rollup does not change (a finer 15-minute grain would have quadrupled it); the triggers of
0007_dashboards are replaced by the same ones filling the new columns.
"""
from __future__ import annotations

from typing import Sequence, Union

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_exports"
down_revision: Union[str, Sequence[str], None] = "0009_merge"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

EXPORT_STATUSES = "('queued','running','succeeded','failed','expired')"

QUARTERS = (15, 30, 45)
MEASURES = (("txn_count", "1"), ("amount_minor", "amount_minor"), ("fee_minor", "fee_minor"), ("fraud_count", "fraud"))


def _v0007():
    """The dashboards migration's trigger SQL builders (its file name is not an importable module name)."""
    spec = importlib.util.spec_from_file_location("_payops_0007", Path(__file__).with_name("0007_dashboards.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def quarter_columns() -> list[str]:
    return [f"{m}_lt{q}" for m, _ in MEASURES for q in QUARTERS]


UTC_MINUTE = "extract(minute FROM occurred_at AT TIME ZONE 'UTC') AS utc_minute"


def quarter_sums(sign: str = "1") -> list[str]:
    """The quarter columns' aggregates over rows with a `utc_minute` column (`sign`: +1 new / -1 old
    rows), in quarter_columns() order."""
    return [f"sum(CASE WHEN utc_minute < {q} THEN {sign} * {expr} ELSE 0 END)"
            for _, expr in MEASURES for q in QUARTERS]


def _tx_functions(v7) -> list[str]:
    cols = ", ".join(quarter_columns())
    updates = ", ".join(f"{c} = r.{c} + EXCLUDED.{c}" for c in quarter_columns())
    hourly = f"""
        INSERT INTO transaction_rollups_hourly AS r (bucket, merchant_id, project, source, currency, status,
                                  txn_count, amount_minor, fee_minor, fraud_count, {cols})
        SELECT date_trunc('hour', occurred_at, 'UTC'), coalesce(merchant_id, ''), coalesce(project, ''), source,
               currency, status, sum(sign), sum(sign * amount_minor), sum(sign * fee_minor), sum(sign * fraud),
               {", ".join(quarter_sums("sign"))}
          FROM (SELECT *, {UTC_MINUTE} FROM d) d GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (bucket, merchant_id, project, source, currency, status) DO UPDATE SET
            txn_count = r.txn_count + EXCLUDED.txn_count,
            amount_minor = r.amount_minor + EXCLUDED.amount_minor,
            fee_minor = r.fee_minor + EXCLUDED.fee_minor,
            fraud_count = r.fraud_count + EXCLUDED.fraud_count, {updates}"""
    old_hourly_start = "INSERT INTO transaction_rollups_hourly"
    out = []
    for fn in (v7.TX_INSERT_FN, v7.TX_DELETE_FN, v7.TX_UPDATE_FN):
        head, rest = fn.split(old_hourly_start, 1)
        _, tail = rest.split("RETURNING 1", 1)
        # head ends inside "h AS (" ; keep the daily upsert (tail) as it was
        out.append(head.rstrip() + "\n" + hourly + "\n RETURNING 1" + tail)
    return [f.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1) for f in out]


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

    for col in quarter_columns():
        op.add_column("transaction_rollups_hourly",
                      sa.Column(col, sa.BigInteger(), nullable=False, server_default="0"))
    for fn in _tx_functions(_v0007()):
        op.execute(fn)
    # the rows already rolled up: their quarter sums from the raw rows
    sets = ", ".join(f"{c} = q.{c}" for c in quarter_columns())
    op.execute(f"""
        UPDATE transaction_rollups_hourly h SET {sets}
          FROM (SELECT date_trunc('hour', occurred_at, 'UTC') AS bucket, coalesce(merchant_id, '') AS merchant_id,
                       coalesce(project, '') AS project, source, currency, status,
                       {", ".join(f"{e} AS {c}" for e, c in zip(quarter_sums(), quarter_columns()))}
                  FROM (SELECT *, dashboard_fraud_flag(raw) AS fraud, {UTC_MINUTE} FROM transactions) t
                 GROUP BY 1, 2, 3, 4, 5, 6) q
         WHERE (h.bucket, h.merchant_id, h.project, h.source, h.currency, h.status)
             = (q.bucket, q.merchant_id, q.project, q.source, q.currency, q.status)""")


def downgrade() -> None:
    v7 = _v0007()
    for fn in (v7.TX_INSERT_FN, v7.TX_DELETE_FN, v7.TX_UPDATE_FN):
        op.execute(fn.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    for col in quarter_columns():
        op.drop_column("transaction_rollups_hourly", col)
    op.drop_index("ix_export_jobs_tenant_created", table_name="export_jobs")
    op.drop_table("export_jobs")
