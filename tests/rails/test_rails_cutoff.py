"""Scheduling by priority on the time-skipping server: a `standard` payout on a cutoff rail waits
for that rail's next cutoff before it is submitted (and can be cancelled meanwhile); the SLA
watch raises its one alert while a payout waits at the submission gate, backs off or sits in dlq.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, update

from core.ledger import service as ledger
from core.platform.names import payout_workflow_id
from core.payouts.models import CancelRequest, ControlsChanged, OpsDecision, PayoutState
from core.rails.rules import BusinessCalendar
from core.platform.tables import alerts, controls
from tests.temporal_history import step_times
from tests.factories import create_merchant, create_payout_row, sepa_beneficiary
from tests.polling import eventually
from workers.main import build_worker
from workflows.payout import PayoutWorkflow

NY = ZoneInfo("America/New_York")
FUNDS = 10_000_000
FED = BusinessCalendar("FED")


def ach_beneficiary(tail: str = "6789") -> dict:
    return {"type": "ach", "name": "John Roe", "routing_number": "021000021", "account_number": "00012345" + tail,
            "account_type": "checking"}


def fps_beneficiary() -> dict:
    return {"type": "faster_payments", "name": "Ann Smith", "sort_code": "040004", "account_number": "12345678"}


def next_weekday(weekday: int, *, business_day: bool = True, plain_week_after: bool = False) -> date:
    """The first such weekday at least two days from now that is a Fed business day: the payout
    is created in the (time-skipped) future, so its cutoff is ahead of the workflow's clock.
    `plain_week_after`: and the next Monday and Tuesday are business days too (a Friday before a
    Monday or Tuesday holiday settles an after-cutoff ACH beyond the 4-day budget of `standard`,
    so routing rightly takes wire instead; which Friday comes next depends on today's date)."""
    d = datetime.now(NY).date() + timedelta(days=2)
    while (d.weekday() != weekday or (business_day and not FED.is_business_day(d))
           or (plain_week_after and not all(FED.is_business_day(d + timedelta(days=n)) for n in (3, 4)))):
        d += timedelta(days=1)
    return d


async def start(client, settings, params):
    return await client.start_workflow(PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id),
                                       task_queue=settings.temporal_task_queue)


async def state_of(handle) -> PayoutState:
    return await handle.query("state", result_type=PayoutState)


async def submitted_at(handle) -> list[datetime]:
    return step_times((await handle.fetch_history()).events, "submit_payout_to_connector")


async def sla_alerts(sm, payout_id: str) -> list[dict]:
    async with sm() as session:
        return list((await session.execute(select(alerts).where(
            alerts.c.dedupe_key == f"payout_sla_breach:{payout_id}"))).mappings().all())


