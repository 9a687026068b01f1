"""Payouts: idempotent creation, scoped reads, the audit trail, ops cancel/retry, stats."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import WorkflowExecutionStatus

from api.deps import (
    OptionalTemporal, PayoutOperate, PayoutRead, PayoutWrite, RedisDep, Session, SettingsDep, TemporalDep,
    merchant_scope, require,
)
from api.schemas.common import problems
from api.schemas.ops_actions import OpsActionOut
from api.schemas.payouts import (
    CancelBody,
    OpsResult,
    PayoutCreate,
    PayoutDetail,
    PayoutEventOut,
    PayoutOut,
    PayoutPage,
    PayoutStats,
    RetryBody,
)
from core.ops_actions import service as ops_action_service
from core.ops_actions import grants as ops_grants
from core.payouts import reaper
from core.payouts import service as payout_service
from core.platform.auth_tokens import Principal
from core.platform.errors import Forbidden, Unprocessable
from core.platform.idempotency import require_key
from core.payouts.models import TERMINAL_STATUSES, Method, PayoutStatus
from core.platform.roles import Permission as P

router = APIRouter(prefix="/payouts", tags=["payouts"])


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="unique per intended payout, ≤ 255 chars; kept ≥ 24 h"),
    ] = None,
) -> str:
    return require_key(key)


IdempotencyKey = Annotated[str, Depends(idempotency_key)]


def _creating_merchant(principal: Principal, body_merchant_id: str | None) -> str:
    if principal.is_merchant_user:
        if body_merchant_id and body_merchant_id != principal.merchant_id:
            raise Forbidden("you may only create payouts for your own merchant")
        return principal.merchant_id  # type: ignore[return-value]
    if not body_merchant_id:
        raise Unprocessable(
            "merchant_id is required for platform roles",
            extra={"errors": [{"loc": ["body", "merchant_id"], "msg": "required", "type": "missing"}]},
        )
    return body_merchant_id


@router.post(
    "",
    response_model=PayoutOut,
    status_code=201,
    responses={200: {"model": PayoutOut, "description": "a replay: the original payout"}, **problems(400, 401, 403, 404, 409, 422)},
)
async def create_payout(
    body: PayoutCreate,
    principal: PayoutWrite,
    key: IdempotencyKey,
    response: Response,
    session: Session,
    temporal: OptionalTemporal,
    settings: SettingsDep,
):
    """Create a payout; its workflow then holds the funds, routes, submits and settles it.

    Requires `Idempotency-Key`. The same key with the same body returns the original payout (200);
    with a different body, 422 `idempotency_key_reused`. Concurrent duplicates create exactly one
    payout. A frozen merchant gets 409 `merchant_frozen`. Insufficient funds are not an HTTP
    error: the payout becomes `rejected` with failure code `insufficient_funds`.
    """
    merchant_id = _creating_merchant(principal, body.merchant_id)
    status, payload = await payout_service.create_payout(
        session,
        temporal,
        settings,
        merchant_id=merchant_id,
        actor=principal.sub,
        idempotency_key=key,
        request=body.model_dump(mode="json", exclude={"merchant_id"}),
    )
    response.status_code = status
    return payload


@router.get("", response_model=PayoutPage, responses=problems(401, 403, 422))
async def list_payouts(
    principal: PayoutRead,
    session: Session,
    settings: SettingsDep,
    merchant_id: str | None = None,
    status: PayoutStatus | None = None,
    method: Method | None = None,
    rail: str | None = None,
    currency: str | None = Query(default=None, pattern=r"^[A-Z]{3}$"),
    created_from: datetime | None = Query(default=None, description="inclusive"),
    created_to: datetime | None = Query(default=None, description="exclusive"),
    amount_minor_min: int | None = Query(default=None, ge=0),
    amount_minor_max: int | None = Query(default=None, ge=0),
    limit: int = Query(default=50, ge=1, le=200),
    cursor: str | None = Query(default=None, description="`next_cursor` of the previous page"),
):
    """Payouts, newest first, keyset-paginated. Merchant users see only their own."""
    rows, next_cursor = await payout_service.list_payouts(
        session,
        merchant_id=merchant_scope(principal, merchant_id),
        status=status.value if status else None,
        method=method.value if method else None,
        rail=rail,
        currency=currency,
        created_from=created_from,
        created_to=created_to,
        amount_minor_min=amount_minor_min,
        amount_minor_max=amount_minor_max,
        limit=limit,
        cursor=cursor,
    )
    return {"data": [payout_service.payout_view(r, settings) for r in rows], "next_cursor": next_cursor}


@router.get("/stats/summary", response_model=PayoutStats, responses=problems(401, 403))
async def payout_stats(principal: PayoutRead, session: Session, merchant_id: str | None = None):
    """Counts and amounts by status and currency, and the average time from creation to
    settlement. Merchant users get their own; platform roles all merchants or `merchant_id`."""
    return await payout_service.payout_stats(session, merchant_scope(principal, merchant_id))


@router.get("/{payout_id}", response_model=PayoutDetail, responses=problems(401, 403, 404))
async def get_payout(
    payout_id: str, principal: PayoutRead, session: Session, temporal: OptionalTemporal, settings: SettingsDep
):
    """The stored payout plus its workflow's live state (step, attempts, last error, hold, rail,
    timestamps). When the workflow cannot answer, `workflow` is null and `workflow_error` says why.
    `workflow_status` is Temporal's status of the workflow; when it is closed under a payout that is
    not terminal, `repair_modes` lists what `POST /api/v1/payouts/{id}/repair` may do."""
    row = await payout_service.get_payout(session, payout_id, merchant_scope(principal, None))
    await session.commit()
    (state, error), status = await asyncio.gather(
        payout_service.live_state(temporal, payout_id), payout_service.workflow_status(temporal, payout_id))
    closed_under_row = (status is not None and status != WorkflowExecutionStatus.RUNNING.name
                        and row["status"] not in TERMINAL_STATUSES)
    return {**payout_service.payout_view(row, settings), "workflow": state, "workflow_error": error,
            "workflow_status": status, "repair_modes": reaper.repair_modes(row["status"]) if closed_under_row else None}


@router.get("/{payout_id}/events", response_model=list[PayoutEventOut], responses=problems(401, 403, 404))
async def list_payout_events(payout_id: str, principal: PayoutRead, session: Session):
    """The payout's audit trail: every status change with its actor and reason, in order."""
    return await payout_service.list_events(session, payout_id, merchant_scope(principal, None))


