"""dashboards: hourly/daily rollups kept by triggers, alert rules, indexes for the transaction list

Revision ID: 0007_dashboards
Revises: 0001

Rollups are maintained by triggers rather than by the sync code: every writer of `transactions`
(the sync upsert, its delete + re-insert of rows that move partition, a backfill, a manual fix)
and every payout status change goes through them, in the writer's own transaction, so a rollup
can never disagree with the rows it counts. The transactions triggers are statement-level with
transition tables: one set-based upsert per statement, whatever the batch size.
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0007_dashboards"
down_revision: Union[str, None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TX_DIMS = ["merchant_id", "project", "source", "currency", "status"]

FRAUD_FUNCTION = """
CREATE FUNCTION dashboard_fraud_flag(raw jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN lower(coalesce(raw ->> 'fraud_flag', raw ->> 'fraud_flagged', raw ->> 'is_fraud', ''))
                     IN ('true', '1', 'yes', 'y') THEN 1 ELSE 0 END
$$
"""

# The delta of a statement, one row per changed transaction with sign +1 (new) / -1 (old).
_DELTA_COLUMNS = (
    "occurred_at, merchant_id, project, source, currency, status, amount_minor, fee_minor, "
    "dashboard_fraud_flag(raw) AS fraud"
)


def _apply_delta_sql(rows_sql: str) -> str:
    """Upsert the delta into the hourly and the daily rollup. Keys are upserted in key order so
    two concurrent writers lock shared buckets in the same order (no deadlock)."""
    def upsert(table: str, bucket_col: str, bucket_expr: str) -> str:
        return f"""
        INSERT INTO {table} AS r ({bucket_col}, merchant_id, project, source, currency, status,
                                  txn_count, amount_minor, fee_minor, fraud_count)
        SELECT {bucket_expr}, coalesce(merchant_id, ''), coalesce(project, ''), source, currency, status,
               sum(sign), sum(sign * amount_minor), sum(sign * fee_minor), sum(sign * fraud)
          FROM d GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
        ON CONFLICT ({bucket_col}, merchant_id, project, source, currency, status) DO UPDATE SET
            txn_count = r.txn_count + EXCLUDED.txn_count,
            amount_minor = r.amount_minor + EXCLUDED.amount_minor,
            fee_minor = r.fee_minor + EXCLUDED.fee_minor,
            fraud_count = r.fraud_count + EXCLUDED.fraud_count"""

    hourly = upsert("transaction_rollups_hourly", "bucket", "date_trunc('hour', occurred_at, 'UTC')")
    daily = upsert("transaction_rollups_daily", "day", "(occurred_at AT TIME ZONE 'UTC')::date")
    return f"WITH d AS ({rows_sql}), h AS ({hourly}\n RETURNING 1) {daily}"


def _tx_trigger_function(name: str, rows_sql: str) -> str:
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_apply_delta_sql(rows_sql)};
    RETURN NULL;
END $$
"""


TX_INSERT_FN = _tx_trigger_function(
    "dashboard_rollup_tx_insert", f"SELECT {_DELTA_COLUMNS}, 1 AS sign FROM new_rows")
TX_DELETE_FN = _tx_trigger_function(
    "dashboard_rollup_tx_delete", f"SELECT {_DELTA_COLUMNS}, -1 AS sign FROM old_rows")
TX_UPDATE_FN = _tx_trigger_function(
    "dashboard_rollup_tx_update",
    f"SELECT {_DELTA_COLUMNS}, 1 AS sign FROM new_rows UNION ALL SELECT {_DELTA_COLUMNS}, -1 AS sign FROM old_rows",
)

def _payout_upsert(table: str, bucket_col: str, bucket_expr: str, row: str, sign: str) -> str:
    return f"""
        INSERT INTO {table} AS r ({bucket_col}, merchant_id, currency, rail, status, payout_count, amount_minor,
                                  fee_minor)
        VALUES ({bucket_expr.format(row=row)}, {row}.merchant_id, {row}.currency, coalesce({row}.rail, ''),
                {row}.status, {sign}1, {sign}{row}.amount_minor, {sign}{row}.fee_minor)
        ON CONFLICT ({bucket_col}, merchant_id, currency, rail, status) DO UPDATE SET
            payout_count = r.payout_count + EXCLUDED.payout_count,
            amount_minor = r.amount_minor + EXCLUDED.amount_minor,
            fee_minor = r.fee_minor + EXCLUDED.fee_minor;"""


def _payout_upserts(row: str, sign: str) -> str:
    return (_payout_upsert("payout_rollups_hourly", "bucket", "date_trunc('hour', {row}.created_at, 'UTC')", row, sign)
            + _payout_upsert("payout_rollups_daily", "day", "({row}.created_at AT TIME ZONE 'UTC')::date", row, sign))


PAYOUT_FN = f"""
CREATE FUNCTION dashboard_rollup_payout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN{_payout_upserts("OLD", "-")}
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN{_payout_upserts("NEW", "")}
    END IF;
    RETURN NULL;
END $$
"""

# (id, metric, operator, threshold, window_minutes, severity, scope, params, description)
DEFAULT_RULES = [
    ("success_rate_drop", "success_rate", "<", 0.80, 60, "high", "merchant", '{"min_count": 20}',
     "Success rate of a merchant's transactions over the window fell below the threshold"),
    ("fraud_rate_spike", "fraud_rate", ">", 0.05, 60, "high", "merchant", '{"min_count": 20}',
     "Share of fraud-flagged transactions of a merchant over the window rose above the threshold"),
    ("float_low", "float_available", "<", 100000, 0, "medium", "merchant", '{}',
     "A merchant's available balance (minor units, per currency) is under the threshold"),
    ("dlq_size", "payouts_dlq", ">=", 10, 0, "high", "platform", '{}',
     "Payouts waiting in the dead-letter queue"),
    ("stale_sync", "sync_lag_minutes", ">", 30, 0, "high", "source", '{}',
     "Minutes since a provider sync last succeeded"),
    ("low_match_rate", "match_rate", "<", 0.95, 1440, "medium", "platform", '{}',
     "Share of matched rows in the reconciliation runs finished over the window"),
    ("sla_breaches", "payouts_sla_breached", ">", 0, 0, "high", "platform", '{}',
     "Payouts not settled by their settlement target"),
]


PAYOUT_DAILY_BACKFILL = """
    INSERT INTO payout_rollups_daily (day, merchant_id, currency, rail, status, payout_count, amount_minor, fee_minor)
    SELECT (bucket AT TIME ZONE 'UTC')::date, merchant_id, currency, rail, status, sum(payout_count),
           sum(amount_minor), sum(fee_minor)
      FROM payout_rollups_hourly GROUP BY 1, 2, 3, 4, 5"""


def _rollup_table(name: str, bucket: sa.Column, pk_name: str) -> None:
    op.create_table(
        name,
        bucket,
        sa.Column("merchant_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("project", sa.String(64), nullable=False, server_default=""),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("txn_count", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("fraud_count", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint(bucket.name, *TX_DIMS, name=pk_name),
    )


def upgrade() -> None:
    _rollup_table("transaction_rollups_hourly", sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
                  "pk_transaction_rollups_hourly")
    op.create_index("ix_transaction_rollups_hourly_merchant_bucket", "transaction_rollups_hourly",
                    ["merchant_id", "bucket"])
    _rollup_table("transaction_rollups_daily", sa.Column("day", sa.Date(), nullable=False),
                  "pk_transaction_rollups_daily")
    op.create_index("ix_transaction_rollups_daily_merchant_day", "transaction_rollups_daily", ["merchant_id", "day"])
    op.create_table(
        "payout_rollups_hourly",
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merchant_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("rail", sa.String(32), nullable=False, server_default=""),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("payout_count", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("bucket", "merchant_id", "currency", "rail", "status",
                                name="pk_payout_rollups_hourly"),
    )
    op.create_index("ix_payout_rollups_hourly_merchant_bucket", "payout_rollups_hourly", ["merchant_id", "bucket"])
    op.create_table(
        "payout_rollups_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("merchant_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("rail", sa.String(32), nullable=False, server_default=""),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("payout_count", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("day", "merchant_id", "currency", "rail", "status", name="pk_payout_rollups_daily"),
    )
    op.create_index("ix_payout_rollups_daily_merchant_day", "payout_rollups_daily", ["merchant_id", "day"])

    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(40), nullable=False),
        sa.Column("operator", sa.String(2), nullable=False),
        sa.Column("threshold", sa.Numeric(20, 6), nullable=False),
        sa.Column("window_minutes", sa.Integer(), nullable=False, server_default="60"),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("params", sa.dialects.postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rules"),
        sa.CheckConstraint("operator in ('<','<=','>','>=')", name="ck_alert_rules_operator"),
        sa.CheckConstraint("severity in ('low','medium','high','critical')", name="ck_alert_rules_severity"),
        sa.CheckConstraint("scope in ('platform','merchant','source')", name="ck_alert_rules_scope"),
    )
    rules = sa.table(
        "alert_rules", sa.column("id"), sa.column("metric"), sa.column("operator"), sa.column("threshold"),
        sa.column("window_minutes"), sa.column("severity"), sa.column("scope"),
        sa.column("params", sa.dialects.postgresql.JSONB()), sa.column("description"),
    )
    import json

    op.bulk_insert(rules, [
        dict(id=i, metric=m, operator=o, threshold=t, window_minutes=w, severity=s, scope=sc,
             params=json.loads(p), description=d)
        for i, m, o, t, w, s, sc, p, d in DEFAULT_RULES
    ])

    # The transactions list: per merchant by time, and the search keys.
    op.create_index("ix_transactions_merchant_occurred", "transactions", ["merchant_id", "occurred_at", "id"])
    op.create_index("ix_transactions_utr", "transactions", ["utr"])
    op.create_index("ix_transactions_source_id", "transactions", ["source_id"])
    op.create_index("ix_transactions_payer_email", "transactions", [sa.text("lower(payer_email)")])
    op.create_index("ix_transactions_client_operation_id_only", "transactions", ["client_operation_id"])
    # a transaction's reconciliation status on its detail page
    op.create_index("ix_reconciliation_results_left_id_dash", "reconciliation_results", ["left_id"])
    op.create_index("ix_reconciliation_results_right_id_dash", "reconciliation_results", ["right_id"])

    op.execute(FRAUD_FUNCTION)
    for fn in (TX_INSERT_FN, TX_DELETE_FN, TX_UPDATE_FN, PAYOUT_FN):
        op.execute(fn)
    op.execute("CREATE TRIGGER transactions_rollup_insert AFTER INSERT ON transactions "
               "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION dashboard_rollup_tx_insert()")
    op.execute("CREATE TRIGGER transactions_rollup_delete AFTER DELETE ON transactions "
               "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION dashboard_rollup_tx_delete()")
    op.execute("CREATE TRIGGER transactions_rollup_update AFTER UPDATE ON transactions "
               "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION dashboard_rollup_tx_update()")
    op.execute("CREATE TRIGGER payouts_rollup_insert AFTER INSERT ON payouts "
               "FOR EACH ROW EXECUTE FUNCTION dashboard_rollup_payout()")
    op.execute("CREATE TRIGGER payouts_rollup_delete AFTER DELETE ON payouts "
               "FOR EACH ROW EXECUTE FUNCTION dashboard_rollup_payout()")
    op.execute("CREATE TRIGGER payouts_rollup_update AFTER UPDATE ON payouts FOR EACH ROW "
               "WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.rail IS DISTINCT FROM NEW.rail "
               "OR OLD.amount_minor <> NEW.amount_minor OR OLD.fee_minor <> NEW.fee_minor "
               "OR OLD.currency <> NEW.currency) EXECUTE FUNCTION dashboard_rollup_payout()")

    # Rows that predate this migration.
    op.execute(f"""
        WITH d AS (SELECT {_DELTA_COLUMNS}, 1 AS sign FROM transactions)
        INSERT INTO transaction_rollups_hourly (bucket, merchant_id, project, source, currency, status,
                                                txn_count, amount_minor, fee_minor, fraud_count)
        SELECT date_trunc('hour', occurred_at, 'UTC'), coalesce(merchant_id, ''), coalesce(project, ''),
               source, currency, status, sum(sign), sum(amount_minor), sum(fee_minor), sum(fraud)
          FROM d GROUP BY 1, 2, 3, 4, 5, 6""")
    op.execute("""
        INSERT INTO transaction_rollups_daily (day, merchant_id, project, source, currency, status,
                                               txn_count, amount_minor, fee_minor, fraud_count)
        SELECT (bucket AT TIME ZONE 'UTC')::date, merchant_id, project, source, currency, status,
               sum(txn_count), sum(amount_minor), sum(fee_minor), sum(fraud_count)
          FROM transaction_rollups_hourly GROUP BY 1, 2, 3, 4, 5, 6""")
    op.execute("""
        INSERT INTO payout_rollups_hourly (bucket, merchant_id, currency, rail, status, payout_count,
                                           amount_minor, fee_minor)
        SELECT date_trunc('hour', created_at, 'UTC'), merchant_id, currency, coalesce(rail, ''), status,
               count(*), sum(amount_minor), sum(fee_minor)
          FROM payouts GROUP BY 1, 2, 3, 4, 5""")
    op.execute(PAYOUT_DAILY_BACKFILL)


def downgrade() -> None:
    for trig, table in (("transactions_rollup_insert", "transactions"), ("transactions_rollup_delete", "transactions"),
                        ("transactions_rollup_update", "transactions"), ("payouts_rollup_insert", "payouts"),
                        ("payouts_rollup_delete", "payouts"), ("payouts_rollup_update", "payouts")):
        op.execute(f"DROP TRIGGER IF EXISTS {trig} ON {table}")
    for fn in ("dashboard_rollup_tx_insert", "dashboard_rollup_tx_delete", "dashboard_rollup_tx_update",
               "dashboard_rollup_payout"):
        op.execute(f"DROP FUNCTION IF EXISTS {fn}()")
    op.execute("DROP FUNCTION IF EXISTS dashboard_fraud_flag(jsonb)")
    op.drop_index("ix_reconciliation_results_right_id_dash", table_name="reconciliation_results")
    op.drop_index("ix_reconciliation_results_left_id_dash", table_name="reconciliation_results")
    for ix in ("ix_transactions_client_operation_id_only", "ix_transactions_payer_email", "ix_transactions_source_id", "ix_transactions_utr",
               "ix_transactions_merchant_occurred"):
        op.drop_index(ix, table_name="transactions")
    op.drop_table("alert_rules")
    op.drop_table("payout_rollups_daily")
    op.drop_table("payout_rollups_hourly")
    op.drop_table("transaction_rollups_daily")
    op.drop_table("transaction_rollups_hourly")
