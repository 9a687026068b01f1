"""The ops actions API against real PostgreSQL, Redis and Temporal with a worker: one class per
endpoint covering 401, 403, 404/409/422 and the valid case."""

from __future__ import annotations

import asyncio
import uuid

import pytest

OPS = "ops_admin"
BASE = "/api/v1/ops/actions"


@pytest.fixture
async def merchant(client, token_for) -> str:
    mid = f"mer_{uuid.uuid4().hex[:12]}"
    r = await client.post("/api/v1/merchants", json={"id": mid, "name": "Acme", "default_currency": "EUR", "country": "FR"},
                          headers=token_for(OPS))
    assert r.status_code == 201, r.text
    return mid


@pytest.fixture
def creator(token_for):
    return token_for("risk_ops", sub="risk-creator")


def approver(token_for, name: str, role: str = "approver"):
    return token_for(role, sub=name)


async def create_freeze(client, creator, merchant, **extra):
    r = await client.post(BASE, json={"type": "FREEZE_MERCHANT", "params": {"merchant_id": merchant},
                                      "reason": "fraud review", **extra}, headers=creator)
    assert r.status_code == 201, r.text
    return r.json()


async def wait_status(client, headers, action_id: str, status: str, timeout: float = 15.0) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        body = (await client.get(f"{BASE}/{action_id}", headers=headers)).json()
        if body["status"] == status:
            return body
        if loop.time() > deadline:
            raise AssertionError(f"action stuck in {body['status']}, wanted {status}")
        await asyncio.sleep(0.05)


class TestActionTypes:
    async def test_401(self, client):
        assert (await client.get("/api/v1/ops/action-types")).status_code == 401

    async def test_403_for_merchant_users(self, client, token_for, merchant):
        r = await client.get("/api/v1/ops/action-types", headers=token_for("merchant_admin", merchant_id=merchant))
        assert r.status_code == 403

    async def test_lists_types_with_schema_description_and_risk(self, client, token_for):
        r = await client.get("/api/v1/ops/action-types", headers=token_for("auditor"))
        assert r.status_code == 200
        types = {t["type"]: t for t in r.json()}
        assert {"FREEZE_MERCHANT", "UNFREEZE_MERCHANT", "PAUSE_PAYOUTS", "RESUME_PAYOUTS", "ROUTE_OVERRIDE",
                "RETRY_PAYOUTS", "CANCEL_PAYOUT", "ADJUST_BALANCE"} <= set(types)
        adjust = types["ADJUST_BALANCE"]
        assert adjust["default_risk"] == "high" and adjust["required_approvals"] == 3
        assert adjust["execution"] == "explicit" and adjust["inverse"] == "ADJUST_BALANCE"
        assert "amount_minor" in adjust["params_schema"]["properties"]
        assert types["FREEZE_MERCHANT"]["inverse"] == "UNFREEZE_MERCHANT"
        assert types["CANCEL_PAYOUT"]["inverse"] is None


class TestCreateAction:
    async def test_401(self, client):
        assert (await client.post(BASE, json={})).status_code == 401

    async def test_403_for_approver_only_role(self, client, token_for, merchant):
        r = await client.post(BASE, json={"type": "FREEZE_MERCHANT", "params": {"merchant_id": merchant}},
                              headers=token_for("approver"))
        assert r.status_code == 403

    async def test_422_bad_params_and_lowered_risk(self, client, creator, merchant):
        r = await client.post(BASE, json={"type": "FREEZE_MERCHANT", "params": {"merchant": merchant}}, headers=creator)
        assert r.status_code == 422 and r.json()["type"] == "validation_error"
        r = await client.post(BASE, json={"type": "ADJUST_BALANCE", "risk_level": "low", "params": {
            "merchant_id": merchant, "amount_minor": 5, "currency": "EUR", "reason": "x"}}, headers=creator)
        assert r.status_code == 422 and "never lower" in r.json()["detail"]
        r = await client.post(BASE, json={"type": "NUKE", "params": {}}, headers=creator)
        assert r.status_code == 422

    async def test_404_unknown_merchant(self, client, creator):
        r = await client.post(BASE, json={"type": "FREEZE_MERCHANT", "params": {"merchant_id": "mer_nope"}},
                              headers=creator)
        assert r.status_code == 404

    async def test_409_conflicting_action(self, client, creator, merchant, worker):
        first = await create_freeze(client, creator, merchant)
        r = await client.post(BASE, json={"type": "FREEZE_MERCHANT", "params": {"merchant_id": merchant}},
                              headers=creator)
        assert r.status_code == 409 and r.json()["type"] == "conflicting_action"
        assert r.json()["conflicting_action_id"] == first["id"]

    async def test_201(self, client, creator, merchant, worker, temporal_client):
        a = await create_freeze(client, creator, merchant, risk_level="high")
        assert a["status"] == "pending_approval" and a["required_approvals"] == 3
        assert a["target"] == {"kind": "merchant", "id": merchant} and a["target_label"] == f"merchant:{merchant}"
        assert a["created_by"] == "risk-creator"
        desc = await temporal_client.get_workflow_handle(f"ops-action-{a['id']}").describe()
        assert desc.workflow_type == "OpsActionWorkflow"


