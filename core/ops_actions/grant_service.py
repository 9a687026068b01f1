"""Issuing ops grants (core/ops_actions/grants.py) to authenticated ops users, for Temporal's CLI and UI.

`POST /api/v1/ops/grants` (and `payops ops grant`): the caller's JWT was verified, so payops
signs a short-lived grant naming the caller's subject and roles, bound to ONE workflow subject
(a payout or an ops action) and ONE decision. Role-checked like the API call it stands for:
payout retry/cancel need `payouts:operate`; ops-action approve/reject need `ops_actions:approve`,
and the action's creator gets none (four-eyes). Every grant issued is an audit event on the
payout's or the action's trail.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.ops_actions import grants as ops_grants
from core.platform.auth_tokens import Principal
from core.platform.errors import Forbidden, InvalidState, NotFound, Unprocessable
from core.platform.names import ops_action_workflow_id, payout_workflow_id
from core.ops_actions.models import ActionStatus
from core.ops_actions.store import append_audit, get_action_row
from core.payouts.models import TERMINAL_STATUSES
from core.payouts.store import event_insert
from core.platform.roles import Permission as P
from core.platform.settings import Settings
from core.platform.tables import payouts

DECISIONS_BY_SCOPE = {"payout": ("retry", "cancel"), "ops_action": ("approve", "reject")}


def example_command(scope: str, workflow_id: str, decision: str, actor: str, token: str) -> str:
    """The copy-paste CLI command that uses the grant (codec flags as in docs/operations.md)."""
    import json

    body = {"actor": actor, "grant": token}
    if scope == "payout":
        body["reason"] = "<why>"
    else:
        body["roles"] = []
    return (f"temporal workflow update execute --workflow-id {workflow_id} --name {decision} "
            f"--input '{json.dumps(body)}' "
            '--codec-endpoint "$PAYOPS_CODEC" --codec-auth "Bearer $PAYOPS_TOKEN"')


async def issue_grant(session: AsyncSession, settings: Settings, principal: Principal, *, scope: str,
                      subject_id: str, decision: str, ttl_seconds: int | None = None) -> dict:
    if scope not in DECISIONS_BY_SCOPE:
        raise Unprocessable(f"scope must be one of {', '.join(DECISIONS_BY_SCOPE)}")
    if decision not in DECISIONS_BY_SCOPE[scope]:
        raise Unprocessable(f"a {scope} grant allows {' or '.join(DECISIONS_BY_SCOPE[scope])}, not {decision!r}")
    ttl = settings.ops_grant_ttl_seconds if ttl_seconds is None else min(ttl_seconds, settings.ops_grant_ttl_seconds)
    roles = sorted(r.value for r in principal.roles)
    now = datetime.now(timezone.utc)
    if scope == "payout":
        if P.PAYOUTS_OPERATE not in principal.permissions:
            raise Forbidden("your roles do not grant payouts:operate")
        status = await session.scalar(select(payouts.c.status).where(payouts.c.id == subject_id).with_for_update())
        if status is None:
            raise NotFound(f"payout {subject_id} not found")
        if status in TERMINAL_STATUSES:
            raise InvalidState(f"the payout is {status}: nothing to {decision}")
        workflow_id = payout_workflow_id(subject_id)
    else:
        if P.OPS_ACTIONS_APPROVE not in principal.permissions:
            raise Forbidden("your roles do not grant ops_actions:approve")
        row = await get_action_row(session, subject_id)
        if ops_grants.normalize_subject(row["created_by"]) == ops_grants.normalize_subject(principal.sub):
            raise Forbidden(f"{principal.sub} created this action and cannot {decision} it: "
                            "approvals must come from someone else")
        if row["status"] != ActionStatus.PENDING_APPROVAL:
            raise InvalidState(f"the action is already {row['status']}: no more approvals or rejections")
        workflow_id = ops_action_workflow_id(subject_id)
    token, expires_at = ops_grants.issue(settings, scope=scope, subject_id=subject_id, decision=decision,
                                         actor=principal.sub, roles=roles, via="grant", now=now, ttl_seconds=ttl)
    audit = {"event": "grant_issued", "decision": decision, "roles": roles, "expires_at": expires_at.isoformat(),
             "via": "temporal"}
    if scope == "payout":
        await session.execute(event_insert(
            payout_id=subject_id, actor=principal.sub, from_status=status, to_status=status,
            reason=f"ops grant issued to {principal.sub} for a {decision} sent through Temporal", data=audit))
    else:
        await append_audit(session, action_id=subject_id, event_key=f"grant:{uuid.uuid4().hex}",
                           event="grant_issued", actor=principal.sub, data=audit)
    await session.commit()
    return {"grant": token, "expires_at": expires_at, "scope": scope, "id": subject_id, "decision": decision,
            "actor": principal.sub, "roles": roles, "workflow_id": workflow_id,
            "example": example_command(scope, workflow_id, decision, principal.sub, token)}
