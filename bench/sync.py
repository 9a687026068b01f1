"""Sync ingest benchmark: how fast provider data lands in the unified transactions table.

    .venv/bin/python bench/sync.py [--vima 100000] [--payshack 5000]

Starts its own embedded PostgreSQL, Redis and Temporal dev server, the sandbox Vima and PayShack,
and a worker; prints one table:

- Vima normalize + upsert: the ingest stage alone (100,000 operations in 1,000-row batches).
- Vima backfill end to end: SyncWorkflow over HTTP (fetch, normalize, upsert, cursor, heartbeat).
- Vima re-read, nothing changed: the dedupe path (hash compare, no writes).
- PayShack through Chromium: SyncWorkflow driving the portal (login, XHR intercept, decrypt).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
from rich.console import Console
from rich.table import Table

from core.sync import store as sync_store
from core.platform.db import run_migrations
from devstack.embedded import EmbeddedPostgres, EmbeddedRedis, temporal_cli_path
from core.platform.names import search_attribute_keys
from core.transactions.normalize import NormalizedTransaction, normalize_vima
from core.platform.settings import Settings
from core.sync.models import SyncWorkflowInput
from core.platform.temporal import data_converter
from sandbox.payshack import PayShackConfig, running_payshack
from sandbox.vima import VimaConfig, VimaState, running_vima


async def create_db(server_url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(server_url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = server_url.rsplit("/", 1)[0] + "/" + name
    await asyncio.to_thread(run_migrations, url)
    return url


async def bench_ingest_stage(server_url: str, n: int) -> tuple[float, int]:
    """Normalize + upsert only, straight into PostgreSQL."""
    ops = VimaState(VimaConfig(seed=99))
    ops.generate(n, days=25)
    url = await create_db(server_url)
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        for i in range(0, n, 1000):
            rows = [normalize_vima(op) for op in ops.ops[i:i + 1000]]
            async with conn.transaction():
                await sync_store.upsert_transactions(conn, "vima", [r for r in rows if isinstance(r, NormalizedTransaction)])
        elapsed = time.perf_counter() - started
        landed = await conn.fetchval("SELECT count(*) FROM transactions")
    finally:
        await conn.close()
    return elapsed, landed


async def run_workflow(client, settings: Settings, params: SyncWorkflowInput):
    from workflows.sync import SyncWorkflow

    handle = await client.start_workflow(SyncWorkflow.run, params, id=f"bench-sync-{uuid.uuid4().hex[:8]}",
                                         task_queue=settings.temporal_task_queue)
    started = time.perf_counter()
    result = await handle.result()
    return time.perf_counter() - started, result


async def main(n_vima: int, n_payshack: int) -> None:
    from temporalio.testing import WorkflowEnvironment

    from workers.main import WorkerDeps, build_worker

    console = Console()
    tmp = Path(tempfile.mkdtemp(prefix="payops-bench-"))
    tmp.chmod(0o755)
    pg = EmbeddedPostgres(tmp / "pg", fast=True)
    redis = EmbeddedRedis(tmp / "redis", persist=False)
    pg.start()
    redis.start()
    rows: list[tuple[str, int, float, str]] = []
    try:
        console.print(f"ingest stage: {n_vima:,} Vima operations…")
        elapsed, landed = await bench_ingest_stage(pg.url, n_vima)
        rows.append(("Vima normalize + upsert (ingest stage)", landed, elapsed, ""))

        base = Settings(_env_file=None, data_dir=tmp / "data")
        env = await WorkflowEnvironment.start_local(
            data_converter=data_converter(base), search_attributes=list(search_attribute_keys().values()),
            dev_server_existing_path=str(temporal_cli_path()),
        )
        try:
            async with running_vima(VimaConfig(seed=7)) as vima, \
                    running_payshack(PayShackConfig(seed=5, initial_rows=n_payshack, days=1)) as portal:
                vima.state.generate(n_vima, days=25)
                settings = base.model_copy(update={
                    "database_url": await create_db(pg.url), "redis_url": redis.url,
                    "temporal_task_queue": f"bench-{uuid.uuid4().hex[:6]}", "vima_base_url": vima.url,
                    "payshack_base_url": portal.url, "payshack_page_size": 500,
                })
                deps = WorkerDeps.from_settings(settings)
                today = date.today()
                window = dict(date_from=(today - timedelta(days=30)).isoformat(), date_to=today.isoformat())
                try:
                    async with build_worker(env.client, deps, task_queue=settings.temporal_task_queue):
                        console.print("Vima backfill through the SyncWorkflow…")
                        elapsed, result = await run_workflow(env.client, settings, SyncWorkflowInput(
                            source="vima", mode="backfill", **window))
                        assert result.status == "success", result.error
                        rows.append(("Vima backfill end to end (HTTP + workflow)", result.totals.inserted, elapsed,
                                     f"{result.totals.pages} pages"))
                        elapsed, result = await run_workflow(env.client, settings, SyncWorkflowInput(
                            source="vima", mode="backfill", **window))
                        rows.append(("Vima re-read, nothing changed (dedupe)", result.totals.unchanged, elapsed, ""))
                        if os.access(settings.chromium_path, os.X_OK):
                            console.print("PayShack through Chromium…")
                            elapsed, result = await run_workflow(env.client, settings, SyncWorkflowInput(source="payshack"))
                            assert result.status == "success", result.error
                            rows.append(("PayShack through Chromium (login, XHR, decrypt)", result.totals.inserted,
                                         elapsed, f"{result.totals.pages} pages of 500"))
                        else:
                            rows.append(("PayShack through Chromium", 0, 0.0, f"skipped: no {settings.chromium_path}"))
                finally:
                    await deps.aclose()
        finally:
            await env.shutdown()
    finally:
        redis.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    table = Table(title="payops sync ingest")
    for col, justify in (("measure", "left"), ("rows", "right"), ("seconds", "right"), ("rows/s", "right"),
                         ("note", "left")):
        table.add_column(col, justify=justify)
    for name, n, secs, note in rows:
        table.add_row(name, f"{n:,}", f"{secs:.2f}", f"{n / secs:,.0f}" if secs else "-", note)
    console.print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vima", type=int, default=100_000)
    parser.add_argument("--payshack", type=int, default=5_000)
    args = parser.parse_args()
    asyncio.run(main(args.vima, args.payshack))
