"""OpsActionWorkflow on a real Temporal dev server, real PostgreSQL and the sandbox bank: the
approval rules (as Updates and as Signals), racing approvals, signal-with-start, rejection,
conflicts, execution and rollback, and each action type's effect observed on real payouts.
Expiry runs on the time-skipping server."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import func, select, text
from temporalio.client import WorkflowUpdateFailedError

from core.ledger import service as ledger
from core.ops_actions import service
from core.platform.errors import Conflict, Forbidden, InvalidState, Unprocessable
from core.platform.names import ops_action_workflow_id, payout_workflow_id, search_attribute_keys
from core.ops_actions.models import ApprovalRequest, ApprovalTally, ExecuteRequest, OpsActionResult, OpsActionState
from core.ops_actions.grants import keyring, sign_grant
from core.payouts.models import PayoutState
from core.platform.settings import Settings
from core.platform.tables import controls, ops_action_audit, ops_actions, ops_approvals
from tests.factories import create_merchant, create_payout_row
from workers.main import build_worker
from workflows.payout import PayoutWorkflow

FUNDS = 1_000_000
CREATOR = "ops-creator"


# --- helpers ---------------------------------------------------------------------------------


async def create(sm, temporal, settings, action_type: str, params: dict, *, actor: str = CREATOR,
                 risk: str | None = None, expires: float | None = None) -> dict:
    async with sm() as session:
        return await service.create_action(
            session, temporal, settings, None, actor=actor, action_type=action_type, params=params,
            risk_level=risk, expires_in_seconds=expires,
        )


def handle_of(temporal, action: dict):
    return temporal.get_workflow_handle(ops_action_workflow_id(action["id"]), result_type=OpsActionResult)


def vote(actor: str, *roles: str) -> ApprovalRequest:
    return ApprovalRequest(actor=actor, roles=list(roles or ("approver",)), comment=f"ok from {actor}")


def signed(handle_or_id, decision: str, request: ApprovalRequest) -> ApprovalRequest:
    """The request with a grant payops signed for its actor and roles (what the API / the grants
    endpoint give): only signed votes count (core/ops_actions/grants.py)."""
    wid = handle_or_id if isinstance(handle_or_id, str) else handle_or_id.id
    token, _ = sign_grant(keyring(Settings(_env_file=None)), scope="ops_action",
                          subject_id=wid.removeprefix("ops-action-"), decision=decision, actor=request.actor,
                          roles=request.roles, now=datetime.now(timezone.utc), ttl_seconds=300)
    return request.model_copy(update={"grant": token})


async def approve(handle, actor: str, *roles: str) -> ApprovalTally:
    return await handle.execute_update("approve", signed(handle, "approve", vote(actor, *roles)),
                                       result_type=ApprovalTally)


async def approve_all(handle, n: int) -> None:
    for i in range(n):
        await approve(handle, f"approver-{i}")


async def refused(handle, update: str, request, error_type: str) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as exc:
        unsigned = isinstance(request, ApprovalRequest) and not request.grant
        await handle.execute_update(update, signed(handle, update, request) if unsigned else request)
    assert exc.value.cause.type == error_type, exc.value.cause
    return exc.value.cause.message


async def result_of(handle) -> OpsActionResult:
    return await handle.result()


async def state_of(handle) -> OpsActionState:
    return await handle.query("state", result_type=OpsActionState)


async def eventually(check, timeout: float = 20.0, what: str = "condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def start_payout(temporal, settings, sm, merchant: str, **kwargs):
    params = await create_payout_row(sm, settings, merchant_id=merchant, **kwargs)
    handle = await temporal.start_workflow(
        PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id), task_queue=settings.temporal_task_queue,
    )
    return params, handle


async def on_hold_before_submission(handle) -> PayoutState:
    async def check():
        state = await handle.query("state", result_type=PayoutState)
        return state if "on hold" in state.step else None

    return await eventually(check, what="the payout to wait before submission")


async def audit_events(sm, action_id: str) -> list[str]:
    async with sm() as session:
        return list(await session.scalars(
            select(ops_action_audit.c.event).where(ops_action_audit.c.action_id == action_id)
            .order_by(ops_action_audit.c.id)))


async def row_of(sm, action_id: str) -> dict:
    async with sm() as session:
        return dict((await session.execute(select(ops_actions).where(ops_actions.c.id == action_id))).mappings().one())


async def assert_ledger_ok(sm):
    async with sm() as session:
        report = await ledger.check_ledger(session)
    assert report.ok, report.violations


# --- creation rules ----------------------------------------------------------------------------


async def test_risk_defaults_may_be_raised_never_lowered(temporal_client, worker, settings, sessionmaker):
    merchant = await create_merchant(sessionmaker)
    a = await create(sessionmaker, temporal_client, settings, "FREEZE_MERCHANT", {"merchant_id": merchant})
    assert (a["risk_level"], a["required_approvals"]) == ("medium", 2)
    raised = await create(sessionmaker, temporal_client, settings, "CLEAR_ROUTE_OVERRIDE",
                          {"rail": "sepa"}, risk="critical")
    assert (raised["risk_level"], raised["required_approvals"]) == ("critical", 3)
    with pytest.raises(Unprocessable, match="never lower"):
        await create(sessionmaker, temporal_client, settings, "PAUSE_PAYOUTS", {"rail": "sepa"}, risk="low")
    # ADJUST_BALANCE is at least high
    with pytest.raises(Unprocessable, match="below ADJUST_BALANCE's default of high"):
        await create(sessionmaker, temporal_client, settings, "ADJUST_BALANCE",
                     {"merchant_id": merchant, "amount_minor": 100, "currency": "EUR", "reason": "x"}, risk="medium")
    with pytest.raises(Unprocessable, match="params"):
        await create(sessionmaker, temporal_client, settings, "PAUSE_PAYOUTS", {"rail": "sepa", "connector": "x"})
    desc = await handle_of(temporal_client, a).describe()
    keys = search_attribute_keys()
    assert desc.typed_search_attributes.get(keys["ActionType"]) == "FREEZE_MERCHANT"
    assert desc.typed_search_attributes.get(keys["RiskLevel"]) == "medium"


async def test_two_open_actions_on_one_target_are_refused(temporal_client, worker, settings, sessionmaker):
    merchant = await create_merchant(sessionmaker)
    first = await create(sessionmaker, temporal_client, settings, "FREEZE_MERCHANT", {"merchant_id": merchant})
    with pytest.raises(Conflict, match=first["id"]):
        await create(sessionmaker, temporal_client, settings, "FREEZE_MERCHANT",
                     {"merchant_id": merchant, "cancel_queued": True}, actor="someone-else")
    # once executed, a second freeze is refused because the merchant is frozen
    await approve_all(handle_of(temporal_client, first), 2)
    assert (await result_of(handle_of(temporal_client, first))).status == "executed"
    with pytest.raises(Conflict, match="already frozen"):
        await create(sessionmaker, temporal_client, settings, "FREEZE_MERCHANT", {"merchant_id": merchant})
    # different targets never conflict
    other = await create_merchant(sessionmaker)
    await create(sessionmaker, temporal_client, settings, "FREEZE_MERCHANT", {"merchant_id": other})


# --- approval rules ----------------------------------------------------------------------------


async def test_approval_rules_with_clear_errors(temporal_client, worker, settings, sessionmaker):
    a = await create(sessionmaker, temporal_client, settings, "PAUSE_PAYOUTS", {"connector": "sandbox"})  # high: 3
    h = handle_of(temporal_client, a)
    msg = await refused(h, "approve", vote(CREATOR, "ops_admin"), "self_approval")
    assert "created this action and cannot approve it" in msg
    await refused(h, "approve", vote("risk-1", "risk_ops"), "not_an_approver")
    tally = await approve(h, "alice")
    assert (tally.approvals, tally.required, tally.remaining, tally.status) == (1, 3, 2, "pending_approval")
    assert "already voted" in await refused(h, "approve", vote("alice"), "duplicate_approval")
    await refused(h, "reject", vote("alice"), "duplicate_approval")
    await approve(h, "bob")
    tally = await approve(h, "carol", "ops_admin")
    assert (tally.approvals, tally.status) == (3, "approved")
    await refused(h, "approve", vote("dave"), "action_decided")
    assert (await result_of(h)).status == "executed"
    async with sessionmaker() as session:
        approvers = set(await session.scalars(select(ops_approvals.c.approver).where(ops_approvals.c.action_id == a["id"])))
    assert approvers == {"alice", "bob", "carol"}
    events = await audit_events(sessionmaker, a["id"])
    # each refused vote (self, wrong role, two duplicates) is audited; `action_decided` is refused
    # by the validator, before anything is recorded
    assert events.count("vote_refused") == 4
    assert [e for e in events if e != "vote_refused"] == [
        "created", "approval", "approval", "approval", "approved", "executing", "executed"]


async def test_critical_needs_an_ops_admin(temporal_client, worker, settings, sessionmaker):
    a = await create(sessionmaker, temporal_client, settings, "CLEAR_ROUTE_OVERRIDE", {"rail": "sepa"}, risk="critical")
    h = handle_of(temporal_client, a)
    await approve(h, "a1")
    await approve(h, "a2")
    assert "ops_admin" in await refused(h, "approve", vote("a3"), "admin_approval_required")
    tally = await approve(h, "root", "ops_admin")
    assert tally.status == "approved" and tally.admin_approved and tally.approvals == 3
    assert (await result_of(h)).status == "executed"


async def test_signals_follow_the_same_rules(temporal_client, worker, settings, sessionmaker):
    a = await create(sessionmaker, temporal_client, settings, "CLEAR_ROUTE_OVERRIDE", {"rail": "sepa"}, risk="medium")
    h = handle_of(temporal_client, a)
    await h.signal("approve_signal", signed(h, "approve", vote(CREATOR, "ops_admin")))  # self: ignored
    await h.signal("approve_signal", signed(h, "approve", vote("viewer", "auditor")))  # wrong role: ignored
    await h.signal("approve_signal", signed(h, "approve", vote("alice")))
    await h.signal("approve_signal", signed(h, "approve", vote("alice")))  # duplicate: ignored
    # a signal's grant is verified (local activity) before it counts: wait for all four refusals
    async def settled():
        return (await audit_events(sessionmaker, a["id"])).count("vote_refused") == 3
    await eventually(settled, what="three refused signals audited")
    state = await state_of(h)
    assert [v.actor for v in state.approvals] == ["alice"] and state.status == "pending_approval"
    await h.signal("approve_signal", signed(h, "approve", vote("bob")))
    assert (await result_of(h)).status == "executed"


async def test_approval_signal_sent_with_the_start_is_not_lost(temporal_client, worker, settings, sessionmaker):
    # Temporal unreachable at creation: the row exists, the workflow does not
    a = await create(sessionmaker, None, settings, "CLEAR_ROUTE_OVERRIDE", {"merchant_id": "mer_x"})
    row = await row_of(sessionmaker, a["id"])
    await temporal_client.start_workflow(
        "OpsActionWorkflow", service.workflow_input(row), **service._start_options(row, settings),
        start_signal="approve_signal", start_signal_args=[signed(ops_action_workflow_id(a["id"]), "approve", vote("alice"))],
    )
    result = await result_of(handle_of(temporal_client, a))
    assert result.status == "executed"
    assert (await state_of(handle_of(temporal_client, a))).approvals[0].actor == "alice"


async def test_first_vote_starts_a_never_started_workflow(temporal_client, worker, settings, sessionmaker):
    """update-with-start: the approve endpoint's path when creation could not start the workflow."""
    from core.platform.auth_tokens import Principal
    from core.platform.roles import Role

    a = await create(sessionmaker, None, settings, "CLEAR_ROUTE_OVERRIDE", {"merchant_id": "mer_y"})
    async with sessionmaker() as session:
        tally = await service.vote(session, temporal_client, settings, a["id"],
                                   Principal(sub="alice", roles=frozenset({Role.APPROVER})), decision="approve",
                                   comment=None)
        assert tally.status == "approved"
        with pytest.raises(Forbidden, match="cannot approve"):
            await service.vote(session, temporal_client, settings, a["id"],
                               Principal(sub=CREATOR, roles=frozenset({Role.OPS_ADMIN})), decision="approve",
                               comment=None)
    assert (await result_of(handle_of(temporal_client, a))).status == "executed"


