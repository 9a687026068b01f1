"""reconciliation: per-pair settings, run progress and window, result shards and confidence,
resolution log, bank statements and their lines

Revision ID: 0006_recon
Revises: 0001
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_recon"
down_revision: Union[str, None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

JSONB = postgresql.JSONB(astext_type=sa.Text())
EMPTY_OBJECT = sa.text("'{}'::jsonb")
EMPTY_ARRAY = sa.text("'[]'::jsonb")


def upgrade() -> None:
    op.create_table(
        "reconciliation_pairs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("left_source", sa.String(length=32), nullable=False),
        sa.Column("right_source", sa.String(length=32), nullable=False),
        sa.Column("amount_tolerance_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("amount_tolerance_bps", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status_equivalents", JSONB, server_default=EMPTY_ARRAY, nullable=False),
        sa.Column("probable_window_seconds", sa.Integer(), server_default="900", nullable=False),
        sa.Column("probable_min_confidence", sa.Numeric(precision=4, scale=3), server_default="0.6", nullable=False),
        sa.Column("match_rate_threshold", sa.Numeric(precision=5, scale=4), nullable=True),
        sa.Column("daily", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount_tolerance_minor >= 0 AND amount_tolerance_bps >= 0", name=op.f("ck_reconciliation_pairs_tolerance")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_pairs")),
        sa.UniqueConstraint("left_source", "right_source", name="uq_reconciliation_pairs_sources"),
    )
    # Vima's client_operation_id is PayShack's order_id (stored as client_operation_id).
    op.execute(
        "INSERT INTO reconciliation_pairs (id, left_source, right_source) VALUES ('vima:payshack', 'vima', 'payshack')"
    )

    op.add_column("reconciliation_runs", sa.Column("pair_id", sa.String(length=64), nullable=True))
    op.add_column("reconciliation_runs", sa.Column("workflow_id", sa.String(length=255), nullable=True))
    op.add_column("reconciliation_runs", sa.Column("timezone", sa.String(length=64), nullable=True))
    op.add_column("reconciliation_runs", sa.Column("window_start", sa.DateTime(timezone=True), nullable=True))
    op.add_column("reconciliation_runs", sa.Column("window_end", sa.DateTime(timezone=True), nullable=True))
    op.add_column("reconciliation_runs", sa.Column("params", JSONB, server_default=EMPTY_OBJECT, nullable=False))
    op.add_column("reconciliation_runs", sa.Column("shards_total", sa.Integer(), server_default="0", nullable=False))
    op.add_column("reconciliation_runs", sa.Column(
        "shards_done", postgresql.ARRAY(sa.Integer()), server_default=sa.text("'{}'::integer[]"), nullable=False))
    op.add_column("reconciliation_runs", sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("reconciliation_runs", sa.Column(
        "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False))
    op.create_index("ix_reconciliation_runs_kind_dates", "reconciliation_runs", ["kind", "date_from", "date_to"])

    # Millions of rows per run are written in one INSERT ... SELECT; a per-row foreign-key trigger
    # would cost more than the matching itself. Runs are never deleted.
    op.drop_constraint("fk_reconciliation_results_run_id_reconciliation_runs", "reconciliation_results",
                       type_="foreignkey")
    op.add_column("reconciliation_results", sa.Column("shard", sa.Integer(), server_default="0", nullable=False))
    op.add_column("reconciliation_results", sa.Column("confidence", sa.Numeric(precision=4, scale=3), nullable=True))
    op.add_column("reconciliation_results", sa.Column("carried_from_id", sa.BigInteger(), nullable=True))
    # A run writes up to millions of matched rows in one statement; a b-tree entry per row would
    # cost a third of the run. Discrepancies get a b-tree; whole-run scans (re-run delete) use a
    # BRIN, which suits rows written run by run.
    op.drop_index("ix_reconciliation_results_run_category", table_name="reconciliation_results")
    op.create_index("ix_reconciliation_results_discrepancies", "reconciliation_results", ["run_id", "category", "id"],
                    postgresql_where=sa.text("category <> 'matched'"))
    op.create_index("ix_reconciliation_results_run_brin", "reconciliation_results", ["run_id"],
                    postgresql_using="brin", postgresql_with={"autosummarize": "on"})
    # open discrepancies, newest first: the list finance works from
    op.create_index(
        "ix_reconciliation_results_open", "reconciliation_results", ["run_id", "id"],
        postgresql_where=sa.text("resolution IS NULL AND category <> 'matched'"),
    )

    # Who resolved or annotated what, when and why; survives a re-run replacing the results.
    op.create_table(
        "reconciliation_resolutions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("result_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=24), nullable=False),
        sa.Column("match_key", sa.String(length=128), nullable=True),
        sa.Column("left_id", sa.BigInteger(), nullable=True),
        sa.Column("right_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("resolution", sa.String(length=24), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("action in ('resolve','annotate','reopen')", name=op.f("ck_reconciliation_resolutions_action")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_resolutions")),
    )
    op.create_index("ix_reconciliation_resolutions_result", "reconciliation_resolutions", ["result_id"])
    op.create_index("ix_reconciliation_resolutions_run", "reconciliation_resolutions", ["run_id"])

    op.create_table(
        "bank_statements",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("statement_ref", sa.String(length=128), nullable=True),
        sa.Column("account", sa.String(length=64), nullable=True),
        sa.Column("period_from", sa.Date(), nullable=True),
        sa.Column("period_to", sa.Date(), nullable=True),
        sa.Column("line_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("uploaded_by", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("format in ('csv','camt053','mt940')", name=op.f("ck_bank_statements_format")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_statements")),
        sa.UniqueConstraint("content_hash", name="uq_bank_statements_content_hash"),
    )
    op.create_table(
        "bank_statement_lines",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("statement_id", sa.String(length=64), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("booking_date", sa.Date(), nullable=False),
        sa.Column("value_date", sa.Date(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("direction", sa.String(length=6), nullable=False),
        sa.Column("end_to_end_id", sa.String(length=128), nullable=True),
        sa.Column("bank_reference", sa.String(length=128), nullable=True),
        sa.Column("counterparty", sa.String(length=200), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("payout_id", sa.String(length=64), nullable=True),
        sa.Column("matched_by", sa.String(length=16), nullable=True),
        sa.CheckConstraint("direction in ('debit','credit')", name=op.f("ck_bank_statement_lines_direction")),
        sa.ForeignKeyConstraint(["statement_id"], ["bank_statements.id"],
                                name=op.f("fk_bank_statement_lines_statement_id_bank_statements")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_statement_lines")),
        sa.UniqueConstraint("statement_id", "line_no", name="uq_bank_statement_lines_statement_line"),
    )
    op.create_index("ix_bank_statement_lines_payout_id", "bank_statement_lines", ["payout_id"])
    op.create_index("ix_payouts_unreconciled", "payouts", ["settled_at"],
                    postgresql_where=sa.text("reconciled_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_payouts_unreconciled", table_name="payouts")
    op.drop_index("ix_bank_statement_lines_payout_id", table_name="bank_statement_lines")
    op.drop_table("bank_statement_lines")
    op.drop_table("bank_statements")
    op.drop_index("ix_reconciliation_resolutions_run", table_name="reconciliation_resolutions")
    op.drop_index("ix_reconciliation_resolutions_result", table_name="reconciliation_resolutions")
    op.drop_table("reconciliation_resolutions")
    op.drop_index("ix_reconciliation_results_open", table_name="reconciliation_results")
    op.drop_index("ix_reconciliation_results_run_brin", table_name="reconciliation_results")
    op.drop_index("ix_reconciliation_results_discrepancies", table_name="reconciliation_results")
    op.create_index("ix_reconciliation_results_run_category", "reconciliation_results", ["run_id", "category"])
    for column in ("carried_from_id", "confidence", "shard"):
        op.drop_column("reconciliation_results", column)
    op.create_foreign_key("fk_reconciliation_results_run_id_reconciliation_runs", "reconciliation_results",
                          "reconciliation_runs", ["run_id"], ["id"])
    op.drop_index("ix_reconciliation_runs_kind_dates", table_name="reconciliation_runs")
    for column in ("updated_at", "started_at", "shards_done", "shards_total", "params", "window_end", "window_start",
                   "timezone", "workflow_id", "pair_id"):
        op.drop_column("reconciliation_runs", column)
    op.drop_table("reconciliation_pairs")
