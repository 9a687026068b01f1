"""Issue 15, items 2 and 4, for payouts: a retry or cancel sent through Temporal (Update or Signal)
is verified by a payops-signed grant bound to the payout and decision, or, without one, still
performed (ops need it) but audited as unverified, via Temporal, with the typed actor shown as
claimed. The API's retry/cancel carry the caller's verified identity. A retry/cancel Signal the
workflow refuses, or whose input does not parse, leaves an audit event and an alert.
Real Temporal dev server, real PostgreSQL, real worker, the sandbox bank."""

from __future__ import annotations

import os
from pathlib import Path
from datetime import datetime, timezone

from sqlalchemy import select

from core.ledger import service as ledger
from core.ops_actions.grants import keyring, sign_grant, verify_grant
from core.payouts.models import OpsDecision, PayoutState
from core.platform.settings import Settings
from core.platform.tables import alerts, controls
from tests.factories import create_merchant, create_payout_row, sepa_beneficiary
from tests.polling import wait_until
from tests.payouts.test_payout_temporal_ops import FUNDS, audit_of, assert_consistent
from tests.payouts.test_payout_workflow import start, wait_for_status

HISTORIES = Path(__file__).parent.parent / "histories"
ALWAYS_503 = "0036"  # the sandbox bank answers 503 to every attempt: the payout parks in dlq


async def poll(check):
    return await wait_until(check, timeout=30.0, interval=0.05, what="the audit trail")


def payout_grant(payout_id: str, decision: str, actor: str, roles: list[str] | None = None) -> str:
    token, _ = sign_grant(keyring(Settings(_env_file=None)), scope="payout", subject_id=payout_id,
                          decision=decision, actor=actor, roles=roles or ["ops_operator"],
                          now=datetime.now(timezone.utc), ttl_seconds=300)
    return token


async def payout_in_dlq(temporal_client, settings, sessionmaker):
    """A funded merchant's payout to a beneficiary whose bank always answers 503, parked in dlq."""
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant,
                                     beneficiary=sepa_beneficiary(ALWAYS_503))
    handle = await start(temporal_client, settings, params)
    await wait_for_status(handle, "dlq")
    return merchant, params, handle


async def ops_retries(sm, payout_id: str) -> list[dict]:
    return [e for e in await audit_of(sm, payout_id) if e["data"].get("event_key", "").startswith("ops-retry:")]


async def signal_alert(sm, payout_id: str) -> dict | None:
    """The alert of refused signals to this payout (deduplicated per payout: occurrences count)."""
    async with sm() as session:
        row = (await session.execute(select(alerts.c.status, alerts.c.occurrences, alerts.c.severity)
                                     .where(alerts.c.dedupe_key == f"ops_signal_refused:payout:{payout_id}"))).first()
        return dict(row._mapping) if row else None


