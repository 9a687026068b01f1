"""Ops actions as the API sees them: creation (typed params, risk floor, conflict refusal), starting
the workflow once the row is committed, approvals/rejections/execute as workflow Updates, rollback
as a new inverse action, and reads.

The OpsActionWorkflow owns an action after creation; this module only creates the row in
`pending_approval` (plus its `created` audit entry) and talks to the workflow.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from sqlalchemy import and_, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from core.platform.auth_tokens import Principal
from core.platform.errors import Conflict, Forbidden, InvalidState, NotFound, ServiceUnavailable, Unprocessable, typed
from core.merchants.bank_accounts import get_account
from core.merchants.profile import check_kyc_change
from core.merchants.service import get_merchant
from core.platform.names import OPS_ACTION_WORKFLOW, ops_action_workflow_id, search_attribute_keys
from core.ops_actions.models import (
    ERR_ADMIN_REQUIRED,
    ERR_DECIDED,
    ERR_DUPLICATE_APPROVAL,
    ERR_NOT_APPROVER,
    ERR_NOT_EXECUTABLE,
    ERR_SELF_APPROVAL,
    ERR_UNVERIFIED,
    OPEN_STATUSES,
    RISK_ORDER,
    SPECS,
    ActionStatus,
    ActionType,
    ApprovalRequest,
    ApprovalTally,
    ExecuteRequest,
    OpsActionInput,
    OpsActionState,
    RiskLevel,
    required_approvals,
    requires_admin,
    risk_at_least,
    target_label,
)
from core.ops_actions.store import append_audit, get_action_row, list_approvals, publish_ops_action_update
from core.ops_actions.grants import keyring, normalize_subject, sign_grant
from core.platform.settings import Settings
from core.platform.tables import bulk_payouts, controls, ops_actions, ops_approvals, payouts
from core.platform.temporal import query_live_state, workflow_ui_url

log = logging.getLogger("payops.ops_actions")

QUERY_TIMEOUT_SECONDS = 3.0
UPDATE_TIMEOUT_SECONDS = 30.0
DEFAULT_EXPIRY_SECONDS = 24 * 3600

SelfApproval = typed(Forbidden, "self_approval", "You cannot approve or reject your own action")
NotAnApprover = typed(Forbidden, "not_an_approver", "Approver role required")
AdminApprovalRequired = typed(Forbidden, "admin_approval_required", "An ops_admin approval is required")
DuplicateApproval = typed(Conflict, "duplicate_approval", "Already voted")
ConflictingAction = typed(Conflict, "conflicting_action", "A conflicting action is open")
UnverifiedIdentity = typed(Forbidden, "unverified_identity", "The identity could not be verified")

_UPDATE_ERRORS = {
    ERR_SELF_APPROVAL: SelfApproval,
    ERR_NOT_APPROVER: NotAnApprover,
    ERR_ADMIN_REQUIRED: AdminApprovalRequired,
    ERR_DUPLICATE_APPROVAL: DuplicateApproval,
    ERR_DECIDED: InvalidState,
    ERR_NOT_EXECUTABLE: InvalidState,
    ERR_UNVERIFIED: UnverifiedIdentity,
}


# --- catalog and presentation -------------------------------------------------------------------


def action_types() -> list[dict]:
    out = []
    for spec in SPECS.values():
        out.append({
            "type": spec.type.value,
            "description": spec.description,
            "default_risk": spec.default_risk.value,
            "required_approvals": required_approvals(spec.default_risk),
            "execution": "automatic" if spec.auto_execute else "explicit",
            "inverse": _inverse_type(spec.type),
            "params_schema": spec.params.model_json_schema(),
        })
    return out


def _inverse_type(action_type: ActionType) -> str | None:
    return {
        ActionType.FREEZE_MERCHANT: ActionType.UNFREEZE_MERCHANT,
        ActionType.UNFREEZE_MERCHANT: ActionType.FREEZE_MERCHANT,
        ActionType.PAUSE_PAYOUTS: ActionType.RESUME_PAYOUTS,
        ActionType.RESUME_PAYOUTS: ActionType.PAUSE_PAYOUTS,
        ActionType.ROUTE_OVERRIDE: ActionType.CLEAR_ROUTE_OVERRIDE,
        ActionType.ADJUST_BALANCE: ActionType.ADJUST_BALANCE,
    }.get(action_type)


def action_view(row: dict, settings: Settings, approvals: list[dict] | None = None) -> dict:
    aid = row["id"]
    target = {k: v for k, v in (row["target"] or {}).items() if k != "conflict_key"}
    view = {
        "id": aid,
        "type": row["action_type"],
        "target": target,
        "target_label": target_label(target),
        "params": row["params"],
        "risk_level": row["risk_level"],
        "required_approvals": row["required_approvals"],
        "status": row["status"],
        "reason": row["reason"],
        "created_by": row["created_by"],
        "expires_at": row["expires_at"],
        "executed_at": row["executed_at"],
        "result": row["result"],
        "error": row["error"],
        "rollback_of": row["rollback_of"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "links": {
            "self": f"/api/v1/ops/actions/{aid}",
            "temporal_ui": workflow_ui_url(settings, ops_action_workflow_id(aid)),
        },
    }
    if approvals is not None:
        view["approvals"] = [
            {"approver": a["approver"], "roles": a["roles"], "decision": a["decision"], "comment": a["comment"],
             "at": a["created_at"]}
            for a in approvals
        ]
    return view


# --- creation -----------------------------------------------------------------------------------


def _validated_params(spec, params: dict):
    try:
        return spec.params.model_validate(params)
    except ValidationError as exc:
        errors = [{"loc": ["body", "params", *map(str, e["loc"])], "msg": e["msg"], "type": e["type"]}
                  for e in exc.errors()]
        first = errors[0]
        raise Unprocessable(f"{'.'.join(first['loc'][1:])}: {first['msg']}", extra={"errors": errors}) from None


async def _check_target(session: AsyncSession, action_type: ActionType, p: Any) -> None:
    """Refuse, before anyone is asked to approve, an action that cannot make sense now."""
    async def active(kind: str, target: str) -> bool:
        return bool(await session.scalar(select(exists().where(
            controls.c.kind == kind, controls.c.target == target, controls.c.active))))

    if getattr(p, "merchant_id", None) and action_type != ActionType.CLEAR_ROUTE_OVERRIDE:
        await get_merchant(session, p.merchant_id)  # NotFound
    if action_type == ActionType.FREEZE_MERCHANT and await active("merchant_freeze", p.merchant_id):
        raise ConflictingAction(f"merchant {p.merchant_id} is already frozen")
    if action_type == ActionType.UNFREEZE_MERCHANT and not await active("merchant_freeze", p.merchant_id):
        raise InvalidState(f"merchant {p.merchant_id} is not frozen")
    if action_type == ActionType.PAUSE_PAYOUTS and await active(*p.control):
        raise ConflictingAction(f"{p.control[0].replace('_', ' ')} on {p.control[1]} is already active")
    if action_type == ActionType.RESUME_PAYOUTS and not await active(*p.control):
        raise InvalidState(f"{p.control[1]} is not paused")
    if action_type == ActionType.APPROVE_BULK_PAYOUT:
        status = await session.scalar(select(bulk_payouts.c.status).where(
            bulk_payouts.c.id == p.bulk_payout_id, bulk_payouts.c.merchant_id == p.merchant_id))
        if status is None:
            raise NotFound(f"bulk payout {p.bulk_payout_id} of merchant {p.merchant_id} not found")
        if status != "awaiting_approval":
            raise InvalidState(f"bulk payout {p.bulk_payout_id} is {status}, not awaiting approval")
    if action_type == ActionType.SET_KYC_STATUS:
        await check_kyc_change(session, p.merchant_id, p.status.value)  # InvalidState when it changes nothing
    if action_type == ActionType.APPROVE_BANK_ACCOUNT:
        await get_account(session, p.merchant_id, p.account_id)  # NotFound
    if action_type in (ActionType.CANCEL_PAYOUT, ActionType.REPAIR_PAYOUT):
        if await session.scalar(select(payouts.c.id).where(payouts.c.id == p.payout_id)) is None:
            raise NotFound(f"payout {p.payout_id} not found")


def workflow_input(row: dict) -> OpsActionInput:
    spec = SPECS[ActionType(row["action_type"])]
    return OpsActionInput(
        action_id=row["id"],
        action_type=row["action_type"],
        target={k: v for k, v in row["target"].items() if k != "conflict_key"},
        params=row["params"],
        risk_level=row["risk_level"],
        required_approvals=row["required_approvals"],
        requires_admin=requires_admin(row["risk_level"]),
        auto_execute=spec.auto_execute,
        created_by=row["created_by"],
        created_at=row["created_at"],
        reason=row["reason"],
        expires_in_seconds=(row["expires_at"] - row["created_at"]).total_seconds(),
        rollback_of=row["rollback_of"],
    )


def _search_attributes(row: dict) -> TypedSearchAttributes:
    keys = search_attribute_keys()
    return TypedSearchAttributes([
        SearchAttributePair(keys["ActionType"], row["action_type"]),
        SearchAttributePair(keys["ActionStatus"], row["status"]),
        SearchAttributePair(keys["RiskLevel"], row["risk_level"]),
    ])


def _start_options(row: dict, settings: Settings) -> dict:
    return dict(
        id=ops_action_workflow_id(row["id"]),
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=_search_attributes(row),
    )


async def start_action_workflow(temporal: Client | None, settings: Settings, row: dict) -> bool:
    """Start the action's workflow (an open one is reused, a closed one never restarted)."""
    if temporal is None:
        return False
    try:
        await temporal.start_workflow(OPS_ACTION_WORKFLOW, workflow_input(row), **_start_options(row, settings))
    except WorkflowAlreadyStartedError:
        return True
    except Exception as exc:  # noqa: BLE001 — the first approval starts it (update-with-start)
        log.warning("could not start the workflow of ops action %s: %s", row["id"], exc)
        return False
    return True


