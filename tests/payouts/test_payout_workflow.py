"""PayoutWorkflow end to end on a real Temporal dev server, real PostgreSQL and the sandbox bank
over HTTP: settlement, permanent and transient failures, dlq + ops retry, cancel, returns."""

from __future__ import annotations

import uuid

import httpx
import pytest
from temporalio.client import WorkflowUpdateFailedError

from core.ledger import service as ledger
from core.platform.names import payout_workflow_id
from core.payouts.models import BankNotificationSignal, CancelRequest, PayoutState, RetryRequest
from tests.factories import create_merchant, create_payout_row, sepa_beneficiary
from workflows.payout import PayoutWorkflow

FUNDS = 1_000_000


async def start(client, settings, params, **kwargs):
    return await client.start_workflow(
        PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id),
        task_queue=settings.temporal_task_queue, **kwargs,
    )


async def balances(sm, merchant_id):
    async with sm() as session:
        return {b.currency: b for b in await ledger.get_balances(session, merchant_id)}


async def assert_ledger_ok(sm):
    async with sm() as session:
        report = await ledger.check_ledger(session)
    assert report.ok, report.violations


async def set_fault(bank, mode: str, count: int):
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{bank.url}/_sandbox/faults", json={"mode": mode, "count": count})
        r.raise_for_status()


async def events_of(sm, payout_id):
    from sqlalchemy import select

    from core.platform.tables import payout_events

    async with sm() as session:
        rows = await session.execute(
            select(payout_events.c.to_status).where(payout_events.c.payout_id == payout_id)
            .order_by(payout_events.c.sequence)
        )
        return [r[0] for r in rows]


async def test_payout_settles_and_moves_exactly_amount_plus_fee(temporal_client, worker, settings, sessionmaker, bank):
    from prometheus_client import REGISTRY

    def counted(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    settled_before = counted("payouts_processed_total", status="settled")
    # an instant EUR payout to Germany goes by SEPA Instant (the cheapest rail within its 1-hour SLA)
    accepted_before = counted("connector_requests_total", connector="bank_sepa_instant", outcome="accepted")
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, amount_minor=12_345)
    handle = await start(temporal_client, settings, params)
    result = await handle.result()
    assert counted("payouts_processed_total", status="settled") == settled_before + 1
    assert counted("connector_requests_total", connector="bank_sepa_instant", outcome="accepted") == accepted_before + 1

    assert result.status == "settled"
    bal = (await balances(sessionmaker, merchant))["EUR"]
    assert bal.available_minor == FUNDS - 12_345 - params.fee_minor
    assert bal.held_minor == 0
    assert bank.payment(params.payout_id)["accepted_count"] == 1
    assert await events_of(sessionmaker, params.payout_id) == [
        "held", "routed", "submitting", "submitted", "settled",
    ]
    await assert_ledger_ok(sessionmaker)
    state = await handle.query("state", result_type=PayoutState)
    assert state.status == "settled" and state.attempts == 1 and state.hold_status == "released"


async def test_insufficient_funds_rejects_without_hold(temporal_client, worker, settings, sessionmaker, bank):
    merchant = await create_merchant(sessionmaker, funded_minor=100)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, amount_minor=10_000)
    result = await (await start(temporal_client, settings, params)).result()
    assert result.status == "rejected" and result.failure_code == "insufficient_funds"
    async with sessionmaker() as session:
        assert await ledger.get_hold(session, params.payout_id) is None
    assert bank.payment(params.payout_id) is None
    await assert_ledger_ok(sessionmaker)


async def test_permanent_failure_reverses_the_hold(temporal_client, worker, settings, sessionmaker, bank):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(
        sessionmaker, settings, merchant_id=merchant, beneficiary=sepa_beneficiary("0002")
    )
    result = await (await start(temporal_client, settings, params)).result()
    assert result.status == "failed" and result.failure_code == "account_closed"
    bal = (await balances(sessionmaker, merchant))["EUR"]
    assert bal.available_minor == FUNDS and bal.held_minor == 0
    await assert_ledger_ok(sessionmaker)


