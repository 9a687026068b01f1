"""Payout benchmark against one running stack, in one run. Prints a table.

    .venv/bin/python bench/payouts.py            # starts its own `payops up` in a temp dir
    .venv/bin/python bench/payouts.py --n 400 --concurrency 32

Measures:
  1. raw Temporal `start_workflow` rate vs the payout API's accepted rate   (target ratio >= 0.8)
  2. completed end-to-end payouts/s vs a no-op workflow with as many no-op activities
     as a payout's happy path                                                (target ratio >= 0.5)
  3. p50/p99 latency of a create and of an idempotent replay            (target replay p50 <= 0.2 x create p50)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from temporalio.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.auth_tokens import mint_dev_token  # noqa: E402
from core.embedded import free_port  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.temporal import connect_temporal  # noqa: E402
from bench.noop_workflow import BenchNoopWorkflow, bench_noop  # noqa: E402

# The payout happy path runs these activities: hold, route, gate, submit, settle.
PAYOUT_ACTIVITIES = 5


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def bounded(n: int, concurrency: int, make):
    sem = asyncio.Semaphore(concurrency)

    async def one(i):
        async with sem:
            return await make(i)

    return await asyncio.gather(*(one(i) for i in range(n)))


def payout_body(merchant_id: str, i: int) -> dict:
    return {
        "merchant_id": merchant_id,
        "amount": f"{10 + i % 90}.{i % 100:02d}",
        "currency": "EUR",
        "method": "sepa",
        "priority": "standard",
        "beneficiary": {"type": "sepa", "name": "Bench Beneficiary", "iban": "DE89370400440532013000",
                        "bic": "COBADEFFXXX"},
        "description": f"bench {i}",
    }


async def run(args) -> list[tuple[str, str, str, str]]:
    data_dir = Path(tempfile.mkdtemp(prefix="payops-bench-"))
    api_port, t_port, ui_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PAYOPS_DATA_DIR": str(data_dir),
        "PAYOPS_API_PORT": str(api_port),
        "PAYOPS_TEMPORAL_ADDRESS": f"127.0.0.1:{t_port}",
        "PAYOPS_TEMPORAL_UI_PORT": str(ui_port),
        "PAYOPS_SANDBOX_BANK_SETTLE_DELAY_SECONDS": "0.05",
    }
    for var in ("PAYOPS_DATABASE_URL", "PAYOPS_REDIS_URL"):
        env.pop(var, None)
    stack = subprocess.Popen([sys.executable, "-m", "core.cli", "up"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{api_port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if (await http.get("/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or stack.poll() is not None:
                    raise SystemExit(f"stack did not become ready; see {data_dir}/logs")
                await asyncio.sleep(0.5)
            settings = Settings(_env_file=None, temporal_address=f"127.0.0.1:{t_port}")
            ops = {"Authorization": "Bearer " + mint_dev_token(settings, role="ops_admin", sub="bench")}
            merchant = (await http.post("/api/v1/merchants", headers=ops, json={
                "name": "Bench", "default_currency": "EUR", "country": "DE"})).json()["id"]
            r = await http.post(f"/api/v1/merchants/{merchant}/funding", headers={**ops, "Idempotency-Key": "seed"},
                                json={"amount": "100000000.00", "currency": "EUR"})
            r.raise_for_status()
            return await measure(args, http, ops, merchant, settings)
    finally:
        stack.send_signal(signal.SIGINT)
        try:
            stack.wait(60)
        except subprocess.TimeoutExpired:
            stack.kill()


async def measure(args, http, ops, merchant, settings) -> list[tuple[str, str, str, str]]:
    client = await connect_temporal(settings)
    n, c = args.n, args.concurrency

    # 1. raw start_workflow rate (to a queue nobody polls: pure start cost)
    async def start_raw(i):
        await client.start_workflow("BenchNoopWorkflow", 0, id=f"bench-raw-{uuid.uuid4().hex}",
                                    task_queue="bench-unpolled")
    t0 = time.perf_counter()
    await bounded(n, c, start_raw)
    raw_rate = n / (time.perf_counter() - t0)

    # 2. payout API accepted rate, and the end-to-end completion of those payouts
    created_at: dict[str, float] = {}

    async def create(i):
        r = await http.post("/api/v1/payouts", headers={**ops, "Idempotency-Key": f"bench-{i}"},
                            json=payout_body(merchant, i))
        if r.status_code != 201:
            raise SystemExit(f"create failed: {r.status_code} {r.text[:300]}")
        created_at[r.json()["id"]] = time.perf_counter()
    t0 = time.perf_counter()
    await bounded(n, c, create)
    api_elapsed = time.perf_counter() - t0
    api_rate = n / api_elapsed
    while True:
        stats = (await http.get("/api/v1/payouts/stats/summary", headers=ops,
                                params={"merchant_id": merchant})).json()
        settled = stats["by_status"].get("settled", 0)
        if settled >= n:
            break
        if time.perf_counter() - t0 > 600:
            raise SystemExit(f"only {settled}/{n} payouts settled after 600 s")
        await asyncio.sleep(0.25)
    e2e_rate = n / (time.perf_counter() - t0)

    # the same number of workflows, each with as many no-op activities, on an in-process worker
    async with Worker(client, task_queue="bench-noop", workflows=[BenchNoopWorkflow], activities=[bench_noop],
                      max_concurrent_activities=200):
        t0 = time.perf_counter()

        async def noop(i):
            await client.execute_workflow(BenchNoopWorkflow.run, PAYOUT_ACTIVITIES,
                                          id=f"bench-noop-{uuid.uuid4().hex}", task_queue="bench-noop")
        await bounded(n, c, noop)
        noop_rate = n / (time.perf_counter() - t0)

    # 3. latency of a create and of an idempotent replay (sequential, one client)
    create_ms, replay_ms = [], []
    keys = []
    for i in range(args.latency_n):
        key, body = f"lat-{i}-{uuid.uuid4().hex[:6]}", payout_body(merchant, 1000 + i)
        t = time.perf_counter()
        r = await http.post("/api/v1/payouts", headers={**ops, "Idempotency-Key": key}, json=body)
        create_ms.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 201, r.text
        keys.append((key, body))
    for key, body in keys:
        t = time.perf_counter()
        r = await http.post("/api/v1/payouts", headers={**ops, "Idempotency-Key": key}, json=body)
        replay_ms.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text

    c50, c99 = statistics.median(create_ms), pct(create_ms, 0.99)
    r50, r99 = statistics.median(replay_ms), pct(replay_ms, 0.99)
    return [
        ("raw start_workflow rate", f"{raw_rate:.0f}/s", "", ""),
        ("payout API accepted rate", f"{api_rate:.0f}/s", f"ratio {api_rate / raw_rate:.2f}", ">= 0.8"),
        ("no-op workflow, 5 activities", f"{noop_rate:.1f}/s", "", ""),
        ("end-to-end settled payouts", f"{e2e_rate:.1f}/s", f"ratio {e2e_rate / noop_rate:.2f}", ">= 0.5"),
        ("create latency p50 / p99", f"{c50:.1f} / {c99:.1f} ms", "", ""),
        ("replay latency p50 / p99", f"{r50:.1f} / {r99:.1f} ms", f"ratio {r50 / c50:.2f}", "<= 0.2"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="payouts / workflows per throughput phase")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-n", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    widths = [max(len(r[i]) for r in rows + [("measure", "value", "vs", "target")]) for i in range(4)]
    print("  ".join(h.ljust(w) for h, w in zip(("measure", "value", "vs", "target"), widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


if __name__ == "__main__":
    main()