async def create_action(
    session: AsyncSession,
    temporal: Client | None,
    settings: Settings,
    redis: Redis | None,
    *,
    actor: str,
    action_type: str,
    params: dict,
    risk_level: str | None = None,
    reason: str | None = None,
    expires_in_seconds: float | None = None,
    rollback_of: str | None = None,
    action_id: str | None = None,
) -> dict:
    """Create an action awaiting approval, then start its workflow. Returns its view.

    `action_id` (optional) makes creation idempotent for a caller that derives it from its own
    key (a recommendation's apply): when that action exists already, its view is returned."""
    if action_id is not None and await session.scalar(select(ops_actions.c.id).where(ops_actions.c.id == action_id)):
        return await get_action(session, settings, action_id)
    kind = ActionType(action_type)
    spec = SPECS[kind]
    p = _validated_params(spec, params)
    risk = RiskLevel(risk_level or spec.default_risk)
    if not risk_at_least(risk, spec.default_risk):
        raise Unprocessable(
            f"risk_level {risk.value} is below {kind.value}'s default of {spec.default_risk.value}: "
            "a creator may raise the risk level, never lower it",
            extra={"errors": [{"loc": ["body", "risk_level"], "msg": "below the default", "type": "value_error"}]},
        )
    await _check_target(session, kind, p)
    target = {**spec.target(p), "conflict_key": spec.conflict_key(p)}
    action_id = action_id or f"act_{uuid.uuid4().hex}"
    now = datetime.now(timezone.utc)
    clean_params = p.model_dump(mode="json", exclude_none=True)
    try:
        async with session.begin_nested():
            row = dict((await session.execute(
                ops_actions.insert().values(
                    id=action_id, action_type=kind.value, target=target, params=clean_params,
                    risk_level=risk.value, required_approvals=required_approvals(risk),
                    status=ActionStatus.PENDING_APPROVAL.value, reason=reason, created_by=actor,
                    created_at=now, updated_at=now,
                    expires_at=now + timedelta(seconds=expires_in_seconds or DEFAULT_EXPIRY_SECONDS),
                    rollback_of=rollback_of,
                ).returning(*ops_actions.c)
            )).mappings().one())
    except IntegrityError:
        other = await session.scalar(
            select(ops_actions.c.id).where(
                ops_actions.c.target["conflict_key"].astext == target["conflict_key"],
                ops_actions.c.status.in_([s.value for s in OPEN_STATUSES]),
            )
        )
        raise ConflictingAction(
            f"action {other} on {target_label(target)} is still open; two conflicting actions on one "
            "target are refused (wait for it to finish, or reject it)",
            extra={"conflicting_action_id": other},
        ) from None
    await append_audit(
        session, action_id=action_id, event_key="created", event="created", actor=actor,
        to_status=row["status"],
        data={"type": kind.value, "params": clean_params, "risk_level": risk.value, "reason": reason,
              "rollback_of": rollback_of},
    )
    await session.commit()  # the workflow may only ever see a committed action
    await publish_ops_action_update(redis, row, "created")
    await start_action_workflow(temporal, settings, row)
    return action_view(row, settings, [])


