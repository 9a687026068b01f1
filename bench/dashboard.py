"""Dashboard benchmark on 10,000,000 transactions.

    .venv/bin/python bench/dashboard.py [--database-url postgresql://postgres@127.0.0.1:5432/payops_bench_dash]
                                        [--rows 10000000] [--days 90] [--reload]
                                        [--job-formats csv[,xlsx]] [--ingest-rows 1000000]
                                        [--skip reads,exports,jobs,live,ingest]

1. load: transactions generated in SQL (generate_series, 1,000,000 rows per statement, so the
   rollup triggers run as they would on ingest), 100,000 payouts, merchant balances; the database
   is migrated to the current head first (the triggers fill 0010's quarter-hour columns);
2. reads through the real app (httpx over ASGI: routing, auth, scope, cache, JSON): overview,
   30-day trends by day in UTC and in Asia/Kolkata (+05:30: the hourly rollups' quarter-hour
   columns), breakdown by merchant — cache-cold (every request after an invalidation), warm
   (snapshot hits), and the same answers computed from the raw rows (trends: checked equal);
3. exports of 1,000,000 rows as CSV and XLSX, each served by a fresh API process (uvicorn) and
   read over TCP: time, and the server's peak RSS;
4. export jobs (`jobs`): the same 1,000,000 rows through POST /export/jobs → ExportWorkflow on a
   Temporal dev server, written by a worker process built like workers/main.py: time from POST to
   succeeded, the progress polled on the way, the download, the worker's peak RSS;
5. live latency: a row ingested (insert + commit + publish) to a WebSocket client, through a
   real uvicorn server and Redis pub/sub;
6. ingest (`ingest`): the rollup triggers' cost, 0010's functions vs 0007's vs none, on the same
   generated rows in a scratch database (payops_bench_dash_ingest, dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(width=int(os.environ.get("COLUMNS", "180")))
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/payops_bench_dash"
MERCHANTS = 20
CHUNK = 1_000_000

LOAD_SQL = """
INSERT INTO transactions (source, source_id, client_operation_id, merchant_id, project, amount_minor, currency,
                          fee_minor, status, payer_email, utr, occurred_at, raw, data_hash)
SELECT CASE WHEN g % 3 = 0 THEN 'payshack' ELSE 'vima' END, 'b' || g, 'op' || g,
       'm_' || lpad((1 + (g * 7) % $3)::text, 2, '0'),
       'p' || (g % 4),
       100 + (hashint4(g::int) & 1048575), CASE WHEN g % 10 = 0 THEN 'USD' ELSE 'INR' END,
       (hashint4(g::int) & 1023),
       (ARRAY['success','success','success','success','success','success','failed','failed','pending','refunded'])
           [1 + (hashint4((g + 7)::int) & 2147483647) % 10],
       'payer' || (g % 100000) || '@example.com', CASE WHEN g % 2 = 0 THEN 'UTR' || g END,
       $4::timestamptz - make_interval(secs => ((hashint4((g * 13)::int)::bigint & 2147483647) % ($5::bigint * 86400))),
       CASE WHEN g % 97 = 0 THEN '{"fraud_flag": true}'::jsonb ELSE '{}'::jsonb END, 'h'
  FROM generate_series($1::bigint, $2::bigint) g
