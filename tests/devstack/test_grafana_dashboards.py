"""Issue 22 item 4: every query of every Grafana dashboard (deploy/grafana/dashboards/*.json) names
a metric payops exports, and the plan's metrics move in real flows (real Temporal, PostgreSQL,
sandbox bank over HTTP)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import promql_parser
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from core.platform import metrics
from core.platform.names import payout_workflow_id
from core.platform.tables import payouts
from tests.factories import create_merchant, create_payout_row
from tests.payouts.test_payout_workflow import set_fault
from workflows.payout import PayoutWorkflow

DASHBOARDS = Path(__file__).resolve().parent.parent.parent / "deploy" / "grafana" / "dashboards"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


# --------------------------------------------------------------------------------------
# the dashboards' PromQL against the registry


def exported_series_names() -> dict[str, str]:
    """Every series name the process's registry exports (after importing core.platform.metrics),
    with its family: a counter `x` is scraped as x_total, a histogram as x_bucket/_sum/_count.
    Families are read from describe-able collectors, so labelled metrics with no child yet count."""
    names = {}
    for family in REGISTRY.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):  # a gauge is scraped under its own name
            names[family.name + suffix] = family.name
    return names


def metric_selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names used in its matchers) of each selector in a PromQL expression."""
    found: list[tuple[str, set[str]]] = []

    def walk(node):
        if isinstance(node, promql_parser.VectorSelector):
            labels = {m.name for m in node.matchers.matchers} if node.matchers else set()
            found.append((node.name, labels))
        elif isinstance(node, promql_parser.MatrixSelector):
            walk(node.vector_selector)
        elif isinstance(node, promql_parser.Call):
            for arg in node.args:
                walk(arg)
        elif isinstance(node, promql_parser.BinaryExpr):
            walk(node.lhs)
            walk(node.rhs)
        elif isinstance(node, (promql_parser.AggregateExpr, promql_parser.ParenExpr, promql_parser.UnaryExpr,
                               promql_parser.SubqueryExpr)):
            walk(node.expr)

    walk(promql_parser.parse(expr))
    return found


def label_names_of(family: str) -> set[str]:
    for value in vars(metrics).values():
        if getattr(value, "_name", None) == family:
            return set(value._labelnames)
    return set()


def dashboard_queries() -> list[tuple[str, str, str]]:
    queries = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                queries.append((path.name, panel["title"], target["expr"]))
    return queries


def unknown_metrics(expr: str, exported: dict[str, str]) -> list[str]:
    problems = []
    for name, labels in metric_selectors(expr):
        if name not in exported:
            problems.append(f"{name} is not exported")
            continue
        known = label_names_of(exported[name]) | ({"le"} if name.endswith("_bucket") else set())
        if labels - known:
            problems.append(f"{name} has no label {sorted(labels - known)}")
    return problems


def test_every_dashboard_query_names_a_metric_payops_exports():
    queries = dashboard_queries()
    assert {name for name, _, _ in queries} >= {f"{d}.json" for d in (
        "payouts", "connectors", "sla", "workers", "reconciliation", "syncs")}
    exported = exported_series_names()
    problems = [f"{name} / {title}: {p}" for name, title, expr in queries for p in unknown_metrics(expr, exported)]
    assert not problems, "\n".join(problems)
    used = {m for _, _, expr in queries for m, _ in metric_selectors(expr)}
    plan = {"payout_settlement_duration_hours_bucket", "worker_queue_size", "worker_processing_count",
            "worker_errors_total", "connector_errors_total", "payouts_past_target_date"}
    assert plan <= used, f"the plan's metrics missing from the dashboards: {plan - used}"


def test_the_check_catches_an_unknown_metric_or_label():
    exported = exported_series_names()
    assert unknown_metrics("sum(rate(payouts_settled_total[5m]))", exported) == ["payouts_settled_total is not exported"]
    assert unknown_metrics('rate(connector_errors_total{reason="x"}[5m])', exported) == [
        "connector_errors_total has no label ['reason']"]
    # a histogram's series and a gauge pass; a histogram's bare name does not exist as a series
    assert unknown_metrics('payout_settlement_duration_hours_bucket{le="24.0", rail="sepa"}', exported) == []
    assert unknown_metrics("payout_settlement_duration_hours", exported) == [
        "payout_settlement_duration_hours is not exported"]