async def test_racing_approvals_count_exactly_the_required_number_and_execute_once(
    temporal_client, worker, settings, sessionmaker
):
    merchant = await create_merchant(sessionmaker)
    a = await create(sessionmaker, temporal_client, settings, "FREEZE_MERCHANT", {"merchant_id": merchant})
    h = handle_of(temporal_client, a)
    outcomes = await asyncio.gather(*(approve(h, f"racer-{i}") for i in range(8)), return_exceptions=True)
    accepted = [o for o in outcomes if isinstance(o, ApprovalTally)]
    refusals = [o for o in outcomes if isinstance(o, WorkflowUpdateFailedError)]
    assert len(accepted) == 2 and len(refusals) == 6, outcomes
    assert all(r.cause.type == "action_decided" for r in refusals)
    assert (await result_of(h)).status == "executed"
    async with sessionmaker() as session:
        assert await session.scalar(
            select(func.count()).select_from(ops_approvals).where(ops_approvals.c.action_id == a["id"])) == 2
        assert await session.scalar(
            select(func.count()).select_from(controls).where(controls.c.target == merchant)) == 1
    assert (await audit_events(sessionmaker, a["id"])).count("executed") == 1


async def test_a_rejection_ends_the_action(temporal_client, worker, settings, sessionmaker):
    merchant = await create_merchant(sessionmaker)
    a = await create(sessionmaker, temporal_client, settings, "FREEZE_MERCHANT", {"merchant_id": merchant})
    h = handle_of(temporal_client, a)
    await approve(h, "alice")
    tally = await h.execute_update("reject", signed(h, "reject", vote("bob")), result_type=ApprovalTally)
    assert tally.status == "rejected" and tally.rejections == 1
    assert (await result_of(h)).status == "rejected"
    assert (await row_of(sessionmaker, a["id"]))["status"] == "rejected"
    async with sessionmaker() as session:
        assert not await session.scalar(select(func.count()).select_from(controls))
    # the target is free again
    await create(sessionmaker, temporal_client, settings, "FREEZE_MERCHANT", {"merchant_id": merchant})


