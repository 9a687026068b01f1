"""Vima sync end to end against the sandbox Vima: backfill, change feed, faults, a worker restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date, timedelta

import asyncpg
import pytest

from connectors.vima import VimaAuthError, VimaClient, VimaError
from core.sync.models import SyncWorkflowInput
from sandbox.vima import VimaConfig, running_vima
from workers.main import WorkerDeps, build_worker
from workflows.sync import SyncWorkflow


@pytest.fixture
async def vima():
    async with running_vima(VimaConfig(seed=3)) as running:
        yield running


@pytest.fixture
def sync_settings(settings, vima):
    return settings.model_copy(update={
        "vima_base_url": vima.url, "vima_page_size": 1000, "vima_retry_after_cap_seconds": 0.2,
        "sync_pages_per_activity": 5,
    })


@pytest.fixture
async def sync_deps(sync_settings):
    deps = WorkerDeps.from_settings(sync_settings)
    yield deps
    await deps.aclose()


@pytest.fixture
async def db(database_url):
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    yield conn
    await conn.close()


async def run_sync(client, settings, params: SyncWorkflowInput, *, timeout: float = 120):
    handle = await client.start_workflow(
        SyncWorkflow.run, params, id=f"sync-{params.source}-test-{uuid.uuid4().hex[:8]}",
        task_queue=settings.temporal_task_queue,
    )
    return handle, await asyncio.wait_for(handle.result(), timeout)


def backfill_range() -> tuple[str, str]:
    today = date.today()
    return (today - timedelta(days=30)).isoformat(), (today + timedelta(days=1)).isoformat()


async def counts(db, source: str = "vima") -> tuple[int, int]:
    rows = await db.fetchval("SELECT count(*) FROM transactions WHERE source = $1", source)
    keys = await db.fetchval("SELECT count(*) FROM transaction_keys WHERE source = $1", source)
    return rows, keys


async def test_backfill_lands_exactly_every_operation(temporal_client, sync_settings, sync_deps, vima, db):
    n = 20_000
    vima.state.generate(n, days=20)
    date_from, date_to = backfill_range()
    async with build_worker(temporal_client, sync_deps, task_queue=sync_settings.temporal_task_queue):
        handle, result = await run_sync(temporal_client, sync_settings, SyncWorkflowInput(
            source="vima", mode="backfill", date_from=date_from, date_to=date_to, activities_per_run=2))
        progress = await handle.query(SyncWorkflow.progress)

    assert result.status == "success", result.error
    assert result.totals.inserted == n and result.totals.rows_fetched == n
    assert progress.generation >= 1  # 20 pages, 5 per activity, 2 activities per run: continued as new
    assert progress.expected_total == n
    assert await counts(db) == (n, n)
    run = await db.fetchrow("SELECT * FROM sync_runs WHERE id = $1", result.run_id)
    assert run["status"] == "success" and run["rows_inserted"] == n and run["mode"] == "backfill"
    # amounts are integers in minor units; times are UTC; the raw payload is kept
    sample = await db.fetchrow("SELECT * FROM transactions WHERE source_id = $1", "50000001")
    op = vima.state.ops[0]
    assert sample["currency"] == op["complete_currency"]
    assert sample["raw"] and sample["occurred_at"].utcoffset() == timedelta(0)


async def test_change_feed_updates_in_place_and_moves_partitions(temporal_client, sync_settings, sync_deps, vima, db):
    vima.state.generate(500, days=3)
    async with build_worker(temporal_client, sync_deps, task_queue=sync_settings.temporal_task_queue):
        _, first = await run_sync(temporal_client, sync_settings, SyncWorkflowInput(source="vima"))
        assert first.totals.inserted == 500
        before = {r["source_id"]: r for r in await db.fetch("SELECT id, source_id, status, occurred_at FROM transactions")}

        changed = vima.state.update(40)
        moved = vima.state.update(10, shift_created_hours=-24 * 40)  # into another month's partition
        vima.state.generate(100, days=1)
        _, second = await run_sync(temporal_client, sync_settings, SyncWorkflowInput(source="vima"))

    assert second.status == "success"
    # the change feed resumes from the stored cursor: only what changed is read again
    assert second.totals.rows_fetched == 150
    assert (second.totals.inserted, second.totals.updated) == (100, 50)
    assert await counts(db) == (600, 600)
    after = {r["source_id"]: r for r in await db.fetch("SELECT id, source_id, status, occurred_at, original_status FROM transactions")}
    for op_id in changed:
        row = after[str(op_id)]
        assert row["id"] == before[str(op_id)]["id"]
        assert row["original_status"] == vima.state.ops[op_id - 50_000_001]["current_status"]
    for op_id in moved:
        row = after[str(op_id)]
        assert row["id"] == before[str(op_id)]["id"]  # same transaction, new partition
        assert before[str(op_id)]["occurred_at"] - row["occurred_at"] == timedelta(days=40)
    state = await db.fetchrow("SELECT * FROM sync_state WHERE source = 'vima'")
    assert state["status"] == "idle" and state["last_success_at"] is not None
    assert state["records_synced"] == 650


async def test_rate_limits_and_server_errors_slow_the_sync_but_lose_nothing(
    temporal_client, sync_settings, sync_deps, vima, db
):
    n = 5_000
    vima.state.generate(n, days=5)
    vima.state.config.rate_limit_per_second, vima.state.config.rate_limit_burst = 30, 3
    # a 429 storm, then more 5xx in a row than one activity attempt retries: the activity fails
    # once and its retry resumes from the heartbeat cursor
    vima.state.faults.extend([("429", 1)] * 10 + [("5xx", 0)] * 6)
    vima.state.config.error_rate = 0.03
    settings = sync_settings.model_copy(update={"vima_page_size": 250, "vima_max_retries": 4})
    deps = WorkerDeps.from_settings(settings)
    try:
        async with build_worker(temporal_client, deps, task_queue=settings.temporal_task_queue):
            _, result = await run_sync(temporal_client, settings, SyncWorkflowInput(source="vima"), timeout=180)
    finally:
        await deps.aclose()
    assert result.status == "success", result.error
    assert await counts(db) == (n, n)
    stats = vima.state.stats
    assert stats["throttled"] >= 10 and stats["errors"] >= 6


async def test_restarted_worker_resumes_from_the_heartbeat_cursor(temporal_client, sync_settings, vima, db):
    n, page = 10_000, 200
    vima.state.generate(n, days=5)
    vima.state.config.rate_limit_per_second, vima.state.config.rate_limit_burst = 40, 1  # a slow provider
    settings = sync_settings.model_copy(update={"vima_page_size": page, "sync_pages_per_activity": 1000,
                                                "vima_retry_after_cap_seconds": 60})
    queue = settings.temporal_task_queue
    first = WorkerDeps.from_settings(settings)
    async with build_worker(temporal_client, first, task_queue=queue):
        handle = await temporal_client.start_workflow(
            SyncWorkflow.run, SyncWorkflowInput(source="vima", mode="backfill", date_from=backfill_range()[0],
                                                date_to=backfill_range()[1]),
            id=f"sync-vima-test-{uuid.uuid4().hex[:8]}", task_queue=queue,
        )
        deadline = time.monotonic() + 60
        while (await db.fetchval("SELECT count(*) FROM transactions")) < 2_000:
            assert time.monotonic() < deadline, "the sync did not start"
            await asyncio.sleep(0.1)
        # the provider stops answering (429, Retry-After 60 s) so the worker is surely stopped mid-run
        vima.state.config.rate_limit_per_second, vima.state.config.retry_after_seconds = 1e-9, 60
        vima.state.tokens = 0.0
    await first.aclose()  # the worker is gone mid-run
    landed_before_restart = await db.fetchval("SELECT count(*) FROM transactions")
    assert landed_before_restart < n

    vima.state.config.rate_limit_per_second, vima.state.config.retry_after_seconds = 0, 1
    second = WorkerDeps.from_settings(settings)
    try:
        async with build_worker(temporal_client, second, task_queue=queue):
            result = await asyncio.wait_for(handle.result(), 120)
    finally:
        await second.aclose()

    assert result.status == "success", result.error
    assert await counts(db) == (n, n)
    assert await db.fetchval("SELECT count(DISTINCT source_id) FROM transactions") == n
    run = await db.fetchrow("SELECT * FROM sync_runs WHERE id = $1", result.run_id)
    # resumed where it stopped: at most the page in flight was read twice, nothing from the start
    assert n <= run["rows_fetched"] <= n + page
    assert run["rows_inserted"] == n
    history = await handle.fetch_history()
    attempts = [e.activity_task_started_event_attributes.attempt for e in history.events
                if e.HasField("activity_task_started_event_attributes")]
    assert max(attempts) >= 2  # the fetch activity really was retried


async def test_invalid_operations_are_quarantined_not_fatal(temporal_client, sync_settings, sync_deps, vima, db):
    vima.state.config.invalid_every = 50
    vima.state.generate(1_000, days=2)
    async with build_worker(temporal_client, sync_deps, task_queue=sync_settings.temporal_task_queue):
        _, result = await run_sync(temporal_client, sync_settings, SyncWorkflowInput(source="vima"))
        _, again = await run_sync(temporal_client, sync_settings, SyncWorkflowInput(source="vima"))
    assert result.status == "success" and again.status == "success"
    assert result.totals.quarantined == 20 and result.totals.inserted == 980
    assert await counts(db) == (980, 980)
    state = await db.fetchrow("SELECT records_quarantined, records_synced FROM sync_state WHERE source = 'vima'")
    assert state["records_quarantined"] == 20 and state["records_synced"] == 980
    reasons = [r["reason"] for r in await db.fetch("SELECT reason FROM sync_quarantine")]
    assert len(reasons) == 20
    assert all(any(word in r for word in ("currency", "positive", "timestamp")) for r in reasons)


async def test_client_honours_retry_after_and_stops_on_a_refused_key(vima):
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    vima.state.generate(10, days=1)
    vima.state.faults.extend([("429", 2), ("429", 3), ("5xx", 0)])
    async with VimaClient(base_url=vima.url, api_key="vima-dev-api-key", sleep=record) as client:
        page = await client.fetch_page("update", 0, limit=100)
    assert len(page.operations) == 10 and page.cursor == 10 and not page.has_more
    assert waits[:2] == [2.0, 3.0] and len(waits) == 3

    vima.state.faults.extend([("5xx", 0)] * 5)
    async with VimaClient(base_url=vima.url, api_key="vima-dev-api-key", sleep=record, max_retries=2) as client:
        with pytest.raises(VimaError, match="unavailable after 3 attempts"):
            await client.fetch_page("update", 0)
    async with VimaClient(base_url=vima.url, api_key="wrong", sleep=record) as client:
        with pytest.raises(VimaAuthError):
            await client.fetch_page("update", 0)


async def test_a_restarted_activity_starts_from_its_heartbeat_details(sync_settings, sessionmaker, vima, db):
    """The activity alone (ActivityEnvironment): attempt 2 with heartbeat details resumes there."""
    import dataclasses

    from temporalio.testing import ActivityEnvironment

    from activities.sync import SyncActivities
    from core.sync.models import FetchPagesInput, StartRunInput

    vima.state.generate(1_000, days=1)
    activities = SyncActivities(sessionmaker, None, sync_settings.model_copy(update={"vima_page_size": 100}))
    env = ActivityEnvironment()
    heartbeats: list = []
    env.on_heartbeat = lambda *details: heartbeats.append(details[0])
    await env.run(activities.start_sync_run, StartRunInput(run_id="r1", source="vima", mode="incremental"))
    env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=[{"update": 600}])
    result = await env.run(activities.fetch_sync_pages, FetchPagesInput(
        run_id="r1", source="vima", mode="incremental", cursor={"update": 0}, max_pages=100))
    assert result.caught_up and result.cursor == {"update": 1000}
    assert result.totals.rows_fetched == 400 and result.totals.inserted == 400
    assert heartbeats[0] == {"update": 600} and heartbeats[-1] == {"update": 1000}
    assert await db.fetchval("SELECT min(source_id::bigint) FROM transactions") == 50_000_601


async def test_a_finished_sync_moves_the_sync_metrics(temporal_client, sync_settings, sync_deps, vima, db):
    """The Grafana syncs dashboard's series (deploy/grafana/dashboards/syncs.json)."""
    from prometheus_client import REGISTRY

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    vima.state.generate(50, days=5)
    runs_before = value("sync_runs_total", source="vima", status="success")
    inserted_before = value("sync_rows_total", source="vima", outcome="inserted")
    started = time.time()
    date_from, date_to = backfill_range()
    async with build_worker(temporal_client, sync_deps, task_queue=sync_settings.temporal_task_queue):
        _, result = await run_sync(temporal_client, sync_settings, SyncWorkflowInput(
            source="vima", mode="backfill", date_from=date_from, date_to=date_to))
    assert result.status == "success", result.error
    assert value("sync_runs_total", source="vima", status="success") == runs_before + 1
    assert value("sync_rows_total", source="vima", outcome="inserted") == inserted_before + 50
    assert value("sync_last_success_timestamp_seconds", source="vima") >= started