async def rollback_action(
    session: AsyncSession, temporal: Client | None, settings: Settings, redis: Redis | None, action_id: str, *,
    actor: str, reason: str | None, risk_level: str | None,
) -> dict:
    """Create the inverse of an executed action; it needs its own approvals."""
    row = await get_action_row(session, action_id)
    kind = ActionType(row["action_type"])
    spec = SPECS[kind]
    if spec.inverse is None:
        raise InvalidState(f"{kind.value} has no inverse action and cannot be rolled back")
    if row["status"] != ActionStatus.EXECUTED:
        raise InvalidState(f"only an executed action can be rolled back; this one is {row['status']}")
    inverse_type, inverse_params = spec.inverse(spec.params.model_validate(row["params"]))
    view = await create_action(
        session, temporal, settings, redis, actor=actor, action_type=inverse_type.value,
        params=inverse_params, risk_level=_rollback_risk(risk_level, inverse_type),
        reason=reason or f"rollback of {action_id}", rollback_of=action_id,
    )
    await append_audit(session, action_id=action_id, event_key=f"rollback:{view['id']}", event="rollback_requested",
                       actor=actor, data={"rollback_action_id": view["id"]})
    await session.commit()
    return view


def _rollback_risk(requested: str | None, inverse_type: ActionType) -> str:
    """The inverse type's default, or the requested level when higher (never lower)."""
    candidates = [SPECS[inverse_type].default_risk] + ([RiskLevel(requested)] if requested else [])
    return max(candidates, key=RISK_ORDER.index).value


