"""Ops actions: multi-signature actions with real effects (freeze, pause, retry, adjust, ...)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Authenticated, OptionalTemporal, RedisDep, Session, SettingsDep, TemporalDep, require
from api.schemas.common import problems
from api.schemas.ops_actions import (
    ActionTypeOut,
    GrantOut,
    GrantRequest,
    OpsActionCreate,
    OpsActionDetail,
    OpsActionOut,
    OpsActionPage,
    OpsActionPlan,
    RollbackBody,
    TallyOut,
    VoteBody,
)
from core.ops_actions import plan as ops_plan
from core.ops_actions import service
from core.ops_actions import grant_service as ops_grant_service
from core.platform.auth_tokens import Principal
from core.ops_actions.models import ActionStatus, ActionType, OpsActionState
from core.payouts.reaper import repair_ops_action
from core.platform.roles import Permission as P

router = APIRouter(prefix="/ops", tags=["ops actions"])

OpsCreate = Annotated[Principal, Depends(require(P.OPS_ACTIONS_CREATE))]
OpsApprove = Annotated[Principal, Depends(require(P.OPS_ACTIONS_APPROVE))]
OpsRead = Annotated[Principal, Depends(require(P.OPS_ACTIONS_READ))]


@router.get("/action-types", response_model=list[ActionTypeOut], responses=problems(401, 403))
async def list_action_types(principal: OpsRead):
    """Every action type: its params schema, what it does, its default risk level (approvals
    required: low 1, medium 2, high 3, critical 3 including an ops_admin), whether it runs by itself
    once approved or waits for an explicit execute, and the type its rollback creates."""
    return service.action_types()


@router.post("/actions", response_model=OpsActionOut, status_code=201, responses=problems(401, 403, 404, 409, 422))
async def create_action(
    body: OpsActionCreate, principal: OpsCreate, session: Session, temporal: OptionalTemporal,
    settings: SettingsDep, redis: RedisDep,
):
    """Create an action awaiting approval. 422 for params that do not fit the type or a risk
    level below the type's default; 409 `conflicting_action` while another action on the same
    target is open (two FREEZE on one merchant), or when the target is already in that state."""
    return await service.create_action(
        session, temporal, settings, redis, actor=principal.sub, action_type=body.type.value,
        params=body.params, risk_level=body.risk_level.value if body.risk_level else None,
        reason=body.reason, expires_in_seconds=body.expires_in_seconds,
    )


@router.get("/actions", response_model=OpsActionPage, responses=problems(401, 403, 422))
async def list_actions(
    principal: OpsRead,
    session: Session,
    settings: SettingsDep,
    status: ActionStatus | None = None,
    type: ActionType | None = None,
    target: str | None = Query(default=None, description='e.g. "merchant:mer_1", "rail:sepa", "payout:po_1"'),
    awaiting_my_approval: bool = Query(default=False, description="open actions I may still vote on"),
    limit: int = Query(default=50, ge=1, le=200),
):
    """Actions, newest first."""
    rows = await service.list_actions(
        session, settings, principal, status=status.value if status else None,
        action_type=type.value if type else None, target=target, awaiting_my_approval=awaiting_my_approval,
        limit=limit,
    )
    return {"data": rows}


@router.get("/actions/{action_id}", response_model=OpsActionDetail, responses=problems(401, 403, 404))
async def get_action(
    action_id: str, principal: OpsRead, session: Session, temporal: OptionalTemporal, settings: SettingsDep
):
    """The stored action with its approvals, rollbacks and the workflow's live state. When the
    workflow cannot answer, `workflow` is null and `workflow_error` says why."""
    view = await service.get_action(session, settings, action_id)
    await session.commit()
    state, error = await service.live_state(temporal, action_id)
    return {**view, "workflow": state, "workflow_error": error}


@router.get("/actions/{action_id}/plan", response_model=OpsActionPlan, responses=problems(401, 403, 404))
async def plan_action(action_id: str, principal: OpsRead, session: Session):
    """What executing the action would do, computed now: which payouts wait, are cancelled or are
    retried, which amounts stay held or are released, which controls and routes change, which
    merchant is frozen, and `would_refuse` when execution would fail. It uses the same selections
    the execution does, so approvers see what they sign. Read-only."""
    return await ops_plan.plan_action(session, action_id)


@router.post("/actions/{action_id}/approve", response_model=TallyOut, responses=problems(401, 403, 404, 409, 503))
async def approve_action(
    action_id: str, principal: OpsApprove, session: Session, temporal: TemporalDep, settings: SettingsDep,
    body: VoteBody | None = None,
):
    """Approve; returns the running tally. 403 `self_approval` for the action's creator, 403
    `admin_approval_required` when a critical action's last approval is not an ops_admin's, 409
    `duplicate_approval` for a second vote by the same person, 409 `invalid_state` once decided
    or expired."""
    return await service.vote(session, temporal, settings, action_id, principal, decision="approve",
                              comment=body.comment if body else None)


@router.post("/actions/{action_id}/reject", response_model=TallyOut, responses=problems(401, 403, 404, 409, 503))
async def reject_action(
    action_id: str, principal: OpsApprove, session: Session, temporal: TemporalDep, settings: SettingsDep,
    body: VoteBody | None = None,
):
    """Reject: the action ends as `rejected`. Same rules as approve."""
    return await service.vote(session, temporal, settings, action_id, principal, decision="reject",
                              comment=body.comment if body else None)


@router.post("/actions/{action_id}/execute", response_model=OpsActionState, responses=problems(401, 403, 404, 409, 503))
async def execute_action(action_id: str, principal: OpsCreate, session: Session, temporal: TemporalDep):
    """Execute an approved action whose type waits for an explicit execute; returns the workflow's
    state once the execution finished (`executed` with its result, or `failed` with its error)."""
    return await service.execute(session, temporal, action_id, principal)


@router.post("/actions/{action_id}/rollback", response_model=OpsActionOut, status_code=201,
             responses=problems(401, 403, 404, 409))
async def rollback_action(
    action_id: str, principal: OpsCreate, session: Session, temporal: OptionalTemporal, settings: SettingsDep,
    redis: RedisDep, body: RollbackBody | None = None,
):
    """Create the inverse of an executed action (UNFREEZE for a FREEZE, ...); it needs its own
    approvals. 409 `invalid_state` when the action was not executed or its type has no inverse."""
    return await service.rollback_action(
        session, temporal, settings, redis, action_id, actor=principal.sub,
        reason=body.reason if body else None,
        risk_level=body.risk_level.value if body and body.risk_level else None,
    )


@router.post("/grants", response_model=GrantOut, status_code=201, responses=problems(401, 403, 404, 409, 422))
async def issue_grant(body: GrantRequest, principal: Authenticated, session: Session, settings: SettingsDep):
    """A short-lived grant signed by payops for a retry/cancel of one payout, or an approve/reject
    of one ops action, sent through Temporal's CLI or UI (docs/operations.md, section 7).

    It names your verified subject and roles; the workflow verifies it, so the audit trail names
    you, not whatever `actor` is typed. Payout grants need `payouts:operate`, ops-action grants
    `ops_actions:approve` (and never go to the action's creator). Each issue is audited."""
    return await ops_grant_service.issue_grant(session, settings, principal, scope=body.scope, subject_id=body.id,
                                               decision=body.decision, ttl_seconds=body.ttl_seconds)


class RepairBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)


@router.post("/actions/{action_id}/repair", responses=problems(401, 403, 404, 409, 422, 503))
async def repair_action(action_id: str, body: RepairBody, principal: OpsCreate, settings: SettingsDep,
                        temporal: TemporalDep, request: Request) -> dict:
    """Close an ops action whose workflow was closed under it (Terminate): the workflow reaper's
    critical alert names this. pending_approval / approved -> `expired`, executing -> `failed`
    (its effects may be partial: check them), audited; the alert is resolved. 409 while its
    workflow runs or when it is already closed. Moves no money."""
    return await repair_ops_action(request.app.state.sessionmaker, temporal, action_id=action_id,
                                   actor=principal.sub, reason=body.reason)
