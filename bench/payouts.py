"""Payout benchmark against one running stack, in one run: ONE table with each goal of issue 19,
its target, the measured value and whether it is met, and the CPU milliseconds per item of every
process of the stack (API, Temporal, worker, PostgreSQL, bank simulator, Redis).

    .venv/bin/python bench/payouts.py                         # starts its own `payops up` in a temp dir
    .venv/bin/python bench/payouts.py --n 400 --bulk-n 10000  # --n 0 or --bulk-n 0 skips that part

Phases, in order, on one stack:
  1. single payouts: --n creates through POST /payouts at --concurrency (32), while the stack
     processes what it accepts; each create's latency is recorded (goal 2), then the time until
     all are settled gives settled payouts/s and the CPU per settled payout (goal 1);
  2. the idempotent replay of every one of those creates, at the same concurrency (goal 2);
  2b. the API request log (issue 21): two more APIs, started as the stack's (its command line and
     environment) with PAYOPS_API_LOG_ENABLED=true and =false, take every other create of
     --log-n payouts at the same concurrency: create p50 and p99 with and without the log,
     measured side by side in one phase (target: under 5 % added);
  3. the baseline: as many no-op workflows with 5 no-op activities each (a payout's happy path
     has 5 steps), on an in-process worker (its CPU is the bench client's); then the floor: as many
     workflows of a payout's least possible shape (start, one local-activity step, the settlement
     signal, complete), what Temporal spends on any payout that has a workflow of its own; then as
     many bare starts to a task queue nobody polls (Temporal's cost and latency of a start alone);
  4. bulk: one POST /bulk-payouts of --bulk-n items (goal 3: answered in <= 5 s), then the time
     until every payout of the batch is settled (<= 300 s; --settle-timeout stops the wait and
     reports how many settled), with the CPU per item of the intake and per settled payout.

The stack's Temporal Schedules are paused first, so their periodic work is not charged to a phase.
The approval threshold is off (the batch is released at once) and the return window is 0.36 s
(PAYOPS_PAYOUT_RETURN_WINDOW_HOURS=0.0001), so a settled payout's workflow closes, and the cost
of its return watch is counted, within the run. The machine's load average is printed with the
figures: on 2 shared cores other work changes every wall-clock figure.
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

from core.platform.auth_tokens import mint_dev_token  # noqa: E402
from core.platform.names import payout_workflow_id  # noqa: E402
from devstack.embedded import free_port  # noqa: E402
from core.platform.settings import Settings  # noqa: E402
from core.platform.temporal import connect_temporal  # noqa: E402
from bench.noop_workflow import BenchFloorWorkflow, BenchNoopWorkflow, bench_noop  # noqa: E402

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


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def bounded(n: int, concurrency: int, make):
    sem = asyncio.Semaphore(concurrency)

    async def one(i):
        async with sem:
            return await make(i)

    return await asyncio.gather(*(one(i) for i in range(n)))


async def timed_phase(n: int, concurrency: int, make, stack_pid: int) -> tuple[float, dict[str, float]]:
    """Run `make` n times at `concurrency`: (items/s, CPU ms per item by process)."""
    cpu0 = cpu_by_component(stack_pid)
    t0 = time.perf_counter()
    await bounded(n, concurrency, make)
    return n / (time.perf_counter() - t0), cpu_ms(cpu0, cpu_by_component(stack_pid), n)


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
        "PAYOPS_BULK_PAYOUT_APPROVAL_THRESHOLD_MINOR": "0",  # the batch is released at once
        "PAYOPS_PAYOUT_RETURN_WINDOW_HOURS": "0.0001",  # a settled payout's workflow closes within the run
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
            for name in ("Bench", "Bench bulk"):
                merchant = (await http.post("/api/v1/merchants", headers=ops, json={
                    "name": name, "default_currency": "EUR", "country": "DE"})).json()["id"]
                r = await http.post(f"/api/v1/merchants/{merchant}/funding",
                                    headers={**ops, "Idempotency-Key": f"seed-{name}"},
                                    json={"amount": "100000000.00", "currency": "EUR"})
                r.raise_for_status()
                merchants.append(merchant)
            return await measure(args, http, ops, merchants, settings, stack.pid)
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


def cpu_ms(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    return {k: 1000 * (after.get(k, 0.0) - before.get(k, 0.0)) / max(n, 1) for k in set(before) | set(after)}


STACK = ("api", "temporal", "worker", "postgres", "bank", "redis", "other")
LABEL = {"api": "API", "temporal": "Temporal", "worker": "worker", "postgres": "PostgreSQL", "bank": "bank",
         "redis": "Redis", "other": "other", "bench client": "bench"}


def stack_total(ms: dict[str, float]) -> float:
    return sum(ms.get(k, 0.0) for k in STACK)


def cpu_text(ms: dict[str, float], *, with_client: bool = False, digits: int = 1) -> str:
    keys = STACK + (("bench client",) if with_client else ())
    return ", ".join(f"{LABEL[k]} {ms.get(k, 0.0):.{digits}f}" for k in keys if k in ms or k in STACK[:5])


def bulk_items(n: int) -> list[dict]:
    ibans = [("DE89370400440532013000", "COBADEFFXXX"), ("FR1420041010050500013M02606", "PSSTFRPPXXX"),
             ("NL91ABNA0417164300", "ABNANL2AXXX")]
    return [{"reference": f"bench-{uuid.uuid4().hex[:8]}-{i}", "amount": f"{1 + i % 50}.{i % 100:02d}",
             "currency": "EUR", "method": "sepa", "priority": "instant",
             "beneficiary": {"name": f"Employee {i}", "iban": ibans[i % 3][0], "bic": ibans[i % 3][1]},
             "metadata": {"employee": f"E-{i}"}} for i in range(n)]


async def measure_singles(args, http, ops, client, merchant: str, stack_pid: int) -> dict:
    n, c = args.n, args.concurrency
    keys = [(f"bench-{i}-{uuid.uuid4().hex[:6]}", payout_body(merchant, i)) for i in range(n)]
    create_ms: list[float] = []
    payout_ids: list[str] = []

    async def create(i):
        key, body = keys[i]
        t = time.perf_counter()
        r = await http.post("/api/v1/payouts", headers={**ops, "Idempotency-Key": key}, json=body)
        create_ms.append((time.perf_counter() - t) * 1000)
        if r.status_code != 201:
            raise SystemExit(f"create failed: {r.status_code} {r.text[:300]}")
        payout_ids.append(r.json()["id"])
    cpu0 = cpu_by_component(stack_pid)
    t0 = time.perf_counter()
    await bounded(n, c, create)
    accepted_rate = n / (time.perf_counter() - t0)
    e2e_rate = n / await wait_settled(http, ops, merchant, n, t0)
    await asyncio.sleep(1)  # the return window (0.36 s) closes the workflows: their last tasks
    cpu_e2e = cpu_ms(cpu0, cpu_by_component(stack_pid), n)
    history = await history_shape(client, payout_ids[:20])

    replay_ms: list[float] = []

    async def replay(i):
        key, body = keys[i]
        t = time.perf_counter()
        r = await http.post("/api/v1/payouts", headers={**ops, "Idempotency-Key": key}, json=body)
        replay_ms.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"replay answered {r.status_code}: {r.text[:300]}")
    await bounded(n, c, replay)

    # the same number of workflows with as many no-op activities, on an in-process worker; then as
    # many of a payout's least possible shape (one local step, a settlement signal), the floor
    async with Worker(client, task_queue="bench-noop", workflows=[BenchNoopWorkflow, BenchFloorWorkflow],
                      activities=[bench_noop], max_concurrent_activities=200):
        async def noop(i):
            await client.execute_workflow(BenchNoopWorkflow.run, PAYOUT_ACTIVITIES,
                                          id=f"bench-noop-{uuid.uuid4().hex}", task_queue="bench-noop")
        noop_rate, cpu_noop = await timed_phase(n, c, noop, stack_pid)

        async def floor(i):
            handle = await client.start_workflow(BenchFloorWorkflow.run, id=f"bench-floor-{uuid.uuid4().hex}",
                                                 task_queue="bench-noop")
            await handle.signal(BenchFloorWorkflow.settled)
            await handle.result()
        floor_rate, cpu_floor = await timed_phase(n, c, floor, stack_pid)

    # a bare start (to a queue nobody polls) at the same concurrency: what accepting a payout costs
    # Temporal alone, and how fast Temporal alone answers it (what a create that starts its workflow
    # can never beat)
    start_ms: list[float] = []

    async def bare_start(i):
        t = time.perf_counter()
        await client.start_workflow(BenchFloorWorkflow.run, id=f"bench-start-{uuid.uuid4().hex}",
                                    task_queue="bench-nobody-polls")
        start_ms.append((time.perf_counter() - t) * 1000)
    _, cpu_start = await timed_phase(n, c, bare_start, stack_pid)
    return {"accepted_rate": accepted_rate, "e2e_rate": e2e_rate, "cpu": cpu_e2e, "noop_rate": noop_rate,
            "cpu_noop": cpu_noop, "floor_rate": floor_rate, "cpu_floor": cpu_floor, "cpu_start": cpu_start,
            "start_p50": statistics.median(start_ms), "start_p99": pct(start_ms, 0.99),
            "create_p50": statistics.median(create_ms), "create_p99": pct(create_ms, 0.99),
            "replay_p50": statistics.median(replay_ms), "replay_p99": pct(replay_ms, 0.99), "history": history}


async def history_shape(client, payout_ids: list[str]) -> dict[str, float]:
    """What Temporal keeps per settled payout, averaged over a sample of the bench's payouts: history
    events, workflow tasks, activity tasks, local activities (markers) and search-attribute upserts."""
    from temporalio.api.enums.v1 import EventType as E

    kinds = {"events": None, "workflow tasks": E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
             "activity tasks": E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, "local activities": E.EVENT_TYPE_MARKER_RECORDED,
             "upserts": E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES}
    totals = dict.fromkeys(kinds, 0)
    for payout_id in payout_ids:
        events = (await client.get_workflow_handle(payout_workflow_id(payout_id)).fetch_history()).events
        for name, kind in kinds.items():
            totals[name] += sum(1 for e in events if kind is None or (
                e.event_type == kind and (kind != E.EVENT_TYPE_MARKER_RECORDED
                                          or e.marker_recorded_event_attributes.marker_name == "core_local_activity")))
    return {name: total / max(len(payout_ids), 1) for name, total in totals.items()}


def _api_process(stack_pid: int) -> int | None:
    """The stack's API (the uvicorn process the stack started)."""
    for child in _children().get(stack_pid, []):
        if _component(child) == "api":
            return child
    return None