# --------------------------------------------------------------------------------------
# the plan's metrics move in real flows


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def summed(name: str, **labels) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    total = 0.0
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def test_a_settled_payout_after_a_bank_error_moves_the_settlement_connector_and_worker_metrics(
        temporal_client, worker, settings, sessionmaker, bank):
    merchant = await create_merchant(sessionmaker, funded_minor=1_000_000)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    connector, rail = "bank_sepa_instant", "sepa_instant"  # an instant EUR payout (test_payout_workflow)
    before = {
        "settled": value("payout_settlement_duration_hours_count", rail=rail),
        "accepted": value("connector_rail_requests_total", connector=connector, rail=rail, outcome="accepted"),
        "connector_errors": summed("connector_errors_total", connector=connector, rail=rail),
        "worker_errors": summed("worker_errors_total", activity="submit_payout_to_connector"),
    }
    await set_fault(bank, "5xx", 1)  # the first submission fails (transient), the retry is accepted

    busy = []

    async def sample_in_progress():
        while True:
            busy.append(summed("worker_processing_count"))
            await asyncio.sleep(0.002)

    sampler = asyncio.create_task(sample_in_progress())
    try:
        handle = await temporal_client.start_workflow(
            PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id), task_queue=settings.temporal_task_queue)
        result = await handle.result()
    finally:
        sampler.cancel()
    assert result.status == "settled"
    async with sessionmaker() as session:
        stored = (await session.execute(payouts.select().where(payouts.c.id == params.payout_id))).mappings().one()
    assert (stored["rail"], stored["connector"]) == (rail, connector)

    assert value("payout_settlement_duration_hours_count", rail=rail) == before["settled"] + 1
    hours = (stored["settled_at"] - stored["submitted_at"]).total_seconds() / 3600
    assert value("payout_settlement_duration_hours_bucket", rail=rail, le="0.1") >= 1 and hours < 0.1
    assert value("connector_rail_requests_total", connector=connector, rail=rail, outcome="accepted") == \
        before["accepted"] + 1
    assert summed("connector_errors_total", connector=connector, rail=rail) == before["connector_errors"] + 1
    assert summed("connector_errors_total", connector=connector, rail=rail, error_type="other") == 0
    assert summed("worker_errors_total", activity="submit_payout_to_connector") == before["worker_errors"] + 1
    assert max(busy) >= 1, "no activity was ever seen in progress"
    assert value("worker_processing_count", activity="submit_payout_to_connector") == 0
    assert value("worker_processing_count", activity="settle_payout") == 0


async def test_worker_queue_size_is_the_task_queue_backlog(temporal_client):
    from workers.metrics import refresh_queue_size

    queue = f"backlog-{uuid.uuid4().hex[:8]}"  # nobody polls it: every started workflow waits
    handles = [await temporal_client.start_workflow("NoSuchWorkflow", id=f"{queue}-{i}", task_queue=queue)
               for i in range(3)]
    try:
        deadline = time.monotonic() + 30
        while True:
            sizes = await refresh_queue_size(temporal_client, queue)
            if sizes["workflow"] == 3 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert sizes == {"workflow": 3, "activity": 0}
        assert value("worker_queue_size", task_queue=queue, task_type="workflow") == 3
    finally:
        for handle in handles:
            await handle.terminate("test over")


def scraped(text: str, name: str, **labels) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


async def test_payouts_past_target_date_is_counted_from_sql_at_each_scrape(client, sessionmaker, settings):
    merchant = await create_merchant(sessionmaker, funded_minor=1_000_000)
    late = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    on_time = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    now = datetime.now(timezone.utc)
    async with sessionmaker() as session, session.begin():
        await session.execute(update(payouts).where(payouts.c.id == late.payout_id).values(
            status="submitted", rail="wire", settlement_target_at=now - timedelta(hours=2)))
        await session.execute(update(payouts).where(payouts.c.id == on_time.payout_id).values(
            status="submitted", rail="wire", settlement_target_at=now + timedelta(hours=2)))

    r = await client.get("/metrics")
    assert r.status_code == 200
    assert scraped(r.text, "payouts_past_target_date", rail="wire") == 1

    async with sessionmaker() as session, session.begin():  # it settles: no longer past its target
        await session.execute(update(payouts).where(payouts.c.id == late.payout_id).values(status="settled"))
    r = await client.get("/metrics")
    assert scraped(r.text, "payouts_past_target_date", rail="wire") == 0, "a rail with none left reads 0"


@pytest.mark.parametrize("error, expected", [
    ("service_unavailable", "service_unavailable"), ("HTTP_503", "http_503"),
    ("the bank said: no!", "other"), ("x" * 80, "other"), (None, "other"),
])
def test_connector_error_types_stay_a_bounded_set(error, expected):
    assert metrics.error_type_label(error) == expected


async def test_the_worker_keeps_the_backlog_gauge_fresh_in_the_background(temporal_client):
    """What `payops worker` runs beside its Worker when it has a metrics port (workers/main.py)."""
    from workers.metrics import keep_queue_size_fresh

    queue = f"fresh-{uuid.uuid4().hex[:8]}"
    refresher = asyncio.create_task(keep_queue_size_fresh(temporal_client, queue, every_seconds=0.2))
    handle = None
    try:
        deadline = time.monotonic() + 30
        while REGISTRY.get_sample_value("worker_queue_size", {"task_queue": queue, "task_type": "workflow"}) is None:
            assert time.monotonic() < deadline, "the refresher never set the gauge"
            await asyncio.sleep(0.1)
        assert value("worker_queue_size", task_queue=queue, task_type="workflow") == 0
        handle = await temporal_client.start_workflow("NoSuchWorkflow", id=f"{queue}-1", task_queue=queue)
        while value("worker_queue_size", task_queue=queue, task_type="workflow") != 1:
            assert time.monotonic() < deadline, "the backlog of one workflow task never showed"
            await asyncio.sleep(0.1)
    finally:
        refresher.cancel()
        if handle is not None:
            await handle.terminate("test over")
