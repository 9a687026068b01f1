"""Merchant webhook benchmark, in one process: embedded PostgreSQL, a Temporal dev server, one
payops worker (dispatcher + delivery workflows), the sandbox bank and a local receiver.

    .venv/bin/python bench/webhooks.py                       # defaults below
    .venv/bin/python bench/webhooks.py --events 2000 --payouts 100

Measures:
  1. delivery throughput: a burst of N events committed at once to a merchant with one endpoint;
     events/s from the commit until the receiver has acknowledged all of them
  2. delay from payout transition to delivery: payouts created through payout_service and driven
     by real PayoutWorkflows; for every event (created / submitted / settled), receiver clock
     minus the event's `created` (its transaction's timestamp, so a little pessimistic): p50/p99
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from core.ledger import service as ledger  # noqa: E402
from core.platform.db import create_engine, create_sessionmaker, run_migrations  # noqa: E402
from devstack.embedded import EmbeddedPostgres, temporal_cli_path  # noqa: E402
from core.platform.names import search_attribute_keys  # noqa: E402
from core.platform.settings import Settings  # noqa: E402
from core.platform.tables import events, merchants  # noqa: E402
from core.platform.temporal import data_converter  # noqa: E402
from core.webhooks.service import create_endpoint, ensure_dispatcher  # noqa: E402
from core.webhooks.signing import verify  # noqa: E402
from sandbox.bank import BankConfig, running_bank  # noqa: E402
from sandbox.serving import serve_in_background  # noqa: E402

SEPA = {"type": "sepa", "name": "Jane Doe", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class Receiver:
    def __init__(self) -> None:
        self.secret = ""
        self.seen: dict[str, float] = {}  # event id -> receive time (wall clock)
        self.created: dict[str, datetime] = {}
        self.types: dict[str, str] = {}
        self.bad = 0

    def app(self) -> Starlette:
        import json

        async def receive(request: Request) -> Response:
            body = await request.body()
            now = time.time()
            try:
                verify(self.secret, request.headers.get("Payops-Signature"), body)
            except Exception:  # noqa: BLE001
                self.bad += 1
                return Response(status_code=400)
            event = json.loads(body)
            self.seen.setdefault(event["id"], now)
            self.created[event["id"]] = datetime.fromisoformat(event["created"])
            self.types[event["id"]] = event["type"]
            return Response(status_code=204)

        return Starlette(routes=[Route("/hooks", receive, methods=["POST"])])

    async def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.seen) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.seen)}/{count} events delivered")
            await asyncio.sleep(0.01)


async def main(args) -> None:
    from temporalio.testing import WorkflowEnvironment

    from core.payouts import service as payout_service
    from workers.main import WorkerDeps, build_worker

    tmp = Path(tempfile.mkdtemp(prefix="payops-bench-webhooks-"))
    tmp.chmod(0o755)
    pg = EmbeddedPostgres(tmp / "pg", fast=True)
    pg.start()
    stack = contextlib.AsyncExitStack()
    try:
        await asyncio.to_thread(run_migrations, pg.url)
        base = Settings(_env_file=None, data_dir=tmp)
        env = await WorkflowEnvironment.start_local(
            data_converter=data_converter(base), search_attributes=list(search_attribute_keys().values()),
            dev_server_existing_path=str(temporal_cli_path()),
        )
        stack.push_async_callback(env.shutdown)
        bank = await stack.enter_async_context(running_bank(BankConfig(settle_delay=0.2)))
        receiver = Receiver()
        served = await stack.enter_async_context(serve_in_background(receiver.app()))
        settings = base.model_copy(update={
            "database_url": pg.url, "temporal_address": env.client.service_client.config.target_host,
            "temporal_task_queue": f"bench-{uuid.uuid4().hex[:8]}", "sandbox_bank_url": bank.url,
            "payout_settlement_poll_seconds": 0.3, "webhook_dispatch_poll_seconds": 2.0,
        })
        deps = WorkerDeps.from_settings(settings)
        stack.push_async_callback(deps.aclose)
        await stack.enter_async_context(build_worker(env.client, deps, task_queue=settings.temporal_task_queue))
        dispatcher = await ensure_dispatcher(env.client, settings)

        engine = create_engine(pg.url)
        stack.push_async_callback(engine.dispose)
        sm = create_sessionmaker(engine)
        merchant = f"mer_{uuid.uuid4().hex[:10]}"
        async with sm() as session, session.begin():
            await session.execute(insert(merchants).values(id=merchant, name="Bench", default_currency="EUR"))
            await ledger.fund_merchant(session, merchant, 10**12, "EUR", f"funding:{merchant}")
            _, receiver.secret = await create_endpoint(
                session, settings, merchant_id=merchant, url=served.url + "/hooks", event_types=None,
                description="bench", enabled=True,
            )

        # 0. warm up (worker pollers, connection pools)
        async with sm() as session, session.begin():
            await session.execute(insert(events).values(
                id=f"evt_warm_{uuid.uuid4().hex}", merchant_id=merchant, type="payout.created", data={"warm": True}))
        await receiver.wait(1, 60)
        receiver.seen.clear()

        # 1. throughput: one burst of N events
        payload = {"id": "po_bench", "status": "settled", "amount": "10.00", "currency": "EUR"}
        async with sm() as session, session.begin():
            await session.execute(insert(events), [
                {"id": f"evt_{uuid.uuid4().hex}", "merchant_id": merchant, "type": "payout.settled",
                 "payout_id": "po_bench", "payout_version": 1, "data": payload} for _ in range(args.events)
            ])
        started = time.monotonic()
        await receiver.wait(args.events, 600)
        burst_seconds = time.monotonic() - started
        burst_delays = [receiver.seen[e] - receiver.created[e].timestamp() for e in receiver.seen]
        async with sm() as session:
            dispatch_seconds = (await session.execute(text(
                "SELECT extract(epoch FROM max(dispatched_at) - min(created_at)) FROM events WHERE payout_id = 'po_bench'"
            ))).scalar()
        receiver.seen.clear()

        # 2. transition -> delivery delay, payouts at a steady rate
        async def one_payout(i: int) -> None:
            async with sm() as session:
                await payout_service.create_payout(
                    session, env.client, settings, merchant_id=merchant, actor="bench",
                    idempotency_key=f"bench-{i}-{uuid.uuid4().hex}",
                    request={"amount": "10.00", "currency": "EUR", "method": "sepa", "priority": "standard",
                             "beneficiary": SEPA, "description": None, "metadata": {}},
                )

        tasks = []
        for i in range(args.payouts):
            tasks.append(asyncio.create_task(one_payout(i)))
            await asyncio.sleep(1 / args.rate)
        await asyncio.gather(*tasks)
        await receiver.wait(3 * args.payouts, 300)
        delays = {t: [] for t in ("payout.created", "payout.submitted", "payout.settled")}
        for e, at in receiver.seen.items():
            delays[receiver.types[e]].append(at - receiver.created[e].timestamp())
        everything = [d for ds in delays.values() for d in ds]

        await env.client.get_workflow_handle(dispatcher).terminate("bench over")
        print()
        print(f"webhooks bench  (1 worker, 1 endpoint, local receiver; {time.strftime('%Y-%m-%d %H:%M')})")
        print(f"  burst of {args.events} events: {burst_seconds:.2f} s -> {args.events / burst_seconds:.0f} events/s "
              f"delivered (delay p50 {pct(burst_delays, .5):.2f} s, p99 {pct(burst_delays, .99):.2f} s, "
              "backlog included)")
        print(f"    of which starting the {args.events} delivery workflows (dispatcher): {dispatch_seconds:.2f} s")
        print(f"  {args.payouts} payouts at {args.rate}/s, {len(everything)} events: transition -> delivery "
              f"p50 {pct(everything, .5) * 1000:.0f} ms, p99 {pct(everything, .99) * 1000:.0f} ms, "
              f"max {max(everything) * 1000:.0f} ms")
        for t, ds in delays.items():
            print(f"    {t:<17} p50 {pct(ds, .5) * 1000:.0f} ms  p99 {pct(ds, .99) * 1000:.0f} ms  "
                  f"mean {statistics.mean(ds) * 1000:.0f} ms")
        print(f"  signature failures at the receiver: {receiver.bad}")
    finally:
        await stack.aclose()
        pg.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000, help="events in the throughput burst")
    parser.add_argument("--payouts", type=int, default=60, help="payouts for the delay measurement")
    parser.add_argument("--rate", type=float, default=10.0, help="payouts created per second")
    asyncio.run(main(parser.parse_args()))
