"""Bulk payout benchmark: one batch of N items (default 10,000) against one running stack.

    .venv/bin/python bench/bulk_payouts.py                      # starts its own `payops up` in a temp dir
    .venv/bin/python bench/bulk_payouts.py --n 10000 --settle-timeout 300

Prints:
  - intake: seconds from sending POST /api/v1/bulk-payouts until the answer (target <= 5 s for
    10,000), and the request's CPU ms per item by process;
  - started: seconds until the intake workflow has started every PayoutWorkflow;
  - settled: seconds until every payout is settled (target <= 300 s), or how many settled within
    --settle-timeout, with the CPU ms per settled payout by process.

The stack's Temporal Schedules are paused first (as in bench/payouts.py). The approval threshold
is switched off (PAYOPS_BULK_PAYOUT_APPROVAL_THRESHOLD_MINOR=0) so the batch is released at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.payouts import cpu_by_component, cpu_delta, pause_schedules  # noqa: E402
from core.platform.auth_tokens import mint_dev_token  # noqa: E402
from devstack.embedded import free_port  # noqa: E402
from core.platform.settings import Settings  # noqa: E402
from core.platform.temporal import connect_temporal  # noqa: E402

IBANS = [("DE89370400440532013000", "COBADEFFXXX"), ("FR1420041010050500013M02606", "PSSTFRPPXXX"),
         ("NL91ABNA0417164300", "ABNANL2AXXX")]


def items(n: int) -> list[dict]:
    return [{"reference": f"bench-{uuid.uuid4().hex[:8]}-{i}", "amount": f"{1 + i % 50}.{i % 100:02d}",
             "currency": "EUR", "method": "sepa", "priority": "instant",
             "beneficiary": {"name": f"Employee {i}", "iban": IBANS[i % 3][0], "bic": IBANS[i % 3][1]},
             "metadata": {"employee": f"E-{i}"}} for i in range(n)]


async def run(args) -> list[tuple[str, str, str, str]]:
    data_dir = Path(tempfile.mkdtemp(prefix="payops-bench-bulk-"))
    api_port, t_port, ui_port, pg_port = free_port(), free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PAYOPS_DATA_DIR": str(data_dir),
        "PAYOPS_API_PORT": str(api_port),
        "PAYOPS_TEMPORAL_ADDRESS": f"127.0.0.1:{t_port}",
        "PAYOPS_TEMPORAL_UI_PORT": str(ui_port),
        "PAYOPS_PG_PORT": str(pg_port),
        "PAYOPS_SANDBOX_BANK_SETTLE_DELAY_SECONDS": "0.05",
        "PAYOPS_DEMO_ENABLED": "false",
        "PAYOPS_BULK_PAYOUT_APPROVAL_THRESHOLD_MINOR": "0",
        "PAYOPS_PAYOUT_RETURN_WINDOW_HOURS": "0.0001",  # let settled payouts' workflows close
    }
    for var in ("PAYOPS_DATABASE_URL", "PAYOPS_REDIS_URL"):
        env.pop(var, None)
    stack = subprocess.Popen([sys.executable, "-m", "cli.main", "up"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{api_port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
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
                "name": "Bulk bench", "default_currency": "EUR", "country": "DE"})).json()["id"]
            (await http.post(f"/api/v1/merchants/{merchant}/funding", headers={**ops, "Idempotency-Key": "seed"},
                             json={"amount": "100000000.00", "currency": "EUR"})).raise_for_status()
            await pause_schedules(await connect_temporal(settings))
            return await measure(args, http, ops, merchant, stack.pid)
    finally:
        stack.send_signal(signal.SIGINT)
        try:
            stack.wait(60)
        except subprocess.TimeoutExpired:
            stack.kill()


async def measure(args, http, ops, merchant: str, stack_pid: int) -> list[tuple[str, str, str, str]]:
    n = args.n
    body = {"merchant_id": merchant, "mode": "partial", "items": items(n)}
    payload = json.dumps(body).encode()
    await asyncio.sleep(2)  # let the stack go idle
    cpu0 = cpu_by_component(stack_pid)
    t0 = time.perf_counter()
    r = await http.post("/api/v1/bulk-payouts", content=payload,
                        headers={**ops, "Idempotency-Key": f"bench-{uuid.uuid4().hex}",
                                 "content-type": "application/json"})
    intake_s = time.perf_counter() - t0
    cpu1 = cpu_by_component(stack_pid)
    r.raise_for_status()
    batch = r.json()
    assert batch["accepted_count"] == n, batch["rejected_count"]
    started_s = settled_s = None
    status: dict = {}
    while time.perf_counter() - t0 < args.settle_timeout:
        status = (await http.get(f"/api/v1/bulk-payouts/{batch['id']}", headers=ops)).json()
        if started_s is None and status["intake"]["completed_at"]:
            started_s = time.perf_counter() - t0
        if status["status"] == "completed":
            settled_s = time.perf_counter() - t0
            break
        await asyncio.sleep(1)
    cpu2 = cpu_by_component(stack_pid)
    settled = status.get("payouts_by_status", {}).get("settled", 0)
    elapsed = time.perf_counter() - t0
    return [
        ("items in the batch", f"{n}", f"{len(payload) / 1e6:.1f} MB JSON", ""),
        ("intake (POST answered)", f"{intake_s:.2f} s", f"{n / intake_s:.0f} items/s", "<= 5 s"),
        ("intake CPU ms/item", cpu_delta(cpu0, cpu1, n), "", ""),
        ("all workflows started", f"{started_s:.1f} s" if started_s else f"not within {args.settle_timeout} s",
         f"{status.get('intake', {}).get('started', 0)} started", ""),
        ("all settled", f"{settled_s:.1f} s" if settled_s else f"{settled}/{n} in {elapsed:.0f} s",
         f"{settled / elapsed:.1f} settled/s", "<= 300 s"),
        ("settle CPU ms/settled payout", cpu_delta(cpu1, cpu2, max(settled, 1)), "", ""),
        ("payouts by status at the end", json.dumps(status.get("payouts_by_status", {})), "", ""),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--settle-timeout", type=float, default=300.0,
                        help="stop waiting for settlement after this many seconds (reports progress)")
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