async def test_audit_trail_is_append_only(temporal_client, worker, settings, sessionmaker):
    a = await create(sessionmaker, temporal_client, settings, "CLEAR_ROUTE_OVERRIDE", {"rail": "ach"})
    for stmt in (f"UPDATE ops_action_audit SET actor = 'x' WHERE action_id = '{a['id']}'",
                 f"DELETE FROM ops_action_audit WHERE action_id = '{a['id']}'"):
        async with sessionmaker() as session:
            with pytest.raises(Exception, match="append-only"):
                await session.execute(text(stmt))


# --- effects on payouts ---------------------------------------------------------------------


async def test_frozen_merchant_payout_waits_until_unfreeze(temporal_client, worker, settings, sessionmaker, bank):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    freeze = await create(sessionmaker, temporal_client, settings, "FREEZE_MERCHANT", {"merchant_id": merchant})
    await approve_all(handle_of(temporal_client, freeze), 2)
    assert (await result_of(handle_of(temporal_client, freeze))).status == "executed"

    params, payout = await start_payout(temporal_client, settings, sessionmaker, merchant)
    state = await on_hold_before_submission(payout)
    assert "merchant freeze" in state.step
    assert bank.payment(params.payout_id) is None

    unfreeze = await create(sessionmaker, temporal_client, settings, "UNFREEZE_MERCHANT", {"merchant_id": merchant})
    assert bank.payment(params.payout_id) is None  # not before the unfreeze is approved
    await approve_all(handle_of(temporal_client, unfreeze), 2)
    done = await result_of(handle_of(temporal_client, unfreeze))
    assert done.status == "executed" and params.payout_id in done.result["signalled"]
    assert (await payout.result()).status == "settled"
    assert bank.payment(params.payout_id)["accepted_count"] == 1


