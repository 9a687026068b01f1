"""Issue 15, items 2 and 4: an approval counts only for an identity payops verified (a grant it
signed), subjects compare normalised, and every refused or unparsable vote leaves an audit entry
and an alert. Real Temporal dev server, real PostgreSQL, real worker."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowUpdateFailedError
from temporalio.converter import DataConverter

from core.ops_actions import service
from core.platform.names import ops_action_workflow_id
from core.ops_actions.models import ApprovalRequest, ApprovalTally, OpsActionState
from core.ops_actions.grants import keyring, sign_grant
from core.platform.settings import Settings
from core.platform.tables import alerts, controls, ops_action_audit
from tests.factories import create_merchant

CREATOR = "probe-alice"


async def eventually(check, timeout: float = 20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await check()
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.2)


async def frozen_merchant_unfreeze(sm, temporal, settings) -> tuple[dict, object]:
    """An UNFREEZE_MERCHANT action (medium risk: two approvals) by CREATOR."""
    merchant = await create_merchant(sm)
    async with sm() as session:
        await session.execute(controls.insert().values(
            kind="merchant_freeze", target=merchant, params={}, active=True, reason="t", created_by="t"))
        await session.commit()
    async with sm() as session:
        a = await service.create_action(session, temporal, settings, None, actor=CREATOR,
                                        action_type="UNFREEZE_MERCHANT", params={"merchant_id": merchant})
    return a, temporal.get_workflow_handle(ops_action_workflow_id(a["id"]))


def grant(action_id: str, decision: str, actor: str, roles: list[str], *, ttl: float = 300,
          now: datetime | None = None) -> str:
    token, _ = sign_grant(keyring(Settings(_env_file=None)), scope="ops_action", subject_id=action_id,
                          decision=decision, actor=actor, roles=roles, now=now or datetime.now(timezone.utc),
                          ttl_seconds=ttl)
    return token


async def audit(sm, action_id: str) -> list[dict]:
    async with sm() as session:
        rows = (await session.execute(select(ops_action_audit).where(ops_action_audit.c.action_id == action_id)
                                      .order_by(ops_action_audit.c.id))).mappings().all()
    return [dict(r) for r in rows]


async def refusals(sm, action_id: str) -> list[dict]:
    return [r for r in await audit(sm, action_id) if r["event"] in ("vote_refused", "input_refused")]


async def test_invented_and_case_variant_approvers_never_count(temporal_client, worker, settings, sessionmaker):
    a, h = await frozen_merchant_unfreeze(sessionmaker, temporal_client, settings)
    aid = a["id"]
    # invented approvers as Signals (the bypass) and as Updates: no grant
    await h.signal("approve_signal", ApprovalRequest(actor="invented-1", roles=["ops_admin"]))
    await h.signal("approve_signal", ApprovalRequest(actor="invented-2", roles=["ops_admin"]))
    with pytest.raises(WorkflowUpdateFailedError) as exc:
        await h.execute_update("approve", ApprovalRequest(actor="invented-3", roles=["ops_admin"]))
    assert exc.value.cause.type == "unverified_identity"
    # a tampered grant (roles edited) and an expired one
    good = grant(aid, "approve", "mallory", ["auditor"])
    body, mac = good.split(".")
    forged = grant(aid, "approve", "mallory", ["ops_admin"]).split(".")[0] + "." + mac
    with pytest.raises(WorkflowUpdateFailedError) as exc:
        await h.execute_update("approve", ApprovalRequest(actor="mallory", roles=["ops_admin"], grant=forged))
    assert "signature" in exc.value.cause.message
    expired = grant(aid, "approve", "bob", ["approver"], ttl=10, now=datetime.now(timezone.utc) - timedelta(minutes=5))
    with pytest.raises(WorkflowUpdateFailedError) as exc:
        await h.execute_update("approve", ApprovalRequest(actor="bob", roles=["approver"], grant=expired))
    assert "expired" in exc.value.cause.message
    # a case variant of the creator, with a genuine grant, cannot approve
    variant = grant(aid, "approve", "PROBE-ALICE ", ["ops_admin"])
    with pytest.raises(WorkflowUpdateFailedError) as exc:
        await h.execute_update("approve", ApprovalRequest(actor="PROBE-ALICE", roles=["ops_admin"], grant=variant))
    assert exc.value.cause.type == "self_approval"
    # a grant for another decision does not count either (signal)
    await h.signal("approve_signal", ApprovalRequest(actor="carol", roles=["approver"],
                                                     grant=grant(aid, "reject", "carol", ["approver"])))

    got = await eventually(lambda: _n(sessionmaker, aid, 7))
    reasons = [r["data"]["reason"] for r in got]
    assert sum("no grant" in r for r in reasons) == 3, reasons
    assert any("signature" in r for r in reasons) and any("expired" in r for r in reasons)
    assert any(r["data"]["error_type"] == "self_approval" for r in got)
    state = await h.query("state", result_type=OpsActionState)
    assert state.status == "pending_approval" and state.approvals == []
    async with sessionmaker() as session:
        alert = (await session.execute(select(alerts).where(alerts.c.rule == "ops_unverified_identity"))).mappings().one()
    assert alert["occurrences"] == 7

    # one genuine approval with a grant counts; a second one (Signal, with grant) reaches the quorum
    tally = await h.execute_update("approve", ApprovalRequest(actor="x", roles=[], grant=grant(aid, "approve", "bob", ["approver"])),
                                   result_type=ApprovalTally)
    assert (tally.approvals, tally.approvers) == (1, ["bob"])  # the grant's subject, not the typed one
    await h.signal("approve_signal", ApprovalRequest(actor="dave", roles=["approver"],
                                                     grant=grant(aid, "approve", "dave", ["approver"])))
    assert (await h.result())["status"] == "executed"


async def _n(sm, aid: str, n: int):
    got = await refusals(sm, aid)
    return got if len(got) >= n else None


async def test_an_unparsable_signal_leaves_an_audit_entry_and_an_alert(temporal_client, worker, settings,
                                                                        sessionmaker):
    a, h = await frozen_merchant_unfreeze(sessionmaker, temporal_client, settings)
    bad = Payload(metadata={"encoding": b"json/plain"}, data=b'{"roles": "not-a-list"}')
    await temporal_client.workflow_service.signal_workflow_execution(
        __import__("temporalio.api.workflowservice.v1", fromlist=["SignalWorkflowExecutionRequest"])
        .SignalWorkflowExecutionRequest(
            namespace=temporal_client.namespace,
            workflow_execution=__import__("temporalio.api.common.v1", fromlist=["WorkflowExecution"])
            .WorkflowExecution(workflow_id=h.id),
            signal_name="approve_signal",
            input=__import__("temporalio.api.common.v1", fromlist=["Payloads"]).Payloads(
                payloads=[await _encode(temporal_client.data_converter, bad)]),
        )
    )
    got = await eventually(lambda: _n(sessionmaker, a["id"], 1))
    assert got[0]["event"] == "input_refused" and "does not parse" in got[0]["data"]["reason"]
    async with sessionmaker() as session:
        assert (await session.execute(select(alerts.c.id).where(alerts.c.rule == "ops_signal_refused"))).first()


async def _encode(converter: DataConverter, payload: Payload) -> Payload:
    if converter.payload_codec is None:
        return payload
    return (await converter.payload_codec.encode([payload]))[0]


async def test_the_api_vote_carries_a_verified_identity(temporal_client, worker, settings, sessionmaker):
    from core.platform.auth_tokens import Principal
    from core.platform.roles import Role

    a, h = await frozen_merchant_unfreeze(sessionmaker, temporal_client, settings)
    async with sessionmaker() as session:
        tally = await service.vote(session, temporal_client, settings, a["id"],
                                   Principal(sub="erin", roles=frozenset({Role.APPROVER})), decision="approve",
                                   comment=None)
    assert tally.approvers == ["erin"]
