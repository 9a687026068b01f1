"""Timers in milliseconds: retry backoff and dlq expiry run on the time-skipping test server."""

from __future__ import annotations

from datetime import timezone

import httpx
from temporalio.api.enums.v1 import EventType

from core.platform.names import payout_workflow_id
from tests.temporal_history import step_times
from tests.factories import create_merchant, create_payout_row, sepa_beneficiary
from workers.main import build_worker
from workflows.payout import PayoutWorkflow




async def timer_seconds(handle) -> list[float]:
    history = await handle.fetch_history()
    return [
        e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]


async def activity_times(handle, activity: str) -> list:
    """When each run of `activity` was scheduled or recorded (time-skipped clock)."""
    return step_times((await handle.fetch_history()).events, activity)


async def test_transient_failures_back_off_exponentially_then_settle(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    merchant = await create_merchant(sessionmaker, funded_minor=1_000_000)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    params.retry_initial_seconds, params.retry_backoff, params.retry_max_attempts = 30, 2, 5
    params.retry_max_interval_seconds, params.settlement_poll_seconds = 100, 60
    params.return_window_seconds = 3 * 24 * 3600
    async with httpx.AsyncClient() as http:
        await http.post(f"{bank.url}/_sandbox/faults", json={"mode": "5xx", "count": 3})

    async with build_worker(skipping_env.client, worker_deps, task_queue=settings.temporal_task_queue):
        handle = await skipping_env.client.start_workflow(
            PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id),
            task_queue=settings.temporal_task_queue,
        )
        result = await handle.result()  # three days of timers, skipped

    assert result.status == "settled"
    timers = await timer_seconds(handle)
    # backoff 30, 60, then capped at 100 between the attempts (the SLA watch may split a backoff
    # timer at the settlement target, so measure the attempts, not the timers); then the
    # settlement polls and the 3-day return window
    attempts = await activity_times(handle, "submit_payout_to_connector")
    gaps = [(b - a).total_seconds() for a, b in zip(attempts, attempts[1:])]
    assert len(attempts) == 4
    assert [round(g) for g in gaps] == [30, 60, 100]
    # the return watch lasts the 3-day window (split into its status polls: return-poll-v1)
    [settled] = await activity_times(handle, "settle_payout")
    closed = (await handle.fetch_history()).events[-1].event_time.ToDatetime().replace(tzinfo=timezone.utc)
    assert round((closed - settled).total_seconds() / 60) == 3 * 24 * 60
    assert timers[-5:-1] == [3600, 21600, 86400, 86400]  # polls after 1 h, 6 h more, then daily
    assert bank.payment(params.payout_id)["accepted_count"] == 1


async def test_dlq_expiry_reverses_the_hold(skipping_env, worker_deps, settings, sessionmaker, bank):
    from core.ledger import service as ledger

    merchant = await create_merchant(sessionmaker, funded_minor=1_000_000)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant,
                                     beneficiary=sepa_beneficiary("0036"))  # always unavailable
    params.retry_initial_seconds, params.retry_max_attempts = 10, 2
    params.dlq_expiry_seconds = 72 * 3600

    async with build_worker(skipping_env.client, worker_deps, task_queue=settings.temporal_task_queue):
        handle = await skipping_env.client.start_workflow(
            PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id),
            task_queue=settings.temporal_task_queue,
        )
        result = await handle.result()

    assert result.status == "failed" and result.failure_code == "dlq_expired"
    # the dlq wait lasts the 72-hour expiry (the SLA watch may split its timer at the target)
    parked = (await activity_times(handle, "record_payout_transition"))[-1]  # the move into dlq
    asked = (await activity_times(handle, "inquire_payout"))[-1]  # the bank asked at expiry
    assert round((asked - parked).total_seconds()) == 72 * 3600
    async with sessionmaker() as session:
        [bal] = await ledger.get_balances(session, merchant)
        assert bal.available_minor == 1_000_000 and bal.held_minor == 0
        assert (await ledger.check_ledger(session)).ok