async def test_transient_failures_retry_then_settle_once(temporal_client, worker, settings, sessionmaker, bank):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    # a 503 before acceptance, then one after the bank recorded it: the retry must not pay twice
    await set_fault(bank, "5xx", 1)
    await set_fault(bank, "5xx_after_accept", 1)
    handle = await start(temporal_client, settings, params)
    result = await handle.result()
    assert result.status == "settled"
    state = await handle.query("state", result_type=PayoutState)
    # the 503 after acceptance is an unknown outcome: the inquiry finds the payment, no resubmission
    assert state.attempts == 2
    report = bank.payment(params.payout_id)
    assert report["accepted_count"] == 1 and report["submissions"] == 2
    await assert_ledger_ok(sessionmaker)


async def test_exhausted_retries_park_in_dlq_then_ops_retry_settles(
    temporal_client, worker, settings, sessionmaker, bank
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    params.return_window_seconds = 60  # stays open after settling, watching for returns
    await set_fault(bank, "5xx", params.retry_max_attempts)
    handle = await start(temporal_client, settings, params)
    state = await wait_for_status(handle, "dlq")
    assert state.attempts == params.retry_max_attempts and "service_unavailable" in (state.last_error or "")
    # the code is said once ("service_unavailable: the bank is ...", not tripled as it once was)
    assert state.last_error.startswith("service_unavailable: ") and state.last_error.count("service_unavailable") == 1

    decision = await handle.execute_update("retry", RetryRequest(actor="ops-1", reason="bank is back"))
    assert decision["accepted"] is True
    await wait_for_status(handle, "settled")
    statuses = await events_of(sessionmaker, params.payout_id)
    assert statuses.count("dlq") == 1 and statuses[-1] == "settled"
    assert bank.payment(params.payout_id)["accepted_count"] == 1
    await assert_ledger_ok(sessionmaker)

    # once settled, neither retry nor cancel is allowed, and the refusal says why
    with pytest.raises(WorkflowUpdateFailedError) as exc:
        await handle.execute_update("retry", RetryRequest(actor="ops-1"))
    assert "only a payout in dlq" in str(exc.value.cause)


async def test_cancel_in_dlq_reverses_the_hold(temporal_client, worker, settings, sessionmaker, bank):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant,
                                     beneficiary=sepa_beneficiary("0036"))  # always 503
    handle = await start(temporal_client, settings, params)
    await wait_for_status(handle, "dlq")
    decision = await handle.execute_update("cancel", CancelRequest(actor="ops-2", reason="merchant asked"))
    assert decision["accepted"] is True and decision["status"] == "cancelled"
    assert (await handle.result()).status == "cancelled"
    bal = (await balances(sessionmaker, merchant))["EUR"]
    assert bal.available_minor == FUNDS and bal.held_minor == 0
    await assert_ledger_ok(sessionmaker)


async def test_cancel_sent_at_start_cancels_before_submission(temporal_client, worker, settings, sessionmaker, bank):
    """A cancel delivered with the workflow's start is processed before anything reaches the bank."""
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    handle = await start(temporal_client, settings, params, start_signal="cancel_signal",
                         start_signal_args=[CancelRequest(actor="ops", reason="duplicate request")])
    result = await handle.result()
    assert result.status == "cancelled"
    assert bank.payment(params.payout_id) is None
    bal = (await balances(sessionmaker, merchant))["EUR"]
    assert bal.available_minor == FUNDS and bal.held_minor == 0
    await assert_ledger_ok(sessionmaker)


@pytest.fixture
def bank_config():
    from sandbox.bank import BankConfig

    # slow settlement, so a payout sits in `submitted` long enough to try cancelling it
    return BankConfig(webhook_url=None, settle_delay=1.5, hang_seconds=5.0)


async def test_cancel_after_submission_is_refused_with_a_clear_error(
    temporal_client, worker, settings, sessionmaker, bank
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    handle = await start(temporal_client, settings, params)
    await wait_for_status(handle, "submitted")
    with pytest.raises(WorkflowUpdateFailedError) as exc:
        await handle.execute_update("cancel", CancelRequest(actor="ops", reason="too late"))
    assert "cancel is allowed only before it is submitted" in str(exc.value.cause)
    assert (await handle.result()).status == "settled"


async def test_return_after_settlement_gives_the_amount_back(temporal_client, worker, settings, sessionmaker, bank):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, amount_minor=5_000,
                                     beneficiary=sepa_beneficiary("0028"))  # returned R01 after settling
    params.return_window_seconds = 60
    handle = await start(temporal_client, settings, params)
    await wait_for_status(handle, "settled")
    # The bank has returned it; its notification arrives the way the webhook endpoint relays it.
    async with httpx.AsyncClient() as http:
        await http.post(f"{bank.url}/_sandbox/return/{params.payout_id}", json={"return_code": "R01"})
    await handle.signal("bank_notification", BankNotificationSignal(
        event_id=f"evt_{uuid.uuid4().hex}", type="payment.returned", status="returned", return_code="R01"))
    result = await handle.result()
    assert result.status == "returned" and result.failure_code == "R01"
    bal = (await balances(sessionmaker, merchant))["EUR"]
    assert bal.available_minor == FUNDS - params.fee_minor  # the fee stays earned
    assert (await events_of(sessionmaker, params.payout_id))[-2:] == ["settled", "returned"]
    await assert_ledger_ok(sessionmaker)


