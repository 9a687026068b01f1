"""Reconciliation benchmark: one reporting day of N × N transactions reconciled and persisted.

    .venv/bin/python bench/reconciliation.py [--n 1000000] [--server-url postgresql://postgres@127.0.0.1:5432/postgres]

Without --server-url it starts an embedded PostgreSQL (tuned for the bench: shared_buffers 2GB,
no fsync). Data is made inside PostgreSQL with generate_series (bench/reconciliation_data.py).
Starts a Temporal dev server and runs a worker in this process, then prints one table:

- bare FULL OUTER JOIN count over the same rows (the floor any reconciliation pays);
- ReconciliationWorkflow end to end (prepare, parallel shards, finalize; the run's summary and a row
  per discrepancy persisted, matched keys counted);
- the ratio of the two, peak RSS of this process (the worker), and the counts checked against the
  generator's known truth.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
from rich.console import Console
from rich.table import Table

from bench.reconciliation_data import expected_counts, load_day
from core.platform.db import run_migrations
from devstack.embedded import EmbeddedPostgres, temporal_cli_path
from core.platform.names import search_attribute_keys
from core.reconciliation.models import ReconciliationWorkflowInput
from core.platform.settings import Settings
from core.platform.temporal import data_converter

DAY = date(2026, 11, 20)
TZ = "Asia/Kolkata"

BARE_JOIN = """
SELECT count(*) FROM
    (SELECT client_operation_id AS k FROM transactions WHERE source = 'vima' AND occurred_at >= $1 AND occurred_at < $2) l
    FULL OUTER JOIN
    (SELECT client_operation_id AS k FROM transactions WHERE source = 'payshack' AND occurred_at >= $1 AND occurred_at < $2) r
    ON l.k = r.k
