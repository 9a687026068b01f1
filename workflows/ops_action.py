"""OpsActionWorkflow (`ops-action-{id}`): collect approvals → (wait for an explicit execute) →
execute → record the result or error.

Approvals and rejections are Updates with validators, also accepted as Signals (for the Temporal
UI); both go through the same rules: the approver holds an approver role, is never the creator,
counts once, and cannot act after a decision or expiry. A vote is counted synchronously, before
its handler awaits anything, so racing approvals can never count more than required. An expiry
timer ends an undecided action; a rejection ends it. Deterministic: every side effect is an activity.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.conditions import wait_until

with workflow.unsafe.imports_passed_through():
    from core.platform.names import OPS_ACTION_WORKFLOW
    from activities.ops_actions import OpsActionActivities
    from core.platform.names import search_attribute_keys
    from core.ops_actions.models import (
        ERR_BAD_INPUT,
        ERR_UNVERIFIED,
        RefusalInput,
        ERR_ADMIN_REQUIRED,
        ERR_DECIDED,
        ERR_DUPLICATE_APPROVAL,
        ERR_EXECUTION_FAILED,
        ERR_NOT_APPROVER,
        ERR_NOT_EXECUTABLE,
        ERR_SELF_APPROVAL,
        ActionStatus,
        ApprovalRecordInput,
        ApprovalRequest,
        ApprovalTally,
        ExecuteActionInput,
        ExecuteRequest,
        OpsActionInput,
        OpsActionResult,
        OpsActionState,
        StepInput,
        Vote,
        can_approve,
        can_execute,
    )
    from core.ops_actions.grants import VerifyGrantInput, normalize_subject
    from core.platform.roles import Role
    from temporalio.common import RawValue

# From this patch on a vote counts only for the identity of a grant payops signed (the API signs
# one for every vote; ops get one from POST /api/v1/ops/grants for the Temporal CLI/UI), verified
# in a local activity; subjects compare normalised; every refused or unparsable vote leaves an
# audit entry and an alert. Old histories replay the old path.
IDENTITY_PATCH = "ops-verified-identity-v1"

A = ActionStatus
SA = search_attribute_keys()

DB_ACTIVITY = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)),
)
# Effects are idempotent, so transient errors retry; a business refusal (ExecutionFailed) does
# not, and a persistent error ends as `failed` with the error recorded rather than hanging.
EXECUTE_ACTIVITY = dict(
    start_to_close_timeout=timedelta(minutes=10),
    heartbeat_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=10,
        non_retryable_error_types=[ERR_EXECUTION_FAILED],
    ),
)


@workflow.defn(name=OPS_ACTION_WORKFLOW)
class OpsActionWorkflow:
    @workflow.init
    def __init__(self, params: OpsActionInput) -> None:
        self._p = params
        self._state = OpsActionState(
            action_id=params.action_id,
            action_type=params.action_type,
            status=A.PENDING_APPROVAL,
            risk_level=params.risk_level,
            required_approvals=params.required_approvals,
            requires_admin=params.requires_admin,
            auto_execute=params.auto_execute,
            created_by=params.created_by,
            expires_at=params.created_at + timedelta(seconds=params.expires_in_seconds),
            step="waiting for approvals",
        )
        self._execute: ExecuteRequest | None = None
        self._outcome_recorded = False  # the final status is in the database, not only here
        self._votes_in_flight = 0  # votes counted here whose rows are still being written
        self._refusals = 0  # refused votes / signals (IDENTITY_PATCH), each audited once

    # --- queries, updates, signals -----------------------------------------------------

    @workflow.query(name="state")
    def state(self) -> OpsActionState:
        return self._state

    @workflow.update(name="approve")
    async def approve(self, request: ApprovalRequest) -> ApprovalTally:
        if workflow.patched(IDENTITY_PATCH):
            return await self._verified_vote(request, "approve", "approve", raise_refusal=True)  # type: ignore[return-value]
        self._count(request, "approve")
        tally = self._tally()  # as this vote left it
        await self._record_vote(request, "approve")
        return tally

    @approve.validator
    def _validate_approve(self, request: ApprovalRequest) -> None:
        # identity and the rules that depend on it are checked by the handler, which can verify
        # the grant and audit a refusal; a validator can do neither
        self._check_open()

    @workflow.update(name="reject")
    async def reject(self, request: ApprovalRequest) -> ApprovalTally:
        if workflow.patched(IDENTITY_PATCH):
            return await self._verified_vote(request, "reject", "reject", raise_refusal=True)  # type: ignore[return-value]
        self._count(request, "reject")
        tally = self._tally()  # as this vote left it
        await self._record_vote(request, "reject")
        return tally

    @reject.validator
    def _validate_reject(self, request: ApprovalRequest) -> None:
        self._check_open()

    @workflow.signal(name="approve_signal")
    async def approve_signal(self, raw: RawValue) -> None:
        """For the Temporal UI: the same rules; a refused or unparsable vote is audited and alerted."""
        await self._signal(raw, "approve")

    @workflow.signal(name="reject_signal")
    async def reject_signal(self, raw: RawValue) -> None:
        await self._signal(raw, "reject")

    async def _signal(self, raw: RawValue, decision: str) -> None:
        patched = workflow.patched(IDENTITY_PATCH)
        try:
            request = workflow.payload_converter().from_payload(raw.payload, ApprovalRequest)
        except Exception as exc:  # noqa: BLE001 — any input that does not parse
            if not patched:
                workflow.logger.warning("%s signal dropped: %s", decision, exc)
                return
            text = (raw.payload.data or b"")[:500].decode("utf-8", "replace")
            await self._refuse(f"{decision}_signal", None, None, ERR_BAD_INPUT, f"the input does not parse: {exc}"[:1000], raw=text)
            return
        if patched:
            await self._verified_vote(request, decision, f"{decision}_signal", raise_refusal=False)
        else:
            await self._vote_by_signal(request, decision)

    async def _verified_vote(self, request: ApprovalRequest, decision: str, via: str, *,
                             raise_refusal: bool) -> ApprovalTally | None:
        check = await workflow.execute_local_activity_method(
            OpsActionActivities.verify_ops_grant,
            VerifyGrantInput(token=request.grant, scope="ops_action", subject_id=self._p.action_id,
                             decision=decision, now=workflow.now(), claimed_actor=request.actor),
            start_to_close_timeout=timedelta(seconds=10),
        )
        if not check.ok or check.grant is None:
            return await self._refused(via, request.actor, None, ERR_UNVERIFIED, check.reason or "unverified",
                                       raise_refusal)
        verified = ApprovalRequest(actor=check.grant.actor, roles=check.grant.roles, comment=request.comment)
        try:
            self._check_vote(verified, decision, normalised=True)  # synchronous with the count below
        except ApplicationError as exc:
            return await self._refused(via, request.actor, verified.actor, exc.type or ERR_DECIDED, exc.message,
                                       raise_refusal)
        self._count(verified, decision)
        tally = self._tally()
        await self._record_vote(verified, decision)
        return tally

    async def _refused(self, via: str, claimed: str | None, verified: str | None, error_type: str, reason: str,
                       raise_refusal: bool) -> None:
        await self._refuse(via, claimed, verified, error_type, reason)
        if raise_refusal:
            raise ApplicationError(reason, type=error_type)
        workflow.logger.warning("%s from %s refused: %s", via, claimed, reason)
        return None

    async def _refuse(self, via: str, claimed: str | None, verified: str | None, error_type: str, reason: str, *,
                      raw: str | None = None) -> None:
        self._refusals += 1
        await workflow.execute_activity_method(
            OpsActionActivities.record_ops_refusal,
            RefusalInput(action_id=self._p.action_id, event_key=f"refused:{self._refusals}", signal_or_update=via,
                         claimed_actor=claimed, verified_actor=verified, error_type=error_type, reason=reason, raw=raw),
            **DB_ACTIVITY,
        )

    @workflow.update(name="execute")
    async def execute(self, request: ExecuteRequest) -> OpsActionState:
        self._execute = request
        await workflow.wait_condition(lambda: self._outcome_recorded)
        return self._state

    @execute.validator
    def _validate_execute(self, request: ExecuteRequest) -> None:
        if not can_execute(request.roles):
            raise ApplicationError("only an ops user (ops_actions:create) may execute an action",
                                   type=ERR_NOT_APPROVER)
        if self._p.auto_execute:
            raise ApplicationError(f"{self._p.action_type} executes by itself once approved",
                                   type=ERR_NOT_EXECUTABLE)
        if self._state.status != A.APPROVED or self._execute is not None:
            raise ApplicationError(f"cannot execute an action that is {self._state.status}"
                                   + (" (an execute is already under way)" if self._execute else ""),
                                   type=ERR_NOT_EXECUTABLE)

    async def _vote_by_signal(self, request: ApprovalRequest, decision: str) -> None:
        try:
            self._check_vote(request, decision)
        except ApplicationError as exc:
            workflow.logger.warning("%s signal from %s ignored: %s", decision, request.actor, exc.message)
            return
        self._count(request, decision)
        await self._record_vote(request, decision)

    def _check_open(self) -> None:
        s = self._state
        if s.status != A.PENDING_APPROVAL:
            raise ApplicationError(f"the action is already {s.status}: no more approvals or rejections",
                                   type=ERR_DECIDED)
        if s.expires_at is not None and workflow.now() >= s.expires_at:
            raise ApplicationError("the action has expired", type=ERR_DECIDED)

    def _check_vote(self, request: ApprovalRequest, decision: str, *, normalised: bool = False) -> None:
        s = self._state
        self._check_open()
        same = (lambda a, b: normalize_subject(a) == normalize_subject(b)) if normalised else (lambda a, b: a == b)
        if same(request.actor, s.created_by):
            raise ApplicationError(f"{request.actor} created this action and cannot {decision} it: "
                                   "approvals must come from someone else", type=ERR_SELF_APPROVAL)
        if not can_approve(request.roles):
            raise ApplicationError("only an approver role (ops_actions:approve) may approve or reject",
                                   type=ERR_NOT_APPROVER)
        if any(same(v.actor, request.actor) for v in s.approvals + s.rejections):
            raise ApplicationError(f"{request.actor} has already voted on this action", type=ERR_DUPLICATE_APPROVAL)
        if (decision == "approve" and s.requires_admin and not self._admin_approved()
                and Role.OPS_ADMIN.value not in request.roles and len(s.approvals) == s.required_approvals - 1):
            raise ApplicationError("a critical action needs an ops_admin among its approvers: "
                                   "the last approval must come from an ops_admin", type=ERR_ADMIN_REQUIRED)

    def _count(self, request: ApprovalRequest, decision: str) -> None:
        """Synchronous, right after validation: racing votes see each other."""
        vote = Vote(actor=request.actor, roles=sorted(request.roles), comment=request.comment, at=workflow.now())
        s = self._state
        if decision == "approve":
            s.approvals.append(vote)
            if len(s.approvals) >= s.required_approvals and (not s.requires_admin or self._admin_approved()):
                self._set_status(A.APPROVED)
        else:
            s.rejections.append(vote)
            if len(s.rejections) >= self._p.rejections_to_reject:
                self._set_status(A.REJECTED)

    def _admin_approved(self) -> bool:
        return any(Role.OPS_ADMIN.value in v.roles for v in self._state.approvals)

    def _tally(self) -> ApprovalTally:
        s = self._state
        return ApprovalTally(
            action_id=s.action_id, status=s.status, approvals=len(s.approvals), required=s.required_approvals,
            remaining=max(0, s.required_approvals - len(s.approvals)), admin_approved=self._admin_approved(),
            approvers=[v.actor for v in s.approvals], rejections=len(s.rejections),
        )

    # --- the action's life -------------------------------------------------------------

    @workflow.run
    async def run(self, params: OpsActionInput) -> OpsActionResult:
        workflow.upsert_search_attributes([
            SA["ActionType"].value_set(params.action_type),
            SA["RiskLevel"].value_set(params.risk_level),
            SA["ActionStatus"].value_set(self._state.status),
        ])
        assert self._state.expires_at is not None
        remaining = max(self._state.expires_at - workflow.now(), timedelta(milliseconds=1))
        decided = await wait_until(lambda: self._state.status != A.PENDING_APPROVAL, remaining)
        # the audit trail lists the deciding vote before the decision
        await workflow.wait_condition(lambda: self._votes_in_flight == 0)
        if not decided:
            await self._expire("no decision before the expiry")
        elif self._state.status == A.REJECTED:
            self._state.step = "rejected"
            await self._record("rejected", A.REJECTED, data={"rejections": [v.actor for v in self._state.rejections]})
        else:
            await self._record("approved", A.APPROVED, data={"approvers": [v.actor for v in self._state.approvals]})
            if params.auto_execute or await self._await_execute():
                await self._run_execution()
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._state.step = "done"
        return OpsActionResult(action_id=params.action_id, status=self._state.status,
                               result=self._state.result, error=self._state.error)

    async def _await_execute(self) -> bool:
        self._state.step = "approved; waiting for an explicit execute by an ops user"
        if await wait_until(lambda: self._execute is not None, timedelta(seconds=self._p.execute_window_seconds)):
            return True
        await self._expire("approved but not executed before the execute window closed")
        return False

    async def _run_execution(self) -> None:
        actor = self._execute.actor if self._execute else "workflow"
        self._state.executed_by = actor
        self._set_status(A.EXECUTING)
        self._state.step = "executing"
        await self._record("executing", A.EXECUTING, actor=actor)
        try:
            done = await workflow.execute_activity_method(
                OpsActionActivities.execute_ops_action,
                ExecuteActionInput(action_id=self._p.action_id, action_type=self._p.action_type,
                                   params=self._p.params, actor=actor),
                **EXECUTE_ACTIVITY,
            )
        except ActivityError as err:
            cause = err.cause
            self._state.error = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            self._set_status(A.FAILED)
            self._state.step = "execution failed"
            await self._record("failed", A.FAILED, actor=actor, error=self._state.error)
            self._outcome_recorded = True
            return
        self._state.result = done.result
        self._set_status(A.EXECUTED)
        self._state.step = "executed"
        await self._record("executed", A.EXECUTED, actor=actor, result=done.result, executed=True)
        self._outcome_recorded = True

    async def _expire(self, why: str) -> None:
        self._set_status(A.EXPIRED)
        self._state.step = why
        await self._record("expired", A.EXPIRED, data={"why": why})
        self._outcome_recorded = True

    async def _record_vote(self, request: ApprovalRequest, decision: str) -> None:
        self._votes_in_flight += 1
        try:
            await workflow.execute_activity_method(
                OpsActionActivities.record_ops_action_vote,
                ApprovalRecordInput(action_id=self._p.action_id, decision=decision, actor=request.actor,
                                    roles=sorted(request.roles), comment=request.comment),
                **DB_ACTIVITY,
            )
        finally:
            self._votes_in_flight -= 1

    async def _record(self, event: str, status: str, *, actor: str = "workflow", data: dict | None = None,
                      result: dict | None = None, error: str | None = None, executed: bool = False) -> None:
        await workflow.execute_activity_method(
            OpsActionActivities.record_ops_action_step,
            StepInput(action_id=self._p.action_id, event_key=event, event=event, actor=actor, to_status=status,
                      data=data or {}, result=result, error=error, executed=executed),
            **DB_ACTIVITY,
        )

    def _set_status(self, status: str) -> None:
        self._state.status = status
        workflow.upsert_search_attributes([SA["ActionStatus"].value_set(status)])
