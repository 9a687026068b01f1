"""payops settings: one pydantic-settings class, every field read from a PAYOPS_* variable.

`.env.example` documents every field; tests/platform/test_settings_docs.py keeps the two in step.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Dev-only defaults. Production settings (PAYOPS_ENV=prod) refuse them.
DEV_JWT_SECRET = "payops-dev-secret-change-me-0123456789abcdef"
DEV_CODEC_KEY = "dev:" + base64.urlsafe_b64encode(b"payops-dev-codec-key-32-bytes!!!").decode()
DEV_BANK_WEBHOOK_SECRET = "payops-dev-bank-webhook-secret"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYOPS_", env_file=".env", extra="ignore")

    env: Literal["dev", "prod"] = "dev"
    log_level: str = "INFO"
    data_dir: Path = Path(".payops")

    # --- services -----------------------------------------------------------------
    database_url: str | None = None
    redis_url: str | None = None
    pg_port: int = 0  # embedded PostgreSQL port; 0 = pick a free one
    redis_port: int = 0  # embedded Redis port; 0 = pick a free one

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "payops"
    temporal_tls: bool = False
    temporal_api_key: str | None = None
    temporal_ui_port: int = 8233
    temporal_ui_url: str = "http://127.0.0.1:8233"
    # When set, `payops up` uses this Temporal instead of starting a dev server.
    temporal_external: bool = False

    worker_metrics_port: int = 0  # Prometheus endpoint of a worker process; 0 = off
    worker_metrics_host: str = "127.0.0.1"
    # Workflows a worker keeps in memory between tasks. Payouts wait (cutoffs, batches, settlement):
    # past this many open ones each task of an evicted payout replays its history from scratch.
    worker_max_cached_workflows: int = Field(default=1000, ge=0)
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # uvicorn worker processes behind the API port under `payops up` (each with its own engine,
    # Temporal client and Redis subscription); 0 = one per CPU.
    api_workers: int = Field(default=2, ge=0)
    public_base_url: str = "http://127.0.0.1:8000"

    sandbox_bank_url: str | None = None  # the sandbox bank; `payops up` starts one when unset
    sandbox_bank_port: int = 0
    sandbox_bank_settle_delay_seconds: float = 2.0

    # --- auth ---------------------------------------------------------------------
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_secret: str = DEV_JWT_SECRET
    jwt_public_key: str | None = None  # PEM, for RS256
    jwt_jwks_url: str | None = None  # for RS256 with a key set
    jwt_issuer: str = "payops"
    jwt_audience: str = "payops-api"
    jwt_default_ttl_seconds: int = 3600

    # --- security of payloads and webhooks ----------------------------------------
    # Comma-separated "key_id:urlsafe-base64(32 bytes)"; the first key encrypts, all decrypt.
    codec_keys: str = DEV_CODEC_KEY
    # Origins besides PAYOPS_TEMPORAL_UI_URL's that may call the codec server (/codec) from a browser
    # (JSON list, e.g. ["https://temporal-ui.example.com"]).
    codec_cors_origins: list[str] = []
    bank_webhook_secret: str = DEV_BANK_WEBHOOK_SECRET
    bank_webhook_tolerance_seconds: int = 300
    # Per-connector bank webhook secrets, JSON {"connector": ["newest", "older", ...]}: every listed
    # secret is accepted (rotation), the first is the one the sandbox bank signs with. A connector
    # not listed accepts PAYOPS_BANK_WEBHOOK_SECRET if it is `sandbox`, else a secret derived from it
    # and its own name, so no two connectors share a secret unless configured to.
    bank_webhook_secrets: dict[str, list[str]] | None = None
    # Keys that sign ops grants (verified identity for approvals / payout retry and cancel sent
    # through Temporal), JSON {"key id": "secret"}: all verify (rotation), the first signs. Unset =
    # derived from PAYOPS_JWT_SECRET (refused in prod with RS256, whose secret is then unused).
    ops_grant_keys: dict[str, str] | None = None
    ops_grant_ttl_seconds: int = Field(default=300, ge=10, le=3600)  # lifetime of an ops grant
    bank_notification_redeliver_every_seconds: float = 30.0  # the sweeper Schedule of undelivered bank notifications
    bank_notification_redeliver_after_seconds: float = 10.0  # a notification this old and undelivered is redelivered

    # --- payouts ------------------------------------------------------------------
    idempotency_ttl_hours: int = 24
    payout_retry_initial_seconds: float = 2.0
    payout_retry_backoff: float = 2.0
    payout_retry_max_interval_seconds: float = 300.0
    payout_retry_max_attempts: int = 5
    payout_dlq_expiry_hours: float = 72.0
    payout_return_window_hours: float = 72.0
    payout_settlement_poll_seconds: float = 60.0
    # Return watch: seconds between the bank status polls after settlement, the last repeated until
    # the return window closes (a return whose webhook was missed is caught); [] = webhooks only.
    payout_return_poll_intervals: list[float] = [3600.0, 21600.0, 86400.0]
    # Unanswered bank status inquiries in one workflow run before a payout whose outcome is unknown
    # continues as new (its history stays bounded however long the bank takes to answer); the same
    # number of polls of the bank while it waits for settlement or watches for a return.
    payout_inquiry_continue_as_new_after: int = Field(default=200, ge=1)
    payout_hold_expiry_hours: float = 168.0
    payout_sweep_every_seconds: float = 60.0
    payout_sweep_after_seconds: float = 30.0
    # bulk payouts (POST /api/v1/bulk-payouts): a batch whose accepted items add up to more than
    # this, in minor units of any one currency, waits for an APPROVE_BULK_PAYOUT ops action
    # before any of its payouts exists; 0 = never.
    bulk_payout_approval_threshold_minor: int = Field(default=10_000_000, ge=0)
    bulk_payout_max_items: int = Field(default=10_000, ge=1)
    # payout workflows the intake workflow starts per activity (and its concurrency)
    bulk_payout_intake_chunk_size: int = Field(default=500, ge=1)
    bulk_payout_intake_concurrency: int = Field(default=32, ge=1)
    workflow_reaper_every_seconds: float = 60.0
    workflow_reaper_min_age_seconds: float = 60.0

    # --- provider syncs (Vima REST API, PayShack portal) -----------------------------
    vima_base_url: str | None = None  # e.g. http://127.0.0.1:8091; the sandbox when unset under `payops up`
    vima_api_key: str = "vima-dev-api-key"
    vima_page_size: int = 1000
    vima_timeout_seconds: float = 15.0
    vima_max_retries: int = 8  # per request, for 429 / 5xx / transport errors
    vima_retry_after_cap_seconds: float = 30.0
    vima_sync_interval_seconds: int = 60
    payshack_base_url: str | None = None
    payshack_email: str = "ops@payops.test"
    payshack_password: str = "payshack-dev-password"
    payshack_page_size: int = 200
    payshack_lookback_hours: int = 48  # the portal has no cursor: each run re-reads this window
    payshack_session_ttl_seconds: int = 1500  # how long a stored portal session is reused
    payshack_project: str = "91game"
    payshack_timezone: str = "Asia/Kolkata"  # the portal shows local times without an offset
    payshack_sync_interval_seconds: int = 300
    chromium_path: str = "/usr/bin/chromium"
    sync_pages_per_activity: int = 50  # pages one activity fetches before handing back
    sync_activities_per_run: int = 20  # activity calls before the workflow continues as new

    # --- merchant webhooks ----------------------------------------------------------
    # Private-network targets (10/8, 172.16/12, 192.168/16, link-local, ...) are refused
    # unless this is set; loopback is allowed in dev only. Cloud metadata IPs are always refused.
    webhook_allow_private_targets: bool = False
    webhook_timeout_seconds: float = 10.0
    webhook_retry_initial_seconds: float = 30.0
    webhook_retry_backoff: float = 2.0
    webhook_retry_max_interval_seconds: float = 3600.0
    webhook_retry_budget_hours: float = 72.0
    # An endpoint whose deliveries have all failed for this long is disabled and an alert raised.
    webhook_disable_after_hours: float = 48.0
    webhook_secret_overlap_hours: float = 24.0  # default overlap of the old secret on rotation
    webhook_dispatch_poll_seconds: float = 5.0  # fallback poll when no NOTIFY arrives

    # --- dashboards, exports, alerts, live updates -----------------------------------
    dashboard_cache_ttl_seconds: float = 10.0  # Redis snapshots of dashboard answers; 0 disables
    dashboard_timezone: str = "UTC"  # default reporting time zone of trends and heatmaps
    export_batch_rows: int = 5000  # rows fetched per round trip while streaming an export
    export_dir: Path | None = None  # files of export jobs; default <data_dir>/exports
    export_retention_hours: float = 24.0  # an export job's file is removed this long after it is written
    # A streamed export whose estimated row count is above this answers 422 export_too_large
    # pointing at POST /export/jobs; 0 = never
    export_stream_max_rows: int = 2_000_000
    alert_check_every_seconds: float = 60.0
    # An alert nobody acknowledged expires this long after it last fired (AlertExpiryWorkflow); 0 = never.
    # A later firing of the same condition opens a new alert.
    alert_ttl_hours: float = 72.0
    # per-severity lifetimes overriding alert_ttl_hours (JSON), e.g. {"critical": 0, "low": 24}; 0 = never
    alert_ttl_hours_by_severity: dict[str, float] = {}
    alert_expiry_every_seconds: float = 300.0  # how often the alert-expiry Schedule runs
    # Recommendations (core/recommendations): how often they are recomputed, how long one stays
    # pending, the float runway that triggers a top-up suggestion, the failing-connector thresholds
    recommendation_every_seconds: float = 3600.0
    recommendation_ttl_hours: float = 72.0
    recommendation_runway_days: int = 7
    recommendation_window_days: int = 30  # the observed window: fees, volume, velocity
    recommendation_failure_window_hours: float = 24.0
    recommendation_failure_rate: float = 0.2  # a connector failing this share of payouts (or more)
    recommendation_failure_min_payouts: int = 10  # ... over at least this many payouts
    live_auth_timeout_seconds: float = 5.0  # a WebSocket must authenticate within this
    # --- merchant portal ----------------------------------------------------------
    view_as_ttl_seconds: int = Field(default=900, ge=60, le=8 * 3600)  # an ops "view as" session's token lifetime
    # `payops up` in dev runs the demo (devstack/demo.py): demo merchants paying out at a trickle
    demo_enabled: bool = True
    demo_payout_interval_seconds: float = 4.0

    # --- API request log (core/api_logs) ------------------------------------------------
    api_log_enabled: bool = True  # store each authenticated request (never bodies or secret headers)
    api_log_retention_days: float = Field(default=30.0, gt=0)  # older rows are pruned by a Schedule
    api_log_prune_every_seconds: float = Field(default=3600.0, gt=0)  # the retention Schedule's interval
    # Rows buffered in memory before a flush; past this many unflushed rows a request's row is
    # dropped (counted in api_log_dropped_total) rather than slow the request down.
    api_log_queue_size: int = Field(default=10_000, ge=1)
    api_log_batch_size: int = Field(default=500, ge=1)  # rows per INSERT of a flush
    # The `/ready` history behind the merchant health view's uptime (core/health); kept like the API log.
    ready_probe_every_seconds: float = Field(default=60.0, gt=0)  # the ReadyProbe Schedule's interval
    api_log_flush_interval_seconds: float = Field(default=1.0, gt=0)  # the longest a row waits in memory
    # GraphQL (/api/v1/graphql): introspection is on unless PAYOPS_ENV=prod
    graphql_max_depth: int = Field(default=8, ge=1)
    graphql_max_aliases: int = Field(default=15, ge=1)  # aliased fields per query: a simple complexity bound
    graphql_max_tokens: int = Field(default=2000, ge=1)  # tokens in a query document: bounds its size and cost
    graphql_max_page_size: int = Field(default=200, ge=1)
    # Merchants' payout bank accounts (core/merchants/bank_accounts.py): a registered account, the
    # first one too, is usable only this many hours after it passed its checks (the cool-off), or
    # as soon as an APPROVE_BANK_ACCOUNT ops action approves it.
    bank_account_cool_off_hours: float = Field(default=24.0, ge=0)
    # cool_off_or_approval: whichever comes first; approval_only: no cool-off, an ops approval is required.
    bank_account_activation: Literal["cool_off_or_approval", "approval_only"] = "cool_off_or_approval"

    # --- reconciliation ------------------------------------------------------------------
    reconciliation_timezone: str = "Asia/Kolkata"  # a run's dates are days in this zone
    reconciliation_daily_hour: int = 2  # the daily run of yesterday starts at this local hour
    reconciliation_rows_per_shard: int = 1_500_000  # rows (both sides) per shard; every shard scans the whole window
    reconciliation_max_shards: int = 16
    reconciliation_boundary_grace_seconds: int = 3600  # counterparts looked for this far past the window
    reconciliation_match_rate_threshold: float = 0.98  # below it a run raises an alert
    reconciliation_work_mem: str = "256MB"  # work_mem of a shard's transaction (hash aggregate in memory)
    reconciliation_statement_date_window_days: int = 3  # payout date ↔ bank booking date, amount-and-date match
    # statement account (IBAN or id, as the statement names it) -> connectors whose payouts it pays out:
    # the payouts reported missing from a statement are those of its account's connectors
    reconciliation_statement_account_connectors: dict[str, list[str]] = {}
    # accounts whose CSV statements write amounts with a decimal comma (else the upload says so)
    reconciliation_statement_decimal_comma_accounts: list[str] = []
    # payops against the bank (BankReconciliationWorkflow on a Schedule; `payops ledger check --against-bank`)
    bank_reconciliation_every_seconds: float = 3600.0
    bank_reconciliation_days: float = 3.0  # payouts and bank payments of this many last days
    bank_reconciliation_confirm_seconds: float = 15.0  # a disagreement counts if it lasts this long

    # --- rails, routing, batches, connector health ----------------------------------
    connector_health_every_seconds: float = 30.0  # the connector-health Schedule's interval
    connector_health_failures_to_open: int = 2  # failed health checks in a row that open the breaker
    connector_error_window_seconds: float = 300.0  # window of the recent submission error rate
    connector_error_min_requests: int = 10  # submissions in the window before the rate can open it
    connector_error_rate_to_open: float = 0.5  # transient-error share that opens the breaker
    # Retryable error codes that move a payout to the next routing candidate (never "timeout":
    # the bank may have accepted it); at most this many attempts on one connector first.
    payout_failover_codes: str = "service_unavailable,bank_unavailable,connection_error,rail_unavailable"
    payout_failover_attempts_per_connector: int = 2
    batch_signal_concurrency: int = 200  # signals in flight when a batch tells its payouts the outcome
    rail_schedules_enabled: bool = True  # one BatchWorkflow Schedule per batch rail at its cutoff
    # `payops up`'s supervisor (devstack/supervisor.py): a dead child is restarted after a backoff that
    # starts here and doubles per death up to the cap; more deaths than allowed within the window
    # is a crash loop, and the stack stops.
    supervisor_restart_backoff_seconds: float = Field(default=1.0, gt=0)
    supervisor_restart_backoff_max_seconds: float = Field(default=30.0, gt=0)
    supervisor_crash_loop_restarts: int = Field(default=5, ge=0)
    supervisor_crash_loop_window_seconds: float = Field(default=120.0, gt=0)

    @property
    def export_path(self) -> Path:
        return (self.export_dir or self.data_dir / "exports").expanduser().resolve()

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("alert_ttl_hours_by_severity")
    @classmethod
    def _alert_severities(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - {"low", "medium", "high", "critical"})
        if unknown:
            raise ValueError(f"unknown alert severities {unknown}: use low, medium, high, critical")
        if any(hours < 0 for hours in v.values()):
            raise ValueError("an alert lifetime is hours >= 0 (0 = never expires)")
        return v

    def alert_ttl_hours_for(self, severity: str) -> float:
        """The lifetime of an unacknowledged alert of this severity, in hours; 0 = never expires."""
        return self.alert_ttl_hours_by_severity.get(severity, self.alert_ttl_hours)

    @model_validator(mode="after")
    def _no_dev_secrets_in_prod(self) -> "Settings":
        if self.env == "prod":
            bad = []
            if self.jwt_algorithm == "HS256" and self.jwt_secret == DEV_JWT_SECRET:
                bad.append("PAYOPS_JWT_SECRET")
            if self.codec_keys == DEV_CODEC_KEY:
                bad.append("PAYOPS_CODEC_KEYS")
            if not self.ops_grant_keys and self.jwt_secret == DEV_JWT_SECRET:
                bad.append("PAYOPS_OPS_GRANT_KEYS")
            if self.bank_webhook_secret == DEV_BANK_WEBHOOK_SECRET:
                bad.append("PAYOPS_BANK_WEBHOOK_SECRET")
            if bad:
                raise ValueError(f"production settings still use dev secrets: {', '.join(bad)}")
        return self

    def bank_webhook_secrets_for(self, connector: str) -> list[str]:
        """The webhook secrets `connector` accepts, newest first (see bank_webhook_secrets)."""
        configured = [s for s in (self.bank_webhook_secrets or {}).get(connector, []) if s]
        if configured:
            return configured
        if connector == "sandbox":
            return [self.bank_webhook_secret]
        return [hmac.new(self.bank_webhook_secret.encode(), f"connector:{connector}".encode(), hashlib.sha256).hexdigest()]

    @property
    def async_database_url(self) -> str:
        """The DSN in SQLAlchemy's asyncpg form."""
        if not self.database_url:
            raise RuntimeError("PAYOPS_DATABASE_URL is not set (run `payops up` or set it)")
        return to_asyncpg_url(self.database_url)


def to_asyncpg_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")


@lru_cache
def get_settings() -> Settings:
    return Settings()


def settings_field_env_names() -> list[str]:
    return [f"PAYOPS_{name.upper()}" for name in Settings.model_fields]
