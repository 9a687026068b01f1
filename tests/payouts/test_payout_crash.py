"""Crash test: 120 payouts in flight, the worker process SIGKILLed twice and restarted.

Every payout must reach a terminal state, the sandbox bank must have accepted each at most once
(exactly once for the settled ones), and the ledger check must pass.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from core.ledger import service as ledger
from devstack.embedded import ManagedProcess
from core.platform.names import payout_workflow_id
from core.platform.tables import payouts
from tests.factories import create_merchant, create_payout_row
from workflows.payout import PayoutWorkflow

pytestmark = pytest.mark.slow

N_PAYOUTS = 120
TERMINAL = ("settled", "failed", "cancelled", "rejected", "returned")
IN_FLIGHT = ("held", "routed", "submitting", "retrying", "submitted")


@pytest.fixture
def bank_config():
    from sandbox.bank import BankConfig

    return BankConfig(webhook_url=None, settle_delay=1.5, hang_seconds=3.0)


def spawn_worker(settings, log_dir: Path, n: int) -> ManagedProcess:
    env = {
        **os.environ,
        "PAYOPS_DATABASE_URL": settings.database_url,
        "PAYOPS_REDIS_URL": settings.redis_url,
        "PAYOPS_TEMPORAL_ADDRESS": settings.temporal_address,
        "PAYOPS_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "PAYOPS_SANDBOX_BANK_URL": settings.sandbox_bank_url,
        "PAYOPS_CODEC_KEYS": settings.codec_keys,
    }
    return ManagedProcess.spawn(
        [sys.executable, "-m", "workers.main"], log_file=log_dir / f"worker-{n}.log", env=env,
        cwd=Path(__file__).resolve().parent.parent.parent, name=f"worker-{n}",
    )


async def count_status(sm, statuses) -> int:
    async with sm() as session:
        return (await session.execute(
            select(func.count()).select_from(payouts).where(payouts.c.status.in_(statuses))
        )).scalar_one()


async def wait_for(predicate, timeout: float, what: str):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_worker_killed_twice_with_payouts_in_flight(
    temporal_client, settings, sessionmaker, bank, tmp_path
):
    merchant = await create_merchant(sessionmaker, funded_minor=100_000_000)
    # Make the bank misbehave too: acceptances whose answer is lost force retries of payments
    # the bank already holds — the retry must get the same payment back, never a second one.
    async with httpx.AsyncClient() as http:
        await http.post(f"{bank.url}/_sandbox/faults", json={"mode": "5xx_after_accept", "count": 15})

    workers = [spawn_worker(settings, tmp_path, 0)]
    handles = []
    try:
        for _ in range(N_PAYOUTS):
            params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, amount_minor=1_000)
            params.retry_initial_seconds, params.retry_max_attempts = 0.2, 20
            params.settlement_poll_seconds, params.return_window_seconds = 0.5, 0.1
            handles.append(await temporal_client.start_workflow(
                PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id),
                task_queue=settings.temporal_task_queue,
            ))

        in_flight_at_kill = []
        for kill in (1, 2):
            # kill while payouts are mid-flight (held, submitting or submitted, not yet settled),
            # the second time only after the restarted worker has settled some
            done_before = await count_status(sessionmaker, TERMINAL)
            await wait_for(
                lambda: _ready_to_kill(sessionmaker, done_before + (5 if kill == 2 else 0)),
                120, f"payouts in flight before kill {kill}",
            )
            in_flight_at_kill.append(await count_status(sessionmaker, IN_FLIGHT))
            workers[-1]._signal(signal.SIGKILL, group=True)
            workers[-1].wait(10)
            assert not workers[-1].alive
            workers.append(spawn_worker(settings, tmp_path, kill))

        await wait_for(lambda: _all_terminal(sessionmaker), 240, "every payout to reach a terminal state")
        results = await asyncio.gather(*(h.result() for h in handles))
        assert min(in_flight_at_kill) >= 10, in_flight_at_kill
    finally:
        for w in workers:
            w.stop(5)

    statuses = {r.status for r in results}
    assert statuses <= set(TERMINAL), statuses
    settled = [r.payout_id for r in results if r.status == "settled"]
    assert len(settled) == N_PAYOUTS  # nothing here should fail: only transient faults were injected
    for payout_id in settled:
        assert bank.payment(payout_id)["accepted_count"] == 1, payout_id
    async with sessionmaker() as session:
        report = await ledger.check_ledger(session)
        [bal] = await ledger.get_balances(session, merchant)
    assert report.ok, report.violations
    assert bal.held_minor == 0


async def _ready_to_kill(sm, terminal_at_least: int) -> bool:
    return (
        await count_status(sm, IN_FLIGHT) >= 10 and await count_status(sm, TERMINAL) >= terminal_at_least
    )


async def _all_terminal(sm) -> bool:
    return await count_status(sm, TERMINAL) >= N_PAYOUTS