class TestApproveAndReject:
    async def test_401_and_403(self, client, token_for, creator, merchant, worker):
        a = await create_freeze(client, creator, merchant)
        assert (await client.post(f"{BASE}/{a['id']}/approve")).status_code == 401
        r = await client.post(f"{BASE}/{a['id']}/approve", headers=token_for("risk_ops", sub="other"))
        assert r.status_code == 403

    async def test_404(self, client, token_for):
        r = await client.post(f"{BASE}/act_nope/approve", headers=approver(token_for, "alice"))
        assert r.status_code == 404

    async def test_self_approval_is_refused_with_a_clear_error(self, client, token_for, merchant, worker):
        admin_creator = token_for(OPS, sub="boss")
        a = await create_freeze(client, admin_creator, merchant)
        r = await client.post(f"{BASE}/{a['id']}/approve", headers=admin_creator)
        assert r.status_code == 403 and r.json()["type"] == "self_approval"
        assert "cannot approve" in r.json()["detail"]

    async def test_duplicate_approval_is_409(self, client, token_for, creator, merchant, worker):
        a = await create_freeze(client, creator, merchant)
        r = await client.post(f"{BASE}/{a['id']}/approve", json={"comment": "checked"},
                              headers=approver(token_for, "alice"))
        assert r.status_code == 200, r.text
        assert (r.json()["approvals"], r.json()["remaining"]) == (1, 1)
        r = await client.post(f"{BASE}/{a['id']}/approve", headers=approver(token_for, "alice"))
        assert r.status_code == 409 and r.json()["type"] == "duplicate_approval"

    async def test_approvals_execute_and_detail_shows_them(self, client, token_for, creator, merchant, worker):
        a = await create_freeze(client, creator, merchant)
        await client.post(f"{BASE}/{a['id']}/approve", headers=approver(token_for, "alice"))
        r = await client.post(f"{BASE}/{a['id']}/approve", headers=approver(token_for, "bob"))
        assert r.json()["status"] == "approved"
        detail = await wait_status(client, creator, a["id"], "executed")
        assert [x["approver"] for x in detail["approvals"]] == ["alice", "bob"]
        assert detail["workflow"]["status"] == "executed" and detail["result"]["merchant_id"] == merchant
        m = (await client.get(f"/api/v1/merchants/{merchant}", headers=token_for(OPS))).json()
        assert m["frozen"] is True
        r = await client.post(f"{BASE}/{a['id']}/approve", headers=approver(token_for, "carol"))
        assert r.status_code == 409 and r.json()["type"] == "invalid_state"

    async def test_reject_ends_it(self, client, token_for, creator, merchant, worker):
        a = await create_freeze(client, creator, merchant)
        r = await client.post(f"{BASE}/{a['id']}/reject", json={"comment": "no"}, headers=approver(token_for, "alice"))
        assert r.status_code == 200 and r.json()["status"] == "rejected"
        await wait_status(client, creator, a["id"], "rejected")


