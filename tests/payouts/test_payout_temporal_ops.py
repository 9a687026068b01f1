"""Temporal's own tools on payouts (issue 15, item 3), on real services: a cancel requested
through Temporal (the UI's Request Cancellation, `temporal workflow cancel`) is an ops cancel
for a payout in dlq, one waiting for its cutoff and one already submitted; a terminated payout
is found by the workflow reaper's Schedule, fails `payops ledger check`, and is repaired by an
approved REPAIR_PAYOUT ops action (compensate or restart)."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import datetime

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus

from core.ledger import service as ledger
from core.platform.names import payout_workflow_id
from workers.schedules import WORKFLOW_REAPER_SCHEDULE_ID, workflow_reaper_schedule
from core.platform.temporal import upsert_schedule
from core.platform.tables import alerts, payout_events
from tests.factories import create_merchant, create_payout_row, sepa_beneficiary
from tests.polling import eventually, wait_until
from tests.payouts.test_payout_workflow import set_fault, start, wait_for_status
from tests.rails.test_rails_cutoff import NY, _waiting, ach_beneficiary, next_weekday
from workers.main import build_worker

FUNDS = 1_000_000


@pytest.fixture
def settings(settings):
    """A restarted payout (REPAIR_PAYOUT restart) takes its timings from the settings: poll the
    bank's status often and watch for returns briefly, as the factories' payouts do."""
    return settings.model_copy(update={"payout_settlement_poll_seconds": 0.3, "payout_return_window_hours": 0.0002,
                                       "payout_retry_initial_seconds": 0.05})


@pytest.fixture
def bank_config():
    """A bank that takes a few seconds to settle: a submitted payout stays in flight meanwhile."""
    from sandbox.bank import BankConfig

    return BankConfig(webhook_url=None, settle_delay=4.0, hang_seconds=5.0)


async def audit_of(sm, payout_id: str) -> list[dict]:
    async with sm() as session:
        rows = await session.execute(
            select(payout_events.c.actor, payout_events.c.from_status, payout_events.c.to_status,
                   payout_events.c.reason, payout_events.c.data)
            .where(payout_events.c.payout_id == payout_id).order_by(payout_events.c.sequence))
        return [dict(r) for r in rows.mappings()]


async def assert_consistent(sm, merchant: str, currency: str, *, held: int = 0) -> None:
    async with sm() as session:
        bal = {b.currency: b for b in await ledger.get_balances(session, merchant)}[currency]
        assert bal.held_minor == held
        if held == 0:
            assert bal.available_minor == FUNDS
        report = await ledger.check_ledger(session)
    assert report.ok, report.violations


async def assert_cancelled_through_temporal(handle, sm, params, merchant, currency="EUR") -> None:
    result = await handle.result()  # completes: the cancel was handled, not obeyed blindly
    assert result.status == "cancelled"
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    [event] = [e for e in await audit_of(sm, params.payout_id) if e["to_status"] == "cancelled"]
    assert event["actor"] == "temporal" and "through Temporal" in event["reason"]
    async with sm() as session:
        assert (await ledger.get_hold(session, params.payout_id)).status == "reversed"
    await assert_consistent(sm, merchant, currency)


async def test_temporal_cancel_of_a_payout_in_dlq_reverses_its_hold(
    temporal_client, worker, settings, sessionmaker, bank
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant,
                                     beneficiary=sepa_beneficiary("0036"))  # always 503
    handle = await start(temporal_client, settings, params)
    await wait_for_status(handle, "dlq")
    await handle.cancel()
    await assert_cancelled_through_temporal(handle, sessionmaker, params, merchant)
    assert bank.payment(params.payout_id)["payment_id"] is None  # every attempt was refused


async def test_temporal_cancel_while_waiting_for_the_cutoff_reverses_its_hold(
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
        await handle.cancel()
        await assert_cancelled_through_temporal(handle, sessionmaker, params, merchant, "USD")
    assert bank.payment(params.payout_id) is None


async def test_temporal_cancel_of_a_submitted_payout_is_recalled_at_the_bank_then_cancelled(
    temporal_client, worker, settings, sessionmaker, bank
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, amount_minor=5_000)
    handle = await start(temporal_client, settings, params)
    await wait_for_status(handle, "submitted")
    await handle.cancel()
    await assert_cancelled_through_temporal(handle, sessionmaker, params, merchant)
    payment = bank.payment(params.payout_id)
    assert payment["status"] == "failed" and payment["failure_code"] == "recalled"  # the bank stopped it


async def test_temporal_cancel_of_a_payout_the_bank_settled_is_refused_and_recorded(
    temporal_client, worker, settings, sessionmaker, bank
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, amount_minor=5_000)
    params.settlement_poll_seconds = 600  # payops has not heard of the settlement when the cancel comes
    handle = await start(temporal_client, settings, params)
    await wait_for_status(handle, "submitted")
    await eventually(lambda: bank.payment(params.payout_id)["status"] == "settled", "the bank settles it")
    await handle.cancel()

    result = await handle.result()  # the payout stays in flight: payops learns it settled, and ends
    assert result.status == "settled"
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    [note] = [e for e in await audit_of(sessionmaker, params.payout_id) if e["data"].get("refused") == "cancel"]
    assert note["actor"] == "temporal" and note["from_status"] == note["to_status"] == "submitted"
    assert "not_recallable" in note["reason"]
    assert bank.payment(params.payout_id)["accepted_count"] == 1
    async with sessionmaker() as session:
        assert (await ledger.get_hold(session, params.payout_id)).status == "released"
        assert (await ledger.check_ledger(session)).ok


# --- Terminate: the workflow reaper, `payops ledger check`, and the REPAIR_PAYOUT ops action ----

ACTIONS = "/api/v1/ops/actions"


async def terminated_in_dlq(temporal_client, settings, sessionmaker, bank, merchant, *, fault: bool = False):
    """A payout parked in dlq whose workflow is then terminated: its hold stays active."""
    if fault:  # the bank refuses as many attempts as the budget, then would accept
        params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
        await set_fault(bank, "5xx", params.retry_max_attempts)
    else:
        params = await create_payout_row(sessionmaker, settings, merchant_id=merchant,
                                         beneficiary=sepa_beneficiary("0036"))  # always 503
    handle = await start(temporal_client, settings, params)
    await wait_for_status(handle, "dlq")
    await handle.terminate(reason="issue 15: terminated by hand")
    async with sessionmaker() as session:
        assert (await ledger.get_hold(session, params.payout_id)).status == "active"
    return params, handle


async def run_ledger_check(settings) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYOPS_")}
    env.update(PAYOPS_DATABASE_URL=settings.database_url, PAYOPS_TEMPORAL_ADDRESS=settings.temporal_address)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from cli.main import app; app()", "ledger", "check",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode, out.decode()


async def repair(client, token_for, payout_id: str, mode: str) -> dict:
    r = await client.post(ACTIONS, json={"type": "REPAIR_PAYOUT", "reason": "its workflow was terminated",
                                         "params": {"payout_id": payout_id, "mode": mode, "reason": "terminated"}},
                          headers=token_for("risk_ops", sub="risk-creator"))
    assert r.status_code == 201, r.text
    action = r.json()
    assert action["required_approvals"] == 2
    for name in ("alice", "bob"):
        r = await client.post(f"{ACTIONS}/{action['id']}/approve", headers=token_for("approver", sub=name))
        assert r.status_code == 200, r.text

    async def finished():
        body = (await client.get(f"{ACTIONS}/{action['id']}", headers=token_for("auditor"))).json()
        return body if body["status"] in ("executed", "failed") else None

    return await eventually(finished, "the repair action is executed")


async def reaper_alert(sm, payout_id: str):
    async with sm() as session:
        rows = (await session.execute(select(alerts).where(
            alerts.c.dedupe_key == f"workflow_closed_under_row:payout:{payout_id}"))).mappings().all()
    return [dict(r) for r in rows]


async def test_terminated_payout_is_reaped_fails_the_ledger_check_and_is_compensated(
    temporal_client, worker, settings, sessionmaker, bank, client, token_for
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params, handle = await terminated_in_dlq(temporal_client, settings, sessionmaker, bank, merchant)

    # the reaper, on its Schedule, raises one critical alert within its period
    period = 2.0
    reaper_settings = settings.model_copy(update={"workflow_reaper_every_seconds": period,
                                                  "workflow_reaper_min_age_seconds": 0.0})
    await upsert_schedule(temporal_client, WORKFLOW_REAPER_SCHEDULE_ID, workflow_reaper_schedule(reaper_settings))
    try:
        [alert] = await wait_until(lambda: reaper_alert(sessionmaker, params.payout_id), timeout=3 * period + 20,
                                   interval=0.1, what="the reaper's alert")
        assert alert["severity"] == "critical" and alert["status"] == "open"
        assert "TERMINATED" in alert["message"] and "REPAIR_PAYOUT" in alert["message"]
        assert alert["data"]["repair"]["modes"] == ["compensate", "restart"]
        # the next passes repeat it (occurrences), never a second alert
        await wait_until(lambda: _seen_again(sessionmaker, params.payout_id), timeout=3 * period + 5,
                         interval=0.1, what="a second reaper pass")
    finally:
        await temporal_client.get_schedule_handle(WORKFLOW_REAPER_SCHEDULE_ID).delete()

    code, out = await run_ledger_check(settings)
    assert code == 1, out
    assert "closed_workflow_hold" in out and params.payout_id in out and "TERMINATED" in out

    action = await repair(client, token_for, params.payout_id, "compensate")
    assert action["status"] == "executed", action
    assert action["result"]["hold_reversed"] is True and action["result"]["status"] == "failed"
    [event] = [e for e in await audit_of(sessionmaker, params.payout_id) if e["data"].get("mode") == "compensate"]
    assert event["to_status"] == "failed" and event["data"]["workflow_status"] == "TERMINATED"
    await assert_consistent(sessionmaker, merchant, "EUR")
    code, out = await run_ledger_check(settings)
    assert code == 0, out


async def _seen_again(sm, payout_id: str) -> bool:
    alerts_now = await reaper_alert(sm, payout_id)
    return len(alerts_now) == 1 and alerts_now[0]["occurrences"] >= 2


async def test_repair_restart_runs_a_terminated_payout_to_settlement_once(
    temporal_client, worker, settings, sessionmaker, bank, client, token_for
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params, handle = await terminated_in_dlq(temporal_client, settings, sessionmaker, bank, merchant, fault=True)
    # a repair is refused while a workflow runs: here the payout's is closed, so it goes ahead
    action = await repair(client, token_for, params.payout_id, "restart")
    assert action["status"] == "executed", action
    restarted = temporal_client.get_workflow_handle(payout_workflow_id(params.payout_id))
    assert (await restarted.result())["status"] == "settled"
    assert bank.payment(params.payout_id)["accepted_count"] == 1
    async with sessionmaker() as session:
        assert (await ledger.get_hold(session, params.payout_id)).status == "released"
        assert (await ledger.check_ledger(session)).ok
    # compensating a settled payout is refused with the reason, and moves nothing
    action = await repair(client, token_for, params.payout_id, "compensate")
    assert action["status"] == "failed" and "nothing to repair" in action["error"]


async def test_payout_detail_reports_a_terminated_workflow_and_its_repair_modes(
    temporal_client, worker, settings, sessionmaker, bank, client, token_for
):
    """GET /payouts/{id} says what Temporal says of the payout's workflow: RUNNING while it runs
    (no repair offered), TERMINATED once terminated under the dlq row, with the repair modes the
    repair endpoint accepts; the same read with Temporal unreachable says null, never a 500."""
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant,
                                     beneficiary=sepa_beneficiary("0036"))  # always 503
    handle = await start(temporal_client, settings, params)
    await wait_for_status(handle, "dlq")
    url, ops = f"/api/v1/payouts/{params.payout_id}", token_for("risk_ops")

    r = await client.get(url, headers=ops)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "dlq" and r.json()["workflow_status"] == "RUNNING"
    assert r.json()["repair_modes"] is None

    await handle.terminate(reason="issue 15: terminated by hand")
    r = await client.get(url, headers=ops)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "dlq" and body["workflow_status"] == "TERMINATED"
    assert body["repair_modes"] == ["compensate", "restart"]
    # what the console no longer offers: retry answers 409
    assert (await client.post(f"{url}/retry", headers=ops, json={})).status_code == 409

    # a payout whose workflow was never started, and Temporal unreachable: null, never an error
    unstarted = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    r = await client.get(f"/api/v1/payouts/{unstarted.payout_id}", headers=ops)
    assert r.status_code == 200, r.text
    assert r.json()["workflow_status"] is None and r.json()["repair_modes"] is None

    import httpx

    from api.app import create_app

    offline = create_app(settings.model_copy(update={"temporal_address": "127.0.0.1:9"}), temporal_client=None)
    async with offline.router.lifespan_context(offline):
        transport = httpx.ASGITransport(app=offline, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://payops.test") as no_temporal:
            r = await no_temporal.get(url, headers=ops)
    assert r.status_code == 200, r.text
    assert r.json()["workflow_status"] is None and r.json()["repair_modes"] is None
