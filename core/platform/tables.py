"""The PostgreSQL schema as SQLAlchemy Core tables.

Alembic migrations (migrations/versions) are the only way the schema changes; these tables
mirror them for queries. tests/platform/test_migrations.py checks the two agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.types import UserDefinedType

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _created_at() -> Column:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def _updated_at() -> Column:
    return Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now())


# --- merchants ------------------------------------------------------------------------

merchants = Table(
    "merchants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("default_currency", String(3), nullable=False),
    Column("country", String(2), nullable=True),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _created_at(),
    _updated_at(),
    # profile and KYC (core/merchants/profile.py; migration 0025_w21money_merchant_money)
    Column("company_name", String(200), nullable=True),  # the legal name; null: `name`
    Column("account_type", String(16), nullable=False, server_default="business"),
    Column("kyc_status", String(16), nullable=False, server_default="pending"),
    Column("kyc_updated_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("account_type in ('individual','business')", name="account_type"),
    CheckConstraint("kyc_status in ('pending','verified','rejected','needs_info')", name="kyc_status"),
)

# Every KYC status change: who, when, from -> to, why, and the ops action that made it.
merchant_kyc_history = Table(
    "merchant_kyc_history",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("merchant_id", String(64), ForeignKey("merchants.id"), nullable=False),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=True),
    Column("action_id", String(64), nullable=True),  # one change per ops action (a retried execution finds it)
    _created_at(),
    Index("ix_merchant_kyc_history_merchant", "merchant_id", "id"),
    Index("uq_merchant_kyc_history_action", "action_id", unique=True),
)

# The merchant's audit trail of profile and payout bank account changes.
merchant_audit = Table(
    "merchant_audit",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("merchant_id", String(64), ForeignKey("merchants.id"), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("event", String(64), nullable=False),
    Column("data", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _created_at(),
    Index("ix_merchant_audit_merchant", "merchant_id", "id"),
)

# A merchant's own payout bank accounts (withdrawals go only to these). Details are encrypted
# (FieldCipher, like a payout's beneficiary); `effective_at` is the end of the cool-off.
merchant_bank_accounts = Table(
    "merchant_bank_accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("merchant_id", String(64), ForeignKey("merchants.id"), nullable=False),
    Column("rail", String(32), nullable=False),  # the payout method: sepa, ach, wire, faster_payments, mobile_money
    Column("currency", String(3), nullable=False),
    Column("details_encrypted", LargeBinary, nullable=False),
    Column("details_masked", JSONB, nullable=False),
    Column("checks", JSONB, nullable=False, server_default=text("'[]'::jsonb")),  # the checks it passed
    Column("status", String(24), nullable=False),  # pending_verification | verified | rejected
    Column("effective_at", DateTime(timezone=True), nullable=True),  # null: waits for an ops approval
    Column("replaces_id", String(64), nullable=True),  # the account of the same rail+currency it replaces
    Column("verified_at", DateTime(timezone=True), nullable=True),
    Column("reviewed_by", String(128), nullable=True),  # the ops action's executor, when one decided
    Column("review_reason", Text, nullable=True),
    Column("created_by", String(128), nullable=False),
    _created_at(),
    _updated_at(),
    CheckConstraint("status in ('pending_verification','verified','rejected')", name="status"),
    Index("ix_merchant_bank_accounts_merchant", "merchant_id", "rail", "currency", "created_at"),
)

# --- ledger ---------------------------------------------------------------------------
# Signed amounts: a debit is positive, a credit negative; every journal transaction's
# entries sum to zero per currency (enforced by a deferred constraint trigger).

ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("code", String(200), nullable=False),  # e.g. merchant:{id}:available
    Column("currency", String(3), nullable=False),
    # asset accounts carry debit balances, liability/revenue accounts credit balances
    Column("kind", String(16), nullable=False),
    Column("merchant_id", String(64), ForeignKey("merchants.id"), nullable=True),
    # Sum of this account's entries (debit positive), kept in the posting's transaction so a
    # balance read is one row; `payops ledger check` proves it equals the entries.
    Column("balance_minor", BigInteger, nullable=False, server_default="0"),
    _created_at(),
    UniqueConstraint("code", "currency", name="uq_ledger_accounts_code_currency"),
    CheckConstraint("kind in ('asset','liability','revenue','expense','equity')", name="kind"),
)

journal_transactions = Table(
    "journal_transactions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    # what makes a retried posting harmless: one transaction per reference, ever
    Column("idempotency_ref", String(255), nullable=False, unique=True),
    Column("kind", String(40), nullable=False),
    Column("description", Text, nullable=True),
    Column("merchant_id", String(64), nullable=True),
    Column("payout_id", String(64), nullable=True),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _created_at(),
    Index("ix_journal_transactions_payout_id", "payout_id"),
)

journal_entries = Table(
    "journal_entries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("transaction_id", BigInteger, ForeignKey("journal_transactions.id"), nullable=False),
    Column("account_id", BigInteger, ForeignKey("ledger_accounts.id"), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    _created_at(),
    CheckConstraint("amount_minor <> 0", name="nonzero"),
    Index("ix_journal_entries_transaction_id", "transaction_id"),
    Index("ix_journal_entries_account_id", "account_id"),
)

ledger_holds = Table(
    "ledger_holds",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("payout_id", String(64), nullable=False, unique=True),
    Column("merchant_id", String(64), ForeignKey("merchants.id"), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),  # amount + fee held
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    _created_at(),
    _updated_at(),
    CheckConstraint("amount_minor > 0", name="positive"),
    CheckConstraint("status in ('active','released','reversed')", name="status"),
)

# --- payouts ----------------------------------------------------------------------------

payouts = Table(
    "payouts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("merchant_id", String(64), ForeignKey("merchants.id"), nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("fee_minor", BigInteger, nullable=False, server_default="0"),
    Column("method", String(32), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("rail", String(32), nullable=True),
    Column("connector", String(64), nullable=True),
    Column("status", String(24), nullable=False),
    Column("failure_code", String(64), nullable=True),
    Column("failure_message", Text, nullable=True),
    # beneficiary details are stored encrypted; `beneficiary_masked` is what is shown
    Column("beneficiary_encrypted", LargeBinary, nullable=False),
    Column("beneficiary_masked", JSONB, nullable=False),
    Column("description", Text, nullable=True),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("bank_payment_id", String(128), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("routing", JSONB, nullable=True),
    Column("settlement_target_at", DateTime(timezone=True), nullable=True),
    # Set once the payout's workflow is known to exist; NULL rows are healed by the sweeper.
    Column("workflow_started_at", DateTime(timezone=True), nullable=True),
    Column("submitted_at", DateTime(timezone=True), nullable=True),
    Column("settled_at", DateTime(timezone=True), nullable=True),
    Column("reconciled_at", DateTime(timezone=True), nullable=True),
    _created_at(),
    _updated_at(),
    UniqueConstraint("merchant_id", "idempotency_key", name="uq_payouts_merchant_idempotency_key"),
    CheckConstraint("amount_minor > 0", name="positive"),
    Index("ix_payouts_merchant_created", "merchant_id", "created_at", "id"),
    Index("ix_payouts_status", "status"),
)

# One row per (merchant, Idempotency-Key): the request fingerprint and what it produced.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("merchant_id", String(64), nullable=False),
    Column("key", String(255), nullable=False),
    Column("scope", String(40), nullable=False),  # payouts.create, merchants.fund, ...
    Column("fingerprint", String(64), nullable=False),
    Column("resource_id", String(64), nullable=True),
    Column("response_status", Integer, nullable=True),
    Column("response_body", JSONB, nullable=True),
    _created_at(),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("merchant_id", "scope", "key", name="pk_idempotency_keys"),
    Index("ix_idempotency_keys_expires_at", "expires_at"),
)

# Append-only: UPDATE and DELETE are refused by a trigger (see the initial migration).
payout_events = Table(
    "payout_events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("payout_id", String(64), ForeignKey("payouts.id"), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("from_status", String(24), nullable=True),
    Column("to_status", String(24), nullable=False),
    Column("reason", Text, nullable=True),
    Column("data", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _created_at(),
    UniqueConstraint("payout_id", "sequence", name="uq_payout_events_payout_sequence"),
    Index("ix_payout_events_created", "created_at", "id"),  # the activity feed (0024)
)

# --- ops actions --------------------------------------------------------------------------

ops_actions = Table(
    "ops_actions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("action_type", String(40), nullable=False),
    Column("target", JSONB, nullable=False),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("risk_level", String(16), nullable=False),
    Column("required_approvals", Integer, nullable=False),
    Column("status", String(24), nullable=False),
    Column("reason", Text, nullable=True),
    Column("created_by", String(128), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("executed_at", DateTime(timezone=True), nullable=True),
    Column("result", JSONB, nullable=True),
    Column("error", Text, nullable=True),
    Column("rollback_of", String(64), nullable=True),
    _created_at(),
    _updated_at(),
    CheckConstraint("risk_level in ('low','medium','high','critical')", name="risk_level"),
    Index("ix_ops_actions_status", "status"),
)

ops_approvals = Table(
    "ops_approvals",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("action_id", String(64), ForeignKey("ops_actions.id"), nullable=False),
    Column("approver", String(128), nullable=False),
    Column("roles", JSONB, nullable=False),
    Column("decision", String(16), nullable=False),
    Column("comment", Text, nullable=True),
    _created_at(),
    UniqueConstraint("action_id", "approver", name="uq_ops_approvals_action_approver"),
    CheckConstraint("decision in ('approve','reject')", name="decision"),
)

# --- controls: frozen merchants, paused rails/connectors, route overrides ------------------

controls = Table(
    "controls",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("target", String(128), nullable=False),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("reason", Text, nullable=True),
    Column("created_by", String(128), nullable=False),
    Column("action_id", String(64), nullable=True),
    Column("ends_at", DateTime(timezone=True), nullable=True),
    _created_at(),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    CheckConstraint(
        "kind in ('merchant_freeze','rail_pause','connector_pause','route_override')", name="kind"
    ),
    Index(
        "uq_controls_active_kind_target",
        "kind",
        "target",
        unique=True,
        postgresql_where=text("active"),
    ),
)

# --- unified transactions from providers (monthly range partitions on occurred_at) --------

transactions = Table(
    "transactions",
    metadata,
    Column("id", BigInteger, nullable=False, server_default=text("nextval('transactions_id_seq')")),
    Column("source", String(32), nullable=False),
    Column("source_id", String(128), nullable=False),
    Column("client_operation_id", String(128), nullable=True),
    Column("merchant_id", String(64), nullable=True),
    Column("project", String(64), nullable=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("fee_minor", BigInteger, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False),
    Column("original_status", String(64), nullable=True),
    Column("payer_email", String(320), nullable=True),
    Column("payer_name", Text, nullable=True),  # kept whole (0013)
    Column("payer_id", String(128), nullable=True),
    Column("utr", String(64), nullable=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("source_updated_at", DateTime(timezone=True), nullable=True),
    Column("source_version", BigInteger, nullable=True),  # the provider's update cursor (0013)
    Column("raw", JSONB, nullable=False),
    Column("data_hash", String(64), nullable=False),
    _created_at(),
    _updated_at(),
    Column("payer_country", String(2), nullable=True),  # ISO 3166-1 alpha-2 (0022)
    Column("agent_id", String(64), nullable=True),  # the mobile-money agent that took it (0027)
    PrimaryKeyConstraint("id", "occurred_at", name="pk_transactions"),
    CheckConstraint("status in ('success','failed','pending','refunded')", name="status"),
    Index("ix_transactions_occurred_at", "occurred_at"),
    Index("ix_transactions_client_operation_id", "source", "client_operation_id"),
    # migration 0007_dashboards: transaction list filters and search
    Index("ix_transactions_merchant_occurred", "merchant_id", "occurred_at", "id"),
    Index("ix_transactions_utr", "utr"),
    Index("ix_transactions_source_id", "source_id"),
    Index("ix_transactions_payer_email", text("lower(payer_email)")),
    Index("ix_transactions_client_operation_id_only", "client_operation_id"),
    # migration 0022_transaction_country: the breakdown by payer country reads the window's rows
    Index("ix_transactions_occurred_country", "occurred_at", "payer_country"),
    # migration 0027_w20agents_agent_map: an agent's 30-day sales
    Index("ix_transactions_agent_occurred", "agent_id", "occurred_at"),
    postgresql_partition_by="RANGE (occurred_at)",
)

# Global uniqueness of (source, source_id) across partitions, and where each row lives.
transaction_keys = Table(
    "transaction_keys",
    metadata,
    Column("source", String(32), nullable=False),
    Column("source_id", String(128), nullable=False),
    Column("transaction_id", BigInteger, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("source", "source_id", name="pk_transaction_keys"),
)

sync_state = Table(
    "sync_state",
    metadata,
    Column("source", String(32), primary_key=True),
    Column("cursors", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("status", String(16), nullable=False, server_default="idle"),
    Column("error", Text, nullable=True),
    Column("records_synced", BigInteger, nullable=False, server_default="0"),
    Column("records_quarantined", BigInteger, nullable=False, server_default="0"),
    Column("last_run_at", DateTime(timezone=True), nullable=True),
    Column("last_success_at", DateTime(timezone=True), nullable=True),
    _updated_at(),
)

# --- reconciliation --------------------------------------------------------------------

reconciliation_runs = Table(
    "reconciliation_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),  # provider_pair | payouts_statement
    Column("left_source", String(32), nullable=False),
    Column("right_source", String(32), nullable=False),
    Column("date_from", Date, nullable=False),
    Column("date_to", Date, nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress", Numeric(5, 4), nullable=False, server_default="0"),
    Column("summary", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("error", Text, nullable=True),
    Column("requested_by", String(128), nullable=True),
    _created_at(),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    # migration 0006_recon
    Column("pair_id", String(64), nullable=True),
    Column("workflow_id", String(255), nullable=True),
    Column("timezone", String(64), nullable=True),
    Column("window_start", DateTime(timezone=True), nullable=True),
    Column("window_end", DateTime(timezone=True), nullable=True),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("shards_total", Integer, nullable=False, server_default="0"),
    Column("shards_done", ARRAY(Integer), nullable=False, server_default=text("'{}'::integer[]")),
    Column("started_at", DateTime(timezone=True), nullable=True),
    _updated_at(),
    Index("ix_reconciliation_runs_kind_dates", "kind", "date_from", "date_to"),
)

reconciliation_results = Table(
    "reconciliation_results",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    # no foreign key (migration 0006_recon): a per-row trigger would dominate bulk inserts
    Column("run_id", String(64), nullable=False),
    Column("category", String(24), nullable=False),
    Column("match_key", String(128), nullable=True),
    Column("left_id", BigInteger, nullable=True),
    Column("right_id", BigInteger, nullable=True),
    Column("amount_diff_minor", BigInteger, nullable=True),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("resolution", String(24), nullable=True),
    Column("resolved_by", String(128), nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("note", Text, nullable=True),
    _created_at(),
    CheckConstraint(
        "category in ('matched','amount_mismatch','status_mismatch','missing_left',"
        "'missing_right','duplicate_key','probable_match')",
        name="category",
    ),
    # migration 0006_recon: (run_id, category) replaced by the two indexes below
    Index("ix_reconciliation_results_discrepancies", "run_id", "category", "id",
          postgresql_where=text("category <> 'matched'")),
    Index("ix_reconciliation_results_run_brin", "run_id", postgresql_using="brin",
          postgresql_with={"autosummarize": "on"}),
    Column("shard", Integer, nullable=False, server_default="0"),
    Column("confidence", Numeric(4, 3), nullable=True),
    Column("carried_from_id", BigInteger, nullable=True),
    Index("ix_reconciliation_results_open", "run_id", "id",
          postgresql_where=text("resolution IS NULL AND category <> 'matched'")),
    # migration 0008_recon_indexes: a transaction's open discrepancies (a provider-pair run stores
    # no matched rows; a transaction's match is derived through its run, core/transactions/queries.py)
    Index("ix_reconciliation_results_left_id_open", "left_id", postgresql_where=text("category <> 'matched'")),
    Index("ix_reconciliation_results_right_id_open", "right_id", postgresql_where=text("category <> 'matched'")),
)

# --- alerts ------------------------------------------------------------------------------

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("rule", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("dedupe_key", String(255), nullable=False),
    Column("message", Text, nullable=False),
    Column("data", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("occurrences", Integer, nullable=False, server_default="1"),
    _created_at(),
    Column("last_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("acknowledged_by", String(128), nullable=True),
    Column("acknowledged_at", DateTime(timezone=True), nullable=True),
    Column("resolved_by", String(128), nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("expired_at", DateTime(timezone=True), nullable=True),  # migration 0018_alert_expiry
    CheckConstraint("severity in ('low','medium','high','critical')", name="severity"),
    CheckConstraint("status in ('open','acknowledged','resolved','expired')", name="status"),
    # one open (or acknowledged) alert per key: a resolved or expired one no longer counts, so the
    # next firing opens a new alert
    Index(
        "uq_alerts_open_dedupe_key",
        "dedupe_key",
        unique=True,
        postgresql_where=text("status in ('open','acknowledged')"),
    ),
)

# What happened to an alert after it opened, by whom (migration 0018_alert_expiry): the expiry
# workflow's `expired` entries. Append-only by convention (only inserts are written).
alert_audit = Table(
    "alert_audit",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger, ForeignKey("alerts.id"), nullable=False),
    Column("event", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=True),
    Column("data", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _created_at(),
    Index("ix_alert_audit_alert_id", "alert_id"),
)
# The open-alert index's predicate, for `ON CONFLICT (dedupe_key) WHERE ...`. It must be literal
# SQL: a bound parameter (`alerts.c.status != "resolved"`) works for a prepared statement's first
# five runs, then PostgreSQL's generic plan can no longer infer the partial index and the insert
# fails with "no unique or exclusion constraint matching the ON CONFLICT specification".
ALERT_OPEN_PREDICATE = text("status in ('open','acknowledged')")

# --- merchant webhooks -------------------------------------------------------------------

# A merchant's endpoint. `secrets_encrypted` is FieldCipher JSON:
# {"secrets": [{"secret": "whsec_...", "expires_at": null | iso}]}, newest first; an old secret
# keeps signing (a second v1=) until its expires_at, so a rotation never drops a delivery.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("merchant_id", String(64), ForeignKey("merchants.id"), nullable=False),
    Column("url", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("event_types", JSONB, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("disabled_reason", Text, nullable=True),
    Column("secrets_encrypted", LargeBinary, nullable=False),
    # first failure of the current run of failures; cleared by any success
    Column("failing_since", DateTime(timezone=True), nullable=True),
    Column("deleted_at", DateTime(timezone=True), nullable=True),
    _created_at(),
    _updated_at(),
    Index("ix_webhook_endpoints_merchant_id", "merchant_id"),
)

# What happened to a merchant's payouts, as merchants receive it; `dispatched_at` NULL is the
# outbox the webhook dispatcher drains.
events = Table(
    "events",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("merchant_id", String(64), ForeignKey("merchants.id"), nullable=False),
    Column("type", String(64), nullable=False),
    Column("payout_id", String(64), nullable=True),
    Column("payout_version", Integer, nullable=True),
    Column("data", JSONB, nullable=False),
    _created_at(),
    Column("dispatched_at", DateTime(timezone=True), nullable=True),
    Index("ix_events_merchant_created", "merchant_id", "created_at", "id"),
    Index("ix_events_payout_id", "payout_id"),
    Index("ix_events_undispatched", "created_at", postgresql_where=text("dispatched_at IS NULL")),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", String(64), ForeignKey("events.id"), nullable=False),
    Column("endpoint_id", String(64), ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("merchant_id", String(64), nullable=False),
    Column("workflow_id", String(255), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("url", Text, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("latency_ms", Integer, nullable=True),
    Column("response_excerpt", Text, nullable=True),
    Column("error", Text, nullable=True),
    _created_at(),
    UniqueConstraint("workflow_id", "attempt", name="uq_webhook_attempts_workflow_attempt"),
    CheckConstraint("outcome in ('succeeded','failed','refused')", name="outcome"),
    Index("ix_webhook_attempts_event_id", "event_id"),
    Index("ix_webhook_attempts_endpoint_created", "endpoint_id", "created_at"),
    Index("ix_webhook_attempts_merchant_created", "merchant_id", "created_at", "id"),  # the activity feed (0024)
)

# --- ops action audit (migration 0002_ops_audit) ---------------------------------------------
# Append-only: UPDATE, DELETE and TRUNCATE are refused by triggers; one row per (action, event key).

ops_action_audit = Table(
    "ops_action_audit",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("action_id", String(64), ForeignKey("ops_actions.id"), nullable=False),
    Column("event_key", String(128), nullable=False),
    Column("event", String(40), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("from_status", String(24), nullable=True),
    Column("to_status", String(24), nullable=True),
    Column("data", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _created_at(),
    UniqueConstraint("action_id", "event_key", name="uq_ops_action_audit_action_event_key"),
)

# At most one open action per conflict key (kept in target->>'conflict_key').
Index(
    "uq_ops_actions_open_conflict_key",
    ops_actions.c.target["conflict_key"].astext,
    unique=True,
    postgresql_where=text("status in ('pending_approval','approved','executing')"),
)

# --- provider syncs: run history and quarantined records (migration 0003_sync) -------------

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("source", String(32), nullable=False),
    Column("mode", String(16), nullable=False),  # incremental | backfill
    Column("workflow_id", String(255), nullable=True),
    Column("status", String(16), nullable=False, server_default="running"),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("cursor", JSONB, nullable=True),
    Column("pages", Integer, nullable=False, server_default="0"),
    Column("rows_fetched", BigInteger, nullable=False, server_default="0"),
    Column("rows_inserted", BigInteger, nullable=False, server_default="0"),
    Column("rows_updated", BigInteger, nullable=False, server_default="0"),
    Column("rows_unchanged", BigInteger, nullable=False, server_default="0"),
    Column("rows_quarantined", BigInteger, nullable=False, server_default="0"),
    Column("expected_total", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    _updated_at(),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("mode in ('incremental','backfill')", name="mode"),
    CheckConstraint("status in ('running','success','error')", name="status"),
    Index("ix_sync_runs_source_started", "source", "started_at"),
)

sync_quarantine = Table(
    "sync_quarantine",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("source", String(32), nullable=False),
    Column("source_id", String(128), nullable=True),
    Column("reason", Text, nullable=False),
    Column("raw", JSONB, nullable=False),
    Column("data_hash", String(64), nullable=False),
    Column("run_id", String(64), nullable=True),
    _created_at(),
    UniqueConstraint("source", "data_hash", name="uq_sync_quarantine_source_data_hash"),
    Index("ix_sync_quarantine_source_created", "source", "created_at"),  # 0013
)

# --- reconciliation: pair settings, resolution log, bank statements (migration 0006_recon) --

reconciliation_pairs = Table(
    "reconciliation_pairs",
    metadata,
    Column("id", String(64), primary_key=True),  # "{left}:{right}", e.g. vima:payshack
    Column("left_source", String(32), nullable=False),
    Column("right_source", String(32), nullable=False),
    Column("amount_tolerance_minor", BigInteger, nullable=False, server_default="0"),
    Column("amount_tolerance_bps", Integer, nullable=False, server_default="0"),
    # [[left_status, right_status], ...] also counted as agreeing (equal statuses always agree)
    Column("status_equivalents", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("probable_window_seconds", Integer, nullable=False, server_default="900"),
    Column("probable_min_confidence", Numeric(4, 3), nullable=False, server_default="0.6"),
    Column("match_rate_threshold", Numeric(5, 4), nullable=True),  # NULL = the setting
    Column("daily", Boolean, nullable=False, server_default=text("true")),
    _created_at(),
    _updated_at(),
    CheckConstraint("amount_tolerance_minor >= 0 AND amount_tolerance_bps >= 0", name="tolerance"),
    UniqueConstraint("left_source", "right_source", name="uq_reconciliation_pairs_sources"),
)

reconciliation_resolutions = Table(
    "reconciliation_resolutions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("result_id", BigInteger, nullable=False),
    Column("run_id", String(64), nullable=False),
    # what identifies the discrepancy when a re-run replaces the result rows
    Column("category", String(24), nullable=False),
    Column("match_key", String(128), nullable=True),
    Column("left_id", BigInteger, nullable=True),
    Column("right_id", BigInteger, nullable=True),
    Column("action", String(16), nullable=False),
    Column("resolution", String(24), nullable=True),
    Column("note", Text, nullable=True),
    Column("actor", String(128), nullable=False),
    _created_at(),
    CheckConstraint("action in ('resolve','annotate','reopen')", name="action"),
    Index("ix_reconciliation_resolutions_result", "result_id"),
    Index("ix_reconciliation_resolutions_run", "run_id"),
)

bank_statements = Table(
    "bank_statements",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("format", String(16), nullable=False),
    Column("filename", String(255), nullable=True),
    Column("content_hash", String(64), nullable=False),
    Column("statement_ref", String(128), nullable=True),
    Column("account", String(64), nullable=True),
    Column("period_from", Date, nullable=True),
    Column("period_to", Date, nullable=True),
    Column("line_count", Integer, nullable=False, server_default="0"),
    Column("run_id", String(64), nullable=True),
    Column("uploaded_by", String(128), nullable=True),
    _created_at(),
    CheckConstraint("format in ('csv','camt053','mt940')", name="format"),
    UniqueConstraint("content_hash", name="uq_bank_statements_content_hash"),
)

bank_statement_lines = Table(
    "bank_statement_lines",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("statement_id", String(64), ForeignKey("bank_statements.id"), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("booking_date", Date, nullable=False),
    Column("value_date", Date, nullable=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("direction", String(6), nullable=False),
    Column("end_to_end_id", String(128), nullable=True),
    Column("bank_reference", String(128), nullable=True),
    Column("counterparty", String(200), nullable=True),
    Column("description", Text, nullable=True),
    Column("payout_id", String(64), nullable=True),  # set when matched
    Column("matched_by", String(16), nullable=True),  # reference | amount_date | reversed
    # booked as a reversal (camt.053 RvslInd, MT940 RD/RC): never matched as a payment (migration 0029)
    Column("reversal", Boolean, nullable=False, server_default=text("false")),
    CheckConstraint("direction in ('debit','credit')", name="direction"),
    UniqueConstraint("statement_id", "line_no", name="uq_bank_statement_lines_statement_line"),
    Index("ix_bank_statement_lines_payout_id", "payout_id"),
)

Index("ix_payouts_unreconciled", payouts.c.settled_at, postgresql_where=text("reconciled_at IS NULL"))

# --- dashboards: rollups kept by triggers, alert rules (migration 0007_dashboards) ---------
# Rollup keys use '' for a missing merchant / project / rail (a primary key cannot hold NULL).


def _transaction_rollup(name: str, bucket: Column) -> Table:
    return Table(
        name,
        metadata,
        bucket,
        Column("merchant_id", String(64), nullable=False, server_default=""),
        Column("project", String(64), nullable=False, server_default=""),
        Column("source", String(32), nullable=False),
        Column("currency", String(3), nullable=False),
        Column("status", String(16), nullable=False),
        Column("txn_count", BigInteger, nullable=False, server_default="0"),
        Column("amount_minor", BigInteger, nullable=False, server_default="0"),
        Column("fee_minor", BigInteger, nullable=False, server_default="0"),
        Column("fraud_count", BigInteger, nullable=False, server_default="0"),
        PrimaryKeyConstraint(bucket.name, "merchant_id", "project", "source", "currency", "status", name=f"pk_{name}"),
    )


transaction_rollups_hourly = _transaction_rollup(
    "transaction_rollups_hourly", Column("bucket", DateTime(timezone=True), nullable=False))  # UTC hour
transaction_rollups_daily = _transaction_rollup(
    "transaction_rollups_daily", Column("day", Date, nullable=False))  # UTC day
# migration 0010_exports: each hour's sums over its first 15, 30 and 45 minutes (UTC), to split
# it at the local hour or midnight of a zone whose offset is not a whole hour (Asia/Kolkata ...)
for _measure in ("txn_count", "amount_minor", "fee_minor", "fraud_count"):
    for _q in (15, 30, 45):
        transaction_rollups_hourly.append_column(
            Column(f"{_measure}_lt{_q}", BigInteger, nullable=False, server_default="0"))
Index("ix_transaction_rollups_hourly_merchant_bucket", transaction_rollups_hourly.c.merchant_id,
      transaction_rollups_hourly.c.bucket)
Index("ix_transaction_rollups_daily_merchant_day", transaction_rollups_daily.c.merchant_id,
      transaction_rollups_daily.c.day)

# Payouts by the UTC hour they were created in and their current status.
payout_rollups_hourly = Table(
    "payout_rollups_hourly",
    metadata,
    Column("bucket", DateTime(timezone=True), nullable=False),
    Column("merchant_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("rail", String(32), nullable=False, server_default=""),
    Column("status", String(24), nullable=False),
    Column("payout_count", BigInteger, nullable=False, server_default="0"),
    Column("amount_minor", BigInteger, nullable=False, server_default="0"),
    Column("fee_minor", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("bucket", "merchant_id", "currency", "rail", "status", name="pk_payout_rollups_hourly"),
    Index("ix_payout_rollups_hourly_merchant_bucket", "merchant_id", "bucket"),
)

payout_rollups_daily = Table(  # the same by UTC day, for the whole days of long windows
    "payout_rollups_daily",
    metadata,
    Column("day", Date, nullable=False),
    Column("merchant_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("rail", String(32), nullable=False, server_default=""),
    Column("status", String(24), nullable=False),
    Column("payout_count", BigInteger, nullable=False, server_default="0"),
    Column("amount_minor", BigInteger, nullable=False, server_default="0"),
    Column("fee_minor", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("day", "merchant_id", "currency", "rail", "status", name="pk_payout_rollups_daily"),
    Index("ix_payout_rollups_daily_merchant_day", "merchant_id", "day"),
)

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("metric", String(40), nullable=False),
    Column("operator", String(2), nullable=False),
    Column("threshold", Numeric(20, 6), nullable=False),
    Column("window_minutes", Integer, nullable=False, server_default="60"),
    Column("severity", String(16), nullable=False),
    Column("scope", String(16), nullable=False),  # platform | merchant | source
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("description", Text, nullable=True),
    _created_at(),
    _updated_at(),
    CheckConstraint("operator in ('<','<=','>','>=')", name="operator"),
    CheckConstraint("severity in ('low','medium','high','critical')", name="severity"),
    CheckConstraint("scope in ('platform','merchant','source')", name="scope"),
)

# --- rails and routing (migration 0005_rails) ----------------------------------------------

from sqlalchemy import Float  # noqa: E402

# SLA and fee rule per rail, editable through /api/v1/rails. A rail settles either
# `settlement_business_days` after its next cutoff (cutoff_time in `timezone`, business days of
# `calendar`), or `settlement_seconds` after submission (24/7 rails).
rail_rules = Table(
    "rail_rules",
    metadata,
    Column("rail", String(32), primary_key=True),
    Column("description", Text, nullable=True),
    Column("methods", JSONB, nullable=False),  # payout methods whose beneficiary this rail can pay
    Column("currencies", JSONB, nullable=False),
    Column("countries", JSONB, nullable=False, server_default=text("'[]'::jsonb")),  # [] = any
    Column("timezone", String(64), nullable=False),
    Column("cutoff_time", String(5), nullable=True),  # "HH:MM" local
    Column("settlement_business_days", Integer, nullable=True),
    Column("settlement_seconds", Integer, nullable=True),
    Column("batch", Boolean, nullable=False, server_default=text("false")),
    Column("calendar", String(16), nullable=False, server_default="NONE"),
    Column("fee_fixed_minor", BigInteger, nullable=False, server_default="0"),
    Column("fee_bps", Integer, nullable=False, server_default="0"),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("updated_by", String(128), nullable=True),
    _created_at(),
    _updated_at(),
    CheckConstraint(
        "(cutoff_time IS NOT NULL AND settlement_business_days IS NOT NULL) OR settlement_seconds IS NOT NULL",
        name="sla",
    ),
    CheckConstraint("fee_fixed_minor >= 0 AND fee_bps >= 0", name="fee"),
)

# Ops' changes to a holiday calendar on top of the built-in one (is_holiday false = a working day).
rail_calendar_days = Table(
    "rail_calendar_days",
    metadata,
    Column("calendar", String(16), nullable=False),
    Column("day", Date, nullable=False),
    Column("is_holiday", Boolean, nullable=False),
    Column("name", String(200), nullable=True),
    Column("created_by", String(128), nullable=True),
    _created_at(),
    PrimaryKeyConstraint("calendar", "day", name="pk_rail_calendar_days"),
)

# The circuit breaker per connector, fed by scheduled health checks and submission outcomes.
connector_health = Table(
    "connector_health",
    metadata,
    Column("connector", String(64), primary_key=True),
    Column("state", String(16), nullable=False, server_default="closed"),
    Column("consecutive_failures", Integer, nullable=False, server_default="0"),
    Column("last_checked_at", DateTime(timezone=True), nullable=True),
    Column("last_ok", Boolean, nullable=True),
    Column("last_latency_ms", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("window_started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("window_requests", Integer, nullable=False, server_default="0"),
    Column("window_errors", Integer, nullable=False, server_default="0"),
    Column("opened_at", DateTime(timezone=True), nullable=True),
    Column("open_reason", Text, nullable=True),
    _updated_at(),
    CheckConstraint("state in ('closed','open')", name="state"),
)

payout_batches = Table(
    "payout_batches",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("rail", String(32), nullable=False),
    Column("connector", String(64), nullable=False),
    Column("cutoff_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False, server_default="collecting"),
    Column("file_format", String(24), nullable=False),  # nacha | pain.001.001.09
    Column("file_name", String(128), nullable=True),
    Column("file_content", LargeBinary, nullable=True),
    Column("file_sha256", String(64), nullable=True),
    Column("currency", String(3), nullable=True),
    Column("entry_count", Integer, nullable=False, server_default="0"),
    Column("total_amount_minor", BigInteger, nullable=False, server_default="0"),
    Column("control", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("bank_file_id", String(128), nullable=True),
    Column("accepted_count", Integer, nullable=False, server_default="0"),
    Column("rejected_count", Integer, nullable=False, server_default="0"),
    Column("error", Text, nullable=True),
    _created_at(),
    Column("submitted_at", DateTime(timezone=True), nullable=True),
    _updated_at(),
    UniqueConstraint("rail", "cutoff_at", name="uq_payout_batches_rail_cutoff"),
    CheckConstraint("status in ('collecting','built','submitted','rejected','empty')", name="status"),
    Index("ix_payout_batches_cutoff_at", "cutoff_at"),
)

payout_batch_entries = Table(
    "payout_batch_entries",
    metadata,
    Column("payout_id", String(64), ForeignKey("payouts.id"), primary_key=True),
    Column("rail", String(32), nullable=False),
    Column("connector", String(64), nullable=False),
    Column("cutoff_at", DateTime(timezone=True), nullable=False),
    Column("batch_id", String(64), ForeignKey("payout_batches.id"), nullable=True),
    Column("sequence", Integer, nullable=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("outcome", String(16), nullable=True),  # accepted | rejected
    Column("bank_payment_id", String(128), nullable=True),
    Column("error", Text, nullable=True),
    _created_at(),
    Index("ix_payout_batch_entries_waiting", "rail", "cutoff_at", postgresql_where=text("batch_id IS NULL")),
    Index("ix_payout_batch_entries_batch_id", "batch_id", "sequence"),
)

# --- export jobs: very large exports written by an ExportWorkflow (migration 0010_exports) ----

export_jobs = Table(
    "export_jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("requested_by", String(128), nullable=False),
    Column("tenant_merchant_id", String(64), nullable=True),  # the requester's merchant; NULL = platform
    Column("merchant_id", String(64), nullable=True),  # the exported rows' scope
    Column("kind", String(16), nullable=False),  # transactions | payouts | discrepancies
    Column("format", String(8), nullable=False),  # csv | xlsx
    Column("filters", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("status", String(16), nullable=False, server_default="queued"),
    Column("rows_total", BigInteger, nullable=True),  # the planner's estimate, exact once succeeded
    Column("rows_written", BigInteger, nullable=False, server_default="0"),
    Column("bytes", BigInteger, nullable=True),
    Column("file_path", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("workflow_id", String(128), nullable=False),
    _created_at(),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("status in ('queued','running','succeeded','failed','expired')", name="status"),
    CheckConstraint("kind in ('transactions','payouts','discrepancies')", name="kind"),
    CheckConstraint("format in ('csv','xlsx')", name="format"),
    Index("ix_export_jobs_tenant_created", "tenant_merchant_id", "created_at"),
)

# --- bank notifications (migration 0012_bank_notifications) --------------------------------

bank_notifications = Table(
    "bank_notifications",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("connector", String(64), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("type", String(32), nullable=False),
    Column("reference", String(255), nullable=False),
    Column("bank_status", String(32), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("delivery_attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
    Column("outcome", String(32), nullable=True),
    Column("payout_status", String(32), nullable=True),
    Column("discrepancy", String(64), nullable=True),
    Column("alert_id", BigInteger, nullable=True),
    Column("repaired_at", DateTime(timezone=True), nullable=True),
    Column("repaired_by", String(128), nullable=True),
    Column("repair", JSONB, nullable=True),
    UniqueConstraint("event_id", name="uq_bank_notifications_event_id"),
    CheckConstraint(
        "outcome IS NULL OR outcome IN ('signalled', 'consistent', 'contradiction', 'unknown_payout')",
        name="outcome",
    ),
    Index("ix_bank_notifications_undelivered", "received_at", postgresql_where=text("delivered_at IS NULL")),
    Index("ix_bank_notifications_reference", "reference"),
    Index("ix_bank_notifications_open_discrepancies", "id",
          postgresql_where=text("discrepancy IS NOT NULL AND repaired_at IS NULL")),
)

# --- payops against the bank (migration 0014_bank_reconciliation) ------------------------------

bank_reconciliation_runs = Table(
    "bank_reconciliation_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("since", DateTime(timezone=True), nullable=False),
    Column("until", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("requested_by", String(128), nullable=True),
    Column("summary", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("errors", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    _created_at(),
    CheckConstraint("status in ('ok','discrepancies','incomplete')", name="status"),
    Index("ix_bank_reconciliation_runs_created_at", "created_at"),
)

# One disagreement between payops and the bank that survived a second look.
bank_discrepancies = Table(
    "bank_discrepancies",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("bank_reconciliation_runs.id"), nullable=False),
    Column("reference", String(128), nullable=False),
    Column("payout_id", String(64), nullable=True),
    Column("connector", String(64), nullable=True),
    Column("kind", String(40), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("payops_status", String(24), nullable=True),
    Column("bank_status", String(16), nullable=True),
    Column("payops_amount_minor", BigInteger, nullable=True),
    Column("bank_amount_minor", BigInteger, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("message", Text, nullable=False),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _created_at(),
    Index("ix_bank_discrepancies_run_id", "run_id"),
    Index("ix_bank_discrepancies_reference", "reference"),
)

# --- bulk payouts (POST /api/v1/bulk-payouts) ------------------------------------------------
# One row per batch; one row per item of its report. An accepted item carries everything its
# payout row needs (the payout id is chosen at intake), so a batch waiting for approval creates
# its payouts later with one INSERT ... SELECT. `started_at`: the item's PayoutWorkflow is known
# to exist (the intake workflow's activity sets it).
bulk_payouts = Table(
    "bulk_payouts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("merchant_id", String(64), ForeignKey("merchants.id"), nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("source", String(8), nullable=False),  # json | csv
    # awaiting_approval -> released | failed (approval found a reference taken, all_or_nothing)
    Column("status", String(24), nullable=False),
    Column("approval_required", Boolean, nullable=False),
    Column("item_count", Integer, nullable=False),
    Column("accepted_count", Integer, nullable=False),
    Column("rejected_count", Integer, nullable=False),
    Column("totals", JSONB, nullable=False),  # {"EUR": 123450, ...} of the accepted items
    Column("failure_reason", Text, nullable=True),
    Column("created_by", String(128), nullable=False),
    Column("released_at", DateTime(timezone=True), nullable=True),
    Column("intake_completed_at", DateTime(timezone=True), nullable=True),
    _created_at(),
    _updated_at(),
    UniqueConstraint("merchant_id", "idempotency_key", name="uq_bulk_payouts_merchant_idempotency_key"),
    CheckConstraint("mode in ('all_or_nothing','partial')", name="mode"),
    Index("ix_bulk_payouts_merchant_created", "merchant_id", "created_at", "id"),
    Index("ix_bulk_payouts_created", "created_at", "id"),
)

bulk_payout_items = Table(
    "bulk_payout_items",
    metadata,
    Column("bulk_payout_id", String(64), ForeignKey("bulk_payouts.id"), nullable=False),
    Column("line", Integer, nullable=False),  # 1-based position in the request (CSV: data row)
    Column("merchant_id", String(64), nullable=False),
    Column("reference", String(255), nullable=True),
    Column("status", String(16), nullable=False),  # accepted | rejected
    Column("error_code", String(40), nullable=True),
    Column("error_field", String(200), nullable=True),
    Column("error_reason", Text, nullable=True),
    Column("existing_payout_id", String(64), nullable=True),  # duplicate_reference: the payout it is
    Column("payout_id", String(64), nullable=True),
    Column("amount_minor", BigInteger, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("fee_minor", BigInteger, nullable=True),
    Column("method", String(32), nullable=True),
    Column("priority", String(16), nullable=True),
    Column("rail", String(32), nullable=True),
    Column("beneficiary_encrypted", LargeBinary, nullable=True),
    Column("beneficiary_masked", JSONB, nullable=True),
    Column("description", Text, nullable=True),
    Column("metadata", JSONB, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("bulk_payout_id", "line", name="pk_bulk_payout_items"),
    Index("ix_bulk_payout_items_payout_id", "payout_id"),
    Index("ix_bulk_payout_items_merchant_reference", "merchant_id", "reference"),
    Index("ix_bulk_payout_items_unstarted", "bulk_payout_id", "line",
          postgresql_where=text("status = 'accepted' AND started_at IS NULL")),
)

# --- SLA rules (migration 0017_sla_rules) -----------------------------------------------------
# Settlement targets keyed by rail, connector, beneficiary country and priority (None = any);
# core/sla/rules.py resolves the most specific. Seeded with one rule per rail equal to its terms.
sla_rules = Table(
    "sla_rules",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("rail", String(32), ForeignKey("rail_rules.rail"), nullable=True),
    Column("connector", String(64), nullable=True),
    Column("country", String(2), nullable=True),
    Column("priority", String(16), nullable=True),
    Column("target_seconds", Integer, nullable=True),
    Column("target_business_days", Integer, nullable=True),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("description", Text, nullable=True),
    Column("created_by", String(128), nullable=False),
    Column("updated_by", String(128), nullable=True),
    _created_at(),
    _updated_at(),
    CheckConstraint("(target_seconds IS NULL) <> (target_business_days IS NULL)", name="one_target"),
    CheckConstraint("target_seconds IS NULL OR target_seconds > 0", name="target_seconds"),
    CheckConstraint("target_business_days IS NULL OR target_business_days >= 0", name="target_business_days"),
)

# Every change to an SLA rule (created, updated, deleted): who, when, before and after.
sla_rule_changes = Table(
    "sla_rule_changes",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("rule_id", BigInteger, nullable=False),
    Column("change", String(16), nullable=False),  # created | updated | deleted
    Column("actor", String(128), nullable=False),
    Column("before", JSONB, nullable=True),
    Column("after", JSONB, nullable=True),
    _created_at(),
    Index("ix_sla_rule_changes_rule_id", "rule_id", "id"),
)

# --- recommendations (core/recommendations): explainable suggestions, each with an ops action ---

recommendations = Table(
    "recommendations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("merchant_id", String(64), nullable=True),  # NULL: a platform-wide one (a connector)
    Column("dedupe_key", String(255), nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("title", Text, nullable=False),
    Column("impact_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("impact_arithmetic", Text, nullable=False),
    Column("confidence", Numeric(4, 3), nullable=False),
    Column("confidence_explanation", Text, nullable=False),
    Column("evidence", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("action_type", String(32), nullable=True),  # NULL: informational, nothing to apply
    Column("action_params", JSONB, nullable=True),
    Column("action_id", String(64), nullable=True),
    Column("decided_by", String(128), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    _created_at(),
    _updated_at(),
    CheckConstraint("status in ('pending','applied','dismissed','expired')", name="status"),
    CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence"),
    Index("uq_recommendations_pending_dedupe_key", "dedupe_key", unique=True,
          postgresql_where=text("status = 'pending'")),
    Index("ix_recommendations_merchant_created", "merchant_id", "created_at", "id"),
    Index("ix_recommendations_created", "created_at", "id"),
)

# One row per authenticated API request (core/api_logs): no bodies, no headers but the two named.
api_request_log = Table(
    "api_request_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("merchant_id", String(64), nullable=True),
    Column("principal", String(128), nullable=False),
    Column("method", String(8), nullable=False),
    Column("route", String(255), nullable=False),  # the route template, never the raw path
    Column("status", SmallInteger, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("idempotency_key", String(255), nullable=True),
    Column("request_id", String(64), nullable=False),
    Column("client_ip", String(64), nullable=True),
    Index("ix_api_request_log_at", "at", "id"),
    Index("ix_api_request_log_merchant_at", "merchant_id", "at", "id"),
)

# One row per component per `/ready` probe (core/health; migration 0023_ready_history).
ready_probes = Table(
    "ready_probes",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("component", String(32), nullable=False),
    Column("up", Boolean, nullable=False),
    Column("latency_ms", Float, nullable=True),
    Index("ix_ready_probes_at", "at", "id"),
)

# --- the agent map (issue 20, item 3; migration 0027_w20agents_agent_map; core/agents) ---

class Cube(UserDefinedType):
    """PostgreSQL's `cube` (contrib), as earthdistance's ll_to_earth() returns it."""

    cache_ok = True

    def get_col_spec(self, **kw) -> str:
        return "cube"


# A mobile-money agent: a cash-in/cash-out point of an operator or of a merchant.
agents = Table(
    "agents",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("operator", String(64), nullable=True),  # e.g. orange, wave, mtn
    Column("merchant_id", String(64), ForeignKey("merchants.id"), nullable=True),
    Column("country", String(2), nullable=False),
    Column("city", String(100), nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),
    # the point on earthdistance's sphere (cube), computed once per write
    Column("earth_pos", Cube(), Computed("(ll_to_earth(lat, lon))::cube", persisted=True), nullable=True),
    _created_at(),
    _updated_at(),
    CheckConstraint("lat BETWEEN -90 AND 90", name="lat"),
    CheckConstraint("lon BETWEEN -180 AND 180", name="lon"),
    CheckConstraint("status in ('active','suspended','closed')", name="status"),
    CheckConstraint("operator IS NOT NULL OR merchant_id IS NOT NULL", name="owner"),
    Index("ix_agents_merchant_id", "merchant_id"),
    # the nearby search: earth_box(...) @> earth_pos, ordered by earth_pos <-> point (cube + earthdistance)
    Index("ix_agents_earth", "earth_pos", postgresql_using="gist"),
    # the map's clusters: a bounding box
    Index("ix_agents_lat_lon", "lat", "lon"),
)

# An agent's float (cash and e-money it can pay out) per currency, with its low-float threshold.
agent_floats = Table(
    "agent_floats",
    metadata,
    Column("agent_id", String(64), ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("low_threshold_minor", BigInteger, nullable=True),
    _updated_at(),
    PrimaryKeyConstraint("agent_id", "currency", name="pk_agent_floats"),
    CheckConstraint("amount_minor >= 0", name="amount"),
    CheckConstraint("low_threshold_minor IS NULL OR low_threshold_minor >= 0", name="threshold"),
)

# --- payout schedules (issue 22): batches of payouts on a calendar or cron, on Temporal Schedules ---

payout_schedules = Table(
    "payout_schedules",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("merchant_id", String(64), ForeignKey("merchants.id"), nullable=False),  # whose funds pay
    Column("owner", String(16), nullable=False),  # merchant (its merchant_admin) | platform (ops)
    Column("name", String(200), nullable=False),
    Column("spec", JSONB, nullable=False),  # as given: {"kind": "daily"|"weekly"|"cron", ...}
    Column("cron", String(200), nullable=False),  # the spec normalised: what the Temporal Schedule runs
    Column("time_zone", String(64), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("items", JSONB, nullable=False),  # the payout template for display: beneficiaries masked
    Column("items_encrypted", LargeBinary, nullable=False),  # {"items": [...]}: the template in full (FieldCipher)
    Column("enabled", Boolean, nullable=False),
    Column("created_by", String(128), nullable=False),
    _created_at(),
    _updated_at(),
    CheckConstraint("owner in ('merchant','platform')", name="owner"),
    CheckConstraint("mode in ('all_or_nothing','partial')", name="mode"),
    Index("ix_payout_schedules_merchant_created", "merchant_id", "created_at", "id"),
)

payout_schedule_runs = Table(
    "payout_schedule_runs",
    metadata,
    Column("schedule_id", String(64), ForeignKey("payout_schedules.id", ondelete="CASCADE"), primary_key=True),
    Column("fire_time", DateTime(timezone=True), primary_key=True),
    Column("bulk_payout_id", String(64), nullable=True),
    Column("outcome", String(16), nullable=False),  # created | refused | skipped
    Column("detail", Text, nullable=True),
    _created_at(),
)

# --- dashboard widgets (issue 20, item 2; migration 0024_w20widgets_widgets) -----------------------
# A tenant's layout exists once it was first read (seeded with the defaults then); its widgets are
# ordered by position; every change is in the append-only dashboard_widget_changes.

dashboard_layouts = Table(
    "dashboard_layouts",
    metadata,
    Column("tenant_kind", String(16), nullable=False),  # platform | merchant | agent
    Column("tenant_id", String(64), nullable=False),  # "platform" for the platform's
    Column("created_by", String(128), nullable=False),
    _created_at(),
    PrimaryKeyConstraint("tenant_kind", "tenant_id"),
    CheckConstraint("tenant_kind in ('platform','merchant','agent')", name="tenant_kind"),
)

dashboard_widgets = Table(
    "dashboard_widgets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_kind", String(16), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("title", String(200), nullable=False),
    Column("config", JSONB, nullable=False),
    Column("position", Integer, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("updated_by", String(128), nullable=False),
    _created_at(),
    _updated_at(),
    CheckConstraint("kind in ('kpi','trend','breakdown','gauge','table','alerts','map')", name="kind"),
    ForeignKeyConstraint(["tenant_kind", "tenant_id"], ["dashboard_layouts.tenant_kind", "dashboard_layouts.tenant_id"],
                         ondelete="CASCADE"),
    Index("ix_dashboard_widgets_tenant_position", "tenant_kind", "tenant_id", "position", "id"),
)

dashboard_widget_changes = Table(
    "dashboard_widget_changes",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("tenant_kind", String(16), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("widget_id", String(64), nullable=True),  # NULL: the whole layout (seeded, reordered)
    Column("change", String(16), nullable=False),  # seeded | created | updated | deleted | reordered
    Column("actor", String(128), nullable=False),
    Column("before", JSONB, nullable=True),
    Column("after", JSONB, nullable=True),
    _created_at(),
    CheckConstraint("change in ('seeded','created','updated','deleted','reordered')", name="change"),
    Index("ix_dashboard_widget_changes_tenant", "tenant_kind", "tenant_id", "id"),
)

# --- merchant portal (issue 21; migration 0026_w21portal_portal) ----------------------------

# Which merchant a provider account (a sync source's project) belongs to: the sync sets
# transactions.merchant_id from it.
provider_accounts = Table(
    "provider_accounts",
    metadata,
    Column("source", String(32), primary_key=True),
    Column("project", String(64), primary_key=True),
    Column("merchant_id", String(64), ForeignKey("merchants.id"), nullable=False),
    Column("created_by", String(128), nullable=False),
    _created_at(),
)

# The audit of every ops "view as" session: who looked at which merchant's portal, why, until when.
view_as_sessions = Table(
    "view_as_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("merchant_id", String(64), ForeignKey("merchants.id"), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("actor_roles", JSONB, nullable=False),
    Column("reason", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    _created_at(),
    Column("ended_at", DateTime(timezone=True), nullable=True),  # ended early: its token is refused from then
    Column("ended_by", String(128), nullable=True),
    Index("ix_view_as_sessions_merchant_created", "merchant_id", "created_at", "id"),
)