async def start_api(http, stack_pid: int, *, log_enabled: bool) -> tuple[subprocess.Popen, str]:
    """Another API beside the stack's: the same command line and environment, its own port, and
    the request log switched on or off (PAYOPS_API_LOG_ENABLED)."""
    pid = _api_process(stack_pid)
    if pid is None:
        raise SystemExit("the stack's API process was not found")
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
    env = dict(line.split("=", 1) for line in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
               if "=" in line)
    cwd = os.readlink(f"/proc/{pid}/cwd")
    port = free_port()
    cmd[cmd.index("--port") + 1] = str(port)
    env.update(PAYOPS_API_PORT=str(port), PAYOPS_API_LOG_ENABLED="true" if log_enabled else "false")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if (await http.get(f"{base}/ready")).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"the API with the request log {'on' if log_enabled else 'off'} did not become ready")
        await asyncio.sleep(0.5)


async def measure_api_log(args, http, ops, merchant: str, stack_pid: int) -> dict:
    """Create latency with the request log and without it: two more APIs, started alike (the
    stack's command line and environment) but for PAYOPS_API_LOG_ENABLED, take every other create,
    at the same concurrency: the load of the machine and of the stack falls on both alike."""
    procs: list[subprocess.Popen] = []
    try:
        proc, base_on = await start_api(http, stack_pid, log_enabled=True)
        procs.append(proc)
        proc, base_off = await start_api(http, stack_pid, log_enabled=False)
        procs.append(proc)
        n, c = args.log_n, args.concurrency
        latency: dict[bool, list[float]] = {True: [], False: []}

        async def create(i):
            log_on = i % 2 == 0
            url = f"{base_on if log_on else base_off}/api/v1/payouts"
            t = time.perf_counter()
            r = await http.post(url, headers={**ops, "Idempotency-Key": f"bench-log-{i}-{uuid.uuid4().hex[:6]}"},
                                json=payout_body(merchant, i))
            latency[log_on].append((time.perf_counter() - t) * 1000)
            if r.status_code != 201:
                raise SystemExit(f"create failed: {r.status_code} {r.text[:300]}")
        async def warm_up(i):  # both APIs' connection pools and clients, before anything is timed
            url = f"{base_on if i % 2 == 0 else base_off}/api/v1/payouts"
            r = await http.post(url, headers={**ops, "Idempotency-Key": f"bench-warm-{i}-{uuid.uuid4().hex[:6]}"},
                                json=payout_body(merchant, i))
            r.raise_for_status()
        warm = 2 * c
        await bounded(warm, c, warm_up)
        await bounded(n, c, create)
        n += warm
        # settled before the next phase starts, so their processing is not charged to it
        await wait_settled(http, ops, merchant, (args.n or 0) + n, time.perf_counter())
        out = {}
        for on in (True, False):
            out[f"p50_{'on' if on else 'off'}"] = statistics.median(latency[on])
            out[f"p99_{'on' if on else 'off'}"] = pct(latency[on], 0.99)
        out["n"] = n - warm
        return out
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def measure_bulk(args, http, ops, merchant: str, stack_pid: int) -> dict:
    n = args.bulk_n
    payload = json.dumps({"merchant_id": merchant, "mode": "partial", "items": bulk_items(n)}).encode()
    await asyncio.sleep(2)  # let the stack go idle
    cpu0 = cpu_by_component(stack_pid)
    t0 = time.perf_counter()
    r = await http.post("/api/v1/bulk-payouts", content=payload, timeout=300,
                        headers={**ops, "Idempotency-Key": f"bench-{uuid.uuid4().hex}",
                                 "content-type": "application/json"})
    intake_s = time.perf_counter() - t0
    cpu1 = cpu_by_component(stack_pid)
    if r.status_code != 201 or r.json()["accepted_count"] != n:
        raise SystemExit(f"bulk payout answered {r.status_code}: {r.text[:300]}")
    batch_id = r.json()["id"]
    started_s = settled_s = None
    status: dict = {}
    while time.perf_counter() - t0 < args.settle_timeout:
        status = (await http.get(f"/api/v1/bulk-payouts/{batch_id}", headers=ops)).json()
        if started_s is None and status["intake"]["completed_at"]:
            started_s = time.perf_counter() - t0
        if status["status"] == "completed":
            settled_s = time.perf_counter() - t0
            break
        await asyncio.sleep(1)
    cpu2 = cpu_by_component(stack_pid)
    settled = status.get("payouts_by_status", {}).get("settled", 0)
    return {"n": n, "mb": len(payload) / 1e6, "intake_s": intake_s, "cpu_intake": cpu_ms(cpu0, cpu1, n),
            "started_s": started_s, "settled_s": settled_s, "settled": settled,
            "elapsed_s": time.perf_counter() - t0, "cpu_settle": cpu_ms(cpu1, cpu2, settled),
            "by_status": status.get("payouts_by_status", {})}