async def test_freeze_with_cancel_queued_cancels_waiting_payouts(temporal_client, worker, settings, sessionmaker, bank):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    pause = await create(sessionmaker, temporal_client, settings, "PAUSE_PAYOUTS", {"rail": "sepa_instant"})
    await approve_all(handle_of(temporal_client, pause), 3)
    await result_of(handle_of(temporal_client, pause))
    params, payout = await start_payout(temporal_client, settings, sessionmaker, merchant)
    await on_hold_before_submission(payout)

    freeze = await create(sessionmaker, temporal_client, settings, "FREEZE_MERCHANT",
                          {"merchant_id": merchant, "cancel_queued": True})
    await approve_all(handle_of(temporal_client, freeze), 2)
    result = await payout.result()
    assert result.status == "cancelled" and result.failure_code == "merchant_frozen"
    assert bank.payment(params.payout_id) is None
    await assert_ledger_ok(sessionmaker)


async def test_paused_rail_payouts_wait_until_resumed_and_rollback(temporal_client, worker, settings, sessionmaker, bank):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    pause = await create(sessionmaker, temporal_client, settings, "PAUSE_PAYOUTS", {"rail": "sepa_instant"})
    await approve_all(handle_of(temporal_client, pause), 3)
    assert (await result_of(handle_of(temporal_client, pause))).status == "executed"

    params, payout = await start_payout(temporal_client, settings, sessionmaker, merchant)
    assert "rail pause on sepa_instant" in (await on_hold_before_submission(payout)).step
    assert bank.payment(params.payout_id) is None

    # the rollback of the pause is a RESUME_PAYOUTS that needs its own approvals
    async with sessionmaker() as session:
        resume = await service.rollback_action(session, temporal_client, settings, None, pause["id"],
                                               actor="ops-2", reason="bank is fine", risk_level=None)
    assert resume["type"] == "RESUME_PAYOUTS" and resume["rollback_of"] == pause["id"]
    assert resume["status"] == "pending_approval" and resume["required_approvals"] == 2
    assert bank.payment(params.payout_id) is None
    await approve_all(handle_of(temporal_client, resume), 2)
    assert (await result_of(handle_of(temporal_client, resume))).status == "executed"
    assert (await payout.result()).status == "settled"
    assert "rollback_requested" in await audit_events(sessionmaker, pause["id"])
    async with sessionmaker() as session:
        with pytest.raises(InvalidState, match="no inverse"):
            await service.rollback_action(session, temporal_client, settings, None, (await create(
                sessionmaker, temporal_client, settings, "RETRY_PAYOUTS", {"payout_ids": ["po_x"]}))["id"],
                actor="ops", reason=None, risk_level=None)