async def test_retry_and_cancel_through_temporal_are_verified_or_audited_as_unverified(
    temporal_client, worker, settings, sessionmaker, bank
):
    merchant, params, handle = await payout_in_dlq(temporal_client, settings, sessionmaker)

    # 1. an Update with a grant payops signed for "dana": the audit names dana, not the typed name
    decision = await handle.execute_update(
        "retry", {"actor": "Mallory", "reason": "bank is back", "grant": payout_grant(params.payout_id, "retry", "dana")},
        result_type=OpsDecision)
    assert decision.accepted
    [first] = await poll(lambda: ops_retries(sessionmaker, params.payout_id))
    assert first["actor"] == "dana"
    assert first["data"]["verified"] is True and first["data"]["via"] == "temporal"
    assert first["data"]["claimed_actor"] == "Mallory" and first["data"]["roles"] == ["ops_operator"]
    await wait_for_status(handle, "dlq")

    # 2. a Signal with a grant for another decision: still performed, audited as unverified + claimed
    await handle.signal("retry_signal", {"actor": "eve", "grant": payout_grant(params.payout_id, "cancel", "eve")})
    retries = await poll(lambda: _at_least(ops_retries(sessionmaker, params.payout_id), 2))
    second = retries[1]
    assert second["actor"] == "eve (claimed; unverified, via Temporal)"
    assert second["data"]["verified"] is False and second["data"]["via"] == "temporal"
    assert second["data"]["claimed_actor"] == "eve" and "allows 'cancel'" in second["data"]["why_unverified"]
    await wait_for_status(handle, "dlq")

    # 3. a forged grant (another payout's) on a cancel Update: performed, audited as unverified
    decision = await handle.execute_update(
        "cancel", {"actor": "frank", "reason": "merchant asked", "grant": payout_grant("po_other", "cancel", "frank")},
        result_type=OpsDecision)
    assert decision.accepted and decision.status == "cancelled"
    assert (await handle.result()).status == "cancelled"
    [cancelled] = [e for e in await audit_of(sessionmaker, params.payout_id) if e["to_status"] == "cancelled"]
    assert cancelled["actor"] == "frank (claimed; unverified, via Temporal)"
    assert cancelled["data"]["verified"] is False and cancelled["data"]["via"] == "temporal"
    assert "po_other" in cancelled["data"]["why_unverified"]
    async with sessionmaker() as session:
        assert (await ledger.get_hold(session, params.payout_id)).status == "reversed"
    await assert_consistent(sessionmaker, merchant, "EUR")
    if os.environ.get("PAYOPS_RECORD_HISTORIES") == "1":  # tests/platform/test_replay.py replays it
        (HISTORIES / "payout_verified_ops_retry_signal_cancel.json").write_text(
            (await handle.fetch_history()).to_json())


async def _at_least(rows_coro, n: int):
    rows = await rows_coro
    return rows if len(rows) >= n else None


async def test_the_api_retry_and_cancel_carry_the_callers_verified_identity(
    temporal_client, worker, settings, sessionmaker, bank, client, token_for
):
    merchant, params, handle = await payout_in_dlq(temporal_client, settings, sessionmaker)
    r = await client.post(f"/api/v1/payouts/{params.payout_id}/retry", json={"reason": "again"},
                          headers=token_for("ops_admin", sub="Olivia"))
    assert r.status_code == 200, r.text
    [retry] = await poll(lambda: ops_retries(sessionmaker, params.payout_id))
    assert retry["actor"] == "Olivia" and retry["data"]["verified"] is True and retry["data"]["via"] == "api"
    await wait_for_status(handle, "dlq")
    r = await client.post(f"/api/v1/payouts/{params.payout_id}/cancel", json={"reason": "enough"},
                          headers=token_for("ops_admin", sub="olivia"))
    assert r.status_code == 200, r.text
    [cancelled] = [e for e in await audit_of(sessionmaker, params.payout_id) if e["to_status"] == "cancelled"]
    assert cancelled["actor"] == "olivia" and cancelled["data"]["verified"] is True
    assert cancelled["data"]["via"] == "api"
    await assert_consistent(sessionmaker, merchant, "EUR")