def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "NOT met")


def goal_table(args, single: dict | None, bulk: dict | None, load: tuple, paused: list[str],
               api_log: dict | None = None) -> list[tuple]:
    """(goal, target, measured, met) rows."""
    rows: list[tuple[str, str, str, str]] = []
    if single:
        total = stack_total(single["cpu"])
        ratio = single["e2e_rate"] / single["noop_rate"]
        rows += [
            (f"1. CPU per settled payout, all processes ({args.n} singles)", "<= 50 ms", f"{total:.1f} ms",
             _met(total <= 50)),
            ("1. settled payouts/s vs no-op 5-activity workflow", ">= 1.5 x",
             f"{ratio:.2f} x ({single['e2e_rate']:.1f}/s vs {single['noop_rate']:.1f}/s)", _met(ratio >= 1.5)),
            (f"2. create latency p50, concurrency {args.concurrency}", "<= 25 ms", f"{single['create_p50']:.1f} ms",
             _met(single["create_p50"] <= 25)),
            (f"2. create latency p99, concurrency {args.concurrency}", "<= 150 ms", f"{single['create_p99']:.1f} ms",
             _met(single["create_p99"] <= 150)),
            ("2. replay p50 / create p50", "<= 0.2",
             f"{single['replay_p50'] / single['create_p50']:.2f} ({single['replay_p50']:.1f} ms)",
             _met(single["replay_p50"] <= 0.2 * single["create_p50"])),
        ]
    if api_log:
        for q in ("p50", "p99"):
            on, off = api_log[f"{q}_on"], api_log[f"{q}_off"]
            added = 100 * (on - off) / off
            rows.append((f"21. create {q} with the API request log vs without ({api_log['n']} creates)",
                         "< 5 % added", f"{on:.1f} ms vs {off:.1f} ms ({added:+.1f} %)", _met(added < 5)))
    if bulk:
        n = bulk["n"]
        settle_total = stack_total(bulk["cpu_settle"])
        all_settled = bulk["settled_s"] is not None
        rows += [
            (f"3. bulk: {n:,} items accepted (POST answered)", "<= 5 s",
             f"{bulk['intake_s']:.2f} s ({n / bulk['intake_s']:.0f} items/s, {bulk['mb']:.1f} MB; "
             f"{stack_total(bulk['cpu_intake']) * n / 1000:.2f} s of CPU, all processes)",
             _met(bulk["intake_s"] <= 5)),
            (f"3. bulk: all {n:,} settled", "<= 300 s",
             f"{bulk['settled_s']:.1f} s" if all_settled else
             f"{bulk['settled']:,}/{n:,} in {bulk['elapsed_s']:.0f} s",
             _met(all_settled and bulk["settled_s"] <= 300)),
            ("3. bulk: CPU per settled payout, all processes", "<= 50 ms",
             f"{settle_total:.1f} ms ({bulk['settled']:,} settled)", _met(bulk["settled"] > 0 and settle_total <= 50)),
        ]
    rows.append(("CPU ms per item by process", "", "", ""))
    if single:
        rows.append(("  single payout, create -> settled", "", cpu_text(single["cpu"]),
                     f"total {stack_total(single['cpu']):.1f}"))
        rows += [(label, "", cpu_text(single[key], with_client=True),
                  f"total {stack_total(single[key]) + single[key].get('bench client', 0.0):.1f}")
                 for label, key in (("  no-op workflow (worker = bench)", "cpu_noop"),
                                    ("  floor: 1 local step + settlement signal (worker = bench)", "cpu_floor"),
                                    ("  bare workflow start, nobody polls (client = bench)", "cpu_start"))]
    if bulk:
        rows += [
            ("  bulk intake, per item (the POST)", "", cpu_text(bulk["cpu_intake"], digits=2),
             f"total {stack_total(bulk['cpu_intake']):.2f}"),
            ("  bulk, per settled payout", "", cpu_text(bulk["cpu_settle"]), f"total {stack_total(bulk['cpu_settle']):.1f}"),
            ("  bulk payouts by status at the end", "", json.dumps(bulk["by_status"]), ""),
        ]
    if single:
        shape = single["history"]
        rows += [("info: history per settled payout (20 sampled)", "",
                  ", ".join(f"{v:.1f} {k}" for k, v in shape.items()), ""),
                 ("info: API accepted rate", "", f"{single['accepted_rate']:.0f}/s", ""),
                 ("info: floor workflows/s (1 local step + settlement signal, no payout work)", "",
                  f"{single['floor_rate']:.1f}/s", ""),
                 (f"info: bare workflow start latency p50 / p99, concurrency {args.concurrency}", "",
                  f"{single['start_p50']:.1f} / {single['start_p99']:.1f} ms", ""),
                 ("info: replay p99", "", f"{single['replay_p99']:.1f} ms", "")]
    if bulk:
        rows.append(("info: bulk, all workflows started", "",
                     f"{bulk['started_s']:.1f} s" if bulk["started_s"] else "not within the wait", ""))
    rows.append(("load average 1/5/15 min, start -> end", "",
                 f"{load[0][0]:.2f}/{load[0][1]:.2f}/{load[0][2]:.2f} -> {load[1][0]:.2f}/{load[1][1]:.2f}/{load[1][2]:.2f}",
                 f"{os.cpu_count()} cores"))
    rows.append(("stack Schedules paused", "", str(len(paused)), ""))
    return rows