async def test_retry_payouts_moves_dlq_payouts_on(temporal_client, worker, settings, sessionmaker, bank):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    async with httpx.AsyncClient() as http:
        await http.post(f"{bank.url}/_sandbox/faults", json={"mode": "5xx", "count": params.retry_max_attempts})
    payout = await temporal_client.start_workflow(
        PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id), task_queue=settings.temporal_task_queue)

    async def in_dlq():
        return (await payout.query("state", result_type=PayoutState)).status == "dlq"

    await eventually(in_dlq, what="dlq")
    action = await create(sessionmaker, temporal_client, settings, "RETRY_PAYOUTS",
                          {"filter": {"merchant_id": merchant}})
    h = handle_of(temporal_client, action)
    await refused(h, "execute", ExecuteRequest(actor="ops-2", roles=["ops_admin"]), "not_executable")  # not approved
    await approve(h, "alice")
    await refused(h, "execute", ExecuteRequest(actor="bob", roles=["approver"]), "not_an_approver")
    state = await h.execute_update("execute", ExecuteRequest(actor="ops-2", roles=["treasury_ops"]),
                                   result_type=OpsActionState)
    assert state.status == "executed" and state.executed_by == "ops-2"
    assert state.result["retried"] == 1 and state.result["payouts"][params.payout_id]["outcome"] == "retried"
    assert (await payout.result()).status == "settled"
    assert bank.payment(params.payout_id)["accepted_count"] == 1
    # the approved action's retry carries a grant payops signed: audited as verified, via ops_action
    [retry] = [e for e in await _payout_audit(sessionmaker, params.payout_id)
               if e["data"].get("event_key", "").startswith("ops-retry:")]
    assert retry["actor"] == "ops-2" and retry["data"]["verified"] is True and retry["data"]["via"] == "ops_action"