async def test_standard_ach_waits_for_the_days_cutoff_or_the_next_business_days(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    client = skipping_env.client
    merchant = await create_merchant(sessionmaker, currency="USD", funded_minor=FUNDS)
    tuesday, friday = next_weekday(1), next_weekday(4, plain_week_after=True)
    at_1600 = await create_payout_row(sessionmaker, settings, merchant_id=merchant, currency="USD", method="ach",
                                      priority="standard", amount_minor=12_345, beneficiary=ach_beneficiary())
    at_1701 = await create_payout_row(sessionmaker, settings, merchant_id=merchant, currency="USD", method="ach",
                                      priority="standard", amount_minor=54_321, beneficiary=ach_beneficiary("4321"))
    at_1600.created_at = datetime.combine(tuesday, datetime.min.time(), NY).replace(hour=16)
    at_1701.created_at = datetime.combine(friday, datetime.min.time(), NY).replace(hour=17, minute=1)
    same_day = datetime.combine(tuesday, datetime.min.time(), NY).replace(hour=17)
    next_day = datetime.combine(FED.next_business_day(friday), datetime.min.time(), NY).replace(hour=17)
    assert next_day.date() >= friday + timedelta(days=3)  # a Friday after 17:00 makes Monday's (or later)

    async with build_worker(client, worker_deps, task_queue=settings.temporal_task_queue):
        h1, h2 = await start(client, settings, at_1600), await start(client, settings, at_1701)
        for handle, cutoff in ((h1, same_day), (h2, next_day)):
            state = await eventually(
                lambda h=handle: _waiting(h), "the payout waits for its cutoff")
            assert state.status == "routed" and state.rail == "ach" and state.cutoff_at == cutoff
            assert state.step.startswith("awaiting_cutoff")
        assert bank.payment(at_1600.payout_id) is None and bank.payment(at_1701.payout_id) is None

        assert (await h1.result()).status == "settled"  # the timers to the cutoffs are skipped
        assert (await h2.result()).status == "settled"

    for handle, cutoff in ((h1, same_day), (h2, next_day)):
        [sent] = await submitted_at(handle)
        assert cutoff <= sent < cutoff + timedelta(minutes=1)
    for p in (at_1600, at_1701):
        assert bank.payment(p.payout_id)["accepted_count"] == 1


async def _waiting(handle) -> PayoutState | None:
    state = await state_of(handle)
    return state if state.cutoff_at is not None else None


async def test_cancel_while_waiting_for_the_cutoff_reverses_the_hold(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    client = skipping_env.client
    merchant = await create_merchant(sessionmaker, currency="USD", funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, currency="USD", method="ach",
                                     priority="standard", beneficiary=ach_beneficiary())
    params.created_at = datetime.combine(next_weekday(2), datetime.min.time(), NY).replace(hour=9)

    async with build_worker(client, worker_deps, task_queue=settings.temporal_task_queue):
        handle = await start(client, settings, params)
        await eventually(lambda: _waiting(handle), "the payout waits for its cutoff")
        async with sessionmaker() as session:
            [bal] = await ledger.get_balances(session, merchant)
        assert bal.held_minor == params.amount_minor + params.fee_minor
        decision = await handle.execute_update("cancel", CancelRequest(actor="merchant", reason="wrong amount"),
                                              result_type=OpsDecision)
        assert decision.accepted and decision.status == "cancelled"
        result = await handle.result()

    assert result.status == "cancelled"
    assert await submitted_at(handle) == [] and bank.payment(params.payout_id) is None
    async with sessionmaker() as session:
        [bal] = await ledger.get_balances(session, merchant)
        assert bal.available_minor == FUNDS and bal.held_minor == 0
        assert (await ledger.check_ledger(session)).ok


async def test_instant_and_priority_submit_now_on_a_cutoff_rail(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    client = skipping_env.client
    merchant = await create_merchant(sessionmaker, currency="USD", funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, currency="USD", method="ach",
                                     priority="instant", beneficiary=ach_beneficiary())
    params.created_at = datetime.combine(next_weekday(2), datetime.min.time(), NY).replace(hour=9)
    async with build_worker(client, worker_deps, task_queue=settings.temporal_task_queue):
        handle = await start(client, settings, params)
        await eventually(lambda: _submitted(handle), "submitted without waiting for the cutoff")
        assert (await state_of(handle)).cutoff_at is None


async def _submitted(handle) -> bool:
    return bool(await submitted_at(handle))


async def test_sla_breach_while_held_at_the_gate_alerts_once_and_keeps_waiting(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    from prometheus_client import REGISTRY

    client = skipping_env.client
    merchant = await create_merchant(sessionmaker, currency="GBP", funded_minor=FUNDS)
    async with sessionmaker() as session, session.begin():
        await session.execute(insert(controls).values(kind="rail_pause", target="faster_payments",
                                                      reason="bank incident", created_by="test"))
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, currency="GBP",
                                     method="faster_payments", beneficiary=fps_beneficiary())
    violations = lambda: REGISTRY.get_sample_value("sla_violations_total", {"rail": "faster_payments"}) or 0.0  # noqa: E731
    before = violations()

    async with build_worker(client, worker_deps, task_queue=settings.temporal_task_queue):
        handle = await start(client, settings, params)
        await skipping_env.sleep(timedelta(hours=2))  # the 10-second target passes at the gate
        state = await state_of(handle)
        assert state.status == "routed" and state.step.startswith("on hold before submission")
        assert state.sla_breached
        [alert] = await sla_alerts(sessionmaker, params.payout_id)
        assert alert["severity"] == "high" and alert["data"]["status"] == "routed"
        assert violations() == before + 1
        assert bank.payment(params.payout_id) is None

        async with sessionmaker() as session, session.begin():
            await session.execute(update(controls).where(controls.c.target == "faster_payments").values(active=False))
        await handle.signal("controls_changed", ControlsChanged(reason="resumed"))
        assert (await handle.result()).status == "settled"
    assert len(await sla_alerts(sessionmaker, params.payout_id)) == 1 and violations() == before + 1


async def test_sla_breach_in_backoff_and_in_dlq_alerts_once_and_never_fails_the_payout(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    client = skipping_env.client
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    # SEPA Instant (10-second target) to an account the bank always reports unavailable
    backing_off = await create_payout_row(sessionmaker, settings, merchant_id=merchant,
                                          beneficiary=sepa_beneficiary("0036"))
    backing_off.retry_initial_seconds, backing_off.retry_max_interval_seconds = 600, 600
    in_dlq = await create_payout_row(sessionmaker, settings, merchant_id=merchant,
                                     beneficiary=sepa_beneficiary("0036"))
    in_dlq.retry_initial_seconds, in_dlq.retry_max_interval_seconds, in_dlq.retry_max_attempts = 0.01, 0.01, 2

    async with build_worker(client, worker_deps, task_queue=settings.temporal_task_queue):
        h_dlq = await start(client, settings, in_dlq)
        await eventually(lambda: _status_is(h_dlq, "dlq"), "the payout parks in dlq")
        h_backoff = await start(client, settings, backing_off)
        await eventually(lambda: _status_is(h_backoff, "retrying"), "the payout backs off")
        await skipping_env.sleep(timedelta(minutes=5))  # both targets pass: one in dlq, one mid-backoff

        dlq_state, backoff_state = await state_of(h_dlq), await state_of(h_backoff)
        assert dlq_state.status == "dlq" and dlq_state.sla_breached
        assert backoff_state.status == "retrying" and backoff_state.sla_breached
        [a] = await sla_alerts(sessionmaker, in_dlq.payout_id)
        [b] = await sla_alerts(sessionmaker, backing_off.payout_id)
        assert a["data"]["status"] == "dlq" and b["data"]["status"] == "retrying"

        await h_dlq.execute_update("cancel", CancelRequest(actor="ops", reason="stuck"))
        assert (await h_dlq.result()).status == "cancelled"
    assert len(await sla_alerts(sessionmaker, in_dlq.payout_id)) == 1
    async with sessionmaker() as session:
        n = await session.scalar(select(func.count()).select_from(alerts))
    assert n == 2


async def _status_is(handle, status: str) -> bool:
    return (await state_of(handle)).status == status
