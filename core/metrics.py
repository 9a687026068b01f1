"""Prometheus metrics (one registry per process: the API serves it at /metrics, the worker on
PAYOPS_WORKER_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
sla_violations_total = Counter(
    "sla_violations_total", "Payouts past their settlement target (one per payout)", ["rail"]
)