async def measure(args, http, ops, merchants, settings, stack_pid: int) -> list[tuple[str, str, str, str]]:
    client = await connect_temporal(settings)
    paused = await pause_schedules(client)
    load0 = os.getloadavg()
    single = await measure_singles(args, http, ops, client, merchants[0], stack_pid) if args.n else None
    api_log = await measure_api_log(args, http, ops, merchants[0], stack_pid) if args.log_n else None
    bulk = await measure_bulk(args, http, ops, merchants[1], stack_pid) if args.bulk_n else None
    return goal_table(args, single, bulk, (load0, os.getloadavg()), paused, api_log)


def print_table(rows: list[tuple]) -> None:
    header = ("goal / measure", "target", "measured", "met")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(4)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))


def main(argv: list[str] | None = None, *, singles_default: int = 400) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=singles_default, help="single payouts (and no-op workflows); 0 skips")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--log-n", type=int, default=None,
                        help="creates of the request-log comparison, half with the log, half without "
                             "(default: --n); 0 skips")
    parser.add_argument("--bulk-n", type=int, default=10_000, help="items of the bulk payout; 0 skips")
    parser.add_argument("--settle-timeout", type=float, default=300.0,
                        help="stop waiting for the batch to settle after this many seconds (reports progress)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.log_n is None:
        args.log_n = args.n
    rows = asyncio.run(run(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print_table(rows)


if __name__ == "__main__":
    main()