class TestListActions:
    async def test_401_403(self, client, token_for, merchant):
        assert (await client.get(BASE)).status_code == 401
        assert (await client.get(BASE, headers=token_for("merchant_viewer", merchant_id=merchant))).status_code == 403

    async def test_422_bad_filter(self, client, token_for):
        assert (await client.get(BASE, params={"status": "nope"}, headers=token_for("auditor"))).status_code == 422

    async def test_filters_and_awaiting_my_approval(self, client, token_for, creator, merchant, worker):
        a = await create_freeze(client, creator, merchant)
        b = (await client.post(BASE, json={"type": "PAUSE_PAYOUTS", "params": {"rail": "wire"}}, headers=creator)).json()
        await client.post(f"{BASE}/{a['id']}/approve", headers=approver(token_for, "alice"))

        async def ids(**params):
            r = await client.get(BASE, params=params, headers=approver(token_for, "alice"))
            assert r.status_code == 200, r.text
            return {x["id"] for x in r.json()["data"]}

        assert await ids(type="PAUSE_PAYOUTS") == {b["id"]}
        assert await ids(target=f"merchant:{merchant}") == {a["id"]}
        assert await ids(target="rail:wire") == {b["id"]}
        assert await ids(status="pending_approval") == {a["id"], b["id"]}
        assert await ids(awaiting_my_approval="true") == {b["id"]}  # alice voted on a already
        r = await client.get(BASE, params={"awaiting_my_approval": "true"}, headers=creator)
        assert r.json()["data"] == []  # nothing of your own awaits your approval


class TestGetAction:
    async def test_401_404(self, client, token_for):
        assert (await client.get(f"{BASE}/act_x")).status_code == 401
        assert (await client.get(f"{BASE}/act_x", headers=token_for("auditor"))).status_code == 404

    async def test_detail_with_live_state(self, client, token_for, creator, merchant, worker):
        a = await create_freeze(client, creator, merchant)
        body = (await client.get(f"{BASE}/{a['id']}", headers=token_for("auditor"))).json()
        assert body["approvals"] == [] and body["workflow"]["status"] == "pending_approval"
        assert body["workflow"]["required_approvals"] == 2 and body["workflow_error"] is None


class TestExecuteAndRollback:
    async def test_adjust_balance_execute_then_rollback(self, client, token_for, merchant, worker):
        fin = token_for("finance_ops", sub="fin-1")
        r = await client.post(BASE, json={"type": "ADJUST_BALANCE", "params": {
            "merchant_id": merchant, "amount_minor": 1_000, "currency": "EUR", "reason": "goodwill"}}, headers=fin)
        a = r.json()
        r = await client.post(f"{BASE}/{a['id']}/execute", headers=fin)
        assert r.status_code == 409  # not approved yet
        r = await client.post(f"{BASE}/{a['id']}/rollback", headers=fin)
        assert r.status_code == 409  # not executed
        for name in ("a1", "a2"):
            await client.post(f"{BASE}/{a['id']}/approve", headers=approver(token_for, name))
        await client.post(f"{BASE}/{a['id']}/approve", headers=approver(token_for, "a3", OPS))
        await wait_status(client, fin, a["id"], "approved")
        assert (await client.post(f"{BASE}/{a['id']}/execute", headers=approver(token_for, "a9"))).status_code == 403
        r = await client.post(f"{BASE}/{a['id']}/execute", headers=fin)
        assert r.status_code == 200 and r.json()["status"] == "executed", r.text
        bal = (await client.get(f"/api/v1/merchants/{merchant}/balances", headers=token_for(OPS))).json()
        assert bal

        r = await client.post(f"{BASE}/{a['id']}/rollback", json={"reason": "wrong merchant"}, headers=fin)
        assert r.status_code == 201, r.text
        back = r.json()
        assert back["type"] == "ADJUST_BALANCE" and back["params"]["amount_minor"] == -1_000
        assert back["rollback_of"] == a["id"] and back["status"] == "pending_approval"
        detail = (await client.get(f"{BASE}/{a['id']}", headers=fin)).json()
        assert detail["rollbacks"] == [back["id"]]

    async def test_execute_of_an_automatic_type_is_409(self, client, token_for, creator, merchant, worker):
        a = await create_freeze(client, creator, merchant)
        for name in ("alice", "bob"):
            await client.post(f"{BASE}/{a['id']}/approve", headers=approver(token_for, name))
        await wait_status(client, creator, a["id"], "executed")
        r = await client.post(f"{BASE}/{a['id']}/execute", headers=creator)
        assert r.status_code == 409