async def test_retry_payouts_reports_per_payout(temporal_client, worker, settings, sessionmaker, bank):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params, payout = await start_payout(temporal_client, settings, sessionmaker, merchant)
    assert (await payout.result()).status == "settled"
    action = await create(sessionmaker, temporal_client, settings, "RETRY_PAYOUTS",
                          {"payout_ids": [params.payout_id, "po_missing"]})
    h = handle_of(temporal_client, action)
    await approve(h, "alice")
    state = await h.execute_update("execute", ExecuteRequest(actor="ops-2", roles=["ops_admin"]),
                                   result_type=OpsActionState)
    report = state.result["payouts"]
    assert report[params.payout_id]["outcome"] in ("refused", "not_found")
    assert report["po_missing"]["outcome"] == "not_found"
    assert state.result["retried"] == 0


async def test_cancel_payout_cancels_a_waiting_payout(temporal_client, worker, settings, sessionmaker, bank):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    pause = await create(sessionmaker, temporal_client, settings, "PAUSE_PAYOUTS", {"rail": "sepa_instant"})
    await approve_all(handle_of(temporal_client, pause), 3)
    await result_of(handle_of(temporal_client, pause))
    params, payout = await start_payout(temporal_client, settings, sessionmaker, merchant)
    await on_hold_before_submission(payout)
    action = await create(sessionmaker, temporal_client, settings, "CANCEL_PAYOUT",
                          {"payout_id": params.payout_id, "reason": "merchant asked"})
    await approve(handle_of(temporal_client, action), "alice")
    result = await result_of(handle_of(temporal_client, action))
    assert result.status == "executed" and result.result["status"] == "cancelled"
    assert (await payout.result()).status == "cancelled"
    assert bank.payment(params.payout_id) is None
    await assert_ledger_ok(sessionmaker)
    # the approved action's cancel carries a grant payops signed: audited as verified, via ops_action
    [event] = [e for e in await _payout_audit(sessionmaker, params.payout_id) if e["to_status"] == "cancelled"]
    assert event["data"]["verified"] is True and event["data"]["via"] == "ops_action", event
    assert "unverified" not in event["actor"]


async def _payout_audit(sm, payout_id: str) -> list[dict]:
    from core.platform.tables import payout_events

    async with sm() as session:
        rows = await session.execute(select(payout_events.c.actor, payout_events.c.to_status, payout_events.c.data)
                                     .where(payout_events.c.payout_id == payout_id).order_by(payout_events.c.sequence))
        return [dict(r) for r in rows.mappings()]


async def test_adjust_balance_keeps_the_ledger_green_and_rolls_back(temporal_client, worker, settings, sessionmaker):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    a = await create(sessionmaker, temporal_client, settings, "ADJUST_BALANCE",
                     {"merchant_id": merchant, "amount_minor": 2_500, "currency": "EUR", "reason": "fee refund"})
    assert a["required_approvals"] == 3
    h = handle_of(temporal_client, a)
    await approve_all(h, 3)
    assert (await state_of(h)).status == "approved"  # waits for an explicit execute
    state = await h.execute_update("execute", ExecuteRequest(actor="fin-1", roles=["finance_ops"]),
                                   result_type=OpsActionState)
    assert state.status == "executed"
    async with sessionmaker() as session:
        [bal] = await ledger.get_balances(session, merchant)
    assert bal.available_minor == FUNDS + 2_500
    await assert_ledger_ok(sessionmaker)

    async with sessionmaker() as session:
        back = await service.rollback_action(session, temporal_client, settings, None, a["id"], actor="fin-1",
                                             reason=None, risk_level=None)
    assert back["params"]["amount_minor"] == -2_500 and back["risk_level"] == "high"
    hb = handle_of(temporal_client, back)
    await approve_all(hb, 3)
    await hb.execute_update("execute", ExecuteRequest(actor="fin-1", roles=["finance_ops"]))
    async with sessionmaker() as session:
        [bal] = await ledger.get_balances(session, merchant)
    assert bal.available_minor == FUNDS
    await assert_ledger_ok(sessionmaker)


async def test_execution_error_is_recorded(temporal_client, worker, settings, sessionmaker):
    merchant = await create_merchant(sessionmaker, funded_minor=100)
    a = await create(sessionmaker, temporal_client, settings, "ADJUST_BALANCE",
                     {"merchant_id": merchant, "amount_minor": -5_000, "currency": "EUR", "reason": "chargeback"})
    h = handle_of(temporal_client, a)
    await approve_all(h, 3)
    state = await h.execute_update("execute", ExecuteRequest(actor="fin-1", roles=["ops_admin"]),
                                   result_type=OpsActionState)
    assert state.status == "failed" and "insufficient_funds" in state.error
    row = await row_of(sessionmaker, a["id"])
    assert row["status"] == "failed" and "insufficient_funds" in row["error"]
    await assert_ledger_ok(sessionmaker)