async def test_refused_and_unparsable_payout_signals_leave_an_audit_event_and_an_alert(
    temporal_client, worker, settings, sessionmaker, bank
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    async with sessionmaker() as session, session.begin():  # the payout waits at the submission gate
        await session.execute(controls.insert().values(
            kind="merchant_freeze", target=merchant, params={}, active=True, reason="t", created_by="t"))
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    handle = await start(temporal_client, settings, params)
    await poll(lambda: _waiting_at_gate(handle))

    # a retry of a payout that is not in dlq: refused, and the refusal is on the payout's trail
    await handle.signal("retry_signal", {"actor": "gus", "reason": "try"})
    refused = await poll(lambda: _refusals(sessionmaker, params.payout_id, 1))
    assert refused[0]["actor"] == "gus (unverified, via Temporal)"
    assert "retry_signal refused" in refused[0]["reason"] and "only a payout in dlq" in refused[0]["reason"]
    assert refused[0]["data"]["error_type"] == "invalid_state"

    # a cancel whose input does not parse (no actor, an empty reason): audited with its raw input
    await handle.signal("cancel_signal", {"reason": ""})
    refused = await poll(lambda: _refusals(sessionmaker, params.payout_id, 2))
    assert refused[1]["data"]["error_type"] == "bad_input" and "does not parse" in refused[1]["reason"]
    assert '"reason"' in refused[1]["data"]["raw"]
    alert = await signal_alert(sessionmaker, params.payout_id)
    assert alert is not None and alert["status"] == "open" and alert["occurrences"] == 2

    # the payout is untouched, and a valid cancel signal still works
    state = await handle.query("state", result_type=PayoutState)
    assert state.status in ("held", "routed") and state.hold_status == "active"
    await handle.signal("cancel_signal", {"actor": "gus", "reason": "merchant asked"})
    assert (await handle.result()).status == "cancelled"
    await assert_consistent(sessionmaker, merchant, "EUR")
    if os.environ.get("PAYOPS_RECORD_HISTORIES") == "1":  # tests/platform/test_replay.py replays it
        (HISTORIES / "payout_signal_refusals_cancelled.json").write_text((await handle.fetch_history()).to_json())


async def _waiting_at_gate(handle) -> bool:
    state = await handle.query("state", result_type=PayoutState)
    return state.step.startswith("on hold before submission")


async def _refusals(sm, payout_id: str, n: int):
    rows = [e for e in await audit_of(sm, payout_id) if " refused: " in (e["reason"] or "")
            and e["data"].get("via", "").endswith("_signal")]
    return rows if len(rows) >= n else None


async def test_ops_obtain_a_grant_from_the_api_and_temporal_records_them_verified(
    temporal_client, worker, settings, sessionmaker, bank, client, token_for
):
    merchant, params, handle = await payout_in_dlq(temporal_client, settings, sessionmaker)
    body = {"scope": "payout", "id": params.payout_id, "decision": "cancel"}

    # who may not: nobody anonymous, no merchant user, no role without payouts:operate
    assert (await client.post("/api/v1/ops/grants", json=body)).status_code == 401
    r = await client.post("/api/v1/ops/grants", json=body, headers=token_for("merchant_admin", merchant_id=merchant))
    assert r.status_code == 403
    r = await client.post("/api/v1/ops/grants", json=body, headers=token_for("approver", sub="abe"))
    assert r.status_code == 403 and "payouts:operate" in r.json()["detail"]
    # bad input is a clear 4xx, never a 500
    r = await client.post("/api/v1/ops/grants", json={**body, "decision": "approve"},
                          headers=token_for("ops_admin", sub="Nina"))
    assert r.status_code == 422, r.text
    r = await client.post("/api/v1/ops/grants", json={**body, "id": "po_nope"}, headers=token_for("ops_admin", sub="Nina"))
    assert r.status_code == 404

    r = await client.post("/api/v1/ops/grants", json={**body, "ttl_seconds": 120},
                          headers=token_for("ops_admin", sub="Nina"))
    assert r.status_code == 201, r.text
    issued = r.json()
    assert issued["actor"] == "Nina" and issued["workflow_id"] == handle.id
    assert "temporal workflow update execute" in issued["example"] and issued["grant"] in issued["example"]
    granted = datetime.fromisoformat(issued["expires_at"])
    assert 0 < (granted - datetime.now(timezone.utc)).total_seconds() <= 121
    [event] = [e for e in await audit_of(sessionmaker, params.payout_id) if e["data"].get("event") == "grant_issued"]
    assert event["actor"] == "Nina" and event["data"]["decision"] == "cancel"

    # the grant is for cancel only: a retry with it is performed but audited as unverified
    await handle.execute_update("retry", {"actor": "Nina", "grant": issued["grant"]}, result_type=OpsDecision)
    [retry] = await poll(lambda: ops_retries(sessionmaker, params.payout_id))
    assert retry["data"]["verified"] is False and "allows 'cancel'" in retry["data"]["why_unverified"]
    await wait_for_status(handle, "dlq")

    # the cancel through Temporal names Nina, verified, whatever actor is typed
    decision = await handle.execute_update(
        "cancel", {"actor": "someone-else", "reason": "merchant asked", "grant": issued["grant"]},
        result_type=OpsDecision)
    assert decision.accepted and decision.status == "cancelled"
    [cancelled] = [e for e in await audit_of(sessionmaker, params.payout_id) if e["to_status"] == "cancelled"]
    assert cancelled["actor"] == "Nina" and cancelled["data"]["verified"] is True
    assert cancelled["data"]["via"] == "temporal" and cancelled["data"]["claimed_actor"] == "someone-else"
    await assert_consistent(sessionmaker, merchant, "EUR")
    # a closed payout gets no more grants
    r = await client.post("/api/v1/ops/grants", json=body, headers=token_for("ops_admin", sub="Nina"))
    assert r.status_code == 409


async def test_an_ops_action_grant_from_the_api_counts_and_its_creator_gets_none(
    temporal_client, worker, settings, sessionmaker, client, token_for
):
    from core.ops_actions.models import ApprovalTally
    from tests.ops_actions.test_ops_identity import CREATOR, frozen_merchant_unfreeze

    a, h = await frozen_merchant_unfreeze(sessionmaker, temporal_client, settings)
    body = {"scope": "ops_action", "id": a["id"], "decision": "approve"}
    r = await client.post("/api/v1/ops/grants", json=body, headers=token_for("approver", sub=CREATOR.upper()))
    assert r.status_code == 403 and "created this action" in r.json()["detail"]
    r = await client.post("/api/v1/ops/grants", json=body, headers=token_for("risk_ops", sub="ray"))
    assert r.status_code == 403  # no ops_actions:approve
    r = await client.post("/api/v1/ops/grants", json=body, headers=token_for("approver", sub="Bea"))
    assert r.status_code == 201, r.text
    tally = await h.execute_update("approve", {"actor": "anyone", "roles": ["ops_admin"], "grant": r.json()["grant"]},
                                   result_type=ApprovalTally)
    assert tally.approvers == ["Bea"]


async def _cli(*args: str, env: dict, clean: bool = False) -> tuple[int, str, str]:
    """`payops ...` in a subprocess; `clean`: exactly `env` (no inherited PAYOPS_* variables)."""
    import asyncio
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", *args, env=env if clean else {**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_payops_ops_grant_cli_asks_the_api(served, settings, sessionmaker, token_for):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    tok = token_for("treasury_ops", sub="tess")["Authorization"].removeprefix("Bearer ")
    code, out, err = await _cli("ops", "grant", "payout", params.payout_id, "retry", "--api", served,
                                env={"PAYOPS_TOKEN": tok})
    assert code == 0, err
    grant = verify_grant(keyring(settings), out.strip(), scope="payout", subject_id=params.payout_id,
                         decision="retry", now=datetime.now(timezone.utc))
    assert grant.actor == "tess" and grant.roles == ["treasury_ops"]
    assert "temporal workflow update execute --workflow-id payout-" in err and "--codec-endpoint" in err

    merchant_tok = token_for("merchant_admin", merchant_id=merchant)["Authorization"].removeprefix("Bearer ")
    code, out, err = await _cli("ops", "grant", "payout", params.payout_id, "retry", "--api", served,
                                env={"PAYOPS_TOKEN": merchant_tok})
    assert code == 1 and "refused (403)" in err and out == ""


async def test_payops_ops_grant_finds_the_api_of_the_running_stack(served, settings, sessionmaker, token_for,
                                                                   tmp_path):
    """No --api and no PAYOPS_PUBLIC_BASE_URL: the API of the `payops up` running in this folder
    (its stack.json; this test process stands in for `payops up`)."""
    from tests.devstack.test_stack_state import write_state

    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    write_state(tmp_path, os.getpid(), {"api": {"url": served}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYOPS_")}
    tok = token_for("ops_admin", sub="uma")["Authorization"].removeprefix("Bearer ")
    code, out, err = await _cli("ops", "grant", "payout", params.payout_id, "cancel",
                                env={**env, "PAYOPS_TOKEN": tok, "PAYOPS_DATA_DIR": str(tmp_path)}, clean=True)
    assert code == 0, err
    grant = verify_grant(keyring(settings), out.strip(), scope="payout", subject_id=params.payout_id,
                         decision="cancel", now=datetime.now(timezone.utc))
    assert grant.actor == "uma"
