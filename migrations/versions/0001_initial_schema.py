"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 11:39:34.051410+00:00
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


# Audit tables are append-only: the database itself refuses UPDATE, DELETE and TRUNCATE.
APPEND_ONLY_FUNCTION = """
CREATE FUNCTION refuse_update_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$
"""

# Checked at commit (deferred), once per inserted entry: the entry's journal transaction
# must sum to zero in every currency.
BALANCED_FUNCTION = """
CREATE FUNCTION check_journal_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT currency, sum(amount_minor) AS total INTO bad
      FROM journal_entries
     WHERE transaction_id = NEW.transaction_id
     GROUP BY currency
    HAVING sum(amount_minor) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal transaction % is unbalanced in %: %',
            NEW.transaction_id, bad.currency, bad.total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$
"""

# Monthly range partitions of `transactions`, created ahead of time; idempotent.
PARTITION_FUNCTION = """
CREATE FUNCTION ensure_transaction_partitions(first_month date, months integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    m date := date_trunc('month', first_month)::date;
    created integer := 0;
    name text;
BEGIN
    FOR i IN 0 .. months - 1 LOOP
        name := 'transactions_' || to_char(m, 'YYYY_MM');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF transactions FOR VALUES FROM (%L) TO (%L)',
                name, m, (m + interval '1 month')::date);
            created := created + 1;
        END IF;
        m := (m + interval '1 month')::date;
    END LOOP;
    RETURN created;
END $$
"""


