"""Side effects of the OpsActionWorkflow: its rows and audit trail, and each action type's effect.

Every activity is idempotent: steps and votes are keyed (action, event key) and (action,
approver); controls rows carry the action id; ledger adjustments the reference
`ops-action:{id}`; a payout retry/cancel is decided by the payout's own workflow, whose
validators refuse a second one; RETRY_PAYOUTS keeps its per-payout progress in heartbeat
details, so a retried attempt resumes instead of starting over.
"""

from __future__ import annotations

import asyncio
import logging
from redis.asyncio import Redis
from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from core import ledger
from core.names import payout_workflow_id
from core.ops_action_models import (
    ERR_EXECUTION_FAILED,
    SPECS,
    ActionType,
    AdjustBalanceParams,
    ApprovalRecordInput,
    CancelPayoutParams,
    ClearRouteOverrideParams,
    ExecuteActionInput,
    ExecuteActionResult,
    FreezeMerchantParams,
    PausePayoutsParams,
    ResumePayoutsParams,
    RetryPayoutsParams,
    RouteOverrideParams,
    StepInput,
    StepResult,
    UnfreezeMerchantParams,
)
from core.ops_action_store import get_action_row, publish_ops_action_update, record_step, record_vote
from core.payout_models import CancelRequest, ControlsChanged, OpsDecision, PayoutStatus, RetryRequest
from core.tables import controls, payouts

log = logging.getLogger("payops.activities.ops_actions")

# payouts that wait before submission (the gate runs right after routing)
WAITING_STATUSES = (PayoutStatus.HELD.value, PayoutStatus.ROUTED.value)
PAYOUT_UPDATE_TIMEOUT_SECONDS = 15.0


def _refuse(message: str) -> ApplicationError:
    """A business failure: recorded as the action's error, never retried."""
    return ApplicationError(message, type=ERR_EXECUTION_FAILED, non_retryable=True)


class OpsActionActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], redis: Redis | None) -> None:
        self._sessionmaker = sessionmaker
        self._redis = redis

    # --- rows and audit --------------------------------------------------------------------

    @activity.defn(name="record_ops_action_step")
    async def record_ops_action_step(self, params: StepInput) -> StepResult:
        async with self._sessionmaker() as session, session.begin():
            row, applied = await record_step(
                session, action_id=params.action_id, event_key=params.event_key, event=params.event,
                actor=params.actor, to_status=params.to_status, data=params.data, result=params.result,
                error=params.error, executed=params.executed,
            )
        if applied:
            await publish_ops_action_update(self._redis, row, params.event)
        return StepResult(status=row["status"], applied=applied)

    @activity.defn(name="record_ops_action_vote")
    async def record_ops_action_vote(self, params: ApprovalRecordInput) -> StepResult:
        async with self._sessionmaker() as session, session.begin():
            applied = await record_vote(
                session, action_id=params.action_id, decision=params.decision, actor=params.actor,
                roles=params.roles, comment=params.comment,
            )
            row = await get_action_row(session, params.action_id)
        if applied:
            await publish_ops_action_update(self._redis, row, "approval" if params.decision == "approve" else "rejection")
        return StepResult(status=row["status"], applied=applied)

    # --- effects ----------------------------------------------------------------------------

    @activity.defn(name="execute_ops_action")
    async def execute_ops_action(self, params: ExecuteActionInput) -> ExecuteActionResult:
        kind = ActionType(params.action_type)
        p = SPECS[kind].params.model_validate(params.params)
        handler = {
            ActionType.FREEZE_MERCHANT: self._freeze,
            ActionType.UNFREEZE_MERCHANT: self._unfreeze,
            ActionType.PAUSE_PAYOUTS: self._pause,
            ActionType.RESUME_PAYOUTS: self._resume,
            ActionType.ROUTE_OVERRIDE: self._route_override,
            ActionType.CLEAR_ROUTE_OVERRIDE: self._clear_route_override,
            ActionType.RETRY_PAYOUTS: self._retry_payouts,
            ActionType.CANCEL_PAYOUT: self._cancel_payout,
            ActionType.ADJUST_BALANCE: self._adjust_balance,
        }[kind]
        return ExecuteActionResult(result=await handler(params, p))

    async def _activate_control(self, params: ExecuteActionInput, kind: str, target: str, *,
                                control_params: dict, ends_at=None) -> int:
        """Insert the control for this action; a retry finds the one it inserted before."""
        async with self._sessionmaker() as session, session.begin():
            active = (await session.execute(
                select(controls.c.id, controls.c.action_id).where(
                    controls.c.kind == kind, controls.c.target == target, controls.c.active
                ).with_for_update()
            )).first()
            if active is not None:
                if active.action_id == params.action_id:
                    return active.id
                raise _refuse(f"{kind.replace('_', ' ')} on {target} is already active "
                              f"(control {active.id}, action {active.action_id})")
            return await session.scalar(
                controls.insert().values(
                    kind=kind, target=target, params=control_params, active=True,
                    reason=f"ops action {params.action_id}", created_by=params.actor,
                    action_id=params.action_id, ends_at=ends_at,
                ).returning(controls.c.id)
            )

    async def _deactivate_control(self, kind: str, target: str) -> list[int]:
        async with self._sessionmaker() as session, session.begin():
            rows = await session.execute(
                update(controls)
                .where(controls.c.kind == kind, controls.c.target == target, controls.c.active)
                .values(active=False, ended_at=func.now())
                .returning(controls.c.id)
            )
            return [r[0] for r in rows]

    async def _signal_waiting_payouts(self, reason: str, *conditions) -> dict:
        """Wake the payouts waiting before submission so they re-check the gate now."""
        async with self._sessionmaker() as session:
            ids = list(await session.scalars(
                select(payouts.c.id).where(payouts.c.status.in_(WAITING_STATUSES), *conditions)
            ))
        client = activity.client()
        signalled, gone = [], []
        for payout_id in ids:
            try:
                await client.get_workflow_handle(payout_workflow_id(payout_id)).signal(
                    "controls_changed", ControlsChanged(reason=reason)
                )
                signalled.append(payout_id)
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                gone.append(payout_id)  # its workflow ended meanwhile
        return {"signalled": signalled, "not_found": gone}

    async def _freeze(self, params: ExecuteActionInput, p: FreezeMerchantParams) -> dict:
        control_id = await self._activate_control(
            params, "merchant_freeze", p.merchant_id, control_params={"cancel_queued": p.cancel_queued}
        )
        result: dict = {"control_id": control_id, "merchant_id": p.merchant_id, "cancel_queued": p.cancel_queued}
        if p.cancel_queued:  # waiting payouts must learn now that they are to be cancelled
            result.update(await self._signal_waiting_payouts(
                f"merchant {p.merchant_id} frozen with cancel_queued", payouts.c.merchant_id == p.merchant_id))
        return result

    async def _unfreeze(self, params: ExecuteActionInput, p: UnfreezeMerchantParams) -> dict:
        lifted = await self._deactivate_control("merchant_freeze", p.merchant_id)
        signals = await self._signal_waiting_payouts(
            f"merchant {p.merchant_id} unfrozen", payouts.c.merchant_id == p.merchant_id)
        return {"merchant_id": p.merchant_id, "lifted_controls": lifted, **signals}

    async def _pause(self, params: ExecuteActionInput, p: PausePayoutsParams) -> dict:
        kind, target = p.control
        control_id = await self._activate_control(params, kind, target, control_params={})
        return {"control_id": control_id, "kind": kind, "target": target}

    async def _resume(self, params: ExecuteActionInput, p: ResumePayoutsParams) -> dict:
        kind, target = p.control
        lifted = await self._deactivate_control(kind, target)
        column = payouts.c.rail if kind == "rail_pause" else payouts.c.connector
        signals = await self._signal_waiting_payouts(f"{kind.replace('_', ' ')} on {target} lifted", column == target)
        return {"kind": kind, "target": target, "lifted_controls": lifted, **signals}

    async def _route_override(self, params: ExecuteActionInput, p: RouteOverrideParams) -> dict:
        control_id = await self._activate_control(
            params, "route_override", p.control_target,
            control_params={"connector": p.connector, "until": p.until.isoformat()}, ends_at=p.until,
        )
        return {"control_id": control_id, "target": p.control_target, "connector": p.connector,
                "until": p.until.isoformat(),
                "note": "stored; payout routing honours route_override controls once the Rails issue lands"}

    async def _clear_route_override(self, params: ExecuteActionInput, p: ClearRouteOverrideParams) -> dict:
        return {"target": p.control_target,
                "lifted_controls": await self._deactivate_control("route_override", p.control_target)}

    async def _retry_payouts(self, params: ExecuteActionInput, p: RetryPayoutsParams) -> dict:
        info = activity.info()
        progress: dict = dict(info.heartbeat_details[0]) if info.heartbeat_details else {}
        if "payout_ids" in progress:
            ids = list(progress["payout_ids"])
        elif p.payout_ids is not None:
            ids = list(dict.fromkeys(p.payout_ids))
        else:
            f = p.filter
            assert f is not None
            conditions = [payouts.c.status == PayoutStatus.DLQ.value]
            for column, value in ((payouts.c.merchant_id, f.merchant_id), (payouts.c.rail, f.rail),
                                  (payouts.c.connector, f.connector)):
                if value is not None:
                    conditions.append(column == value)
            async with self._sessionmaker() as session:
                ids = list(await session.scalars(
                    select(payouts.c.id).where(and_(*conditions)).order_by(payouts.c.created_at).limit(f.limit)
                ))
        outcomes: dict = dict(progress.get("outcomes", {}))
        client = activity.client()
        request = RetryRequest(actor=params.actor, reason=f"ops action {params.action_id}")
        for payout_id in ids:
            if payout_id in outcomes:
                continue
            activity.heartbeat({"payout_ids": ids, "outcomes": outcomes})
            handle = client.get_workflow_handle(payout_workflow_id(payout_id))
            try:
                decision = await asyncio.wait_for(
                    handle.execute_update("retry", request, result_type=OpsDecision),
                    PAYOUT_UPDATE_TIMEOUT_SECONDS,
                )
                outcomes[payout_id] = {"outcome": "retried", "status": decision.status, "detail": decision.detail}
            except WorkflowUpdateFailedError as exc:
                detail = getattr(exc.cause, "message", None) or str(exc.cause or exc)
                outcomes[payout_id] = {"outcome": "refused", "detail": detail}
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                outcomes[payout_id] = {"outcome": "not_found", "detail": "no open payout workflow"}
        activity.heartbeat({"payout_ids": ids, "outcomes": outcomes})
        retried = sum(1 for o in outcomes.values() if o["outcome"] == "retried")
        return {"requested": len(ids), "retried": retried, "payouts": outcomes}

    async def _cancel_payout(self, params: ExecuteActionInput, p: CancelPayoutParams) -> dict:
        async with self._sessionmaker() as session:
            status = await session.scalar(select(payouts.c.status).where(payouts.c.id == p.payout_id))
        if status is None:
            raise _refuse(f"payout {p.payout_id} not found")
        if status == PayoutStatus.CANCELLED:  # cancelled by this action's earlier attempt (or anyone)
            return {"payout_id": p.payout_id, "status": status, "detail": "already cancelled"}
        handle = activity.client().get_workflow_handle(payout_workflow_id(p.payout_id))
        try:
            decision = await asyncio.wait_for(
                handle.execute_update("cancel", CancelRequest(actor=params.actor, reason=p.reason),
                                      result_type=OpsDecision),
                PAYOUT_UPDATE_TIMEOUT_SECONDS,
            )
        except WorkflowUpdateFailedError as exc:
            raise _refuse(getattr(exc.cause, "message", None) or str(exc.cause or exc)) from None
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise _refuse(f"payout {p.payout_id} has no open workflow (it is {status})") from None
            raise
        if not decision.accepted:
            raise _refuse(decision.detail)
        return {"payout_id": p.payout_id, "status": decision.status, "detail": decision.detail}

    async def _adjust_balance(self, params: ExecuteActionInput, p: AdjustBalanceParams) -> dict:
        ref = f"ops-action:{params.action_id}"
        try:
            async with self._sessionmaker() as session, session.begin():
                journal = await ledger.adjust_balance(
                    session, merchant_id=p.merchant_id, amount_minor=p.amount_minor, currency=p.currency,
                    ref=ref, reason=p.reason, actor=params.actor,
                )
        except ledger.LedgerError as exc:
            raise _refuse(f"{exc.code}: {exc.message}") from None
        return {"merchant_id": p.merchant_id, "amount_minor": p.amount_minor, "currency": p.currency,
                "journal_transaction_id": journal.transaction_id, "ref": ref}