# --- reads --------------------------------------------------------------------------------------


async def get_action(session: AsyncSession, settings: Settings, action_id: str) -> dict:
    row = await get_action_row(session, action_id)
    view = action_view(row, settings, await list_approvals(session, action_id))
    view["rollbacks"] = list(await session.scalars(
        select(ops_actions.c.id).where(ops_actions.c.rollback_of == action_id).order_by(ops_actions.c.created_at)
    ))
    return view


async def list_actions(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    *,
    status: str | None = None,
    action_type: str | None = None,
    target: str | None = None,
    awaiting_my_approval: bool = False,
    limit: int = 50,
) -> list[dict]:
    conditions = []
    if status:
        conditions.append(ops_actions.c.status == status)
    if action_type:
        conditions.append(ops_actions.c.action_type == action_type)
    if target:
        kind, sep, ident = target.partition(":")
        conditions.append(ops_actions.c.target["kind"].astext == kind)
        if sep:
            conditions.append(ops_actions.c.target["id"].astext == ident)
    if awaiting_my_approval:
        conditions += [
            ops_actions.c.status == ActionStatus.PENDING_APPROVAL.value,
            ops_actions.c.created_by != principal.sub,
            ops_actions.c.expires_at > datetime.now(timezone.utc),
            ~exists().where(and_(ops_approvals.c.action_id == ops_actions.c.id,
                                 ops_approvals.c.approver == principal.sub)),
        ]
    rows = (await session.execute(
        select(ops_actions).where(*conditions).order_by(ops_actions.c.created_at.desc()).limit(limit)
    )).mappings().all()
    return [action_view(dict(r), settings) for r in rows]