"""


async def phase_seconds(handle) -> list[tuple[str, float]]:
    """Each activity's time from scheduled to completed, from the workflow's history (the shards
    together: first scheduled to last completed)."""
    from temporalio.api.enums.v1 import EventType

    scheduled: dict[int, tuple[str, float]] = {}
    phases: dict[str, list[float]] = {}
    async for event in handle.fetch_history_events():
        at = event.event_time.ToDatetime().timestamp()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = (event.activity_task_scheduled_event_attributes.activity_type.name, at)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            name, t0 = scheduled[event.activity_task_completed_event_attributes.scheduled_event_id]
            span = phases.setdefault(name, [t0, at])
            span[0], span[1] = min(span[0], t0), max(span[1], at)
    return [(name, t1 - t0) for name, (t0, t1) in phases.items()]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def create_db(server_url: str) -> str:
    name = f"bench_recon_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(server_url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = server_url.rsplit("/", 1)[0] + "/" + name
    await asyncio.to_thread(run_migrations, url)
    return url


async def drop_db(server_url: str, url: str) -> None:
    conn = await asyncpg.connect(server_url)
    await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    await conn.close()


async def main(n: int, server_url: str | None, shards: int | None, keep: bool) -> None:
    from temporalio.testing import WorkflowEnvironment

    from workers.main import WorkerDeps, build_worker
    from workflows.reconciliation import ReconciliationWorkflow

    console = Console()
    tmp = Path(tempfile.mkdtemp(prefix="payops-bench-recon-"))
    tmp.chmod(0o755)
    pg = None
    if server_url is None:
        pg = EmbeddedPostgres(tmp / "pg", fast=True)
        pg.start()
        conn = await asyncpg.connect(pg.url)
        for setting, value in (("shared_buffers", "2GB"), ("max_wal_size", "8GB"), ("wal_level", "minimal"),
                               ("max_wal_senders", "0")):
            await conn.execute(f"ALTER SYSTEM SET {setting} = '{value}'")
        await conn.close()
        pg.stop()
        pg.start()
        server_url = pg.url
        where = "embedded PostgreSQL (fsync off, shared_buffers 2GB)"
    else:
        where = f"this machine's PostgreSQL ({server_url.split('@')[-1]})"
    url = await create_db(server_url)
    rows: list[tuple[str, str, str]] = []
    try:
        conn = await asyncpg.connect(url)
        version = await conn.fetchval("SHOW server_version")
        start = datetime.combine(DAY, dtime(0), tzinfo=ZoneInfo(TZ))
        end = datetime.combine(DAY.replace(day=DAY.day + 1), dtime(0), tzinfo=ZoneInfo(TZ))
        console.print(f"loading {n:,} × {n:,} transactions into {where}, PostgreSQL {version}…")
        t0 = time.perf_counter()
        await load_day(conn, start, n)
        await conn.execute("VACUUM (ANALYZE) transactions")
        load_s = time.perf_counter() - t0
        loaded = await conn.fetchval("SELECT count(*) FROM transactions")
        await conn.fetchval(BARE_JOIN, start, end)  # warm the cache the same way for both
        t0 = time.perf_counter()
        joined = await conn.fetchval(BARE_JOIN, start, end)
        bare_s = time.perf_counter() - t0

        base = Settings(_env_file=None, data_dir=tmp / "data")
        settings = base.model_copy(update={
            "database_url": url, "redis_url": None, "temporal_task_queue": f"bench-{uuid.uuid4().hex[:6]}",
            "reconciliation_timezone": TZ,
        })
        env = await WorkflowEnvironment.start_local(
            data_converter=data_converter(base), search_attributes=list(search_attribute_keys().values()),
            dev_server_existing_path=str(temporal_cli_path()),
        )
        try:
            deps = WorkerDeps.from_settings(settings)
            try:
                async with build_worker(env.client, deps, task_queue=settings.temporal_task_queue):
                    rss_before = peak_rss_mb()
                    t0 = time.perf_counter()
                    handle = await env.client.start_workflow(
                        ReconciliationWorkflow.run,
                        ReconciliationWorkflowInput(date_from=DAY.isoformat(), shards=shards, requested_by="bench"),
                        id=f"bench-reconciliation-{uuid.uuid4().hex[:6]}", task_queue=settings.temporal_task_queue,
                    )
                    result = await handle.result()
                    run_s = time.perf_counter() - t0
                    phases = await phase_seconds(handle)
            finally:
                await deps.aclose()
        finally:
            await env.shutdown()
        assert result.status == "success", result.error
        persisted = await conn.fetchval("SELECT count(*) FROM reconciliation_results WHERE run_id = $1", result.run_id)
        counts = {k: v for k, v in result.summary["counts"].items() if k != "probable_match"}
        truth = expected_counts(n)
        correct = counts == truth
        await conn.close()

        rows += [
            ("server", where, f"PostgreSQL {version}"),
            ("load (generate_series, 2 sides)", f"{load_s:.1f} s", f"{loaded:,} rows"),
            ("bare FULL OUTER JOIN count", f"{bare_s:.2f} s", f"{joined:,} joined rows"),
            ("ReconciliationWorkflow (reconciled + persisted)", f"{run_s:.2f} s",
             f"{persisted:,} discrepancy rows, {result.summary['counts']['matched']:,} matched keys counted, "
             f"{result.summary['shards']} shards"),
            *((f"  {name}", f"{seconds:.2f} s", "scheduled → completed") for name, seconds in phases),
            ("ratio to the bare join", f"{run_s / bare_s:.2f}×", "target ≤ 3×"),
            ("wall time target", "≤ 60 s", "met" if run_s <= 60 else "MISSED"),
            ("peak worker RSS (this process)", f"{peak_rss_mb():.0f} MB", f"{rss_before:.0f} MB before the run"),
            ("match rate", f"{result.summary['match_rate']:.4f}", ""),
            ("counts = known truth", "yes" if correct else "NO", str(counts)),
        ]
    finally:
        if not keep:
            await drop_db(server_url, url)
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    table = Table(title=f"Reconciliation, one day of {n:,} × {n:,} transactions")
    for column in ("measure", "value", "note"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--server-url", default=None, help="an existing PostgreSQL (default: an embedded one)")
    parser.add_argument("--shards", type=int, default=None, help="default: from the day's size")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.server_url, args.shards, args.keep))
