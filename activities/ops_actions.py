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
from datetime import datetime, timezone
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from core.alerts import service as alert_service
from core.ledger import service as ledger
from core.ops_actions import grants as ops_grants
from core.platform.errors import InvalidState, NotFound
from core.platform.names import payout_workflow_id
from core.ops_actions.models import (
    ERR_EXECUTION_FAILED,
    SPECS,
    ActionType,
    AdjustBalanceParams,
    ApproveBankAccountParams,
    ApproveBulkPayoutParams,
    ApprovalRecordInput,
    CancelPayoutParams,
    ClearRouteOverrideParams,
    ExecuteActionInput,
    ExecuteActionResult,
    RefusalInput,
    FreezeMerchantParams,
    PausePayoutsParams,
    RepairPayoutParams,
    ResumePayoutsParams,
    RetryPayoutsParams,
    RouteOverrideParams,
    SetKycStatusParams,
    StepInput,
    StepResult,
    UnfreezeMerchantParams,
)
from core.merchants import bank_accounts as merchant_bank_accounts
from core.merchants import profile as merchant_profile
from core.ops_actions.store import (
    append_audit,
    deactivate_controls,
    get_action_row,
    insert_control,
    list_approvals,
    lock_active_control,
    publish_ops_action_update,
    record_step,
    record_vote,
)
from core.payouts.models import CancelRequest, ControlsChanged, OpsDecision, PayoutStatus, RetryRequest
from core.payouts.store import dlq_payout_ids, payout_status, record_note, waiting_payout_ids
from core.platform.settings import Settings
from core.payouts import bulk
from core.payouts.reaper import repair_payout
from core.platform.settings import get_settings

# alert rules raised (by event, deduplicated per workflow) for refused / unparsable ops input
ALERT_REFUSED_IDENTITY = "ops_unverified_identity"
ALERT_BAD_SIGNAL = "ops_signal_refused"

log = logging.getLogger("payops.activities.ops_actions")

PAYOUT_UPDATE_TIMEOUT_SECONDS = 15.0


def _refuse(message: str) -> ApplicationError:
    """A business failure: recorded as the action's error, never retried."""
    return ApplicationError(message, type=ERR_EXECUTION_FAILED, non_retryable=True)


class OpsActionActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], redis: Redis | None,
                 settings: Settings | None = None) -> None:
        self._sessionmaker = sessionmaker
        self._redis = redis
        self._settings = settings  # REPAIR_PAYOUT's restart builds the payout workflow's input
        if settings is None:
            settings = get_settings()
        self._grant_keys = ops_grants.keyring(settings)

    # --- verified identity (core/ops_actions/grants.py) ----------------------------------------------

    @activity.defn(name="verify_ops_grant")
    async def verify_ops_grant(self, params: ops_grants.VerifyGrantInput) -> ops_grants.GrantCheck:
        """Run as a LOCAL activity: the keys stay in the worker; the answer is a history marker,
        so a replay (even after a key rotation) takes the same path. `now` is workflow time."""
        return ops_grants.check_grant(self._grant_keys, params)

    def _grant_for(self, params: ExecuteActionInput, payout_id: str, decision: str) -> str:
        """An approved ops action acts on a payout: payops signs for it (the quorum verified it)."""
        token, _ = ops_grants.sign_grant(
            self._grant_keys, scope="payout", subject_id=payout_id, decision=decision, actor=params.actor,
            roles=[], now=datetime.now(timezone.utc), ttl_seconds=300, via="ops_action",
        )
        return token

    @activity.defn(name="record_ops_refusal")
    async def record_ops_refusal(self, params: RefusalInput) -> bool:
        """The audit entry of a refused or unparsable vote / payout signal, and an alert.
        Idempotent: keyed by event_key; the alert is raised only with the first write."""
        claimed = (params.claimed_actor or "unknown")[:80]
        data = {"event_key": params.event_key, "via": params.signal_or_update, "claimed_actor": params.claimed_actor,
                "verified_actor": params.verified_actor, "error_type": params.error_type, "reason": params.reason,
                "raw": params.raw}
        rule = ALERT_BAD_SIGNAL if params.error_type in ("bad_input", "invalid_state") else ALERT_REFUSED_IDENTITY
        async with self._sessionmaker() as session, session.begin():
            if params.action_id is not None:
                applied = await append_audit(
                    session, action_id=params.action_id, event_key=params.event_key,
                    event="input_refused" if params.error_type == "bad_input" else "vote_refused",
                    actor=f"{claimed} (unverified, via Temporal)" if params.verified_actor is None else claimed,
                    data=data,
                )
                scope, what = f"ops_action:{params.action_id}", f"ops action {params.action_id}"
            else:
                assert params.payout_id is not None
                applied = await record_note(  # data carries the event key already
                    session, payout_id=params.payout_id, event_key=params.event_key,
                    actor=f"{claimed} (unverified, via Temporal)",
                    reason=f"{params.signal_or_update} refused: {params.reason}"[:1000], data=data,
                )
                scope, what = f"payout:{params.payout_id}", f"payout {params.payout_id}"
            if applied:
                await alert_service.raise_alert(
                    session, rule=rule, severity="high", scope=scope,
                    message=f"{params.signal_or_update} to {what} refused ({params.error_type}): {params.reason}",
                    data={**data, "merchant_id": None},
                )
        if not applied:
            return False
        log.warning("%s to %s refused (%s): %s", params.signal_or_update, scope, params.error_type, params.reason)
        return True

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
            ActionType.REPAIR_PAYOUT: self._repair_payout,
            ActionType.APPROVE_BULK_PAYOUT: self._approve_bulk_payout,
            ActionType.SET_KYC_STATUS: self._set_kyc_status,
            ActionType.APPROVE_BANK_ACCOUNT: self._approve_bank_account,
        }[kind]
        return ExecuteActionResult(result=await handler(params, p))

    async def _activate_control(self, params: ExecuteActionInput, kind: str, target: str, *,
                                control_params: dict, ends_at=None) -> int:
        """Insert the control for this action; a retry finds the one it inserted before."""
        async with self._sessionmaker() as session, session.begin():
            active = await lock_active_control(session, kind, target)
            if active is not None:
                if active.action_id == params.action_id:
                    return active.id
                raise _refuse(f"{kind.replace('_', ' ')} on {target} is already active "
                              f"(control {active.id}, action {active.action_id})")
            return await insert_control(
                session, kind=kind, target=target, params=control_params,
                reason=f"ops action {params.action_id}", created_by=params.actor,
                action_id=params.action_id, ends_at=ends_at,
            )

    async def _deactivate_control(self, kind: str, target: str) -> list[int]:
        async with self._sessionmaker() as session, session.begin():
            return await deactivate_controls(session, kind, target)

    async def _signal_waiting_payouts(self, reason: str, *, merchant_id: str | None = None, rail: str | None = None,
                                      connector: str | None = None) -> dict:
        """Wake the payouts waiting before submission so they re-check the gate now."""
        async with self._sessionmaker() as session:
            ids = await waiting_payout_ids(session, merchant_id=merchant_id, rail=rail, connector=connector)
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
                f"merchant {p.merchant_id} frozen with cancel_queued", merchant_id=p.merchant_id))
        return result

    async def _unfreeze(self, params: ExecuteActionInput, p: UnfreezeMerchantParams) -> dict:
        lifted = await self._deactivate_control("merchant_freeze", p.merchant_id)
        signals = await self._signal_waiting_payouts(
            f"merchant {p.merchant_id} unfrozen", merchant_id=p.merchant_id)
        return {"merchant_id": p.merchant_id, "lifted_controls": lifted, **signals}

    async def _pause(self, params: ExecuteActionInput, p: PausePayoutsParams) -> dict:
        kind, target = p.control
        control_id = await self._activate_control(params, kind, target, control_params={})
        return {"control_id": control_id, "kind": kind, "target": target}

    async def _resume(self, params: ExecuteActionInput, p: ResumePayoutsParams) -> dict:
        kind, target = p.control
        lifted = await self._deactivate_control(kind, target)
        column = "rail" if kind == "rail_pause" else "connector"
        signals = await self._signal_waiting_payouts(f"{kind.replace('_', ' ')} on {target} lifted", **{column: target})
        return {"kind": kind, "target": target, "lifted_controls": lifted, **signals}

    async def _route_override(self, params: ExecuteActionInput, p: RouteOverrideParams) -> dict:
        control_id = await self._activate_control(
            params, "route_override", p.control_target,
            control_params={"connector": p.connector, "until": p.until.isoformat()}, ends_at=p.until,
        )
        return {"control_id": control_id, "target": p.control_target, "connector": p.connector,
                "until": p.until.isoformat(),
                "note": "stored; payout routing honours route_override controls"}

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
            async with self._sessionmaker() as session:
                ids = await dlq_payout_ids(session, merchant_id=f.merchant_id, rail=f.rail, connector=f.connector,
                                           limit=f.limit)
        outcomes: dict = dict(progress.get("outcomes", {}))
        client = activity.client()
        for payout_id in ids:
            if payout_id in outcomes:
                continue
            request = RetryRequest(actor=params.actor, reason=f"ops action {params.action_id}",
                                   grant=self._grant_for(params, payout_id, "retry"))
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
            status = await payout_status(session, p.payout_id)
        if status is None:
            raise _refuse(f"payout {p.payout_id} not found")
        if status == PayoutStatus.CANCELLED:  # cancelled by this action's earlier attempt (or anyone)
            return {"payout_id": p.payout_id, "status": status, "detail": "already cancelled"}
        handle = activity.client().get_workflow_handle(payout_workflow_id(p.payout_id))
        try:
            decision = await asyncio.wait_for(
                handle.execute_update("cancel", CancelRequest(actor=params.actor, reason=p.reason,
                                                              grant=self._grant_for(params, p.payout_id, "cancel")),
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

    async def _repair_payout(self, params: ExecuteActionInput, p: RepairPayoutParams) -> dict:
        assert self._settings is not None, "REPAIR_PAYOUT needs the worker's settings"
        try:
            return await repair_payout(
                self._sessionmaker, activity.client(), self._settings, payout_id=p.payout_id, mode=p.mode,
                reason=p.reason, actor=params.actor, action_id=params.action_id,
            )
        except (InvalidState, NotFound) as exc:
            raise _refuse(str(exc)) from None

    async def _approve_bulk_payout(self, params: ExecuteActionInput, p: ApproveBulkPayoutParams) -> dict:
        outcome = await bulk.release_approved(self._sessionmaker, activity.client(), self._settings or get_settings(),
                                              p.bulk_payout_id, actor=params.actor)
        if outcome.get("failed"):
            raise _refuse(outcome["failed"])
        return outcome

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

    async def _signers(self, session: AsyncSession, params: ExecuteActionInput) -> str:
        """Who decided an action: its creator and approvers (an automatic execution's actor is "workflow")."""
        row = await get_action_row(session, params.action_id)
        approvers = [a["approver"] for a in await list_approvals(session, params.action_id) if a["decision"] == "approve"]
        return f"{row['created_by']} (approved by {', '.join(approvers) or 'nobody'})"[:128]

    async def _set_kyc_status(self, params: ExecuteActionInput, p: SetKycStatusParams) -> dict:
        """Idempotent: the history row carries the action id, so a retried attempt finds its change."""
        try:
            async with self._sessionmaker() as session, session.begin():
                change = await merchant_profile.set_kyc_status(
                    session, p.merchant_id, to_status=p.status.value, actor=await self._signers(session, params),
                    reason=f"{p.reason} (ops action {params.action_id})"[:1000], action_id=params.action_id)
        except NotFound as exc:
            raise _refuse(str(exc)) from None
        return {"merchant_id": p.merchant_id, "from_status": change["from_status"], "to_status": change["to_status"]}

    async def _approve_bank_account(self, params: ExecuteActionInput, p: ApproveBankAccountParams) -> dict:
        try:
            async with self._sessionmaker() as session, session.begin():
                account = await merchant_bank_accounts.review_account(
                    session, merchant_id=p.merchant_id, account_id=p.account_id, approve=p.approve,
                    actor=await self._signers(session, params), reason=p.reason, action_id=params.action_id)
        except (InvalidState, NotFound) as exc:
            raise _refuse(str(exc)) from None
        return {"merchant_id": p.merchant_id, "account_id": p.account_id, "status": account["status"],
                "effective_at": account["effective_at"].isoformat() if account["effective_at"] else None}
