"""Prometheus metrics (one registry per process: the API serves it at /metrics, the worker on
PAYOPS_WORKER_METRICS_PORT)."""

from __future__ import annotations

import re

from prometheus_client import Counter, Gauge, Histogram

payouts_created_total = Counter("payouts_created_total", "Payouts accepted by the API")
payouts_processed_total = Counter(
    "payouts_processed_total", "Payouts that reached a terminal or parked status", ["status"]
)
payout_processing_duration_seconds = Histogram(
    "payout_processing_duration_seconds",
    "From creation to a terminal status",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 86400, 259200),
)
payout_settlement_duration_seconds = Histogram(
    "payout_settlement_duration_seconds",
    "From submission to the bank's settlement",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 86400, 259200),
)
connector_requests_total = Counter(
    "connector_requests_total", "Requests to bank connectors", ["connector", "outcome"]
)
connector_latency_seconds = Histogram(
    "connector_latency_seconds", "Bank connector request latency", ["connector"]
)
http_requests_total = Counter("http_requests_total", "API requests", ["method", "route", "status"])
api_log_dropped_total = Counter(
    "api_log_dropped_total", "API request log rows dropped because the in-memory buffer was full or a flush failed"
)
api_log_written_total = Counter("api_log_written_total", "API request log rows written")
sla_violations_total = Counter(
    "sla_violations_total", "Payouts past their settlement target (one per payout)", ["rail"]
)

# --- the plan's metrics (seed 003 "Monitoring"), beside the ones above -------------------------
# Every metric above keeps its name and labels: dashboards, alerts and tests select on them. The
# `rail` label on connector traffic therefore comes as new metrics (adding a label to an existing
# one would change every series' identity and break exact-label selections such as
# REGISTRY.get_sample_value("connector_requests_total", {"connector", "outcome"})).
HOURS_BUCKETS = (1 / 60, 0.1, 0.25, 0.5, 1, 2, 4, 8, 12, 24, 48, 72, 120, 168)

payout_settlement_duration_hours = Histogram(
    "payout_settlement_duration_hours",
    "From submission to the bank's settlement, in hours (observed when the payout settles)",
    ["rail"],
    buckets=HOURS_BUCKETS,
)
connector_rail_requests_total = Counter(
    "connector_rail_requests_total",
    "Requests to bank connectors by connector, rail and outcome (connector_requests_total with a rail)",
    ["connector", "rail", "outcome"],
)
connector_rail_latency_seconds = Histogram(
    "connector_rail_latency_seconds",
    "Bank connector submission latency by connector and rail",
    ["connector", "rail"],
)
connector_errors_total = Counter(
    "connector_errors_total",
    "Bank connector calls that failed, by the connector's stable error code (error_type)",
    ["connector", "rail", "error_type"],
)
worker_queue_size = Gauge(
    "worker_queue_size",
    "Tasks waiting in a Temporal task queue (approximate backlog from DescribeTaskQueue)",
    ["task_queue", "task_type"],
)
worker_processing_count = Gauge(
    "worker_processing_count",
    "Activities this worker process is executing now",
    ["activity"],
)
worker_errors_total = Counter(
    "worker_errors_total",
    "Activity executions that raised (each failed attempt; Temporal may retry it)",
    ["activity", "error_type"],
)
payouts_past_target_date = Gauge(
    "payouts_past_target_date",
    "Open payouts past their settlement target (from SQL at scrape time)",
    ["rail"],
)

_ERROR_TYPE = re.compile(r"[a-z0-9_]{1,48}")


def error_type_label(code: str | None) -> str:
    """A connector's error code as a label value: stable codes as they are, anything else
    (free text a bank made up, too long) as `other`, so the series count stays bounded."""
    code = (code or "").strip().lower()
    return code if _ERROR_TYPE.fullmatch(code) else "other"


def observe_connector_call(connector: str, rail: str | None, outcome: str, *, error_code: str | None = None,
                           seconds: float | None = None) -> None:
    """One connector call on the rail-labelled series (the legacy ones are updated by the caller)."""
    rail = rail or "unknown"
    connector_rail_requests_total.labels(connector, rail, outcome).inc()
    if seconds is not None:
        connector_rail_latency_seconds.labels(connector, rail).observe(seconds)
    if error_code is not None:
        connector_errors_total.labels(connector, rail, error_type_label(error_code)).inc()


# --- reconciliation and provider syncs (the dashboards' last two rows) ---------------------------
reconciliation_runs_total = Counter(
    "reconciliation_runs_total", "Reconciliation runs that finished, by kind and status (success | error)",
    ["kind", "status"],
)
reconciliation_match_rate = Gauge(
    "reconciliation_match_rate", "Match rate (0..1) of the last finished run of each source pair",
    ["left_source", "right_source"],
)
reconciliation_keys_total = Counter(
    "reconciliation_keys_total", "Keys compared by finished reconciliation runs, by category (matched, missing_left ...)",
    ["kind", "category"],
)
sync_runs_total = Counter("sync_runs_total", "Provider sync runs that finished, by source and status", ["source", "status"])
sync_rows_total = Counter(
    "sync_rows_total", "Rows of finished provider sync runs, by source and outcome (inserted, updated, unchanged, "
    "quarantined)", ["source", "outcome"],
)
sync_invalid_country_total = Counter(
    "sync_invalid_country_total", "Synced records whose payer country was not an ISO 3166-1 alpha-2 code (stored "
    "without a country)", ["source"],
)
sync_last_success_timestamp_seconds = Gauge(
    "sync_last_success_timestamp_seconds", "Unix time of the last successful sync run of each source", ["source"],
)
