"""Payout create latency with and without the API request log. Prints a table.

    .venv/bin/python bench/api_log.py                    # embedded PostgreSQL, Redis, Temporal
    .venv/bin/python bench/api_log.py --n 400 --rounds 4 --concurrency 1

Two apps over the same services, one with PAYOPS_API_LOG_ENABLED=true and one with false, are
driven in turn (off-on, then on-off, ... `--rounds` times each, so drift in the machine's load
falls on both) through httpx over ASGI: the whole create path (auth, validation, idempotency row,
payout row, PayoutWorkflow start on a real Temporal dev server) with the
log's middleware, its in-memory buffer and its background flushes in the same event loop.
No worker polls the queue: a started PayoutWorkflow simply waits, as in the API tests.

Target: the log adds under 5 % to create p50 and p99. On a busy machine the two variants' latencies
differ by more than the log costs, either way; the last row measures the middleware alone (a
trivial app, no database): the log's own cost per request, and its share of the create p50.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.app import create_app  # noqa: E402
from api.request_log import PRINCIPAL_STATE_KEY, ApiRequestLog  # noqa: E402
from core.api_logs.recorder import ApiLogRecorder  # noqa: E402
from core.platform.auth_tokens import Principal  # noqa: E402
from core.platform.auth_tokens import mint_dev_token  # noqa: E402
from core.platform.db import run_migrations  # noqa: E402
from core.platform.names import search_attribute_keys  # noqa: E402
from core.platform.settings import Settings  # noqa: E402
from core.platform.tables import api_request_log  # noqa: E402
from core.platform.temporal import data_converter  # noqa: E402
from devstack.embedded import EmbeddedPostgres, EmbeddedRedis, temporal_cli_path  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def middleware_cost_us(n: int = 20_000) -> tuple[float, float]:
    """µs per request of a trivial ASGI app, bare and behind the log's middleware (its row goes
    to a recorder that is never flushed): the log's own cost, free of the database's noise."""
    principal = Principal(sub="bench", roles=frozenset(), merchant_id="mer_bench")
    route = type("Route", (), {"path": "/payouts/{payout_id}"})
    app = type("App", (), {})()
    app.state = type("State", (), {})()
    app.state.api_log = ApiLogRecorder(None, max_buffered=n + 1, batch_size=n + 1)  # type: ignore[arg-type]

    async def endpoint(scope, receive, send) -> None:
        scope.setdefault("state", {})[PRINCIPAL_STATE_KEY] = principal
        scope["route"] = route
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(message) -> None:
        pass

    async def receive() -> dict:
        return {"type": "http.request"}

    def scope() -> dict:
        return {"type": "http", "method": "POST", "path": "/api/v1/payouts/po_1", "client": ("127.0.0.1", 1),
                "headers": [(b"idempotency-key", b"k"), (b"authorization", b"Bearer x")], "app": app}

    costs = []
    for target in (endpoint, ApiRequestLog(endpoint)):
        t0 = time.perf_counter()
        for _ in range(n):
            await target(scope(), receive, send)
        costs.append((time.perf_counter() - t0) / n * 1e6)
    return costs[0], costs[1]


def body(merchant_id: str) -> dict:
    return {"merchant_id": merchant_id, "amount": "10.00", "currency": "EUR", "method": "sepa",
            "beneficiary": {"name": "Bench", "iban": "DE89 3704 0044 0532 0130 00", "bic": "COBADEFFXXX"}}


async def timed_creates(app, headers: dict, merchant_id: str, n: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        queue = iter(range(n))

        async def lane() -> None:
            for _ in queue:
                t0 = time.perf_counter()
                r = await http.post("/api/v1/payouts", json=body(merchant_id),
                                    headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
                latencies.append((time.perf_counter() - t0) * 1000)
                if r.status_code != 201:
                    raise SystemExit(f"create failed: {r.status_code} {r.text[:300]}")

        await asyncio.gather(*(lane() for _ in range(concurrency)))
    return latencies


async def run(args) -> list[tuple[str, str, str, str]]:
    workdir = Path(tempfile.mkdtemp(prefix="payops-bench-apilog-"))
    workdir.chmod(0o755)
    pg = EmbeddedPostgres(workdir / "postgres", fast=True)
    redis = EmbeddedRedis(workdir / "redis", persist=False)
    pg.start()
    redis.start()
    base = Settings(_env_file=None, data_dir=workdir / "data")
    temporal = await WorkflowEnvironment.start_local(
        data_converter=data_converter(base), search_attributes=list(search_attribute_keys().values()),
        dev_server_existing_path=str(temporal_cli_path()))
    try:
        conn = await asyncpg.connect(pg.url)
        await conn.execute('CREATE DATABASE "payops_bench_apilog"')
        await conn.close()
        db_url = pg.url.rsplit("/", 1)[0] + "/payops_bench_apilog"
        await asyncio.to_thread(run_migrations, db_url)  # alembic runs its own event loop
        settings = base.model_copy(update={
            "database_url": db_url, "redis_url": redis.url,
            "temporal_address": temporal.client.service_client.config.target_host,
            "temporal_task_queue": "bench-apilog-unpolled"})
        ops = {"Authorization": "Bearer " + mint_dev_token(settings, role="ops_admin", sub="bench")}
        apps = {on: create_app(settings.model_copy(update={"api_log_enabled": on}), temporal_client=temporal.client)
                for on in (False, True)}
        latencies: dict[bool, list[float]] = {False: [], True: []}
        async with apps[False].router.lifespan_context(apps[False]), apps[True].router.lifespan_context(apps[True]):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[False]), base_url="http://b") as http:
                merchant = (await http.post("/api/v1/merchants", headers=ops, json={
                    "name": "Bench", "default_currency": "EUR", "country": "DE"})).json()["id"]
            for on in (False, True):  # warm-up: connections, caches, the first workflow starts
                await timed_creates(apps[on], ops, merchant, 30, args.concurrency)
            for i in range(args.rounds):
                for on in ((False, True) if i % 2 == 0 else (True, False)):  # neither goes first always
                    latencies[on] += await timed_creates(apps[on], ops, merchant, args.n, args.concurrency)
            await apps[True].state.api_log.flush()
            async with apps[True].state.sessionmaker() as s:
                logged = await s.scalar(select(func.count()).select_from(api_request_log))
    finally:
        await temporal.shutdown()
        redis.stop()
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    off, on = latencies[False], latencies[True]
    rows = [("creates per variant", str(len(off)), str(len(on)), f"concurrency {args.concurrency}")]
    for name, q in (("p50 ms", 0.5), ("p99 ms", 0.99)):
        a, b = pct(off, q), pct(on, q)
        rows.append((f"create {name}", f"{a:.2f}", f"{b:.2f}", f"{(b - a) / a * 100:+.1f} % (target < +5 %)"))
    a, b = statistics.mean(off), statistics.mean(on)
    rows.append(("create mean ms", f"{a:.2f}", f"{b:.2f}", f"{(b - a) / a * 100:+.1f} %"))
    rows.append(("log rows written", "-", str(logged), "every create of the 'on' app, warm-up included"))
    bare, logged_us = await middleware_cost_us()
    rows.append(("middleware µs/request", f"{bare:.1f}", f"{logged_us:.1f}",
                 f"+{logged_us - bare:.1f} µs = {(logged_us - bare) / 1000 / pct(off, 0.5) * 100:.2f} % of create p50"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="creates per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    header = ("measure", "log off", "log on", "added")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
