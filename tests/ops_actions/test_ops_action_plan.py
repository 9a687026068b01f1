"""GET /api/v1/ops/actions/{id}/plan on real PostgreSQL (and, for plan == execution, a real
worker, Temporal dev server and sandbox bank): for every action type, data whose right answer the
test knows; then for two types, what execution then did equals what the plan said."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import httpx
from sqlalchemy import update

from core.ledger import service as ledger
from core.ops_actions import service
from core.ops_actions.models import ExecuteRequest, OpsActionState
from core.payouts import bulk
from core.payouts.models import PayoutState
from core.platform.names import payout_workflow_id
from core.platform.tables import payouts
from tests.factories import create_merchant, create_payout_row
from tests.ops_actions.test_ops_actions import (
    approve,
    approve_all,
    assert_ledger_ok,
    eventually,
    handle_of,
    on_hold_before_submission,
    result_of,
    start_payout,
)
from workflows.payout import PayoutWorkflow

FUNDS = 1_000_000
BASE = "/api/v1/ops/actions"


async def create(sm, settings, action_type: str, params: dict) -> dict:
    """The action row only (no workflow yet: its first vote would start it); the plan needs none."""
    async with sm() as session:
        return await service.create_action(session, None, settings, None, actor="ops-creator",
                                           action_type=action_type, params=params, risk_level=None,
                                           expires_in_seconds=None)


async def payout_in(sm, settings, merchant: str, status: str, *, rail: str = "sepa_instant",
                    connector: str = "sandbox_bank", amount: int = 10_000, hold: bool = True) -> dict:
    """A payout row in `status` on a rail/connector, with an active hold of amount + fee when `hold`."""
    p = await create_payout_row(sm, settings, merchant_id=merchant, amount_minor=amount)
    async with sm() as session, session.begin():
        if hold:
            await ledger.place_hold(session, payout_id=p.payout_id, merchant_id=merchant, amount_minor=amount,
                                    fee_minor=p.fee_minor, currency="EUR", expires_at=None)
        await session.execute(update(payouts).where(payouts.c.id == p.payout_id).values(
            status=status, rail=rail, connector=connector))
    return {"id": p.payout_id, "amount": amount, "fee": p.fee_minor, "held": amount + p.fee_minor}


async def plan_of(client, token_for, action_id: str) -> dict:
    r = await client.get(f"{BASE}/{action_id}/plan", headers=token_for("approver", sub="someone"))
    assert r.status_code == 200, r.text
    return r.json()


def effects(plan: dict) -> dict[str, str]:
    return {p["payout_id"]: p["effect"] for p in plan["payouts"]}


class TestPlanEndpoint:
    async def test_401_403_404(self, client, token_for, sessionmaker, settings):
        merchant = await create_merchant(sessionmaker)
        action = await create(sessionmaker, settings, "FREEZE_MERCHANT", {"merchant_id": merchant})
        assert (await client.get(f"{BASE}/{action['id']}/plan")).status_code == 401
        r = await client.get(f"{BASE}/{action['id']}/plan", headers=token_for("merchant_admin", merchant_id=merchant))
        assert r.status_code == 403
        r = await client.get(f"{BASE}/op_missing/plan", headers=token_for("approver"))
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")

    async def test_plan_is_read_only(self, client, token_for, sessionmaker, settings):
        merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
        waiting = await payout_in(sessionmaker, settings, merchant, "held")
        action = await create(sessionmaker, settings, "FREEZE_MERCHANT",
                              {"merchant_id": merchant, "cancel_queued": True})
        first = await plan_of(client, token_for, action["id"])
        second = await plan_of(client, token_for, action["id"])
        assert effects(first) == effects(second) == {waiting["id"]: "cancel"}
        async with sessionmaker() as session:
            assert (await service.get_action(session, settings, action["id"]))["status"] == "pending_approval"
            balances = {b.currency: b for b in await ledger.get_balances(session, merchant)}
        assert balances["EUR"].held_minor == waiting["held"]  # nothing was released


class TestPlanPerType:
    async def test_freeze_waits_the_merchants_waiting_payouts_only(self, client, token_for, sessionmaker, settings):
        merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
        other = await create_merchant(sessionmaker, funded_minor=FUNDS)
        held = await payout_in(sessionmaker, settings, merchant, "held", amount=10_000)
        routed = await payout_in(sessionmaker, settings, merchant, "routed", amount=25_000)
        await payout_in(sessionmaker, settings, merchant, "submitted")  # at the bank: not held back
        await payout_in(sessionmaker, settings, other, "held")  # another merchant
        action = await create(sessionmaker, settings, "FREEZE_MERCHANT", {"merchant_id": merchant})
        plan = await plan_of(client, token_for, action["id"])
        assert plan["type"] == "FREEZE_MERCHANT" and plan["would_refuse"] is None
        assert effects(plan) == {held["id"]: "wait", routed["id"]: "wait"}
        assert plan["merchants"] == [{"merchant_id": merchant, "change": "frozen"}]
        assert plan["controls"][0] | {"control_ids": []} == {
            "kind": "merchant_freeze", "target": merchant, "change": "activate", "control_ids": []}
        assert plan["amounts"] == [{"effect": "stays_held", "currency": "EUR",
                                    "amount_minor": held["held"] + routed["held"],
                                    "account": f"merchant:{merchant}:held"}]

    async def test_freeze_with_cancel_queued_releases_the_holds(self, client, token_for, sessionmaker, settings):
        merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
        a = await payout_in(sessionmaker, settings, merchant, "held", amount=12_345)
        b = await payout_in(sessionmaker, settings, merchant, "routed", amount=500)
        action = await create(sessionmaker, settings, "FREEZE_MERCHANT",
                              {"merchant_id": merchant, "cancel_queued": True})
        plan = await plan_of(client, token_for, action["id"])
        assert effects(plan) == {a["id"]: "cancel", b["id"]: "cancel"}
        assert plan["amounts"] == [{"effect": "released_to_available", "currency": "EUR",
                                    "amount_minor": a["held"] + b["held"],
                                    "account": f"merchant:{merchant}:available"}]

    async def test_unfreeze_lifts_the_freeze_and_wakes_waiting_payouts(self, client, token_for, sessionmaker,
                                                                      settings):
        merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
        held = await payout_in(sessionmaker, settings, merchant, "held")
        async with sessionmaker() as session, session.begin():
            from core.ops_actions import store  # why: the freeze a FREEZE_MERCHANT would have written

            control = await store.insert_control(session, kind="merchant_freeze", target=merchant, params={},
                                                 reason="test", created_by="t", action_id=None)
        action = await create(sessionmaker, settings, "UNFREEZE_MERCHANT", {"merchant_id": merchant})
        plan = await plan_of(client, token_for, action["id"])
        assert effects(plan) == {held["id"]: "proceed"}
        assert plan["controls"] == [{"kind": "merchant_freeze", "target": merchant, "change": "deactivate",
                                     "control_ids": [control]}]
        assert plan["merchants"] == [{"merchant_id": merchant, "change": "unfrozen"}]

    async def test_pause_rail_and_resume_connector(self, client, token_for, sessionmaker, settings):
        merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
        on_rail = await payout_in(sessionmaker, settings, merchant, "routed", rail="sepa_instant", connector="c1")
        await payout_in(sessionmaker, settings, merchant, "routed", rail="sepa", connector="c1")
        await payout_in(sessionmaker, settings, merchant, "dlq", rail="sepa_instant", connector="c1")
        pause = await create(sessionmaker, settings, "PAUSE_PAYOUTS", {"rail": "sepa_instant"})
        plan = await plan_of(client, token_for, pause["id"])
        assert effects(plan) == {on_rail["id"]: "wait"}
        assert plan["controls"][0]["kind"] == "rail_pause" and plan["controls"][0]["target"] == "sepa_instant"

        async with sessionmaker() as session, session.begin():
            from core.ops_actions import store  # why: the pause a PAUSE_PAYOUTS would have written

            control = await store.insert_control(session, kind="connector_pause", target="c1", params={},
                                                 reason="test", created_by="t", action_id=None)
        resume = await create(sessionmaker, settings, "RESUME_PAYOUTS", {"connector": "c1"})
        plan = await plan_of(client, token_for, resume["id"])
        assert set(effects(plan).values()) == {"proceed"} and len(plan["payouts"]) == 2  # both routed on c1
        assert plan["controls"][0]["control_ids"] == [control]

    async def test_route_override_and_clear(self, client, token_for, sessionmaker, settings):
        merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
        routed = await payout_in(sessionmaker, settings, merchant, "routed", connector="c_old")
        until = datetime.now(timezone.utc) + timedelta(hours=2)
        override = await create(sessionmaker, settings, "ROUTE_OVERRIDE",
                                {"merchant_id": merchant, "connector": "c_new", "until": until.isoformat()})
        plan = await plan_of(client, token_for, override["id"])
        assert plan["routes"] == [{"target": f"merchant:{merchant}", "from_connector": None,
                                   "to_connector": "c_new", "until": until.isoformat()}]
        assert effects(plan) == {routed["id"]: "unchanged"}

        async with sessionmaker() as session, session.begin():
            from core.ops_actions import store  # why: the override a ROUTE_OVERRIDE would have written

            await store.insert_control(session, kind="route_override", target=f"merchant:{merchant}",
                                       params={"connector": "c_other"}, reason="t", created_by="t",
                                       action_id=None, ends_at=until)
            rail_control = await store.insert_control(session, kind="route_override", target="rail:sepa",
                                                      params={"connector": "c_rail"}, reason="t", created_by="t",
                                                      action_id=None, ends_at=until)
        # a second override is refused at execution while one is active: the plan says so
        plan = await plan_of(client, token_for, override["id"])
        assert plan["would_refuse"].startswith("route override") and plan["routes"][0]["from_connector"] == "c_other"
        clear = await create(sessionmaker, settings, "CLEAR_ROUTE_OVERRIDE", {"rail": "sepa"})
        plan = await plan_of(client, token_for, clear["id"])
        assert plan["controls"][0]["control_ids"] == [rail_control]
        assert plan["routes"] == [{"target": "rail:sepa", "from_connector": "c_rail", "to_connector": None,
                                   "until": None}]

    async def test_retry_by_filter_and_by_ids(self, client, token_for, sessionmaker, settings):
        merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
        d1 = await payout_in(sessionmaker, settings, merchant, "dlq", amount=1_000)
        d2 = await payout_in(sessionmaker, settings, merchant, "dlq", amount=2_000)
        settled = await payout_in(sessionmaker, settings, merchant, "settled", hold=False)
        by_filter = await create(sessionmaker, settings, "RETRY_PAYOUTS",
                                 {"filter": {"merchant_id": merchant, "limit": 1}})
        plan = await plan_of(client, token_for, by_filter["id"])
        assert effects(plan) == {d1["id"]: "retry"}  # oldest first, limit 1
        by_ids = await create(sessionmaker, settings, "RETRY_PAYOUTS",
                              {"payout_ids": [d2["id"], settled["id"], "po_missing"]})
        plan = await plan_of(client, token_for, by_ids["id"])
        assert effects(plan) == {d2["id"]: "retry", settled["id"]: "refused", "po_missing": "not_found"}
        assert plan["summary"] == "Retry 1 dlq payout(s)."

    async def test_cancel_payout(self, client, token_for, sessionmaker, settings):
        merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
        held = await payout_in(sessionmaker, settings, merchant, "held", amount=7_000)
        submitted = await payout_in(sessionmaker, settings, merchant, "submitted")
        ok = await create(sessionmaker, settings, "CANCEL_PAYOUT", {"payout_id": held["id"], "reason": "dup"})
        plan = await plan_of(client, token_for, ok["id"])
        assert effects(plan) == {held["id"]: "cancel"} and plan["would_refuse"] is None
        assert plan["amounts"] == [{"effect": "released_to_available", "currency": "EUR",
                                    "amount_minor": held["held"], "account": f"merchant:{merchant}:available"}]
        late = await create(sessionmaker, settings, "CANCEL_PAYOUT", {"payout_id": submitted["id"], "reason": "x"})
        plan = await plan_of(client, token_for, late["id"])
        assert "cannot be cancelled" in plan["would_refuse"] and plan["amounts"] == []

    async def test_repair_payout(self, client, token_for, sessionmaker, settings):
        merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
        held = await payout_in(sessionmaker, settings, merchant, "held")
        submitted = await payout_in(sessionmaker, settings, merchant, "submitted")
        comp = await create(sessionmaker, settings, "REPAIR_PAYOUT",
                            {"payout_id": held["id"], "mode": "compensate", "reason": "terminated"})
        plan = await plan_of(client, token_for, comp["id"])
        assert effects(plan) == {held["id"]: "fail"} and plan["would_refuse"] is None
        assert plan["amounts"][0]["amount_minor"] == held["held"]
        bad = await create(sessionmaker, settings, "REPAIR_PAYOUT",
                           {"payout_id": submitted["id"], "mode": "compensate", "reason": "terminated"})
        plan = await plan_of(client, token_for, bad["id"])
        assert "the bank may have it" in plan["would_refuse"] and effects(plan) == {submitted["id"]: "refused"}

    async def test_adjust_balance(self, client, token_for, sessionmaker, settings):
        merchant = await create_merchant(sessionmaker, funded_minor=5_000)
        credit = await create(sessionmaker, settings, "ADJUST_BALANCE",
                              {"merchant_id": merchant, "amount_minor": 1_500, "currency": "EUR", "reason": "goodwill"})
        plan = await plan_of(client, token_for, credit["id"])
        assert plan["merchants"][0]["available_before_minor"] == 5_000
        assert plan["merchants"][0]["available_after_minor"] == 6_500 and plan["would_refuse"] is None
        debit = await create(sessionmaker, settings, "ADJUST_BALANCE",
                             {"merchant_id": merchant, "amount_minor": -6_000, "currency": "EUR", "reason": "fee"})
        plan = await plan_of(client, token_for, debit["id"])
        assert plan["merchants"][0]["available_after_minor"] == -1_000 and "below zero" in plan["would_refuse"]

    async def test_approve_bulk_payout(self, client, token_for, sessionmaker, settings):
        settings = settings.model_copy(update={"bulk_payout_approval_threshold_minor": 100})
        merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
        items = [{"reference": f"r{n}", "amount": amount, "currency": "EUR", "method": "sepa", "priority": "instant",
                  "beneficiary": {"name": f"E{n}", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"}}
                 for n, amount in enumerate(["10.00", "2.50", "0.01"])]
        async with sessionmaker() as session:
            status, body = await bulk.create_bulk_payout(
                session, None, settings, merchant_id=merchant, actor="m", idempotency_key=uuid.uuid4().hex,
                mode="partial", items=items)
            await session.commit()
        assert status in (201, 202), body
        action_id = body["approval"]["action_id"]
        assert body["approval"]["required"] and action_id
        plan = await plan_of(client, token_for, action_id)
        assert plan["amounts"] == [{"effect": "payouts_created", "currency": "EUR", "amount_minor": 1251,
                                    "account": f"merchant:{merchant}:available"}]
        assert plan["merchants"] == [{"merchant_id": merchant, "change": "3 payouts created"}]

    async def test_set_kyc_status(self, client, token_for, sessionmaker, settings):
        merchant = await create_merchant(sessionmaker)
        action = await create(sessionmaker, settings, "SET_KYC_STATUS",
                              {"merchant_id": merchant, "status": "verified", "reason": "documents checked"})
        plan = await plan_of(client, token_for, action["id"])
        assert plan["would_refuse"] is None and plan["payouts"] == [] and plan["amounts"] == []
        assert plan["merchants"] == [{"merchant_id": merchant, "change": "kyc_status", "from_status": "pending",
                                      "to_status": "verified"}]
        assert "pending -> verified" in plan["summary"]

    async def test_approve_bank_account(self, client, token_for, sessionmaker, settings):
        from core.merchants import bank_accounts  # why: the account an APPROVE_BANK_ACCOUNT is about

        merchant = await create_merchant(sessionmaker)
        async with sessionmaker() as session, session.begin():
            account = await bank_accounts.register_account(
                session, settings, merchant, actor="m", rail="sepa", currency="EUR",
                details={"iban": "DE89370400440532013000", "bic": "COBADEFFXXX"})
        action = await create(sessionmaker, settings, "APPROVE_BANK_ACCOUNT",
                              {"merchant_id": merchant, "account_id": account["id"], "reason": "called back"})
        plan = await plan_of(client, token_for, action["id"])
        assert plan["would_refuse"] is None
        assert plan["merchants"] == [{
            "merchant_id": merchant, "change": "bank_account_approved", "account_id": account["id"], "rail": "sepa",
            "currency": "EUR", "last4": "3000", "from_status": "verified",
            "effective_at_before": account["effective_at"].isoformat()}]
        assert "cool-off ends early" in plan["summary"]
        async with sessionmaker() as session, session.begin():
            await bank_accounts.review_account(session, merchant_id=merchant, account_id=account["id"],
                                               approve=False, actor="ops", reason="fraud")
        plan = await plan_of(client, token_for, action["id"])
        assert plan["would_refuse"] == f"bank account {account['id']} was rejected: it cannot be approved"


# --- plan == what execution then does ------------------------------------------------------------


async def test_retry_by_filter_retries_exactly_the_planned_payouts(temporal_client, worker, settings, sessionmaker,
                                                                   bank, client, token_for):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    rows = [await create_payout_row(sessionmaker, settings, merchant_id=merchant) for _ in range(2)]
    async with httpx.AsyncClient() as http:
        await http.post(f"{bank.url}/_sandbox/faults",
                        json={"mode": "5xx", "count": sum(r.retry_max_attempts for r in rows)})
    handles = [await temporal_client.start_workflow(
        PayoutWorkflow.run, r, id=payout_workflow_id(r.payout_id), task_queue=settings.temporal_task_queue)
        for r in rows]

    async def all_in_dlq():
        states = [await h.query("state", result_type=PayoutState) for h in handles]
        return all(s.status == "dlq" for s in states)

    await eventually(all_in_dlq, timeout=60, what="both payouts in dlq")
    async with sessionmaker() as session:
        action = await service.create_action(session, temporal_client, settings, None, actor="ops-creator",
                                             action_type="RETRY_PAYOUTS", params={"filter": {"merchant_id": merchant}},
                                             risk_level=None, expires_in_seconds=None)
    plan = await plan_of(client, token_for, action["id"])
    assert effects(plan) == {r.payout_id: "retry" for r in rows}
    h = handle_of(temporal_client, action)
    await approve(h, "alice")
    state = await h.execute_update("execute", ExecuteRequest(actor="ops-2", roles=["ops_admin"]),
                                   result_type=OpsActionState)
    assert state.status == "executed"
    assert set(state.result["payouts"]) == set(effects(plan))
    assert state.result["retried"] == len(plan["payouts"])


async def test_freeze_with_cancel_queued_cancels_exactly_the_planned_payouts(temporal_client, worker, settings,
                                                                             sessionmaker, bank, client, token_for):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    async with sessionmaker() as session:
        pause = await service.create_action(session, temporal_client, settings, None, actor="ops-creator",
                                            action_type="PAUSE_PAYOUTS", params={"rail": "sepa_instant"},
                                            risk_level=None, expires_in_seconds=None)
    await approve_all(handle_of(temporal_client, pause), 3)
    await result_of(handle_of(temporal_client, pause))
    started = [await start_payout(temporal_client, settings, sessionmaker, merchant, amount_minor=a)
               for a in (10_000, 4_321)]
    for _, handle in started:
        await on_hold_before_submission(handle)
    async with sessionmaker() as session:
        before = {b.currency: b for b in await ledger.get_balances(session, merchant)}["EUR"]
        freeze = await service.create_action(session, temporal_client, settings, None, actor="ops-creator",
                                             action_type="FREEZE_MERCHANT",
                                             params={"merchant_id": merchant, "cancel_queued": True},
                                             risk_level=None, expires_in_seconds=None)
    plan = await plan_of(client, token_for, freeze["id"])
    planned = {p for p, e in effects(plan).items() if e == "cancel"}
    assert planned == {params.payout_id for params, _ in started}
    await approve_all(handle_of(temporal_client, freeze), 2)
    done = await result_of(handle_of(temporal_client, freeze))
    assert done.status == "executed" and set(done.result["signalled"]) == planned
    for _, handle in started:
        assert (await handle.result()).status == "cancelled"
    async with sessionmaker() as session:
        after = {b.currency: b for b in await ledger.get_balances(session, merchant)}["EUR"]
    [released] = plan["amounts"]
    assert after.available_minor - before.available_minor == released["amount_minor"]
    assert after.held_minor == before.held_minor - released["amount_minor"] == 0
    await assert_ledger_ok(sessionmaker)