async def live_state(temporal: Client | None, action_id: str) -> tuple[OpsActionState | None, str | None]:
    return await query_live_state(temporal, ops_action_workflow_id(action_id), OpsActionState,
                                  what="the ops action workflow", timeout_seconds=QUERY_TIMEOUT_SECONDS)


# --- votes and execute --------------------------------------------------------------------------


def _update_error(exc: WorkflowUpdateFailedError) -> Exception:
    cause = exc.cause
    message = getattr(cause, "message", None) or str(cause or exc)
    error = _UPDATE_ERRORS.get(getattr(cause, "type", None) or "", InvalidState)
    return error(message)


async def vote(
    session: AsyncSession, temporal: Client, settings: Settings, action_id: str, principal: Principal, *,
    decision: str, comment: str | None,
) -> ApprovalTally:
    """Approve or reject through the workflow's Update (update-with-start: an action whose workflow
    never started, e.g. Temporal was down at creation, is started by its first vote)."""
    row = await get_action_row(session, action_id)
    await session.commit()  # no transaction held open while the workflow works
    if normalize_subject(row["created_by"]) == normalize_subject(principal.sub):
        raise SelfApproval(f"you created action {action_id} and cannot {decision} it: "
                           "approvals must come from someone else")
    if row["status"] != ActionStatus.PENDING_APPROVAL:
        raise InvalidState(f"the action is already {row['status']}: no more approvals or rejections")
    roles = sorted(r.value for r in principal.roles)
    # the proof the workflow verifies: the JWT was verified here, so payops signs for this subject
    grant, _ = sign_grant(keyring(settings), scope="ops_action", subject_id=action_id, decision=decision,
                          actor=principal.sub, roles=roles, now=datetime.now(timezone.utc),
                          ttl_seconds=settings.ops_grant_ttl_seconds, via="api")
    request = ApprovalRequest(actor=principal.sub, roles=roles, comment=comment, grant=grant)
    start = WithStartWorkflowOperation(OPS_ACTION_WORKFLOW, workflow_input(row), **_start_options(row, settings))
    try:
        return await asyncio.wait_for(
            temporal.execute_update_with_start_workflow(
                decision, request, start_workflow_operation=start, result_type=ApprovalTally),
            UPDATE_TIMEOUT_SECONDS,
        )
    except WorkflowUpdateFailedError as exc:
        raise _update_error(exc) from None
    except WorkflowAlreadyStartedError:
        raise InvalidState("the action's workflow has already finished") from None
    except asyncio.TimeoutError:
        raise ServiceUnavailable(f"the ops action workflow did not answer the {decision} in time") from None
    except RPCError as exc:
        raise ServiceUnavailable(f"{decision} could not reach the ops action workflow: {exc.message}") from None


async def execute(
    session: AsyncSession, temporal: Client, action_id: str, principal: Principal
) -> OpsActionState:
    row = await get_action_row(session, action_id)
    await session.commit()
    if row["status"] != ActionStatus.APPROVED:
        raise InvalidState(f"only an approved action awaiting execution can be executed; this one is {row['status']}")
    handle = temporal.get_workflow_handle(ops_action_workflow_id(action_id))
    request = ExecuteRequest(actor=principal.sub, roles=sorted(r.value for r in principal.roles))
    try:
        return await asyncio.wait_for(
            handle.execute_update("execute", request, result_type=OpsActionState), UPDATE_TIMEOUT_SECONDS
        )
    except WorkflowUpdateFailedError as exc:
        raise _update_error(exc) from None
    except asyncio.TimeoutError:
        raise ServiceUnavailable("the ops action workflow did not finish executing in time; see its state") from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise InvalidState("the action's workflow is closed or does not exist") from None
        raise ServiceUnavailable(f"execute could not reach the ops action workflow: {exc.message}") from None