def _api_grant(settings, principal, payout_id: str, decision: str) -> str:
    """The JWT was verified here: payops signs the caller's identity for the workflow to verify."""
    token, _ = ops_grants.issue(settings, scope="payout", subject_id=payout_id, decision=decision,
                                actor=principal.sub, roles=sorted(r.value for r in principal.roles), via="api")
    return token


async def _ops_result(session, settings, payout_id, decision, scope) -> dict:
    row = await payout_service.get_payout(session, payout_id, scope)
    return {"decision": decision.model_dump(), "payout": payout_service.payout_view(row, settings)}


@router.post("/{payout_id}/cancel", response_model=OpsResult, responses=problems(401, 403, 404, 409, 422, 503))
async def cancel_payout(
    payout_id: str, body: CancelBody, principal: PayoutOperate, session: Session, temporal: TemporalDep,
    settings: SettingsDep,
):
    """Cancel a payout that has not reached the bank yet; its hold is reversed.

    409 `invalid_state` once it has been submitted (the message says why)."""
    scope = merchant_scope(principal, None)
    decision = await payout_service.cancel_payout(
        session, temporal, payout_id, actor=principal.sub, reason=body.reason, scope_merchant_id=scope,
        grant=_api_grant(settings, principal, payout_id, "cancel"),
    )
    return await _ops_result(session, settings, payout_id, decision, scope)


@router.post("/{payout_id}/retry", response_model=OpsResult, responses=problems(401, 403, 404, 409, 503))
async def retry_payout(
    payout_id: str, principal: PayoutOperate, session: Session, temporal: TemporalDep, settings: SettingsDep,
    body: RetryBody | None = None,
):
    """Send a payout parked in `dlq` back to the bank with a fresh retry budget.

    409 `invalid_state` unless it is in `dlq`."""
    scope = merchant_scope(principal, None)
    decision = await payout_service.retry_payout(
        session, temporal, payout_id, actor=principal.sub, reason=body.reason if body else None,
        scope_merchant_id=scope, grant=_api_grant(settings, principal, payout_id, "retry"),
    )
    return await _ops_result(session, settings, payout_id, decision, scope)


class RepairPayoutBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["compensate", "restart"] = Field(
        description="compensate: reverse its active hold and mark it failed; restart: a new run of its workflow")
    reason: str = Field(min_length=1, max_length=500)


PayoutRepairer = Annotated[Principal, Depends(require(P.PAYOUTS_OPERATE, P.OPS_ACTIONS_CREATE))]


@router.post("/{payout_id}/repair", response_model=OpsActionOut, status_code=201,
             responses=problems(401, 403, 404, 409, 422))
async def repair_payout(
    payout_id: str, body: RepairPayoutBody, principal: PayoutRepairer, session: Session, temporal: TemporalDep,
    settings: SettingsDep, redis: RedisDep,
):
    """The repair of a payout whose workflow was closed under it (the workflow reaper's critical
    alert): creates the REPAIR_PAYOUT ops action, which runs once approved like any other (four-eyes).
    Same as `POST /api/v1/ops/actions` with type REPAIR_PAYOUT; 409 while another action on it is open."""
    await payout_service.get_payout(session, payout_id, merchant_scope(principal, None))  # 404 first
    return await ops_action_service.create_action(
        session, temporal, settings, redis, actor=principal.sub, action_type="REPAIR_PAYOUT",
        params={"payout_id": payout_id, "mode": body.mode, "reason": body.reason},
        reason=f"repair payout {payout_id} ({body.mode}): {body.reason}",
    )
