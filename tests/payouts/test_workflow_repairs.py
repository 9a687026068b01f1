"""Issue 15, item 3 (repair paths): an ops action whose workflow was terminated is found by the
workflow reaper (critical alert naming its repair) and closed through
`POST /api/v1/ops/actions/{id}/repair` (audited, alert resolved); a terminated payout is repaired
through the shortcut `POST /api/v1/payouts/{id}/repair`, which creates the REPAIR_PAYOUT ops action
(approved like any other). Real Temporal dev server, real PostgreSQL, real worker."""

from __future__ import annotations

from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus

from core.platform.names import ops_action_workflow_id
from core.platform.tables import alerts, ops_action_audit
from core.payouts.reaper import reap
from tests.factories import create_merchant
from tests.polling import wait_until
from tests.payouts.test_payout_temporal_ops import (
    ACTIONS, FUNDS, assert_consistent, audit_of, run_ledger_check, terminated_in_dlq,
)


async def _alert(sm, scope: str) -> dict | None:
    async with sm() as session:
        row = (await session.execute(select(alerts).where(
            alerts.c.dedupe_key == f"workflow_closed_under_row:{scope}"))).mappings().first()
    return dict(row) if row else None


async def test_a_terminated_ops_action_is_reaped_and_closed_by_its_repair_endpoint(
    temporal_client, worker, settings, sessionmaker, client, token_for
):
    merchant = await create_merchant(sessionmaker)
    r = await client.post(ACTIONS, json={"type": "FREEZE_MERCHANT", "params": {"merchant_id": merchant},
                                         "reason": "probe"}, headers=token_for("risk_ops", sub="rita"))
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    handle = temporal_client.get_workflow_handle(ops_action_workflow_id(aid))
    await wait_until(lambda: _running(handle), timeout=20, interval=0.1, what="the action's workflow")

    # while its workflow runs, the repair is refused: the workflow decides the action
    repair = f"{ACTIONS}/{aid}/repair"
    r = await client.post(repair, json={"reason": "x"}, headers=token_for("risk_ops", sub="rita"))
    assert r.status_code == 409 and "running" in r.json()["detail"]

    await handle.terminate(reason="issue 15: terminated by hand")
    result = await reap(sessionmaker, temporal_client, min_age_seconds=0)
    assert any(o.id == aid and o.workflow_status == "TERMINATED" for o in result.orphaned)
    alert = await _alert(sessionmaker, f"ops_action:{aid}")
    assert alert["severity"] == "critical" and alert["status"] == "open"
    assert f"/api/v1/ops/actions/{aid}/repair" in alert["message"]

    # who may: not a merchant, not an approver-only role; bad input is a 422
    assert (await client.post(repair, json={"reason": "x"},
                              headers=token_for("merchant_admin", merchant_id=merchant))).status_code == 403
    assert (await client.post(repair, json={"reason": "x"}, headers=token_for("approver"))).status_code == 403
    assert (await client.post(repair, json={"reason": ""}, headers=token_for("risk_ops"))).status_code == 422

    r = await client.post(repair, json={"reason": "its workflow was terminated"},
                          headers=token_for("risk_ops", sub="rita"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "expired" and body["was"] == "pending_approval"
    assert body["workflow_status"] == "TERMINATED" and body["alerts_resolved"] == 1
    async with sessionmaker() as session:
        [event] = (await session.execute(select(ops_action_audit).where(
            ops_action_audit.c.action_id == aid, ops_action_audit.c.event == "repaired"))).mappings().all()
    assert event["actor"] == "rita" and event["to_status"] == "expired"
    assert event["data"]["workflow_status"] == "TERMINATED"
    assert (await _alert(sessionmaker, f"ops_action:{aid}"))["status"] == "resolved"
    detail = (await client.get(f"{ACTIONS}/{aid}", headers=token_for("auditor"))).json()
    assert detail["status"] == "expired"
    # closed rows are not orphans any more, and a second repair is a clear 409
    assert not any(o.id == aid for o in (await reap(sessionmaker, temporal_client, min_age_seconds=0)).orphaned)
    r = await client.post(repair, json={"reason": "again"}, headers=token_for("risk_ops", sub="rita"))
    assert r.status_code == 409 and "already expired" in r.json()["detail"]


async def _running(handle) -> bool:
    try:
        return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    except Exception:  # noqa: BLE001 — not started yet
        return False


async def test_the_payout_repair_shortcut_creates_the_repair_action_that_compensates(
    temporal_client, worker, settings, sessionmaker, bank, client, token_for
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params, _ = await terminated_in_dlq(temporal_client, settings, sessionmaker, bank, merchant)
    url = f"/api/v1/payouts/{params.payout_id}/repair"
    body = {"mode": "compensate", "reason": "terminated by hand"}
    assert (await client.post(url, json=body, headers=token_for("merchant_admin", merchant_id=merchant))).status_code == 403
    assert (await client.post(url, json={**body, "mode": "pray"}, headers=token_for("risk_ops"))).status_code == 422
    assert (await client.post("/api/v1/payouts/po_nope/repair", json=body,
                              headers=token_for("risk_ops"))).status_code == 404

    r = await client.post(url, json=body, headers=token_for("risk_ops", sub="rita"))
    assert r.status_code == 201, r.text
    action = r.json()
    assert action["type"] == "REPAIR_PAYOUT" and action["status"] == "pending_approval"
    assert action["params"] == {"payout_id": params.payout_id, "mode": "compensate", "reason": "terminated by hand"}
    # a second repair while the first is open: 409, not a second action
    assert (await client.post(url, json=body, headers=token_for("risk_ops", sub="rita"))).status_code == 409

    code, out = await run_ledger_check(settings)
    assert code == 1 and "closed_workflow_hold" in out
    for name in ("alice", "bob"):
        r = await client.post(f"{ACTIONS}/{action['id']}/approve", headers=token_for("approver", sub=name))
        assert r.status_code == 200, r.text

    async def executed():
        got = (await client.get(f"{ACTIONS}/{action['id']}", headers=token_for("auditor"))).json()
        return got if got["status"] in ("executed", "failed") else None

    done = await wait_until(executed, timeout=30, interval=0.1, what="the repair is executed")
    assert done["status"] == "executed" and done["result"]["hold_reversed"] is True, done
    assert any(e["data"].get("mode") == "compensate" for e in await audit_of(sessionmaker, params.payout_id))
    await assert_consistent(sessionmaker, merchant, "EUR")
    code, out = await run_ledger_check(settings)
    assert code == 0, out