async def test_route_override_is_stored_as_a_control(temporal_client, worker, settings, sessionmaker):
    merchant = await create_merchant(sessionmaker)
    until = datetime.now(timezone.utc) + timedelta(hours=2)
    a = await create(sessionmaker, temporal_client, settings, "ROUTE_OVERRIDE",
                     {"merchant_id": merchant, "connector": "sandbox", "until": until.isoformat()})
    await approve_all(handle_of(temporal_client, a), 2)
    assert (await result_of(handle_of(temporal_client, a))).status == "executed"
    async with sessionmaker() as session:
        row = (await session.execute(select(controls).where(controls.c.kind == "route_override"))).mappings().one()
    assert row["target"] == f"merchant:{merchant}" and row["params"]["connector"] == "sandbox"
    assert row["active"] and row["action_id"] == a["id"]


async def test_state_changes_are_published(temporal_client, worker, settings, sessionmaker, redis_url):
    from redis.asyncio import Redis

    from core.ops_actions.store import OPS_ACTION_UPDATES_CHANNEL

    redis = Redis.from_url(redis_url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(OPS_ACTION_UPDATES_CHANNEL)
    try:
        a = await create(sessionmaker, temporal_client, settings, "CLEAR_ROUTE_OVERRIDE", {"rail": "wire"})
        await approve(handle_of(temporal_client, a), "alice")
        await result_of(handle_of(temporal_client, a))
        seen: list[str] = []

        async def got_executed():
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if msg:
                import json

                body = json.loads(msg["data"])
                if body["action_id"] == a["id"]:
                    seen.append(body["event"])
            return "executed" in seen

        await eventually(got_executed, what="the executed message")
        assert {"approval", "approved", "executing", "executed"} <= set(seen)
    finally:
        await pubsub.aclose()
        await redis.aclose()


# --- expiry (time-skipping) -------------------------------------------------------------------




async def test_undecided_action_expires_after_24h(skipping_env, worker_deps, settings, sessionmaker):
    merchant = await create_merchant(sessionmaker)
    async with build_worker(skipping_env.client, worker_deps, task_queue=settings.temporal_task_queue):
        a = await create(sessionmaker, skipping_env.client, settings, "FREEZE_MERCHANT", {"merchant_id": merchant})
        h = handle_of(skipping_env.client, a)
        await h.signal("approve_signal", signed(h, "approve", vote("alice")))  # one of two
        await skipping_env.sleep(timedelta(hours=24, seconds=1))  # skipped, not waited
        result = await result_of(h)
        assert result.status == "expired"
    assert (await row_of(sessionmaker, a["id"]))["status"] == "expired"
    assert (await audit_events(sessionmaker, a["id"]))[-1] == "expired"
    async with sessionmaker() as session:
        assert not await session.scalar(select(func.count()).select_from(controls))
    history = await h.fetch_history()
    timers = [e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
              for e in history.events if e.timer_started_event_attributes.HasField("start_to_fire_timeout")]
    assert timers and abs(timers[0] - 24 * 3600) < 5


async def test_approved_manual_action_expires_without_execute(skipping_env, worker_deps, settings, sessionmaker):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    async with build_worker(skipping_env.client, worker_deps, task_queue=settings.temporal_task_queue):
        a = await create(sessionmaker, skipping_env.client, settings, "ADJUST_BALANCE",
                         {"merchant_id": merchant, "amount_minor": 10, "currency": "EUR", "reason": "x"})
        h = handle_of(skipping_env.client, a)
        for approver in ("alice", "bob", "carol"):
            await h.signal("approve_signal", signed(h, "approve", vote(approver)))
        await skipping_env.sleep(timedelta(hours=24, seconds=1))  # the execute window, skipped
        result = await result_of(h)
    assert result.status == "expired"
    async with sessionmaker() as session:
        [bal] = await ledger.get_balances(session, merchant)
    assert bal.available_minor == FUNDS
