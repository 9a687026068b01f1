"""Payout benchmark against one running stack, in one run. Prints a table.

    .venv/bin/python bench/payouts.py            # starts its own `payops up` in a temp dir
    .venv/bin/python bench/payouts.py --n 400 --concurrency 32

Measures:
  1. raw Temporal `start_workflow` rate vs the payout API's accepted rate   (target ratio >= 0.8)
     "Raw" starts exactly what the API starts for a payout — a PayoutWorkflow with the same
     (codec-encrypted) input, search attributes and id policies — straight from a client, to a
     queue nobody polls; a bare start (tiny input, no search attributes) is printed for reference.
     On one 2-core machine the API phase also pays for processing the payouts it starts (the
     worker, Temporal's workflow and activity tasks, PostgreSQL), which the unpolled starts do
     not. So a second baseline starts real payouts (rows written straight to the database) on the
     stack's own queue, processed by its worker as they start: the API against that one compares
     like with like. CPU milliseconds per item and per service are printed for each phase.
  2. completed end-to-end payouts/s vs a no-op workflow with as many no-op activities
     as a payout's happy path                                                (target ratio >= 0.5)
  3. p50/p99 latency of a create and of an idempotent replay            (target replay p50 <= 0.2 x create p50)

The stack's Temporal Schedules (provider syncs, sweeper, alert checks, connector health) are
paused first, so their periodic work is not charged to whichever phase it falls in.
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
from datetime import datetime, timezone
from pathlib import Path

import httpx
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.platform.auth_tokens import mint_dev_token  # noqa: E402
from core.platform.names import payout_workflow_id  # noqa: E402
from core.platform.crypto import FieldCipher  # noqa: E402
from core.platform.db import create_engine  # noqa: E402
from core.payouts.service import _search_attributes, start_payout_workflow, workflow_input  # noqa: E402
from core.platform.names import PAYOUT_WORKFLOW  # noqa: E402
from core.platform.tables import payouts as payouts_table  # noqa: E402
from devstack.embedded import free_port  # noqa: E402
from core.platform.settings import Settings  # noqa: E402
from core.platform.temporal import connect_temporal  # noqa: E402
from bench.noop_workflow import BenchNoopWorkflow, bench_noop  # noqa: E402

# The payout happy path runs these activities: hold, route, gate, submit, settle.
PAYOUT_ACTIVITIES = 5


TICK = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / TICK  # own + reaped children


def _component(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    for needle, name in (("uvicorn", "api"), ("workers.main", "worker"), ("server start-dev", "temporal"),
                         ("postgres", "postgres"), ("redis", "redis"), ("sandbox.bank", "bank")):
        if needle in cmd:
            return name
    return "other"


def cpu_by_component(root: int) -> dict[str, float]:
    """CPU seconds used so far by each service of the stack (its whole process subtree), plus
    this bench process (the HTTP / Temporal client)."""
    kids = _children()
    totals: dict[str, float] = {"bench client": _cpu_s(os.getpid())}
    for child in kids.get(root, []):
        name, stack, seen = _component(child), [child], 0.0
        while stack:
            pid = stack.pop()
            seen += _cpu_s(pid)
            stack.extend(kids.get(pid, []))
        totals[name] = totals.get(name, 0.0) + seen
    return totals


def cpu_delta(before: dict[str, float], after: dict[str, float], n: int) -> str:
    parts = [f"{k} {1000 * (after.get(k, 0.0) - before.get(k, 0.0)) / n:.1f}"
             for k in ("api", "temporal", "worker", "postgres", "bank", "bench client")]
    return "CPU ms per item: " + ", ".join(parts)


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
        # instant submits at once; `standard` would wait for the SEPA rail's next cutoff
        "priority": "instant",
        "beneficiary": {"type": "sepa", "name": "Bench Beneficiary", "iban": "DE89370400440532013000",
                        "bic": "COBADEFFXXX"},
        "description": f"bench {i}",
    }


async def run(args) -> list[tuple[str, str, str, str]]:
    data_dir = Path(tempfile.mkdtemp(prefix="payops-bench-"))
    api_port, t_port, ui_port, pg_port = free_port(), free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PAYOPS_DATA_DIR": str(data_dir),
        "PAYOPS_API_PORT": str(api_port),
        "PAYOPS_TEMPORAL_ADDRESS": f"127.0.0.1:{t_port}",
        "PAYOPS_TEMPORAL_UI_PORT": str(ui_port),
        "PAYOPS_PG_PORT": str(pg_port),
        "PAYOPS_SANDBOX_BANK_SETTLE_DELAY_SECONDS": "0.05",
        "PAYOPS_DEMO_ENABLED": "false",  # no demo trickle competing for the 2 cores
    }
    for var in ("PAYOPS_DATABASE_URL", "PAYOPS_REDIS_URL"):
        env.pop(var, None)
    stack = subprocess.Popen([sys.executable, "-m", "cli.main", "up"], cwd=ROOT, env=env,
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
            merchants = []
            for name in ("Bench", "Bench raw"):
                merchant = (await http.post("/api/v1/merchants", headers=ops, json={
                    "name": name, "default_currency": "EUR", "country": "DE"})).json()["id"]
                r = await http.post(f"/api/v1/merchants/{merchant}/funding",
                                    headers={**ops, "Idempotency-Key": f"seed-{name}"},
                                    json={"amount": "100000000.00", "currency": "EUR"})
                r.raise_for_status()
                merchants.append(merchant)
            db_url = f"postgresql://postgres@127.0.0.1:{pg_port}/payops"
            return await measure(args, http, ops, merchants, settings, stack.pid, db_url)
    finally:
        stack.send_signal(signal.SIGINT)
        try:
            stack.wait(60)
        except subprocess.TimeoutExpired:
            stack.kill()


async def wait_settled(http, ops, merchant: str, n: int, since: float) -> float:
    """Seconds from `since` until `n` of the merchant's payouts are settled."""
    while True:
        stats = (await http.get("/api/v1/payouts/stats/summary", headers=ops,
                                params={"merchant_id": merchant})).json()
        settled = stats["by_status"].get("settled", 0)
        if settled >= n:
            return time.perf_counter() - since
        if time.perf_counter() - since > 600:
            raise SystemExit(f"only {settled}/{n} payouts settled after 600 s")
        await asyncio.sleep(0.25)