"""


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))]


async def ensure_database(url: str) -> None:
    base, name = url.rsplit("/", 1)
    conn = await asyncpg.connect(base + "/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def load(url: str, rows: int, days: int, reload: bool) -> dict:
    from core.platform.db import run_migrations

    await ensure_database(url)
    await asyncio.to_thread(run_migrations, url)
    conn = await asyncpg.connect(url)
    try:
        have = await conn.fetchval("SELECT count(*) FROM transactions")
        if have >= rows and not reload:
            console.print(f"[dim]{have:,} transactions already loaded[/dim]")
            return {"loaded": have, "seconds": None}
        await conn.execute("TRUNCATE transactions, transaction_keys, transaction_rollups_hourly, "
                           "transaction_rollups_daily, payout_rollups_hourly, payout_rollups_daily")
        await conn.execute("DELETE FROM payouts")
        now = datetime.now(timezone.utc)
        await conn.execute(
            "INSERT INTO merchants (id, name, default_currency) SELECT 'm_' || lpad(g::text, 2, '0'), 'M' || g, 'INR' "
            "FROM generate_series(1, $1) g ON CONFLICT DO NOTHING", MERCHANTS)
        first = (now - timedelta(days=days + 31)).date().replace(day=1)
        await conn.execute("SELECT ensure_transaction_partitions($1, 6)", first)
        t0 = time.perf_counter()
        for lo in range(1, rows + 1, CHUNK):
            hi = min(rows, lo + CHUNK - 1)
            s = time.perf_counter()
            await conn.execute(LOAD_SQL, lo, hi, MERCHANTS, now, days)
            console.print(f"  loaded {hi:>11,} rows ({(hi - lo + 1) / (time.perf_counter() - s):,.0f} rows/s "
                          f"with rollup triggers)")
        seconds = time.perf_counter() - t0
        await conn.execute("""
            INSERT INTO payouts (id, merchant_id, idempotency_key, amount_minor, currency, method, priority, status,
                                 beneficiary_encrypted, beneficiary_masked, rail, created_at)
            SELECT 'po_' || g, 'm_' || lpad((1 + g % $1)::text, 2, '0'), 'k' || g, 1000 + g % 50000, 'INR',
                   'bank_transfer', 'normal',
                   (ARRAY['settled','settled','settled','failed','dlq','submitted','pending','held'])[1 + g % 8],
                   '\\x00', '{}', (ARRAY['imps','neft','rtgs'])[1 + g % 3],
                   $2::timestamptz - make_interval(secs => (g * 7919) % ($3::bigint * 86400))
              FROM generate_series(1, 100000) g""", MERCHANTS, now, days)
        await conn.execute("""
            INSERT INTO ledger_accounts (code, currency, kind, merchant_id, balance_minor)
            SELECT 'merchant:m_' || lpad(g::text, 2, '0') || ':available', 'INR', 'liability',
                   'm_' || lpad(g::text, 2, '0'), -(g * 1000000)
              FROM generate_series(1, $1) g ON CONFLICT DO NOTHING""", MERCHANTS)
        await conn.execute("VACUUM ANALYZE")
        # every 1,000,000-row chunk spans all the days, so each chunk's triggers update every rollup row:
        # ~10 versions per row (356 MB for 66 MB of live hourly rows at 10M). Ingest in time order
        # updates only the current hours, whose space autovacuum reuses; compact to that state.
        await conn.execute("VACUUM FULL ANALYZE transaction_rollups_hourly, transaction_rollups_daily, "
                           "payout_rollups_hourly, payout_rollups_daily")
        return {"loaded": rows, "seconds": seconds}
    finally:
        await conn.close()


def _migration(filename: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_bench_{filename[:4]}", ROOT / "migrations" / "versions" / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


async def ingest_ab(base_url: str, rows: int, rounds: int, batches: int, batch_rows: int) -> list[dict]:
    """The ingest cost of 0010's quarter-hour rollup columns: the same rows loaded into a scratch
    database with the rollup trigger functions of 0010 (current), of 0007 (before the quarter
    columns), and with no rollup triggers (session_replication_role = replica), interleaved.
    `bulk`: one statement of `rows` rows into empty rollups (like the bench's loader); `batches`:
    then `batches` statements of `batch_rows` rows each, upserting existing rollup rows (like ingest)."""
    from core.platform.db import run_migrations

    url = base_url.rsplit("/", 1)[0] + "/payops_bench_dash_ingest"
    await ensure_database(url)
    await asyncio.to_thread(run_migrations, url)
    m10 = _migration("0010_dashboard_exports.py")
    v7 = m10._v0007()
    fns = {"0010 (quarter cols)": m10._tx_functions(v7),
           "0007 (before)": [f.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
                             for f in (v7.TX_INSERT_FN, v7.TX_DELETE_FN, v7.TX_UPDATE_FN)],
           "no rollup triggers": None}
    now = datetime.now(timezone.utc)
    conn = await asyncpg.connect(url)
    results: dict[str, dict[str, list[float]]] = {k: {"bulk": [], "batches": []} for k in fns}
    try:
        await conn.execute(
            "INSERT INTO merchants (id, name, default_currency) SELECT 'm_' || lpad(g::text, 2, '0'), 'M' || g, 'INR' "
            "FROM generate_series(1, $1) g ON CONFLICT DO NOTHING", MERCHANTS)
        await conn.execute("SELECT ensure_transaction_partitions($1, 6)",
                           (now - timedelta(days=90 + 31)).date().replace(day=1))
        for rnd in range(rounds):
            for variant, sql in fns.items():
                await conn.execute("TRUNCATE transactions, transaction_rollups_hourly, transaction_rollups_daily")
                await conn.execute("CHECKPOINT")
                if sql:
                    for f in sql:
                        await conn.execute(f)
                await conn.execute(f"SET session_replication_role = {'origin' if sql else 'replica'}")
                s = time.perf_counter()
                await conn.execute(LOAD_SQL, 1, rows, MERCHANTS, now, 90)
                bulk = time.perf_counter() - s
                s = time.perf_counter()
                for b in range(batches):
                    lo = rows + 1 + b * batch_rows
                    await conn.execute(LOAD_SQL, lo, lo + batch_rows - 1, MERCHANTS, now, 90)
                batch_s = time.perf_counter() - s
                await conn.execute("SET session_replication_role = origin")
                results[variant]["bulk"].append(rows / bulk)
                results[variant]["batches"].append(batches * batch_rows / batch_s)
                console.print(f"  round {rnd + 1} {variant}: bulk {rows / bulk:,.0f} rows/s, "
                              f"{batches}×{batch_rows} {batches * batch_rows / batch_s:,.0f} rows/s "
                              f"[dim](load {os.getloadavg()[0]:.1f})[/dim]")
        for f in fns["0010 (quarter cols)"]:
            await conn.execute(f)
    finally:
        await conn.close()
    admin = await asyncpg.connect(base_url.rsplit("/", 1)[0] + "/postgres")
    try:
        await admin.execute('DROP DATABASE IF EXISTS "payops_bench_dash_ingest"')
    finally:
        await admin.close()
    return [{"variant": k, "bulk": statistics.median(v["bulk"]), "batches": statistics.median(v["batches"]),
             "n": len(v["bulk"])} for k, v in results.items()]


RAW = {
    "overview": """
        SELECT occurred_at >= $1 AS current, currency, count(*),
               count(*) FILTER (WHERE status IN ('success','refunded')), count(*) FILTER (WHERE status = 'failed'),
               count(*) FILTER (WHERE raw ->> 'fraud_flag' = 'true'),
               sum(amount_minor) FILTER (WHERE status IN ('success','refunded')),
               sum(fee_minor) FILTER (WHERE status IN ('success','refunded')),
               sum(amount_minor) FILTER (WHERE status = 'refunded')
          FROM transactions WHERE occurred_at >= $1 - ($2 - $1) AND occurred_at < $2 GROUP BY 1, 2""",
    "trends": """
        SELECT (occurred_at AT TIME ZONE 'UTC')::date, currency,
               sum(amount_minor) FILTER (WHERE status IN ('success','refunded'))
          FROM transactions WHERE occurred_at >= $1 AND occurred_at < $2 GROUP BY 1, 2""",
    "trends_ist": """
        SELECT (occurred_at AT TIME ZONE 'Asia/Kolkata')::date, currency,
               sum(amount_minor) FILTER (WHERE status IN ('success','refunded'))
          FROM transactions WHERE occurred_at >= $1 AND occurred_at < $2 GROUP BY 1, 2""",
    "breakdown": """
        SELECT merchant_id, currency, count(*), sum(amount_minor) FILTER (WHERE status IN ('success','refunded'))
          FROM transactions WHERE occurred_at >= $1 AND occurred_at < $2 GROUP BY 1, 2""",
}


def make_settings(url: str, redis_url: str, *, temporal_address: str = "127.0.0.1:9", task_queue: str | None = None,
                  export_dir: Path | None = None):
    from core.platform.settings import Settings

    extra = {"temporal_task_queue": task_queue} if task_queue else {}
    return Settings(_env_file=None, database_url=url, redis_url=redis_url, temporal_address=temporal_address,
                    data_dir=Path(tempfile.gettempdir()) / "payops-bench", export_dir=export_dir, **extra)


async def reads(url: str, redis_url: str, runs: int, raw_runs: int) -> list[tuple]:
    import httpx

    from api.app import create_app
    from core.platform.auth_tokens import mint_dev_token
    from core.dashboards.metrics import Window

    settings = make_settings(url, redis_url)
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {mint_dev_token(settings, role='ops_admin')}"}
    merchant_headers = {"Authorization": f"Bearer {mint_dev_token(settings, role='merchant_viewer', merchant_id='m_07')}"}
    window = Window.last(timedelta(days=30))
    span = {"from": window.start.isoformat(), "to": window.end.isoformat()}
    cases = [
        ("overview 30d (platform)", "/api/v1/dashboard/overview", span, headers, "overview"),
        ("overview 30d (merchant)", "/api/v1/dashboard/overview", span, merchant_headers, None),
        ("trends 30d by day", "/api/v1/metrics/trends", {**span, "metric": "gmv", "granularity": "day"}, headers, "trends"),
        ("trends 30d by day, Asia/Kolkata", "/api/v1/metrics/trends",
         {**span, "metric": "gmv", "granularity": "day", "tz": "Asia/Kolkata"}, headers, "trends_ist"),
        ("breakdown by merchant 30d", "/api/v1/metrics/breakdown", {**span, "by": "merchant"}, headers, "breakdown"),
    ]
    out = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            cache = app.state.dashboard_cache
            for name, path, params, hdrs, raw_key in cases:
                first_s = time.perf_counter()
                r = await client.get(path, params=params, headers=hdrs)
                first = (time.perf_counter() - first_s) * 1000
                assert r.status_code == 200, r.text
                cold, warm = [], []
                for _ in range(runs):
                    await cache.invalidate()
                    s = time.perf_counter()
                    r = await client.get(path, params=params, headers=hdrs)
                    cold.append((time.perf_counter() - s) * 1000)
                    assert r.headers["x-cache"] == "miss"
                for _ in range(runs):
                    s = time.perf_counter()
                    r = await client.get(path, params=params, headers=hdrs)
                    warm.append((time.perf_counter() - s) * 1000)
                raw_ms: list[float] = []
                same = None
                if raw_key:
                    conn = await asyncpg.connect(url)
                    try:
                        for _ in range(raw_runs):
                            s = time.perf_counter()
                            raw_rows = await conn.fetch(RAW[raw_key], window.start, window.end)
                            raw_ms.append((time.perf_counter() - s) * 1000)
                    finally:
                        await conn.close()
                    if raw_key.startswith("trends"):  # the rollup answer must equal the raw rows' one
                        body = r.json()
                        api = {(sr["currency"], p["t"]): int(p["value"] or 0)
                               for sr in body["series"] for p in sr["points"] if p["value"]}
                        raw = {(c, d.isoformat()): int(v or 0) for d, c, v in raw_rows if v}
                        same = api == raw
                        if not same:
                            diff = sorted(k for k in api.keys() | raw.keys() if api.get(k) != raw.get(k))
                            console.print(f"  [red]{name}: {len(diff)} buckets differ from raw rows, e.g. "
                                          f"{[(k, api.get(k), raw.get(k)) for k in diff[:3]]}[/red]")
                        same = f"{'yes' if same else 'NO'} ({len(api)} pts, exact={body.get('exact')})"
                out.append((name, first, pct(cold, 50), pct(cold, 95), pct(warm, 50), pct(warm, 95),
                            statistics.median(raw_ms) if raw_ms else None, same))
                console.print(f"  {name}: cold p95 {pct(cold, 95):.1f} ms, warm p95 {pct(warm, 95):.1f} ms"
                              + (f", raw p50 {statistics.median(raw_ms):.0f} ms" if raw_ms else "")
                              + (f", equals raw rows: {same}" if same else ""))
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def newest_million(url: str) -> tuple[datetime, int]:
    """The newest ~1,000,000 rows: everything from the 1,000,000th newest occurred_at on."""
    conn = await asyncpg.connect(url)
    try:
        total = await conn.fetchval("SELECT count(*) FROM transactions")
        start = await conn.fetchval("SELECT occurred_at FROM transactions ORDER BY occurred_at DESC OFFSET $1 LIMIT 1",
                                    min(999_999, total - 1))
        expected = await conn.fetchval("SELECT count(*) FROM transactions WHERE occurred_at >= $1", start)
    finally:
        await conn.close()
    return start, expected


async def _stream_export(url: str, port: int, token: str, fmt: str) -> dict:
    import httpx

    start, expected = await newest_million(url)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=None) as client:
        deadline = time.monotonic() + 30
        while True:
            try:
                await client.get("/health")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        s = time.perf_counter()
        size = lines = 0
        async with client.stream("GET", "/api/v1/export/transactions", params={"format": fmt,
                                 "occurred_from": start.isoformat()}, headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status_code == 200, await r.aread()
            async for chunk in r.aiter_bytes():
                size += len(chunk)
                lines += chunk.count(b"\n") if fmt == "csv" else 0
        seconds = time.perf_counter() - s
    if fmt == "csv":
        assert lines == expected + 1, (lines, expected)
    return {"rows": expected, "bytes": size, "seconds": seconds}


def exports(url: str, redis_url: str) -> list[dict]:
    """Each export served by a fresh API process (uvicorn) over TCP; its peak RSS from wait4()."""
    import signal

    from core.platform.auth_tokens import mint_dev_token

    token = mint_dev_token(make_settings(url, redis_url), role="ops_admin", ttl_seconds=3600)
    out = []
    for fmt in ("csv", "xlsx"):
        port = _free_port()
        proc = subprocess.Popen([sys.executable, __file__, "--database-url", url, "--redis-url", redis_url,
                                 "--serve", str(port)], cwd=ROOT)
        try:
            result = asyncio.run(_stream_export(url, port, token, fmt))
        finally:
            proc.send_signal(signal.SIGTERM)
            _, _, usage = os.wait4(proc.pid, 0)
            proc.returncode = 0
        result["rss_mb"] = usage.ru_maxrss / 1024
        result["format"] = fmt
        console.print(f"  {fmt}: {result['rows']:,} rows, {result['bytes'] / 1e6:.0f} MB in {result['seconds']:.1f} s, "
                      f"server peak RSS {result['rss_mb']:.0f} MB")
        out.append(result)
    return out


def _vm_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


async def _export_job(url: str, redis_url: str, temporal_address: str, task_queue: str, export_dir: Path,
                      fmt: str, worker_pid: int) -> dict:
    """POST /export/jobs through the real app (ASGI, its own Temporal client), poll the job until it
    succeeded, then download the file through the API and count its rows."""
    import httpx

    from api.app import create_app
    from core.platform.auth_tokens import mint_dev_token

    start, expected = await newest_million(url)
    settings = make_settings(url, redis_url, temporal_address=temporal_address, task_queue=task_queue,
                             export_dir=export_dir)
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {mint_dev_token(settings, role='ops_admin', ttl_seconds=3600)}"}
    samples: list[tuple[float, str, int, int | None, float | None]] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=None) as client:
            rss_before = _vm_kb(worker_pid, "VmRSS")
            t0 = time.perf_counter()
            r = await client.post("/api/v1/export/jobs", headers=headers, json={
                "kind": "transactions", "format": fmt, "filters": {"occurred_from": start.isoformat()}})
            assert r.status_code == 202, r.text
            job = r.json()
            post_ms = (time.perf_counter() - t0) * 1000
            rss_peak_seen = rss_before or 0
            while True:
                el = time.perf_counter() - t0
                samples.append((el, job["status"], job["rows_written"], job["rows_total"], job["percent"]))
                if job["status"] in ("succeeded", "failed", "expired"):
                    break
                assert el < 3600, job
                await asyncio.sleep(0.25)
                rss_peak_seen = max(rss_peak_seen, _vm_kb(worker_pid, "VmRSS") or 0)
                r = await client.get(f"/api/v1/export/jobs/{job['id']}", headers=headers)
                assert r.status_code == 200, r.text
                job = r.json()
            seen_s = time.perf_counter() - t0
            assert job["status"] == "succeeded", job
            hwm = _vm_kb(worker_pid, "VmHWM")
            s = time.perf_counter()
            size = lines = 0
            async with client.stream("GET", job["download_url"], headers=headers) as resp:
                assert resp.status_code == 200
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    lines += chunk.count(b"\n") if fmt == "csv" else 0
            download_s = time.perf_counter() - s
    if fmt == "csv":
        assert lines == expected + 1 == job["rows_written"] + 1, (lines, expected, job["rows_written"])
    assert size == job["bytes"], (size, job["bytes"])
    started = datetime.fromisoformat(job["started_at"])
    created = datetime.fromisoformat(job["created_at"])
    finished = datetime.fromisoformat(job["finished_at"])
    return {"format": fmt, "rows": job["rows_written"], "expected": expected, "bytes": job["bytes"],
            "post_ms": post_ms, "seen_s": seen_s, "queue_s": (started - created).total_seconds(),
            "server_s": (finished - created).total_seconds(), "write_s": (finished - started).total_seconds(),
            "download_s": download_s, "samples": samples, "rss_before_mb": (rss_before or 0) / 1024,
            "rss_seen_mb": rss_peak_seen / 1024, "hwm_mb": (hwm or 0) / 1024}


def export_jobs(url: str, redis_url: str, formats: list[str]) -> list[dict]:
    """Export jobs through the ExportWorkflow: a Temporal dev server (in memory), one worker process
    built like workers/main.py builds it (`--worker`), the API in this process. The worker's peak RSS
    from /proc (VmHWM) and from wait4() when it exits."""
    import signal
    import uuid

    from devstack.embedded import TemporalDevServer
    from core.platform.names import SEARCH_ATTRIBUTES

    out = []
    server = TemporalDevServer(None, ui_port=None, search_attributes=SEARCH_ATTRIBUTES).start()
    try:
        for fmt in formats:
            task_queue = f"bench-export-{uuid.uuid4().hex[:8]}"
            export_dir = Path(tempfile.mkdtemp(prefix="payops-bench-exports-"))
            proc = subprocess.Popen([sys.executable, __file__, "--database-url", url, "--redis-url", redis_url,
                                     "--worker", server.address, "--task-queue", task_queue,
                                     "--export-dir", str(export_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
            try:
                line = proc.stdout.readline()  # type: ignore[union-attr]
                assert line.strip() == "WORKER READY", line
                threading.Thread(target=proc.stdout.read, daemon=True).start()  # type: ignore[union-attr]
                result = asyncio.run(_export_job(url, redis_url, server.address, task_queue, export_dir, fmt,
                                                 proc.pid))
            finally:
                proc.send_signal(signal.SIGTERM)
                _, _, usage = os.wait4(proc.pid, 0)
                proc.returncode = 0
                for f in export_dir.glob("*"):
                    f.unlink()
                export_dir.rmdir()
            result["rss_mb"] = usage.ru_maxrss / 1024
            moving = sorted({s[2] for s in result["samples"] if s[1] == "running"})
            console.print(f"  job {fmt}: {result['rows']:,} rows, {result['bytes'] / 1e6:.0f} MB: POST→succeeded seen "
                          f"{result['seen_s']:.1f} s (created→finished {result['server_s']:.1f} s, queued "
                          f"{result['queue_s']:.2f} s), download {result['download_s']:.1f} s; worker RSS idle "
                          f"{result['rss_before_mb']:.0f} MB, VmHWM {result['hwm_mb']:.0f} MB, "
                          f"ru_maxrss {result['rss_mb']:.0f} MB; {len(moving)} distinct running row counts")
            out.append(result)
    finally:
        server.stop()
    return out


async def run_worker_process(url: str, redis_url: str, address: str, task_queue: str, export_dir: str) -> None:
    import signal

    from core.platform.temporal import connect_temporal
    from workers.main import WorkerDeps, build_worker

    settings = make_settings(url, redis_url, temporal_address=address, task_queue=task_queue,
                             export_dir=Path(export_dir))
    client = await connect_temporal(settings)
    deps = WorkerDeps.from_settings(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with build_worker(client, deps, task_queue=task_queue):
        print("WORKER READY", flush=True)
        await stop.wait()
    await deps.aclose()


async def live(url: str, redis_url: str, n: int) -> dict:
    import websockets

    from core.platform.auth_tokens import mint_dev_token
    from core.sync.store import TRANSACTION_UPDATES_CHANNEL, publish

    settings = make_settings(url, redis_url)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # the server in its own process, as in production: the bench process only ingests and listens
    proc = subprocess.Popen([sys.executable, __file__, "--database-url", url, "--redis-url", redis_url,
                             "--serve", str(port)], cwd=ROOT)
    try:
        token = mint_dev_token(settings, role="merchant_viewer", merchant_id="m_03")
        deadline = time.monotonic() + 30
        while True:
            try:
                ws = await websockets.connect(f"ws://127.0.0.1:{port}/api/v1/ws/updates?token={token}&channels=transactions")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        from redis.asyncio import Redis

        redis = Redis.from_url(redis_url)
        conn = await asyncpg.connect(url)
        from_ingest, from_commit = [], []
        try:
            assert json.loads(await ws.recv())["type"] == "ready"
            await asyncio.sleep(0.5)
            for i in range(n):
                t0 = time.perf_counter()
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO transactions (source, source_id, merchant_id, amount_minor, currency, status, "
                        "occurred_at, raw, data_hash) VALUES ('vima', $1, 'm_03', 100, 'INR', 'success', now(), '{}', 'x')",
                        f"live_{time.time_ns()}_{i}")
                t1 = time.perf_counter()
                await publish(redis, TRANSACTION_UPDATES_CHANNEL, {"source": "vima", "merchant_id": "m_03", "seq": i})
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if msg.get("data", {}).get("seq") == i:
                        break
                t2 = time.perf_counter()
                from_ingest.append((t2 - t0) * 1000)
                from_commit.append((t2 - t1) * 1000)
                await asyncio.sleep(0.01)
        finally:
            await ws.close()
            await conn.close()
            await redis.aclose()
    finally:
        proc.terminate()
        proc.wait(10)
    return {"n": n, "ingest_p50": pct(from_ingest, 50), "ingest_p99": pct(from_ingest, 99),
            "commit_p50": pct(from_commit, 50), "commit_p99": pct(from_commit, 99)}


def serve(url: str, redis_url: str, port: int) -> None:
    import uvicorn

    from api.app import create_app

    uvicorn.run(create_app(make_settings(url, redis_url)), host="127.0.0.1", port=port, log_level="warning")


def start_redis():
    from devstack.embedded import EmbeddedRedis

    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="payops-bench-redis-")), persist=False)
    server.start()
    return server


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url", default=os.environ.get("PAYOPS_BENCH_DATABASE_URL", DEFAULT_URL))
    ap.add_argument("--redis-url")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--reload", action="store_true")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--raw-runs", type=int, default=3)
    ap.add_argument("--live-n", type=int, default=300)
    ap.add_argument("--job-formats", default="csv", help="export jobs (ExportWorkflow) to run: csv, xlsx")
    ap.add_argument("--ingest-rows", type=int, default=1_000_000, help="rows per bulk load of the ingest A/B")
    ap.add_argument("--ingest-rounds", type=int, default=2)
    ap.add_argument("--ingest-batches", type=int, default=200, help="then this many statements of --ingest-batch-rows")
    ap.add_argument("--ingest-batch-rows", type=int, default=500)
    ap.add_argument("--skip", default="", help="comma-separated phases to skip: reads, exports, jobs, live, ingest")
    ap.add_argument("--serve", type=int)
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # a Temporal address: run a worker (export jobs)
    ap.add_argument("--task-queue", help=argparse.SUPPRESS)
    ap.add_argument("--export-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.database_url, args.redis_url, args.serve)
        return
    if args.worker:
        asyncio.run(run_worker_process(args.database_url, args.redis_url, args.worker, args.task_queue,
                                       args.export_dir))
        return
    skip = set(filter(None, args.skip.split(",")))
    redis = None
    redis_url = args.redis_url
    if not redis_url:
        redis = start_redis()
        redis_url = redis.url
    try:
        console.print(f"[bold]load[/bold] {args.rows:,} transactions into {args.database_url}")
        loaded = asyncio.run(load(args.database_url, args.rows, args.days, args.reload))
        read_rows = [] if "reads" in skip else asyncio.run(reads(args.database_url, redis_url, args.runs, args.raw_runs))
        export_rows = [] if "exports" in skip else exports(args.database_url, redis_url)
        job_rows = [] if "jobs" in skip else export_jobs(args.database_url, redis_url,
                                                         [f for f in args.job_formats.split(",") if f])
        live_row = None if "live" in skip else asyncio.run(live(args.database_url, redis_url, args.live_n))
        ingest_rows = [] if "ingest" in skip else asyncio.run(ingest_ab(
            args.database_url, args.ingest_rows, args.ingest_rounds, args.ingest_batches, args.ingest_batch_rows))
    finally:
        if redis is not None:
            redis.stop()

    table = Table(title=f"payops dashboards — {loaded['loaded']:,} transactions over {args.days} days")
    for col in ("measure", "first call", "cold p50", "cold p95", "warm p50", "warm p95", "raw rows p50", "raw/rollup",
                "= raw rows"):
        table.add_column(col, justify="right")
    if loaded["seconds"]:
        table.add_row("load (rollup triggers on)", f"{loaded['seconds']:.0f} s",
                      f"{loaded['loaded'] / loaded['seconds']:,.0f} rows/s", "", "", "", "", "", "")
    for name, first, c50, c95, w50, w95, raw, same in read_rows:
        table.add_row(name, f"{first:.1f} ms", f"{c50:.1f} ms", f"{c95:.1f} ms", f"{w50:.2f} ms", f"{w95:.2f} ms",
                      f"{raw:,.0f} ms" if raw else "", f"{raw / c50:,.0f}× (cold)" if raw else "", same or "")
    for e in export_rows:
        table.add_row(f"export {e['format']} {e['rows']:,} rows", f"{e['seconds']:.1f} s",
                      f"{e['rows'] / e['seconds']:,.0f} rows/s", f"server peak RSS {e['rss_mb']:.0f} MB",
                      f"{e['bytes'] / 1e6:.0f} MB", "", "", "", "")
    for j in job_rows:
        table.add_row(f"export job {j['format']} {j['rows']:,} rows (POST→succeeded)", f"{j['seen_s']:.1f} s",
                      f"{j['rows'] / j['seen_s']:,.0f} rows/s", f"worker peak RSS {j['rss_mb']:.0f} MB",
                      f"{j['bytes'] / 1e6:.0f} MB", f"download {j['download_s']:.1f} s", "", "", "")
    if live_row:
        table.add_row(f"live: ingest → WebSocket (n={live_row['n']})", "", f"{live_row['ingest_p50']:.1f} ms",
                      f"p99 {live_row['ingest_p99']:.1f} ms", f"commit→ws {live_row['commit_p50']:.1f} ms",
                      f"p99 {live_row['commit_p99']:.1f} ms", "", "", "")
    console.print(table)
    for j in job_rows:
        console.print(f"export job {j['format']}: POST {j['post_ms']:.0f} ms; created→started {j['queue_s']:.2f} s, "
                      f"started→finished {j['write_s']:.1f} s ({j['rows'] / j['write_s']:,.0f} rows/s); "
                      f"worker RSS before {j['rss_before_mb']:.0f} MB, max sampled {j['rss_seen_mb']:.0f} MB, "
                      f"VmHWM {j['hwm_mb']:.0f} MB, ru_maxrss at exit {j['rss_mb']:.0f} MB")
        running = [x for x in j["samples"] if x[1] == "running"]
        shown, last = [], None
        for el, status, written, total, percent in j["samples"]:
            if (status, written) != last:
                shown.append(f"{el:.1f}s {status} {written:,}" + (f" ({percent}%)" if percent is not None else ""))
                last = (status, written)
        console.print(f"  progress ({len(j['samples'])} polls, {len(running)} while running, rows_total estimate "
                      f"{running[0][3] if running else None}): " + " → ".join(shown))
    if ingest_rows:
        t = Table(title="ingest cost of the rollup triggers (scratch database, medians)")
        for col in ("rollup trigger functions", f"bulk {args.ingest_rows:,} rows",
                    f"{args.ingest_batches}×{args.ingest_batch_rows} rows into existing rollups", "rounds"):
            t.add_column(col, justify="right")
        for x in ingest_rows:
            t.add_row(x["variant"], f"{x['bulk']:,.0f} rows/s", f"{x['batches']:,.0f} rows/s", str(x["n"]))
        console.print(t)


if __name__ == "__main__":
    main()