async def wait_for_status(handle, status: str, timeout: float = 20.0) -> PayoutState:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        state = await handle.query("state", result_type=PayoutState)
        if state.status == status:
            return state
        if loop.time() > deadline:
            raise AssertionError(f"payout stuck in {state.status} ({state.step}), wanted {status}")
        await asyncio.sleep(0.05)


async def _control(sm, kind: str, target: str, *, active: bool = True, params: dict | None = None):
    from sqlalchemy import insert, update

    from core.platform.tables import controls

    async with sm() as session, session.begin():
        if active:
            await session.execute(insert(controls).values(
                kind=kind, target=target, params=params or {}, created_by="test", reason="under review"))
        else:
            await session.execute(update(controls).where(
                controls.c.kind == kind, controls.c.target == target, controls.c.active).values(active=False))


async def start_held_at_the_gate(client, settings, sm):
    """A frozen merchant's payout, started and waiting at the submission gate:
    (merchant, params, handle, state)."""
    merchant = await create_merchant(sm, funded_minor=FUNDS)
    await _control(sm, "merchant_freeze", merchant)
    params = await create_payout_row(sm, settings, merchant_id=merchant)
    handle = await start(client, settings, params)
    state = await wait_for_status(handle, "routed")
    while "on hold" not in state.step:
        state = await handle.query("state", result_type=PayoutState)
    return merchant, params, handle, state


async def test_frozen_merchant_payout_waits_until_unfrozen(temporal_client, worker, settings, sessionmaker, bank):
    from core.payouts.models import ControlsChanged

    merchant, params, handle, state = await start_held_at_the_gate(temporal_client, settings, sessionmaker)
    assert "merchant freeze" in state.step
    assert bank.payment(params.payout_id) is None  # nothing reached the bank

    await _control(sessionmaker, "merchant_freeze", merchant, active=False)
    await handle.signal("controls_changed", ControlsChanged(reason="unfrozen"))
    assert (await handle.result()).status == "settled"
    assert bank.payment(params.payout_id)["accepted_count"] == 1


async def test_paused_rail_with_frozen_cancel_queued_cancels(temporal_client, worker, settings, sessionmaker, bank):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    await _control(sessionmaker, "merchant_freeze", merchant, params={"cancel_queued": True})
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    result = await (await start(temporal_client, settings, params)).result()
    assert result.status == "cancelled" and result.failure_code == "merchant_frozen"
    assert bank.payment(params.payout_id) is None
    await assert_ledger_ok(sessionmaker)


async def test_sweeper_workflow_starts_a_payout_whose_start_was_lost(
    temporal_client, worker, settings, sessionmaker, bank
):
    """A payout committed but never started (the API died before start_workflow) is picked up
    by the scheduled sweeper and runs to the end; a second sweep starts nothing."""
    from sqlalchemy import select

    from core.platform.tables import payouts
    from workflows.maintenance import PayoutSweepInput, PayoutSweepWorkflow

    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)

    async def sweep() -> int:
        result = await temporal_client.execute_workflow(
            PayoutSweepWorkflow.run, PayoutSweepInput(older_than_seconds=0),
            id=f"sweep-{uuid.uuid4().hex}", task_queue=settings.temporal_task_queue,
        )
        return result.started

    assert await sweep() == 1
    handle = temporal_client.get_workflow_handle(payout_workflow_id(params.payout_id))
    # started with the deployment's settings (minute-long settlement polls): submitted is enough
    await wait_for_status(handle, "submitted")
    async with sessionmaker() as session:
        started_at = await session.scalar(
            select(payouts.c.workflow_started_at).where(payouts.c.id == params.payout_id))
    assert started_at is not None  # recorded by the workflow's first activity
    assert await sweep() == 0
    assert bank.payment(params.payout_id)["accepted_count"] == 1