async def insert_payout_rows(db_url: str, settings, merchant: str, n: int) -> list[dict]:
    """Payout rows as the API would have committed them, written straight to the database, so the
    processed raw phase starts real payouts without the API."""
    engine = create_engine(db_url, pool_size=1, max_overflow=0)
    cipher = FieldCipher(settings.codec_keys)
    beneficiary = payout_body(merchant, 0)["beneficiary"]
    values = [{"id": f"po_{uuid.uuid4().hex}", "merchant_id": merchant, "idempotency_key": f"raw-{i}",
               "amount_minor": 1000 + i, "currency": "EUR", "fee_minor": 25, "method": "sepa",
               "priority": "instant", "rail": "sepa_instant", "status": "pending",
               "beneficiary_encrypted": cipher.encrypt_json(beneficiary),
               "beneficiary_masked": {"name": beneficiary["name"]}} for i in range(n)]
    try:
        async with engine.begin() as conn:
            rows = (await conn.execute(payouts_table.insert().values(values).returning(*payouts_table.c))).mappings().all()
    finally:
        await engine.dispose()
    return [dict(r) for r in rows]


async def pause_schedules(client) -> list[str]:
    """Pause the stack's Temporal Schedules (provider syncs with their browser, the sweeper, alert
    checks, connector health): their work would be charged to whichever phase it fell in. Only the
    bench's own stack is touched, and it is thrown away afterwards."""
    deadline = time.monotonic() + 30  # the worker creates them once it is up
    while True:
        ids = [listed.id async for listed in await client.list_schedules()]
        if ids or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    for schedule_id in ids:
        handle = client.get_schedule_handle(schedule_id)
        if not (await handle.describe()).schedule.state.paused:
            await handle.pause(note="bench/payouts.py: measuring payouts only")
    return ids


