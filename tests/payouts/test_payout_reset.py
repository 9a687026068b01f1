"""Issue 15, item 3: what Temporal's Reset does to a payout (docs/operations.md, section 6).

A Reset replays the workflow from the chosen point and runs it again from there: every step after
it executes a second time. For a payout already submitted, the new run reaches the submission
again; payops must not send it to the bank a second time, nor hold, post or audit anything twice.
Real Temporal dev server (its ResetWorkflowExecution), real PostgreSQL, real worker, the sandbox bank."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, ResetReapplyExcludeType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest

from core.ledger import service as ledger
from core.payouts.models import OpsDecision, PayoutWorkflowResult
from core.platform.tables import controls, ledger_holds, payout_events, payouts
from tests.factories import create_merchant, create_payout_row
from tests.payouts.test_payout_temporal_ops import FUNDS
from tests.payouts.test_payout_workflow import start, wait_for_status


@pytest.fixture
def bank_config():
    """A bank that takes a few seconds to settle: the payout is reset while in flight."""
    from sandbox.bank import BankConfig

    return BankConfig(webhook_url=None, settle_delay=4.0, hang_seconds=5.0)


async def reset_to_first_workflow_task(client, handle, *, reapply: bool = True) -> str:
    """`temporal workflow reset --type FirstWorkflowTask` (with `--reapply-exclude Signal,Update`
    when not `reapply`): the new run's id."""
    first = None
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            first = event.event_id
            break
    assert first is not None
    desc = await handle.describe()
    response = await client.workflow_service.reset_workflow_execution(ResetWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=handle.id, run_id=desc.run_id),
        reason="issue 15: reset by hand", workflow_task_finish_event_id=first, request_id=str(uuid.uuid4()),
        reset_reapply_exclude_types=[] if reapply else [ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL,
                                                        ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_UPDATE]))
    return response.run_id


