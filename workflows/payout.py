"""PayoutWorkflow (`payout-{id}`): hold → route → submit (retry with backoff) → await settlement
→ settle → watch for returns. Exhausted retries park the payout in `dlq`, where the workflow
waits for an ops retry or cancel (Updates, also accepted as Signals from the Temporal UI) or
expires. Deterministic: every side effect is an activity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.conditions import wait_until

with workflow.unsafe.imports_passed_through():
    from activities.ops_actions import OpsActionActivities
    from core.platform.names import PAYOUT_WORKFLOW
    from activities.payout_temporal_ops import PayoutTemporalOpsActivities
    from activities.payouts import PayoutActivities
    from activities.rails import ERR_NO_ROUTE, RailActivities
    from connectors.base import UNKNOWN_OUTCOME_CODES
    from core.platform.names import search_attribute_keys
    from core.payouts.models import (
        CANCELLABLE_STATUSES,
        ERR_CONNECTOR_PERMANENT,
        BankNotificationSignal,
        CancelRequest,
        ControlsChanged,
        GateInput,
        HoldInput,
        InquiryInput,
        InquiryOutcome,
        OpsDecision,
        PayoutResume,
        PayoutState,
        PayoutStatus,
        PayoutWorkflowInput,
        PayoutWorkflowResult,
        RetryRequest,
        ReverseInput,
        RouteInput,
        SettleInput,
        StatusPollInput,
        StatusPollResult,
        SubmitInput,
        SubmitResult,
        TERMINAL_STATUSES,
        TransitionInput,
    )
    from core.ops_actions.models import RefusalInput
    from core.ops_actions.grants import VerifyGrantInput, normalize_subject
    from core.payouts.temporal_ops import TEMPORAL_ACTOR, PayoutNoteInput, RecallInput
    from temporalio.common import RawValue
    from core.rails.models import (
        BatchEnqueueInput,
        BatchOutcomeSignal,
        BatchWithdrawInput,
        FailoverInput,
        RailRouteDecision,
        RailRouteInput,
        SlaBreachInput,
    )

# Versioning: payouts started before the rails engine route with the simple rule through the one
# sandbox connector; from this patch on they route by cost/SLA, wait for batches, fail over and
# watch their settlement target. Old histories replay the old path (tests/platform/test_replay.py).
RAILS_PATCH = "rails-routing-v1"
# From this patch on a `standard` payout on a rail with a cutoff (ACH, SEPA, Wire) waits with a
# durable timer for the cutoff its routing computed, then submits on its own; and the SLA watch
# runs through every wait (the submission gate, backoff, the cutoff, dlq), not only settlement.
CUTOFF_PATCH = "standard-cutoff-v1"
# From this patch on an unknown submission outcome (timeout, 5xx, connection error, a reference
# conflict, a batch entry refused as a reference conflict) is never a refusal: the workflow asks
# the connector it sent the payout to, by reference, with capped backoff, until the bank answers,
# and follows the answer. Money is released, and the payout may go to another rail, only when the
# bank refused it or confirms it has no payment for the reference.
UNKNOWN_PATCH = "unknown-outcome-v1"
# From this patch on the return watch after settlement also asks the bank (at the payout's
# return_poll_intervals) until the window closes, so a return whose webhook was missed is caught.
RETURN_POLL_PATCH = "return-poll-v1"
# From this patch on a payout whose outcome stays unknown for a long time (the bank's inquiry
# unanswered inquiry_continue_as_new_after times in one run) continues as new, carrying its state,
# and goes on asking in the next run: one history per so many inquiries, never one without end.
INQUIRY_CAN_PATCH = "inquiry-continue-as-new-v1"
# From this patch on the settlement wait (a poll of the bank about every settlement_poll_seconds
# until it settles) and the return watch after settlement continue as new after
# inquiry_continue_as_new_after polls in one run, carrying the state (the webhooks seen and not yet
# handled, the SLA alert, the return window's end and its polls): a bank that takes days to settle
# never grows one history without end (issue 17). Asked only when a run reaches that many polls.
SETTLEMENT_CAN_PATCH = "settlement-wait-continue-as-new-v1"
# From this patch on, when the submission returns an acceptance recorded on another connector than
# the one this run routed to (a Temporal Reset, or a restart, whose new run routed elsewhere: the
# submit activity returns the recorded acceptance instead of sending it again), the workflow follows
# the connector and rail the bank accepted it on: it asks that bank about settlement and returns,
# and settles against that connector (issue 15). Asked only when they differ.
RESET_CONNECTOR_PATCH = "reset-follows-accepted-connector-v1"
# Priorities that wait for the rail's cutoff when they are not going out in a batch file.
CUTOFF_PRIORITIES = frozenset({"standard", "batch"})
# From this patch on Temporal's own cancel (the UI's Request Cancellation, `temporal workflow
# cancel`) is an ops cancel: the payout's life runs shielded from it, and the request becomes a
# cancel it handles at its next decision point (the bank is asked to recall a submitted payout;
# a refusal is recorded and the payout stays in flight). Before it, such a cancel ended the
# workflow as Canceled with the hold still active (issue 15); the workflow reaper finds those.
TEMPORAL_CANCEL_PATCH = "payout-temporal-cancel-v1"
# From this patch on every retry / cancel (Update or Signal) is attributed: verified when it
# carries a payops-signed grant bound to this payout and decision (the API signs one for every
# call; ops get one from POST /api/v1/ops/grants for the Temporal CLI/UI), checked in the
# `verify_ops_grant` local activity; without a valid grant it is still performed (ops need it)
# but audited as unverified, via Temporal, with the typed actor shown as claimed. A retry/cancel
# Signal that is refused (wrong state) or whose input does not parse leaves an audit event and an
# alert (`record_ops_refusal`) instead of a log line. Old histories replay the old path.
VERIFIED_OPS_PATCH = "payout-verified-ops-v1"
# From this patch on (issue 19) a new payout costs Temporal far less for the same life:
# - it asks this one patch, and every patch above is on: one marker (and one TemporalChangeVersion
#   upsert) instead of one per patch;
# - the short database steps (hold, route, submission gate, settle) and the bank polls while it
#   waits (settlement, return watch) run as local activities, in the workflow task that decides
#   them, instead of an activity task and a workflow task each; the submission itself, and the
#   inquiries after an unknown outcome, stay activities;
# - the PayoutStatus/Rail search attributes are written when the payout rests (waits for a timer,
#   a signal, an activity task, or ends), not at each transition the same task passes through: a
#   payout goes held -> routed -> submitting in one task, and Temporal shows `submitting`.
# Histories recorded before it replay the old path.
LEAN_PATCH = "payout-lean-v1"
ERR_INVALID_STATE = "invalid_state"

S = PayoutStatus
SA = search_attribute_keys()

# Database-touching activities retry until they succeed (a transient DB error must not lose a
# payout); their idempotency makes that safe.
DB_ACTIVITY = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)),
)
# One submission attempt per activity: the workflow owns the retry loop so its attempts,
# backoff and last error are visible in the state Query and the history.
SUBMIT_ACTIVITY = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(maximum_attempts=1),
)
POLL_ACTIVITY = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=2)),
)
# The same database steps as local activities (LEAN_PATCH): retried until they succeed, inside the
# workflow task for the first few seconds, then with a durable timer between attempts, so a step
# that keeps failing (the database down) does not hold the task open: the task completes, signals
# and cancels reach the history, and the worker can shut down.
DB_LOCAL_ACTIVITY = dict(DB_ACTIVITY, local_retry_threshold=timedelta(seconds=5))
# Statuses a payout passes through inside one workflow task on its way to the next step; they reach
# the search attributes only if the payout rests in them (LEAN_PATCH).
PASSING_STATUSES = frozenset({PayoutStatus.HELD, PayoutStatus.ROUTED})


class _Cancelled(Exception):
    pass


@workflow.defn(name=PAYOUT_WORKFLOW)
class PayoutWorkflow:
    @workflow.init
    def __init__(self, params: PayoutWorkflowInput) -> None:
        self._p = params
        self._state = PayoutState(payout_id=params.payout_id, status=S.PENDING, step="starting")
        self._state.timestamps["created"] = params.created_at
        self._cancel: CancelRequest | None = None
        self._cancel_result: OpsDecision | None = None
        self._retry: RetryRequest | None = None
        self._notifications: list[BankNotificationSignal] = []
        self._seen_events: set[str] = set()
        self._controls_changed = False
        self._rails = False  # routed by the rails engine (RAILS_PATCH)
        self._route: RailRouteDecision | None = None
        self._batch_outcome: BatchOutcomeSignal | None = None
        self._sla_alerted = False
        self._connector_attempts = 0
        self._sla_everywhere = False  # CUTOFF_PATCH: waits for the cutoff, SLA watch in every wait
        self._unknown_safe = False  # UNKNOWN_PATCH: an unknown outcome is resolved by inquiry
        # TEMPORAL_CANCEL_PATCH: a Temporal cancel request not yet answered, and how many came
        self._temporal_cancel = False
        self._temporal_cancels = 0
        # INQUIRY_CAN_PATCH: unanswered inquiries in this run and over every run, and the backoff a
        # resumed run goes on with
        self._inquiries_this_run = 0
        self._inquiries_total = 0
        self._inquiry_delay: float | None = None
        # SETTLEMENT_CAN_PATCH: polls of the bank (settlement wait, return watch) in this run and
        # over every run; the return window's end and its polls so far
        self._polls_this_run = 0
        self._polls_total = 0
        self._return_deadline = None
        self._return_polls = 0
        # VERIFIED_OPS_PATCH: how the pending retry / cancel was attributed (its audit data)
        self._retry_audit: dict = {}
        self._cancel_audit: dict = {}
        self._signal_refusals = 0
        # LEAN_PATCH: decided by the first patch question of the run; a status not yet written to
        # the search attributes
        self._lean_run: bool | None = None
        self._status_unwritten = False
        if params.resume is not None:
            self._restore(params.resume)

    def _restore(self, r: PayoutResume) -> None:
        """A run continued as new (mid-inquiry, waiting for settlement or watching for a return):
        pick up where the last run was."""
        self._state = r.state.model_copy(deep=True)
        self._rails = r.rails
        self._route = RailRouteDecision.model_validate(r.route) if r.route is not None else None
        self._sla_everywhere, self._sla_alerted = r.sla_everywhere, r.sla_alerted
        self._connector_attempts = r.connector_attempts
        self._unknown_safe = r.unknown_safe
        self._seen_events = set(r.seen_events)
        self._notifications = list(r.notifications)
        self._temporal_cancels = r.temporal_cancels
        self._inquiries_total = r.inquiries
        self._inquiry_delay = r.inquiry_delay_seconds
        self._polls_total = r.settlement_polls
        self._return_deadline = r.return_window_ends_at
        self._return_polls = r.return_polls

    # --- queries, updates, signals -----------------------------------------------------

    @workflow.query(name="state")
    def state(self) -> PayoutState:
        return self._state

    @workflow.update(name="cancel")
    async def cancel(self, request: CancelRequest) -> OpsDecision:
        if self._verifying():
            request, audit = await self._attribute(request, "cancel")
            self._recheck(self._check_cancellable)  # the state may have moved while verifying
            self._cancel_audit = audit
        self._cancel = request
        await workflow.wait_condition(lambda: self._cancel_result is not None)
        assert self._cancel_result is not None
        return self._cancel_result

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        self._check_cancellable()

    @workflow.update(name="retry")
    async def retry(self, request: RetryRequest) -> OpsDecision:
        if self._verifying():
            request, audit = await self._attribute(request, "retry")
            self._recheck(self._check_retryable)
            self._retry_audit = audit
        self._retry = request
        await workflow.wait_condition(lambda: self._state.status != S.DLQ)
        return OpsDecision(accepted=True, status=self._state.status, detail="retry scheduled")

    @retry.validator
    def _validate_retry(self, request: RetryRequest) -> None:
        self._check_retryable()

    @workflow.signal(name="cancel_signal")
    async def cancel_signal(self, raw: RawValue) -> None:
        """For the Temporal UI. A cancel that is not allowed now, or whose input does not parse,
        leaves an audit event and an alert (VERIFIED_OPS_PATCH; before it, only a log line)."""
        request = await self._parse_ops_signal(raw, CancelRequest, "cancel_signal")
        if request is None:
            return
        if not await self._signal_allowed(request, self._check_cancellable, "cancel_signal"):
            return
        if self._verifying():
            request, audit = await self._attribute(request, "cancel")
            if not await self._signal_allowed(request, self._check_cancellable, "cancel_signal"):
                return
            self._cancel_audit = audit
        self._cancel = request

    @workflow.signal(name="retry_signal")
    async def retry_signal(self, raw: RawValue) -> None:
        request = await self._parse_ops_signal(raw, RetryRequest, "retry_signal")
        if request is None:
            return
        if not await self._signal_allowed(request, self._check_retryable, "retry_signal"):
            return
        if self._verifying():
            request, audit = await self._attribute(request, "retry")
            if not await self._signal_allowed(request, self._check_retryable, "retry_signal"):
                return
            self._retry_audit = audit
        self._retry = request

    # --- attribution of ops decisions sent through Temporal (VERIFIED_OPS_PATCH) ---------

    def _verifying(self) -> bool:
        """Memoised by the SDK: run() asks first, so old histories keep the old path."""
        return self._patched(VERIFIED_OPS_PATCH)

    async def _attribute(self, request, decision: str):
        """(the request with its actor as audited, the audit data). A valid grant names the
        verified subject; without one the typed actor is kept as claimed, marked unverified."""
        check = await workflow.execute_local_activity_method(
            OpsActionActivities.verify_ops_grant,
            VerifyGrantInput(token=request.grant, scope="payout", subject_id=self._p.payout_id,
                             decision=decision, now=workflow.now(), claimed_actor=request.actor),
            start_to_close_timeout=timedelta(seconds=10),
        )
        claimed = " ".join(str(request.actor or "").split())[:200] or "unknown"
        if check.ok and check.grant is not None:
            grant = check.grant
            via = "api" if grant.via == "api" else ("ops_action" if grant.via == "ops_action" else "temporal")
            audit = {"verified": True, "via": via, "actor": grant.actor, "roles": grant.roles,
                     "grant_key": grant.key_id, "grant_expires_at": grant.expires_at.isoformat()}
            if normalize_subject(claimed) != normalize_subject(grant.actor):
                audit["claimed_actor"] = claimed
            actor = grant.actor
        else:
            audit = {"verified": False, "via": "temporal", "claimed_actor": claimed,
                     "why_unverified": check.reason or "no grant"}
            actor = f"{claimed} (claimed; unverified, via Temporal)"
        return request.model_copy(update={"actor": actor, "grant": None}), audit

    @staticmethod
    def _recheck(check: Callable[[], None]) -> None:
        """A state check after an await, inside an Update handler: a clear failure, not a task failure."""
        try:
            check()
        except ValueError as exc:
            raise ApplicationError(str(exc), type=ERR_INVALID_STATE, non_retryable=True) from None

    async def _parse_ops_signal(self, raw: RawValue, model, via: str):
        try:
            return workflow.payload_converter().from_payload(raw.payload, model)
        except Exception as exc:  # noqa: BLE001 — any input that does not parse
            if not self._verifying():
                workflow.logger.warning("%s dropped: its input does not parse: %s", via, exc)
                return None
            text = (raw.payload.data or b"")[:500].decode("utf-8", "replace")
            await self._refuse_signal(via, None, "bad_input", f"the input does not parse: {exc}"[:1000], raw=text)
            return None

    async def _signal_allowed(self, request, check: Callable[[], None], via: str) -> bool:
        try:
            check()
            return True
        except ValueError as exc:
            if not self._verifying():
                workflow.logger.warning("%s ignored: %s", via, exc)
                return False
            await self._refuse_signal(via, request.actor, ERR_INVALID_STATE, str(exc))
            return False

    async def _refuse_signal(self, via: str, claimed: str | None, error_type: str, reason: str, *,
                             raw: str | None = None) -> None:
        """The audit event on the payout and an alert (once per refusal)."""
        self._signal_refusals += 1
        workflow.logger.warning("%s to payout %s refused (%s): %s", via, self._p.payout_id, error_type, reason)
        await workflow.execute_activity_method(
            OpsActionActivities.record_ops_refusal,
            RefusalInput(payout_id=self._p.payout_id, event_key=f"signal-refused:{self._signal_refusals}",
                         signal_or_update=via, claimed_actor=claimed, error_type=error_type, reason=reason,
                         raw=raw),
            **DB_ACTIVITY,
        )

    @workflow.signal(name="controls_changed")
    def controls_changed(self, change: ControlsChanged) -> None:
        """A freeze or pause affecting this payout changed: re-check the gate now."""
        self._controls_changed = True

    @workflow.signal(name="batch_outcome")
    def batch_outcome(self, outcome: BatchOutcomeSignal) -> None:
        """The BatchWorkflow's verdict on this payout's entry (a repeat is ignored)."""
        if self._batch_outcome is None:
            self._batch_outcome = outcome

    @workflow.signal(name="bank_notification")
    def bank_notification(self, notification: BankNotificationSignal) -> None:
        if notification.event_id in self._seen_events:
            return  # a duplicate delivery is harmless
        self._seen_events.add(notification.event_id)
        self._notifications.append(notification)

    def _check_cancellable(self) -> None:
        if self._cancel is not None:
            raise ValueError("a cancel is already in progress")
        if self._state.status not in CANCELLABLE_STATUSES:
            raise ValueError(
                f"cannot cancel a payout in status {self._state.status}: "
                "cancel is allowed only before it is submitted to the bank"
            )

    def _check_retryable(self) -> None:
        if self._state.status != S.DLQ:
            raise ValueError(f"only a payout in dlq can be retried; this one is {self._state.status}")
        if self._retry is not None or self._cancel is not None:
            raise ValueError("an ops decision for this payout is already in progress")

    # --- the payout's life -------------------------------------------------------------

    @workflow.run
    async def run(self, params: PayoutWorkflowInput) -> PayoutWorkflowResult:
        temporal_cancel_as_ops_cancel = self._patched(TEMPORAL_CANCEL_PATCH)
        self._verifying()  # decided (and its marker written) here, before any later decision
        if temporal_cancel_as_ops_cancel:
            return await self._run_with_temporal_cancel_as_ops_cancel()
        return await self._run_to_the_end()

    async def _run_to_the_end(self) -> PayoutWorkflowResult:
        try:
            result = await (self._run_resumed() if self._p.resume is not None else self._run())
        except _Cancelled:
            result = self._finish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _run_with_temporal_cancel_as_ops_cancel(self) -> PayoutWorkflowResult:
        """Temporal delivers its cancel to the run coroutine only. The payout's life runs in its
        own task behind a shield, so no activity is abandoned half-way (a submission may still
        reach the bank); each cancel request becomes an ops cancel the life handles itself. The
        workflow then completes normally, with the payout's real outcome as its result."""
        life = asyncio.create_task(self._run_to_the_end())
        while True:
            try:
                return await asyncio.shield(life)
            except asyncio.CancelledError:
                if not life.done():
                    self._on_temporal_cancel()

    def _on_temporal_cancel(self) -> None:
        self._temporal_cancels += 1
        self._temporal_cancel = True
        if self._cancel is None and self._state.status not in TERMINAL_STATUSES:
            self._cancel = CancelRequest(actor=TEMPORAL_ACTOR,
                                         reason="cancel requested through Temporal (workflow cancel)")

    async def _run(self) -> PayoutWorkflowResult:
        p = self._p
        self._step("holding")
        hold = await self._db_step(
            PayoutActivities.place_payout_hold,
            HoldInput(
                payout_id=p.payout_id,
                merchant_id=p.merchant_id,
                amount_minor=p.amount_minor,
                fee_minor=p.fee_minor,
                currency=p.currency,
                expires_at=workflow.now() + timedelta(seconds=p.hold_expiry_seconds),
            ),
        )
        if not hold.placed:
            self._state.failure_code = hold.failure_code
            self._set_status(S.REJECTED)
            return self._finish()
        self._state.hold_status, self._state.hold_amount_minor = "active", p.amount_minor + p.fee_minor
        self._set_status(S.HELD)
        await self._cancel_if_requested()

        self._step("routing")
        if self._patched(RAILS_PATCH):
            self._rails = True
            try:
                route = await self._db_step(
                    RailActivities.route_payout_by_rules, RailRouteInput(payout_id=p.payout_id, at=p.created_at),
                )
            except ActivityError as err:
                if isinstance(err.cause, ApplicationError) and err.cause.type == ERR_NO_ROUTE:
                    await self._reverse(S.FAILED, failure_code="no_route", reason=err.cause.message)
                    return self._finish()
                raise
            self._route = route
            self._state.rail, self._state.connector = route.rail, route.connector
            self._state.settlement_target_at = route.settlement_target_at
            self._state.routing_why = route.why
            self._sla_everywhere = self._patched(CUTOFF_PATCH)
        else:
            decision = await workflow.execute_activity_method(
                PayoutActivities.route_payout,
                RouteInput(payout_id=p.payout_id, method=p.method, currency=p.currency, priority=p.priority),
                **DB_ACTIVITY,
            )
            self._state.rail, self._state.connector = decision.rail, decision.connector
        self._set_status(S.ROUTED)
        await self._cancel_if_requested()
        route = self._route
        if (self._sla_everywhere and route is not None and not route.batch and route.cutoff_at is not None
                and p.priority in CUTOFF_PRIORITIES):
            if not await self._await_cutoff(route.cutoff_at):
                return self._finish()
        self._unknown_safe = self._patched(UNKNOWN_PATCH)
        if not await self._pass_submission_gate():
            return self._finish()

        if self._route is not None and self._route.batch:
            outcome = await self._await_batch()
            if outcome == "ended":
                return self._finish()
            if outcome == "submitted":
                return await self._await_settlement()
        if not await self._submit_until_accepted():
            return self._finish()
        return await self._await_settlement()

    async def _run_resumed(self) -> PayoutWorkflowResult:
        """The rest of a payout's life after a run continued as new while its outcome was unknown:
        go on asking the bank, then follow its answer as the last run would have."""
        r = self._p.resume
        assert r is not None
        if r.stage == "settlement":  # SETTLEMENT_CAN_PATCH: go on waiting for the bank to settle
            return await self._await_settlement()
        if r.stage == "return_watch":  # settled: go on watching for a return until the window closes
            return await self._after_return_watch()
        found = await self._resolve_unknown(r.why, stage=r.stage, code=r.code)
        if r.stage == "dlq":
            await self._end_dlq_after_inquiry(found)
            return self._finish()
        if found is not None:
            self._state.bank_payment_id = found.bank_payment_id
            self._state.last_error = None
            self._set_status(S.SUBMITTED)
            return await self._await_settlement()
        # the bank confirms it has no payment for this reference: sending it cannot pay twice
        if r.stage == "submit" and self._rails:
            await self._fail_over(r.code)
        elif r.stage == "batch":
            self._step("the bank has no payment for it; submitting on its own")
        if not await self._submit_until_accepted():
            return self._finish()
        return await self._await_settlement()

    async def _await_cutoff(self, cutoff_at) -> bool:
        """Hold a standard payout until its rail's cutoff (computed by routing in the rail's time
        zone and holiday calendar). Cancel ends it; a freeze that cancels queued payouts ends it
        when its controls signal arrives. False = ended."""
        self._state.cutoff_at = cutoff_at
        self._step(f"awaiting_cutoff: the {self._state.rail} cutoff at {cutoff_at.isoformat()}")
        while workflow.now() < cutoff_at:
            self._controls_changed = False
            await self._wait_with_sla(lambda: self._cancel is not None or self._controls_changed,
                                      cutoff_at - workflow.now())
            await self._cancel_if_requested()
            if self._controls_changed:
                gate = await self._check_gate()
                if gate.action == "cancel":
                    await self._reverse(S.CANCELLED, failure_code="merchant_frozen",
                                        reason="; ".join(gate.reasons), actor="controls")
                    return False
        return True

    async def _await_batch(self) -> str:
        """Queue for the rail's next batch file and wait for its verdict.

        Returns "submitted" (the bank accepted the entry), "ended" (rejected or cancelled), or
        "single" (the whole file was refused: the payout goes on its own through the connector)."""
        p, route = self._p, self._route
        assert route is not None and route.cutoff_at is not None
        self._rest()
        queued = await workflow.execute_activity_method(
            RailActivities.enqueue_payout_for_batch,
            BatchEnqueueInput(payout_id=p.payout_id, rail=route.rail, connector=route.connector,
                              cutoff_at=route.cutoff_at),
            **DB_ACTIVITY,
        )
        self._state.batch_cutoff_at = queued.cutoff_at
        self._step(f"waiting for the {route.rail} batch of the {queued.cutoff_at.isoformat()} cutoff")
        while True:
            await self._wait_with_sla(lambda: self._batch_outcome is not None or self._cancel is not None, None)
            if self._batch_outcome is not None:
                break
            withdrawn = await workflow.execute_activity_method(
                RailActivities.withdraw_payout_from_batch, BatchWithdrawInput(payout_id=p.payout_id), **DB_ACTIVITY
            )
            if withdrawn.withdrawn:
                await self._do_cancel()
                return "ended"
            self._cancel_result = OpsDecision(
                accepted=False, status=self._state.status,
                detail=f"cannot cancel: batch {withdrawn.batch_id} has already taken this payout to the bank",
            )
            self._cancel = None
        outcome = self._batch_outcome
        self._state.batch_id = outcome.batch_id
        self._state.attempts += 1
        if outcome.outcome == "accepted":
            self._state.bank_payment_id = outcome.bank_payment_id
            await self._record(S.SUBMITTED, "submitted", reason=f"in batch file {outcome.batch_id}",
                               data={"bank_payment_id": outcome.bank_payment_id, "batch_id": outcome.batch_id})
            return "submitted"
        if outcome.outcome == "rejected" and self._unknown_safe and outcome.error in UNKNOWN_OUTCOME_CODES:
            # "the bank has a payment with this reference" is not a refusal: ask the bank
            self._state.last_error = f"{outcome.error}: in batch {outcome.batch_id}"
            found = await self._resolve_unknown(outcome.error or "reference_conflict", stage="batch")
            if found is not None:
                self._state.bank_payment_id = found.bank_payment_id
                self._state.last_error = None
                self._set_status(S.SUBMITTED)
                return "submitted"
            self._step("the bank has no payment for it; submitting on its own")
            return "single"
        if outcome.outcome == "rejected":
            await self._reverse(S.FAILED, failure_code=outcome.error or "rejected_by_bank",
                                reason=f"the bank rejected its entry in batch {outcome.batch_id}: {outcome.error}")
            return "ended"
        self._state.last_error = f"file_rejected: {outcome.error}"
        self._step("the batch file was refused; submitting on its own")
        return "single"

    async def _wait_with_sla(self, condition: Callable[[], bool], timeout: timedelta | None) -> bool:
        """`wait_until` that raises the SLA alert once if the settlement target passes meanwhile."""
        self._rest()
        deadline = workflow.now() + timeout if timeout is not None else None
        while True:
            target = self._state.settlement_target_at
            watching = target is not None and not self._sla_alerted
            if watching and workflow.now() >= target:
                await self._raise_sla_breach()
                continue
            limit = deadline
            if watching:
                limit = target if limit is None else min(limit, target)
            if limit is None:
                await workflow.wait_condition(condition)
                return True
            remaining = limit - workflow.now()
            if remaining > timedelta(0) and await wait_until(condition, remaining):
                return True
            if condition():
                return True
            if deadline is not None and workflow.now() >= deadline:
                return False

    async def _raise_sla_breach(self) -> None:
        self._sla_alerted = True
        self._state.sla_breached = True
        assert self._state.settlement_target_at is not None
        await workflow.execute_activity_method(
            RailActivities.raise_sla_breach_alert,
            SlaBreachInput(payout_id=self._p.payout_id, rail=self._state.rail, connector=self._state.connector,
                           settlement_target_at=self._state.settlement_target_at, status=self._state.status),
            **DB_ACTIVITY,
        )

    async def _fail_over(self, code: str) -> bool:
        """Move to the next candidate after a failover-eligible error. False: none left."""
        p, route = self._p, self._route
        if (route is None or code not in p.failover_codes or not route.fallbacks
                or self._connector_attempts < p.failover_attempts_per_connector):
            return False
        nxt = route.fallbacks.pop(0)
        previous = self._state.connector or ""
        await workflow.execute_activity_method(
            RailActivities.fail_over_payout,
            FailoverInput(payout_id=p.payout_id, from_connector=previous, rail=nxt["rail"],
                          connector=nxt["connector"], reason=self._state.last_error or code,
                          attempt=self._state.attempts),
            **DB_ACTIVITY,
        )
        self._state.rail, self._state.connector = nxt["rail"], nxt["connector"]
        self._state.failovers.append(f"{previous} -> {nxt['connector']} ({code})")
        self._connector_attempts = 0
        self._set_status(S.ROUTED)
        return True

    async def _check_gate(self):
        p = self._p
        return await self._db_step(
            PayoutActivities.check_submission_gate,
            GateInput(payout_id=p.payout_id, merchant_id=p.merchant_id, rail=self._state.rail or "",
                      connector=self._state.connector or ""),
        )

    async def _wait_or_watch_sla(self, condition: Callable[[], bool], timeout: timedelta) -> bool:
        """`wait_until`, watching the settlement target too from CUTOFF_PATCH on."""
        self._rest()
        if self._sla_everywhere:
            return await self._wait_with_sla(condition, timeout)
        return await wait_until(condition, timeout)

    async def _pass_submission_gate(self) -> bool:
        """Wait while the merchant is frozen or the rail/connector paused. False = cancelled."""
        p = self._p
        while True:
            self._controls_changed = False
            gate = await self._check_gate()
            if gate.action == "proceed":
                return True
            if gate.action == "cancel":
                await self._reverse(S.CANCELLED, failure_code="merchant_frozen",
                                    reason="; ".join(gate.reasons), actor="controls")
                return False
            self._step("on hold before submission: " + "; ".join(gate.reasons))
            # Woken by a controls_changed signal (sent when a freeze/pause is lifted), by a
            # cancel, or re-checked every gate poll interval as a safety net.
            await self._wait_or_watch_sla(lambda: self._controls_changed or self._cancel is not None,
                                          timedelta(seconds=p.gate_recheck_seconds))
            await self._cancel_if_requested()

    async def _submit_until_accepted(self) -> bool:
        """Submit with exponential backoff; park in dlq when the budget is spent. False = ended."""
        p = self._p
        attempts_in_budget = 0
        while True:
            await self._cancel_if_requested()
            attempts_in_budget += 1
            self._state.attempts += 1
            self._connector_attempts += 1
            self._state.next_attempt_at = None
            self._set_status(S.SUBMITTING)
            self._step(f"submitting (attempt {self._state.attempts})")
            try:
                submitted = await workflow.execute_activity_method(
                    PayoutActivities.submit_payout_to_connector,
                    SubmitInput(
                        payout_id=p.payout_id,
                        connector=self._state.connector or "",
                        rail=self._state.rail or "",
                        attempt=self._state.attempts,
                    ),
                    **SUBMIT_ACTIVITY,
                )
            except ActivityError as err:
                cause = err.cause
                code = _error_code(cause)
                self._state.last_error = f"{code}: {cause.message if cause else err.message}"
                if isinstance(cause, ApplicationError) and cause.type == ERR_CONNECTOR_PERMANENT:
                    await self._reverse(S.FAILED, failure_code=code, reason=f"the bank refused it: {code}")
                    return False
                if self._unknown_safe:
                    # Not a refusal: the bank may have it. Ask before any retry, failover or release.
                    found = await self._resolve_unknown(code, stage="submit", code=code)
                    if found is not None:
                        self._state.bank_payment_id = found.bank_payment_id
                        self._state.last_error = None
                        self._set_status(S.SUBMITTED)
                        return True
                    # the bank confirms it has no payment for this reference: retrying or failing
                    # over cannot pay twice
                if self._rails and await self._fail_over(code):
                    attempts_in_budget = 0
                    continue
                if attempts_in_budget >= p.retry_max_attempts:
                    decision = await self._park_in_dlq()
                    if decision == "retry":
                        attempts_in_budget = 0
                        continue
                    return False
                delay = min(
                    p.retry_initial_seconds * (p.retry_backoff ** (attempts_in_budget - 1)),
                    p.retry_max_interval_seconds,
                )
                self._state.next_attempt_at = workflow.now() + timedelta(seconds=delay)
                await self._record(S.RETRYING, f"retrying:{self._state.attempts}", reason=self._state.last_error,
                                   data={"attempt": self._state.attempts, "backoff_seconds": delay})
                self._step(f"backing off {delay:g}s after attempt {self._state.attempts}")
                if self._sla_everywhere:
                    await self._wait_with_sla(lambda: False, timedelta(seconds=delay))
                else:
                    await workflow.sleep(timedelta(seconds=delay))
                continue
            self._state.bank_payment_id = submitted.bank_payment_id
            self._state.last_error = None
            await self._follow_accepted_connector(submitted)
            self._set_status(S.SUBMITTED)
            return True

    async def _park_in_dlq(self) -> str:
        """Wait in dlq for ops. Returns "retry", or ends the payout and returns "ended"."""
        p = self._p
        await self._record(S.DLQ, f"dlq:{self._state.attempts}", reason=self._state.last_error)
        self._step("waiting in dlq for an ops retry or cancel")
        decided = await self._wait_or_watch_sla(
            lambda: self._retry is not None or self._cancel is not None,
            timedelta(seconds=p.dlq_expiry_seconds),
        )
        if decided and self._retry is not None:
            retry, self._retry = self._retry, None
            audit, self._retry_audit = self._retry_audit, {}
            await self._record(S.RETRYING, f"ops-retry:{self._state.attempts}", actor=retry.actor,
                               reason=retry.reason or "ops retry", data=audit)
            return "retry"
        # Cancel or expiry: a timed-out attempt may still have reached the bank, so ask it first.
        if self._unknown_safe:  # until it answers: an unanswered inquiry is not a "no"
            found = await self._resolve_unknown("dlq " + ("cancel" if self._cancel is not None else "expiry"),
                                                stage="dlq")
            return await self._end_dlq_after_inquiry(found)
        poll = await workflow.execute_activity_method(
            PayoutActivities.poll_payout_status,
            StatusPollInput(payout_id=p.payout_id, connector=self._state.connector or ""),
            **POLL_ACTIVITY,
        )
        return await self._end_dlq(poll)

    async def _end_dlq_after_inquiry(self, found: InquiryOutcome | None) -> str:
        return await self._end_dlq(StatusPollResult(known=False) if found is None else StatusPollResult(
            known=True, status=found.status, bank_payment_id=found.bank_payment_id))

    async def _end_dlq(self, poll: StatusPollResult) -> str:
        """A dlq cancel or expiry once the bank has answered: follow its payment if it has one,
        else cancel or reverse. Always "ended"."""
        if poll.known and poll.status in ("accepted", "settled", "returned"):
            if self._cancel is not None:
                self._cancel_result = OpsDecision(
                    accepted=False, status=S.SUBMITTED,
                    detail="cannot cancel: the bank had already accepted this payout",
                )
                self._cancel = None
            self._state.bank_payment_id = poll.bank_payment_id
            if self._unknown_safe:  # the inquiry recorded it
                self._set_status(S.SUBMITTED)
            else:
                await self._record(S.SUBMITTED, "submitted", reason="the bank reports it accepted an earlier attempt",
                                   data={"bank_payment_id": poll.bank_payment_id})
            await self._await_settlement()
            return "ended"
        if self._cancel is not None:
            await self._do_cancel()
        else:
            await self._reverse(S.FAILED, failure_code="dlq_expired",
                                reason="no ops decision before the dlq expiry; hold reversed")
        return "ended"

    async def _follow_accepted_connector(self, submitted: SubmitResult) -> None:
        """The acceptance came from another connector than this run routed to (a Reset's new run
        routed elsewhere; the submission returned the acceptance recorded on the payout): from
        now on the payout asks, settles and watches for returns where the bank accepted it."""
        connector = submitted.connector
        if not connector or connector == self._state.connector or not self._patched(RESET_CONNECTOR_PATCH):
            return
        previous = f"{self._state.connector} ({self._state.rail})"
        self._state.connector = connector
        self._state.rail = submitted.rail or self._state.rail
        await workflow.execute_activity_method(
            PayoutTemporalOpsActivities.record_payout_note,
            PayoutNoteInput(
                payout_id=self._p.payout_id, event_key=f"follows-accepted-connector:{connector}", actor="workflow",
                reason=(f"the bank accepted it on {connector} ({self._state.rail}) before this run routed it to "
                        f"{previous}: following {connector} (a Reset or restart replayed the submission)"),
                data={"connector": connector, "rail": self._state.rail, "routed_to": previous,
                      "bank_payment_id": submitted.bank_payment_id},
            ),
            **DB_ACTIVITY,
        )

    def _continue_waiting_as_new(self, stage: str) -> None:
        """SETTLEMENT_CAN_PATCH: after inquiry_continue_as_new_after polls in this run, continue as
        new (when nothing in flight prevents it) and go on waiting in the next run."""
        if (self._polls_this_run >= self._p.inquiry_continue_as_new_after and not self._notifications
                and self._may_continue_as_new(SETTLEMENT_CAN_PATCH)):
            self._continue_as_new(stage=stage, why=f"{self._polls_this_run} polls of the bank", code="",
                                  delay=self._inquiry_delay)

    def _count_poll(self) -> None:
        self._polls_this_run += 1
        self._polls_total += 1

    async def _await_settlement(self) -> PayoutWorkflowResult:
        p = self._p
        self._step("waiting for the bank to settle")
        while True:
            self._continue_waiting_as_new("settlement")
            if self._rails:
                got = await self._wait_with_sla(
                    lambda: bool(self._notifications) or self._temporal_cancel,
                    timedelta(seconds=p.settlement_poll_seconds),
                )
            else:
                got = await wait_until(
                    lambda: bool(self._notifications) or self._temporal_cancel,
                    timedelta(seconds=p.settlement_poll_seconds),
                )
            if self._temporal_cancel and not self._notifications:
                if await self._recall_for_temporal_cancel():
                    return self._finish()
                got = False  # refused (settled, failed, no recall): ask the bank where it is now
            if got:
                note = self._notifications.pop(0)
                kind = note.type
                failure_code, return_code = note.failure_code, note.return_code
            elif self._unknown_safe:  # an inquiry that fails is asked again, never fails the payout
                self._count_poll()
                asked = await self._inquire("settlement poll", record=False)
                if asked.answer != "found" or asked.status == "accepted":
                    continue
                kind = f"payment.{asked.status}"
                failure_code, return_code = asked.failure_code, asked.return_code
            else:
                self._count_poll()
                poll = await workflow.execute_activity_method(
                    PayoutActivities.poll_payout_status,
                    StatusPollInput(payout_id=p.payout_id, connector=self._state.connector or ""),
                    **POLL_ACTIVITY,
                )
                if not poll.known or poll.status == "accepted":
                    continue
                kind = f"payment.{poll.status}"
                failure_code, return_code = poll.failure_code, poll.return_code
            if kind == "payment.settled":
                break
            if kind == "payment.failed":
                await self._reverse(S.FAILED, failure_code=failure_code or "bank_failed",
                                    reason="the bank failed the payment")
                return self._finish()
            if kind == "payment.returned":  # settled and returned before we saw the settlement
                await self._settle()
                await self._return(return_code)
                return self._finish()
        await self._settle()
        self._step("settled; watching for a return")
        if self._patched(RETURN_POLL_PATCH) and p.return_poll_intervals:
            return await self._after_return_watch()
        def is_returned() -> bool:
            return any(n.type == "payment.returned" for n in self._notifications)

        window_ends = workflow.now() + timedelta(seconds=p.return_window_seconds)
        returned = await wait_until(lambda: is_returned() or self._temporal_cancel,
                                    timedelta(seconds=p.return_window_seconds))
        while self._temporal_cancel and not is_returned():
            await self._refuse_temporal_cancel("the payout has settled: a settled payout cannot be cancelled")
            remaining = window_ends - workflow.now()
            returned = remaining > timedelta(0) and await wait_until(
                lambda: is_returned() or self._temporal_cancel, remaining)
        if returned:
            note = next(n for n in self._notifications if n.type == "payment.returned")
            await self._return(note.return_code)
        return self._finish()

    async def _after_return_watch(self) -> PayoutWorkflowResult:
        self._step("settled; watching for a return")
        returned, return_code, how = await self._watch_for_return()
        if returned:
            await self._return(return_code, how=how)
        return self._finish()

    async def _watch_for_return(self) -> tuple[bool, str | None, str]:
        """Until the return window closes: a return webhook, or the bank's status asked after each
        of the return poll intervals (the last repeats) and once more as the window closes. A run
        continued as new (SETTLEMENT_CAN_PATCH) goes on with the window and polls carried."""
        p = self._p
        if self._return_deadline is None:
            self._return_deadline = workflow.now() + timedelta(seconds=p.return_window_seconds)
        deadline = self._return_deadline
        gaps = p.return_poll_intervals

        def notified() -> bool:
            return any(n.type == "payment.returned" for n in self._notifications)

        while workflow.now() < deadline:
            if not notified():
                self._continue_waiting_as_new("return_watch")
            gap = timedelta(seconds=max(gaps[min(self._return_polls, len(gaps) - 1)], 1.0))
            self._return_polls += 1
            polls = self._return_polls
            gap_ends = workflow.now() + min(gap, deadline - workflow.now())
            while await wait_until(lambda: notified() or self._temporal_cancel, gap_ends - workflow.now()):
                if notified():
                    note = next(n for n in self._notifications if n.type == "payment.returned")
                    return True, note.return_code, "webhook"
                await self._refuse_temporal_cancel("the payout has settled: a settled payout cannot be cancelled")
                if gap_ends <= workflow.now():
                    break
            self._count_poll()
            asked = await self._inquire("return watch", record=False)
            if asked.answer == "found" and asked.status == "returned":
                return True, asked.return_code, f"status poll {polls}: no webhook told us"
        return False, None, ""

    async def _inquire(self, why: str, *, record: bool = True) -> InquiryOutcome:
        asked = InquiryInput(payout_id=self._p.payout_id, connector=self._state.connector or "", why=why,
                             record=record)
        if not record and self._lean():  # a poll while waiting (settlement, return watch): local
            return await workflow.execute_local_activity_method(PayoutActivities.inquire_payout, asked,
                                                                **DB_LOCAL_ACTIVITY)
        return await workflow.execute_activity_method(PayoutActivities.inquire_payout, asked, **DB_ACTIVITY)

    async def _resolve_unknown(self, why: str, *, stage: str = "submit", code: str = "") -> InquiryOutcome | None:
        """After an unknown outcome, ask the connector the payout was sent to about its reference,
        with capped exponential backoff, for as long as it takes. The payment found (recorded as
        submitted), or None when the bank confirms it has no payment for the reference.

        From INQUIRY_CAN_PATCH on, a run that has asked inquiry_continue_as_new_after times without
        an answer continues as new (`stage` says where the payout was, `code` why), so the history
        stays bounded however long the bank takes."""
        p = self._p
        delay = max(p.retry_initial_seconds, 1.0) if self._inquiry_delay is None else self._inquiry_delay
        self._inquiry_delay = None
        asked = 0
        while True:
            asked += 1
            self._step(f"outcome unknown ({why}): asking {self._state.connector} about it "
                       f"(inquiry {self._inquiries_total + 1})")
            answer = await self._inquire(self._state.last_error or why)
            if answer.answer == "found":
                return answer
            if answer.answer == "not_found":
                return None
            self._state.last_error = f"inquiry_unknown: {answer.detail}"
            self._inquiries_this_run += 1
            self._inquiries_total += 1
            self._state.next_attempt_at = workflow.now() + timedelta(seconds=delay)
            if self._sla_everywhere:
                await self._wait_with_sla(lambda: False, timedelta(seconds=delay))
            else:
                await workflow.sleep(timedelta(seconds=delay))
            self._state.next_attempt_at = None
            delay = min(delay * p.retry_backoff, max(p.retry_max_interval_seconds, 1.0))
            if self._inquiries_this_run >= p.inquiry_continue_as_new_after and self._may_continue_as_new():
                self._continue_as_new(stage=stage, why=why, code=code, delay=delay)

    def _may_continue_as_new(self, patch: str = INQUIRY_CAN_PATCH) -> bool:
        """Nothing in flight that a new run could not take over (an ops decision waiting for its
        answer, a Temporal cancel), and the patch (asked last: its marker only when it happens)."""
        return (self._cancel is None and self._retry is None and not self._temporal_cancel
                and workflow.all_handlers_finished() and self._patched(patch))

    def _continue_as_new(self, *, stage: str, why: str, code: str, delay: float | None) -> None:
        p = self._p
        runs = (p.resume.runs if p.resume is not None else 0) + 1
        if stage in ("settlement", "return_watch"):
            self._step(f"continuing as new after {self._polls_this_run} polls of the bank (run {runs + 1})")
        else:
            self._step(f"continuing as new after {self._inquiries_this_run} unanswered inquiries (run {runs + 1})")
        resume = PayoutResume(
            stage=stage, why=why, code=code, state=self._state, rails=self._rails,
            route=self._route.model_dump(mode="json") if self._route is not None else None,
            sla_everywhere=self._sla_everywhere, sla_alerted=self._sla_alerted, unknown_safe=self._unknown_safe,
            connector_attempts=self._connector_attempts, inquiry_delay_seconds=delay,
            inquiries=self._inquiries_total, settlement_polls=self._polls_total, runs=runs,
            seen_events=sorted(self._seen_events), notifications=list(self._notifications),
            temporal_cancels=self._temporal_cancels, return_window_ends_at=self._return_deadline,
            return_polls=self._return_polls,
        )
        workflow.continue_as_new(p.model_copy(update={"resume": resume}))

    # --- steps ------------------------------------------------------------------------

    async def _settle(self) -> None:
        await self._db_step(
            PayoutActivities.settle_payout,
            SettleInput(payout_id=self._p.payout_id, connector=self._state.connector or "",
                        bank_payment_id=self._state.bank_payment_id),
        )
        self._state.hold_status = "released"
        self._set_status(S.SETTLED)

    async def _return(self, return_code: str | None, how: str | None = None) -> None:
        reason = f"returned by the bank ({return_code})" + (f", found by {how}" if how and how != "webhook" else "")
        await workflow.execute_activity_method(
            PayoutActivities.reverse_payout,
            ReverseInput(payout_id=self._p.payout_id, to_status=S.RETURNED, return_code=return_code or "R00",
                         connector=self._state.connector, reason=reason),
            **DB_ACTIVITY,
        )
        self._state.failure_code = return_code
        self._set_status(S.RETURNED)

    async def _reverse(self, to_status: str, *, failure_code: str | None, reason: str, actor: str = "workflow",
                       data: dict | None = None) -> None:
        self._rest()
        await workflow.execute_activity_method(
            PayoutActivities.reverse_payout,
            ReverseInput(payout_id=self._p.payout_id, to_status=to_status, failure_code=failure_code,
                         reason=reason, actor=actor, data=data or {}),
            **DB_ACTIVITY,
        )
        if self._state.hold_status == "active":
            self._state.hold_status = "reversed"
        self._state.failure_code = failure_code
        self._set_status(to_status)

    async def _cancel_if_requested(self) -> None:
        if self._cancel is None:
            return
        if self._temporal_cancel and self._state.attempts > 0:
            # a Temporal cancel can arrive after an attempt that may have reached the bank (a
            # timeout, a retry): ask the bank before reversing the hold
            poll = await workflow.execute_activity_method(
                PayoutActivities.poll_payout_status,
                StatusPollInput(payout_id=self._p.payout_id, connector=self._state.connector or ""),
                **POLL_ACTIVITY,
            )
            if poll.known and poll.status in ("accepted", "settled", "returned"):
                self._cancel = None
                self._state.bank_payment_id = poll.bank_payment_id
                await self._record(S.SUBMITTED, "submitted", reason="the bank reports it accepted an earlier attempt",
                                   data={"bank_payment_id": poll.bank_payment_id})
                await self._await_settlement()  # asks the bank to recall it (the cancel is pending)
                raise _Cancelled()  # ended: the result is the state's
        await self._do_cancel()
        raise _Cancelled()

    async def _recall_for_temporal_cancel(self) -> bool:
        """A submitted payout whose workflow was cancelled through Temporal: the bank is asked
        first. True = recalled and cancelled (hold reversed); False = it stays in flight."""
        recall = await workflow.execute_activity_method(
            PayoutTemporalOpsActivities.recall_payout_at_bank,
            RecallInput(payout_id=self._p.payout_id, connector=self._state.connector or "",
                        bank_payment_id=self._state.bank_payment_id),
            **POLL_ACTIVITY,
        )
        if not recall.recalled:
            await self._refuse_temporal_cancel(f"the bank did not recall the payment: {recall.detail}")
            return False
        if self._cancel is None:
            self._cancel = CancelRequest(actor=TEMPORAL_ACTOR, reason="cancel requested through Temporal (workflow cancel)")
        self._temporal_cancel = False
        await self._do_cancel()
        return True

    async def _refuse_temporal_cancel(self, detail: str) -> None:
        """The payout stays as it is; the refused cancel is an audit event."""
        self._temporal_cancel = False
        if self._cancel is not None and self._cancel.actor == TEMPORAL_ACTOR:
            self._cancel = None
        await workflow.execute_activity_method(
            PayoutTemporalOpsActivities.record_payout_note,
            PayoutNoteInput(payout_id=self._p.payout_id, event_key=f"temporal-cancel-refused:{self._temporal_cancels}",
                            actor=TEMPORAL_ACTOR, reason=f"cancel refused: {detail}",
                            data={"refused": "cancel", "via": "temporal"}),
            **DB_ACTIVITY,
        )

    async def _do_cancel(self) -> None:
        assert self._cancel is not None
        request = self._cancel
        await self._reverse(S.CANCELLED, failure_code="cancelled", reason=request.reason, actor=request.actor,
                            data=self._cancel_audit)
        self._cancel_result = OpsDecision(accepted=True, status=S.CANCELLED, detail="cancelled; hold reversed")

    async def _record(self, status: str, event_key: str, *, reason: str | None = None, actor: str = "workflow",
                      data: dict | None = None) -> None:
        self._rest()
        await workflow.execute_activity_method(
            PayoutActivities.record_payout_transition,
            TransitionInput(payout_id=self._p.payout_id, to_status=status, event_key=event_key, actor=actor,
                            reason=reason, data=data or {}),
            **DB_ACTIVITY,
        )
        self._set_status(status)

    def _set_status(self, status: str) -> None:
        self._state.status = status
        self._state.timestamps[status] = workflow.now()
        if status in PASSING_STATUSES and self._lean():
            self._status_unwritten = True  # written if the payout rests in it (_rest)
            return
        self._write_status()

    def _write_status(self) -> None:
        self._status_unwritten = False
        workflow.upsert_search_attributes(
            [SA["PayoutStatus"].value_set(self._state.status)]
            + ([SA["Rail"].value_set(self._state.rail)] if self._state.rail else [])
        )

    def _rest(self) -> None:
        """The payout is about to wait (a timer, a signal, an activity task): the search attributes
        show the status it waits in (LEAN_PATCH)."""
        if self._status_unwritten:
            self._write_status()

    # --- versioning and the database steps (LEAN_PATCH) ---------------------------------

    def _lean(self) -> bool:
        """Asked once per run, by whichever decision comes first; old histories answer False."""
        if self._lean_run is None:
            self._lean_run = workflow.patched(LEAN_PATCH)
        return self._lean_run

    def _patched(self, patch: str) -> bool:
        """Every patch before LEAN_PATCH is on in a lean run, without a marker of its own."""
        return True if self._lean() else workflow.patched(patch)

    async def _db_step(self, activity, arg):
        """A short, idempotent database step: a local activity in a lean run, else an activity."""
        if self._lean():
            return await workflow.execute_local_activity_method(activity, arg, **DB_LOCAL_ACTIVITY)
        return await workflow.execute_activity_method(activity, arg, **DB_ACTIVITY)

    def _step(self, step: str) -> None:
        self._state.step = step

    def _finish(self) -> PayoutWorkflowResult:
        self._step("done")
        self._rest()
        if self._cancel is not None and self._cancel_result is None:
            self._cancel_result = OpsDecision(
                accepted=False, status=self._state.status, detail=f"the payout ended as {self._state.status}"
            )
        return PayoutWorkflowResult(
            payout_id=self._p.payout_id, status=self._state.status, failure_code=self._state.failure_code
        )


def _error_code(cause: BaseException | None) -> str:
    if isinstance(cause, ApplicationError) and cause.details:
        return str(cause.details[0])
    if cause is not None and "timeout" in type(cause).__name__.lower():
        return "timeout"
    return "connector_error"