async def measure(args, http, ops, merchants, settings, stack_pid: int, db_url: str) -> list[tuple[str, str, str, str]]:
    client = await connect_temporal(settings)
    n, c = args.n, args.concurrency
    merchant, raw_merchant = merchants
    paused = await pause_schedules(client)

    # 1. raw start_workflow rate (to a queue nobody polls: pure start cost)
    async def start_bare(i):
        await client.start_workflow("BenchNoopWorkflow", 0, id=f"bench-bare-{uuid.uuid4().hex}",
                                    task_queue="bench-unpolled")
    t0 = time.perf_counter()
    await bounded(n, c, start_bare)
    bare_rate = n / (time.perf_counter() - t0)

    def raw_row(i):
        return {"id": f"po_bench{uuid.uuid4().hex}", "merchant_id": merchant, "amount_minor": 1000 + i,
                "fee_minor": 25, "currency": "EUR", "method": "sepa", "priority": "instant", "rail": "sepa_instant",
                "created_at": datetime.now(timezone.utc)}

    async def start_raw(i):
        row = raw_row(i)
        await client.start_workflow(
            PAYOUT_WORKFLOW, workflow_input(row, settings), id=payout_workflow_id(row["id"]),
            task_queue="bench-unpolled", id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE, search_attributes=_search_attributes(row))
    cpu_raw = cpu_by_component(stack_pid)
    t0 = time.perf_counter()
    await bounded(n, c, start_raw)
    raw_rate = n / (time.perf_counter() - t0)
    cpu_raw = cpu_delta(cpu_raw, cpu_by_component(stack_pid), n)

    # 1b. raw starts of real payouts (rows already committed) on the stack's own task queue: the
    # stack's worker processes them while the starts go on, as it does in the API phase
    rows = await insert_payout_rows(db_url, settings, raw_merchant, n)

    async def start_processed(i):
        await start_payout_workflow(client, settings, rows[i])
    cpu_proc = cpu_by_component(stack_pid)
    t0 = time.perf_counter()
    await bounded(n, c, start_processed)
    proc_rate = n / (time.perf_counter() - t0)
    cpu_proc = cpu_delta(cpu_proc, cpu_by_component(stack_pid), n)
    await wait_settled(http, ops, raw_merchant, n, t0)  # drained before the API phase starts

    # 2. payout API accepted rate, and the end-to-end completion of those payouts
    async def create(i):
        r = await http.post("/api/v1/payouts", headers={**ops, "Idempotency-Key": f"bench-{i}"},
                            json=payout_body(merchant, i))
        if r.status_code != 201:
            raise SystemExit(f"create failed: {r.status_code} {r.text[:300]}")
    cpu_api = cpu_e2e = cpu_by_component(stack_pid)
    t0 = time.perf_counter()
    await bounded(n, c, create)
    api_elapsed = time.perf_counter() - t0
    cpu_api = cpu_delta(cpu_api, cpu_by_component(stack_pid), n)
    api_rate = n / api_elapsed
    e2e_rate = n / await wait_settled(http, ops, merchant, n, t0)
    cpu_e2e = cpu_delta(cpu_e2e, cpu_by_component(stack_pid), n)

    # the same number of workflows, each with as many no-op activities, on an in-process worker
    async with Worker(client, task_queue="bench-noop", workflows=[BenchNoopWorkflow], activities=[bench_noop],
                      max_concurrent_activities=200):
        t0 = time.perf_counter()
        cpu_noop = cpu_by_component(stack_pid)

        async def noop(i):
            await client.execute_workflow(BenchNoopWorkflow.run, PAYOUT_ACTIVITIES,
                                          id=f"bench-noop-{uuid.uuid4().hex}", task_queue="bench-noop")
        await bounded(n, c, noop)
        noop_rate = n / (time.perf_counter() - t0)
        # the no-op worker runs in this process: its CPU is counted as the bench client's
        cpu_noop = cpu_delta(cpu_noop, cpu_by_component(stack_pid), n)

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
        ("stack's Schedules paused while measuring", str(len(paused)), ", ".join(sorted(paused))[:80], ""),
        ("bare start_workflow rate", f"{bare_rate:.0f}/s", "", ""),
        ("raw PayoutWorkflow start rate", f"{raw_rate:.0f}/s", "", ""),
        ("raw start of real payouts, worker processing", f"{proc_rate:.0f}/s", "", ""),
        ("payout API accepted rate", f"{api_rate:.0f}/s", f"ratio {api_rate / raw_rate:.2f}", ">= 0.8"),
        ("  ... vs raw start with the same processing", "", f"ratio {api_rate / proc_rate:.2f}", ">= 0.8"),
        ("  CPU, raw PayoutWorkflow start phase", cpu_raw, "", ""),
        ("  CPU, raw start + processing phase", cpu_proc, "", ""),
        ("  CPU, API phase", cpu_api, "", ""),
        ("no-op workflow, 5 activities", f"{noop_rate:.1f}/s", "", ""),
        ("end-to-end settled payouts", f"{e2e_rate:.1f}/s", f"ratio {e2e_rate / noop_rate:.2f}", ">= 0.5"),
        ("  CPU, create to settled", cpu_e2e, "", ""),
        ("  CPU, no-op workflows", cpu_noop, "", ""),
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