async def test_a_reset_past_the_submission_does_not_submit_or_post_twice(
    temporal_client, worker, settings, sessionmaker, bank
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    handle = await start(temporal_client, settings, params)
    await wait_for_status(handle, "submitted")
    assert bank.payment(params.payout_id)["submissions"] == 1

    run_id = await reset_to_first_workflow_task(temporal_client, handle)
    new_run = temporal_client.get_workflow_handle(handle.id, run_id=run_id, result_type=PayoutWorkflowResult)
    result = await new_run.result()
    assert result.status == "settled"

    payment = bank.payment(params.payout_id)
    assert payment["submissions"] == 1, payment  # the new run did not send it to the bank again
    assert payment["status"] == "settled"
    async with sessionmaker() as session:
        holds = await session.scalar(select(func.count()).select_from(ledger_holds)
                                     .where(ledger_holds.c.payout_id == params.payout_id))
        assert holds == 1
        assert (await ledger.get_hold(session, params.payout_id)).status == "released"
        statuses = [r[0] for r in await session.execute(
            select(payout_events.c.to_status).where(payout_events.c.payout_id == params.payout_id)
            .order_by(payout_events.c.sequence))]
    for once in ("held", "submitted", "settled"):
        assert statuses.count(once) == 1, statuses
    async with sessionmaker() as session:  # debited once: amount + fee, nothing held, the ledger balances
        bal = {b.currency: b for b in await ledger.get_balances(session, merchant)}["EUR"]
        assert bal.held_minor == 0 and bal.available_minor == FUNDS - params.amount_minor - params.fee_minor
        report = await ledger.check_ledger(session)
    assert report.ok, report.violations


async def test_a_reset_of_a_settled_payout_settles_nothing_twice(
    temporal_client, worker, settings, sessionmaker, bank
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    handle = await start(temporal_client, settings, params, result_type=PayoutWorkflowResult)
    assert (await handle.result()).status == "settled"

    run_id = await reset_to_first_workflow_task(temporal_client, handle)
    result = await temporal_client.get_workflow_handle(
        handle.id, run_id=run_id, result_type=PayoutWorkflowResult).result()
    assert result.status == "settled"
    assert bank.payment(params.payout_id)["submissions"] == 1
    async with sessionmaker() as session:
        bal = {b.currency: b for b in await ledger.get_balances(session, merchant)}["EUR"]
        assert bal.held_minor == 0 and bal.available_minor == FUNDS - params.amount_minor - params.fee_minor
        report = await ledger.check_ledger(session)
        statuses = [r[0] for r in await session.execute(
            select(payout_events.c.to_status).where(payout_events.c.payout_id == params.payout_id))]
    assert report.ok, report.violations
    assert statuses.count("settled") == 1, statuses


@pytest.mark.parametrize("reapply", [True, False], ids=["cancel-reapplied", "cancel-not-reapplied"])
async def test_a_reset_to_before_a_cancel_never_sends_the_cancelled_payout(
    temporal_client, worker, settings, sessionmaker, bank, reapply
):
    """The payout waits at the gate (merchant frozen), is cancelled (hold reversed); the freeze is
    lifted; a Reset to the start replays it: the new run must not submit an unfunded payout, even
    when the cancel Update is not re-applied after the reset point."""
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    async with sessionmaker() as session, session.begin():
        await session.execute(controls.insert().values(
            kind="merchant_freeze", target=merchant, params={}, active=True, reason="t", created_by="t"))
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    handle = await start(temporal_client, settings, params, result_type=PayoutWorkflowResult)
    await wait_for_status(handle, "routed")
    decision = await handle.execute_update("cancel", {"actor": "ops", "reason": "merchant asked"},
                                           result_type=OpsDecision)
    assert decision.status == "cancelled"
    assert (await handle.result()).status == "cancelled"
    async with sessionmaker() as session, session.begin():
        await session.execute(update(controls).where(controls.c.target == merchant).values(active=False))

    run_id = await reset_to_first_workflow_task(temporal_client, handle, reapply=reapply)
    new_run = temporal_client.get_workflow_handle(handle.id, run_id=run_id, result_type=PayoutWorkflowResult)
    try:
        await asyncio.wait_for(new_run.result(), 30)
    finally:
        assert bank.payment(params.payout_id) is None  # never sent
    async with sessionmaker() as session:
        status = await session.scalar(select(payouts.c.status).where(payouts.c.id == params.payout_id))
        assert (await ledger.get_hold(session, params.payout_id)).status == "reversed"
        bal = {b.currency: b for b in await ledger.get_balances(session, merchant)}["EUR"]
        report = await ledger.check_ledger(session)
    assert status == "cancelled"
    assert bal.held_minor == 0 and bal.available_minor == FUNDS
    assert report.ok, report.violations


@pytest.mark.parametrize("settled_first", [False, True], ids=["reset-in-flight", "reset-after-settlement"])
async def test_a_reset_that_routes_elsewhere_follows_the_connector_that_accepted_it(
    temporal_client, worker, settings, sessionmaker, bank, settled_first
):
    """The payout is accepted on bank_sepa_instant; that connector is then paused, so a Reset's new
    run routes to another one. Its submission returns the acceptance recorded on the payout (not
    sent again); the workflow must then ask, settle and watch for returns on bank_sepa_instant,
    where the bank has the payment (patch reset-follows-accepted-connector-v1), not on the
    connector it routed to, which has no such payment at a real bank."""
    from core.platform.tables import journal_transactions
    from core.payouts.models import PayoutState

    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, priority="priority")
    handle = await start(temporal_client, settings, params, result_type=PayoutWorkflowResult)
    first = await wait_for_status(handle, "submitted")
    assert (first.connector, first.rail) == ("bank_sepa_instant", "sepa_instant")
    if settled_first:
        assert (await handle.result()).status == "settled"
    async with sessionmaker() as session, session.begin():
        await session.execute(controls.insert().values(
            kind="connector_pause", target="bank_sepa_instant", params={}, active=True, reason="t", created_by="t"))

    run_id = await reset_to_first_workflow_task(temporal_client, handle)
    new_run = temporal_client.get_workflow_handle(handle.id, run_id=run_id, result_type=PayoutWorkflowResult)
    result = await asyncio.wait_for(new_run.result(), 60)
    state = await new_run.query("state", result_type=PayoutState)

    assert result.status == "settled", result
    assert (state.connector, state.rail) == ("bank_sepa_instant", "sepa_instant"), state
    payment = bank.payment(params.payout_id)
    assert payment["submissions"] == 1 and payment["accepted_count"] == 1 and payment["status"] == "settled"
    async with sessionmaker() as session:
        routed_to = (await session.execute(select(payouts.c.connector, payouts.c.rail)
                                           .where(payouts.c.id == params.payout_id))).one()
        settlements = (await session.execute(select(journal_transactions.c.metadata).where(
            journal_transactions.c.payout_id == params.payout_id,
            journal_transactions.c.kind == ledger.KIND_SETTLEMENT))).scalars().all()
        events = (await session.execute(select(payout_events.c.to_status, payout_events.c.reason, payout_events.c.data)
                                        .where(payout_events.c.payout_id == params.payout_id)
                                        .order_by(payout_events.c.sequence))).all()
        bal = {b.currency: b for b in await ledger.get_balances(session, merchant)}["EUR"]
        report = await ledger.check_ledger(session)
    assert tuple(routed_to) == ("bank_sepa_instant", "sepa_instant")
    # settled once, against the clearing account of the connector the bank accepted it on
    assert [m["connector"] for m in settlements] == ["bank_sepa_instant"]
    assert [(e.data or {}).get("event_key") for e in events].count("settled") == 1
    # the new run says why it follows another connector than it routed to
    [note] = [e for e in events if (e.data or {}).get("event_key", "").startswith("follows-accepted-connector:")]
    assert note.data["connector"] == "bank_sepa_instant" and "bank_sepa_instant" not in note.data["routed_to"]
    assert bal.held_minor == 0 and bal.available_minor == FUNDS - params.amount_minor - params.fee_minor
    assert report.ok, report.violations
    if not settled_first and os.environ.get("PAYOPS_RECORD_HISTORIES") == "1":  # replayed by tests/platform/test_replay.py
        (Path(__file__).parent.parent / "histories" / "payout_reset_follows_accepted_connector.json").write_text(
            (await new_run.fetch_history()).to_json())