def upgrade() -> None:
    op.execute("CREATE SEQUENCE transactions_id_seq AS bigint")
    op.create_table('alerts',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('rule', sa.String(length=64), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='open', nullable=False),
    sa.Column('dedupe_key', sa.String(length=255), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('occurrences', sa.Integer(), server_default='1', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('acknowledged_by', sa.String(length=128), nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.String(length=128), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("severity in ('low','medium','high','critical')", name=op.f('ck_alerts_severity')),
    sa.CheckConstraint("status in ('open','acknowledged','resolved')", name=op.f('ck_alerts_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts'))
    )
    op.create_index('uq_alerts_open_dedupe_key', 'alerts', ['dedupe_key'], unique=True, postgresql_where=sa.text("status <> 'resolved'"))
    op.create_table('controls',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('target', sa.String(length=128), nullable=False),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('action_id', sa.String(length=64), nullable=True),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind in ('merchant_freeze','rail_pause','connector_pause','route_override')", name=op.f('ck_controls_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_controls'))
    )
    op.create_index('uq_controls_active_kind_target', 'controls', ['kind', 'target'], unique=True, postgresql_where=sa.text('active'))
    op.create_table('idempotency_keys',
    sa.Column('merchant_id', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('scope', sa.String(length=40), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('resource_id', sa.String(length=64), nullable=True),
    sa.Column('response_status', sa.Integer(), nullable=True),
    sa.Column('response_body', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('merchant_id', 'scope', 'key', name='pk_idempotency_keys')
    )
    op.create_index('ix_idempotency_keys_expires_at', 'idempotency_keys', ['expires_at'], unique=False)
    op.create_table('journal_transactions',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('idempotency_ref', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('merchant_id', sa.String(length=64), nullable=True),
    sa.Column('payout_id', sa.String(length=64), nullable=True),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journal_transactions')),
    sa.UniqueConstraint('idempotency_ref', name=op.f('uq_journal_transactions_idempotency_ref'))
    )
    op.create_index('ix_journal_transactions_payout_id', 'journal_transactions', ['payout_id'], unique=False)
    op.create_table('merchants',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('default_currency', sa.String(length=3), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=True),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_merchants'))
    )
    op.create_table('ops_actions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('action_type', sa.String(length=40), nullable=False),
    sa.Column('target', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('risk_level', sa.String(length=16), nullable=False),
    sa.Column('required_approvals', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('executed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('rollback_of', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("risk_level in ('low','medium','high','critical')", name=op.f('ck_ops_actions_risk_level')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ops_actions'))
    )
    op.create_index('ix_ops_actions_status', 'ops_actions', ['status'], unique=False)
    op.create_table('reconciliation_runs',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('left_source', sa.String(length=32), nullable=False),
    sa.Column('right_source', sa.String(length=32), nullable=False),
    sa.Column('date_from', sa.Date(), nullable=False),
    sa.Column('date_to', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('progress', sa.Numeric(precision=5, scale=4), server_default='0', nullable=False),
    sa.Column('summary', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('requested_by', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliation_runs'))
    )
    op.create_table('sync_state',
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('cursors', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='idle', nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('records_synced', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('records_quarantined', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_success_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('source', name=op.f('pk_sync_state'))
    )
    op.create_table('transaction_keys',
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('source_id', sa.String(length=128), nullable=False),
    sa.Column('transaction_id', sa.BigInteger(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source', 'source_id', name='pk_transaction_keys')
    )
    op.create_table('transactions',
    sa.Column('id', sa.BigInteger(), server_default=sa.text("nextval('transactions_id_seq')"), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('source_id', sa.String(length=128), nullable=False),
    sa.Column('client_operation_id', sa.String(length=128), nullable=True),
    sa.Column('merchant_id', sa.String(length=64), nullable=True),
    sa.Column('project', sa.String(length=64), nullable=True),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('fee_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('original_status', sa.String(length=64), nullable=True),
    sa.Column('payer_email', sa.String(length=320), nullable=True),
    sa.Column('payer_name', sa.String(length=200), nullable=True),
    sa.Column('payer_id', sa.String(length=128), nullable=True),
    sa.Column('utr', sa.String(length=64), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source_updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('raw', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('data_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status in ('success','failed','pending','refunded')", name=op.f('ck_transactions_status')),
    sa.PrimaryKeyConstraint('id', 'occurred_at', name='pk_transactions'),
    postgresql_partition_by='RANGE (occurred_at)'
    )
    op.create_table('ledger_accounts',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=200), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('merchant_id', sa.String(length=64), nullable=True),
    sa.Column('balance_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind in ('asset','liability','revenue','expense','equity')", name=op.f('ck_ledger_accounts_kind')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_ledger_accounts_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_accounts')),
    sa.UniqueConstraint('code', 'currency', name='uq_ledger_accounts_code_currency')
    )
    op.create_table('ledger_holds',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('payout_id', sa.String(length=64), nullable=False),
    sa.Column('merchant_id', sa.String(length=64), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='active', nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status in ('active','released','reversed')", name=op.f('ck_ledger_holds_status')),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_ledger_holds_positive')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_ledger_holds_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_holds')),
    sa.UniqueConstraint('payout_id', name=op.f('uq_ledger_holds_payout_id'))
    )
    op.create_table('ops_approvals',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('action_id', sa.String(length=64), nullable=False),
    sa.Column('approver', sa.String(length=128), nullable=False),
    sa.Column('roles', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("decision in ('approve','reject')", name=op.f('ck_ops_approvals_decision')),
    sa.ForeignKeyConstraint(['action_id'], ['ops_actions.id'], name=op.f('fk_ops_approvals_action_id_ops_actions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ops_approvals')),
    sa.UniqueConstraint('action_id', 'approver', name='uq_ops_approvals_action_approver')
    )
    op.create_table('payouts',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('merchant_id', sa.String(length=64), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('fee_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('rail', sa.String(length=32), nullable=True),
    sa.Column('connector', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('failure_code', sa.String(length=64), nullable=True),
    sa.Column('failure_message', sa.Text(), nullable=True),
    sa.Column('beneficiary_encrypted', sa.LargeBinary(), nullable=False),
    sa.Column('beneficiary_masked', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('bank_payment_id', sa.String(length=128), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.Column('routing', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('settlement_target_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('workflow_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reconciled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_payouts_positive')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_payouts_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payouts')),
    sa.UniqueConstraint('merchant_id', 'idempotency_key', name='uq_payouts_merchant_idempotency_key')
    )
    op.create_index('ix_payouts_merchant_created', 'payouts', ['merchant_id', 'created_at', 'id'], unique=False)
    op.create_index('ix_payouts_status', 'payouts', ['status'], unique=False)
    op.create_table('reconciliation_results',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('category', sa.String(length=24), nullable=False),
    sa.Column('match_key', sa.String(length=128), nullable=True),
    sa.Column('left_id', sa.BigInteger(), nullable=True),
    sa.Column('right_id', sa.BigInteger(), nullable=True),
    sa.Column('amount_diff_minor', sa.BigInteger(), nullable=True),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('resolution', sa.String(length=24), nullable=True),
    sa.Column('resolved_by', sa.String(length=128), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("category in ('matched','amount_mismatch','status_mismatch','missing_left','missing_right','duplicate_key','probable_match')", name=op.f('ck_reconciliation_results_category')),
    sa.ForeignKeyConstraint(['run_id'], ['reconciliation_runs.id'], name=op.f('fk_reconciliation_results_run_id_reconciliation_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliation_results'))
    )
    op.create_index('ix_reconciliation_results_run_category', 'reconciliation_results', ['run_id', 'category'], unique=False)
    op.create_table('journal_entries',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('transaction_id', sa.BigInteger(), nullable=False),
    sa.Column('account_id', sa.BigInteger(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('amount_minor <> 0', name=op.f('ck_journal_entries_nonzero')),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.id'], name=op.f('fk_journal_entries_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['transaction_id'], ['journal_transactions.id'], name=op.f('fk_journal_entries_transaction_id_journal_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journal_entries'))
    )
    op.create_index('ix_journal_entries_account_id', 'journal_entries', ['account_id'], unique=False)
    op.create_index('ix_journal_entries_transaction_id', 'journal_entries', ['transaction_id'], unique=False)
    op.create_table('payout_events',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('payout_id', sa.String(length=64), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('from_status', sa.String(length=24), nullable=True),
    sa.Column('to_status', sa.String(length=24), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_payout_events_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_events')),
    sa.UniqueConstraint('payout_id', 'sequence', name='uq_payout_events_payout_sequence')
    )
    op.execute("ALTER SEQUENCE transactions_id_seq OWNED BY transactions.id")
    op.execute(PARTITION_FUNCTION)
    op.execute("CREATE TABLE transactions_default PARTITION OF transactions DEFAULT")
    # Partitions for the past year and the coming year; `ensure_transaction_partitions` adds more.
    op.execute(
        "SELECT ensure_transaction_partitions((date_trunc('month', now()) - interval '12 months')::date, 24)"
    )
    op.create_index("ix_transactions_occurred_at", "transactions", ["occurred_at"])
    op.create_index("ix_transactions_client_operation_id", "transactions", ["source", "client_operation_id"])
    op.execute(APPEND_ONLY_FUNCTION)
    for table in ("payout_events", "journal_entries", "journal_transactions"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_update_delete()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION refuse_update_delete()"
        )
    op.execute(BALANCED_FUNCTION)
    op.execute(
        "CREATE CONSTRAINT TRIGGER journal_entries_balanced AFTER INSERT ON journal_entries "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION check_journal_balanced()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS journal_entries_balanced ON journal_entries")
    for table in ("payout_events", "journal_entries", "journal_transactions"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.drop_index("ix_transactions_client_operation_id", table_name="transactions")
    op.drop_index("ix_transactions_occurred_at", table_name="transactions")
    op.drop_table('payout_events')
    op.drop_index('ix_journal_entries_transaction_id', table_name='journal_entries')
    op.drop_index('ix_journal_entries_account_id', table_name='journal_entries')
    op.drop_table('journal_entries')
    op.drop_index('ix_reconciliation_results_run_category', table_name='reconciliation_results')
    op.drop_table('reconciliation_results')
    op.drop_index('ix_payouts_status', table_name='payouts')
    op.drop_index('ix_payouts_merchant_created', table_name='payouts')
    op.drop_table('payouts')
    op.drop_table('ops_approvals')
    op.drop_table('ledger_holds')
    op.drop_table('ledger_accounts')
    op.drop_table('transactions')
    op.drop_table('transaction_keys')
    op.drop_table('sync_state')
    op.drop_table('reconciliation_runs')
    op.drop_index('ix_ops_actions_status', table_name='ops_actions')
    op.drop_table('ops_actions')
    op.drop_table('merchants')
    op.drop_index('ix_journal_transactions_payout_id', table_name='journal_transactions')
    op.drop_table('journal_transactions')
    op.drop_index('ix_idempotency_keys_expires_at', table_name='idempotency_keys')
    op.drop_table('idempotency_keys')
    op.drop_index('uq_controls_active_kind_target', table_name='controls', postgresql_where=sa.text('active'))
    op.drop_table('controls')
    op.drop_index('uq_alerts_open_dedupe_key', table_name='alerts', postgresql_where=sa.text("status <> 'resolved'"))
    op.drop_table('alerts')
    op.execute("DROP FUNCTION IF EXISTS check_journal_balanced()")
    op.execute("DROP FUNCTION IF EXISTS refuse_update_delete()")
    op.execute("DROP FUNCTION IF EXISTS ensure_transaction_partitions(date, integer)")
