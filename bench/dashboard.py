"""Dashboard benchmark on 10,000,000 transactions.

    .venv/bin/python bench/dashboard.py [--database-url postgresql://postgres@127.0.0.1:5432/payops_bench_dash]
                                        [--rows 10000000] [--days 90] [--reload]

1. load: transactions generated in SQL (generate_series, 1,000,000 rows per statement, so the
   rollup triggers run as they would on ingest), 100,000 payouts, merchant balances;
2. reads through the real app (httpx over ASGI: routing, auth, scope, cache, JSON): overview,
   30-day trends by day, breakdown by merchant — cache-cold (every request after an
   invalidation), warm (snapshot hits), and the same answers computed from the raw rows;
3. exports of 1,000,000 rows as CSV and XLSX, each served by a fresh API process (uvicorn) and
   read over TCP: time, and the server's peak RSS;
4. live latency: a row ingested (insert + commit + publish) to a WebSocket client, through a
   real uvicorn server and Redis pub/sub.
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
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console()
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
    from core.db import run_migrations

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
        return {"loaded": rows, "seconds": seconds}
    finally:
        await conn.close()


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
    "breakdown": """
        SELECT merchant_id, currency, count(*), sum(amount_minor) FILTER (WHERE status IN ('success','refunded'))
          FROM transactions WHERE occurred_at >= $1 AND occurred_at < $2 GROUP BY 1, 2""",
}


def make_settings(url: str, redis_url: str):
    from core.settings import Settings

    return Settings(_env_file=None, database_url=url, redis_url=redis_url, temporal_address="127.0.0.1:9",
                    data_dir=Path(tempfile.gettempdir()) / "payops-bench")


async def reads(url: str, redis_url: str, runs: int, raw_runs: int) -> list[tuple]:
    import httpx

    from api.app import create_app
    from core.auth_tokens import mint_dev_token
    from core.dashboard_metrics import Window

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
         {**span, "metric": "gmv", "granularity": "day", "tz": "Asia/Kolkata"}, headers, None),
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
                if raw_key:
                    conn = await asyncpg.connect(url)
                    try:
                        for _ in range(raw_runs):
                            s = time.perf_counter()
                            await conn.fetch(RAW[raw_key], window.start, window.end)
                            raw_ms.append((time.perf_counter() - s) * 1000)
                    finally:
                        await conn.close()
                out.append((name, first, pct(cold, 50), pct(cold, 95), pct(warm, 50), pct(warm, 95),
                            statistics.median(raw_ms) if raw_ms else None))
                console.print(f"  {name}: cold p95 {pct(cold, 95):.1f} ms, warm p95 {pct(warm, 95):.1f} ms"
                              + (f", raw p50 {statistics.median(raw_ms):.0f} ms" if raw_ms else ""))
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _stream_export(url: str, port: int, token: str, fmt: str) -> dict:
    import httpx

    conn = await asyncpg.connect(url)
    # the newest ~1,000,000 rows: everything from the 1,000,000th newest occurred_at on
    total = await conn.fetchval("SELECT count(*) FROM transactions")
    start = await conn.fetchval("SELECT occurred_at FROM transactions ORDER BY occurred_at DESC OFFSET $1 LIMIT 1",
                                min(999_999, total - 1))
    expected = await conn.fetchval("SELECT count(*) FROM transactions WHERE occurred_at >= $1", start)
    await conn.close()
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

    from core.auth_tokens import mint_dev_token

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


async def live(url: str, redis_url: str, n: int) -> dict:
    import websockets

    from core.auth_tokens import mint_dev_token
    from core.sync_store import TRANSACTION_UPDATES_CHANNEL, publish

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
    from core.embedded import EmbeddedRedis

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
    ap.add_argument("--skip", default="", help="comma-separated phases to skip: reads, exports, live")
    ap.add_argument("--serve", type=int)
    args = ap.parse_args()
    if args.serve:
        serve(args.database_url, args.redis_url, args.serve)
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
        live_row = None if "live" in skip else asyncio.run(live(args.database_url, redis_url, args.live_n))
    finally:
        if redis is not None:
            redis.stop()

    table = Table(title=f"payops dashboards — {loaded['loaded']:,} transactions over {args.days} days")
    for col in ("measure", "first call", "cold p50", "cold p95", "warm p50", "warm p95", "raw rows p50", "raw/rollup"):
        table.add_column(col, justify="right")
    if loaded["seconds"]:
        table.add_row("load (rollup triggers on)", f"{loaded['seconds']:.0f} s",
                      f"{loaded['loaded'] / loaded['seconds']:,.0f} rows/s", "", "", "", "", "")
    for name, first, c50, c95, w50, w95, raw in read_rows:
        table.add_row(name, f"{first:.1f} ms", f"{c50:.1f} ms", f"{c95:.1f} ms", f"{w50:.2f} ms", f"{w95:.2f} ms",
                      f"{raw:,.0f} ms" if raw else "", f"{raw / c50:,.0f}× (cold)" if raw else "")
    for e in export_rows:
        table.add_row(f"export {e['format']} {e['rows']:,} rows", f"{e['seconds']:.1f} s",
                      f"{e['rows'] / e['seconds']:,.0f} rows/s", f"server peak RSS {e['rss_mb']:.0f} MB",
                      f"{e['bytes'] / 1e6:.0f} MB", "", "", "")
    if live_row:
        table.add_row(f"live: ingest → WebSocket (n={live_row['n']})", "", f"{live_row['ingest_p50']:.1f} ms",
                      f"p99 {live_row['ingest_p99']:.1f} ms", f"commit→ws {live_row['commit_p50']:.1f} ms",
                      f"p99 {live_row['commit_p99']:.1f} ms", "", "")
    console.print(table)


if __name__ == "__main__":
    main()
