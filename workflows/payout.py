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

with workflow.unsafe.imports_passed_through():
    from activities.payouts import PayoutActivities
    from activities.rails import ERR_NO_ROUTE, RailActivities
    from core.names import search_attribute_keys
    from core.payout_models import (
        CANCELLABLE_STATUSES,
        ERR_CONNECTOR_PERMANENT,
        BankNotificationSignal,
        CancelRequest,
        ControlsChanged,
        GateInput,
        HoldInput,
        OpsDecision,
        PayoutState,
        PayoutStatus,
        PayoutWorkflowInput,
        PayoutWorkflowResult,
        RetryRequest,
        ReverseInput,
        RouteInput,
        SettleInput,
        StatusPollInput,
        SubmitInput,
        TransitionInput,
    )
    from core.rail_models import (
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
# watch their settlement target. Old histories replay the old path (tests/test_replay.py).
RAILS_PATCH = "rails-routing-v1"
# From this patch on a `standard` payout on a rail with a cutoff (ACH, SEPA, Wire) waits with a
# durable timer for the cutoff its routing computed, then submits on its own; and the SLA watch
# runs through every wait (the submission gate, backoff, the cutoff, dlq), not only settlement.
CUTOFF_PATCH = "standard-cutoff-v1"
# Priorities that wait for the rail's cutoff when they are not going out in a batch file.
CUTOFF_PRIORITIES = frozenset({"standard", "batch"})

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


class _Cancelled(Exception):
    pass


async def wait_until(condition: Callable[[], bool], timeout: timedelta) -> bool:
    """True when `condition` became true, False when the (durable) timer ran out first."""
    try:
        await workflow.wait_condition(condition, timeout=timeout)
        return True
    except asyncio.TimeoutError:
        return False


@workflow.defn(name="PayoutWorkflow")
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

    # --- queries, updates, signals -----------------------------------------------------

    @workflow.query(name="state")
    def state(self) -> PayoutState:
        return self._state

    @workflow.update(name="cancel")
    async def cancel(self, request: CancelRequest) -> OpsDecision:
        self._cancel = request
        await workflow.wait_condition(lambda: self._cancel_result is not None)
        assert self._cancel_result is not None
        return self._cancel_result

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        self._check_cancellable()

    @workflow.update(name="retry")
    async def retry(self, request: RetryRequest) -> OpsDecision:
        self._retry = request
        await workflow.wait_condition(lambda: self._state.status != S.DLQ)
        return OpsDecision(accepted=True, status=self._state.status, detail="retry scheduled")

    @retry.validator
    def _validate_retry(self, request: RetryRequest) -> None:
        self._check_retryable()

    @workflow.signal(name="cancel_signal")
    def cancel_signal(self, request: CancelRequest) -> None:
        """For the Temporal UI: a cancel that is not allowed now is ignored (and logged)."""
        try:
            self._check_cancellable()
        except ValueError as exc:
            workflow.logger.warning("cancel signal ignored: %s", exc)
            return
        self._cancel = request

    @workflow.signal(name="retry_signal")
    def retry_signal(self, request: RetryRequest) -> None:
        try:
            self._check_retryable()
        except ValueError as exc:
            workflow.logger.warning("retry signal ignored: %s", exc)
            return
        self._retry = request

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
        try:
            result = await self._run()
        except _Cancelled:
            result = self._finish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _run(self) -> PayoutWorkflowResult:
        p = self._p
        self._step("holding")
        hold = await workflow.execute_activity_method(
            PayoutActivities.place_payout_hold,
            HoldInput(
                payout_id=p.payout_id,
                merchant_id=p.merchant_id,
                amount_minor=p.amount_minor,
                fee_minor=p.fee_minor,
                currency=p.currency,
                expires_at=workflow.now() + timedelta(seconds=p.hold_expiry_seconds),
            ),
            **DB_ACTIVITY,
        )
        if not hold.placed:
            self._state.failure_code = hold.failure_code
            self._set_status(S.REJECTED)
            return self._finish()
        self._state.hold_status, self._state.hold_amount_minor = "active", p.amount_minor + p.fee_minor
        self._set_status(S.HELD)
        await self._cancel_if_requested()

        self._step("routing")
        if workflow.patched(RAILS_PATCH):
            self._rails = True
            try:
                route = await workflow.execute_activity_method(
                    RailActivities.route_payout_by_rules, RailRouteInput(payout_id=p.payout_id, at=p.created_at),
                    **DB_ACTIVITY,
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
            self._sla_everywhere = workflow.patched(CUTOFF_PATCH)
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
        if outcome.outcome == "rejected":
            await self._reverse(S.FAILED, failure_code=outcome.error or "rejected_by_bank",
                                reason=f"the bank rejected its entry in batch {outcome.batch_id}: {outcome.error}")
            return "ended"
        self._state.last_error = f"file_rejected: {outcome.error}"
        self._step("the batch file was refused; submitting on its own")
        return "single"

    async def _wait_with_sla(self, condition: Callable[[], bool], timeout: timedelta | None) -> bool:
        """`wait_until` that raises the SLA alert once if the settlement target passes meanwhile."""
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
        return await workflow.execute_activity_method(
            PayoutActivities.check_submission_gate,
            GateInput(payout_id=p.payout_id, merchant_id=p.merchant_id, rail=self._state.rail or "",
                      connector=self._state.connector or ""),
            **DB_ACTIVITY,
        )

    async def _wait_or_watch_sla(self, condition: Callable[[], bool], timeout: timedelta) -> bool:
        """`wait_until`, watching the settlement target too from CUTOFF_PATCH on."""
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
            await self._record(S.RETRYING, f"ops-retry:{self._state.attempts}", actor=retry.actor,
                               reason=retry.reason or "ops retry")
            return "retry"
        # Cancel or expiry: a timed-out attempt may still have reached the bank, so ask it first.
        poll = await workflow.execute_activity_method(
            PayoutActivities.poll_payout_status,
            StatusPollInput(payout_id=p.payout_id, connector=self._state.connector or ""),
            **POLL_ACTIVITY,
        )
        if poll.known and poll.status in ("accepted", "settled", "returned"):
            if self._cancel is not None:
                self._cancel_result = OpsDecision(
                    accepted=False, status=S.SUBMITTED,
                    detail="cannot cancel: the bank had already accepted this payout",
                )
                self._cancel = None
            self._state.bank_payment_id = poll.bank_payment_id
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

    async def _await_settlement(self) -> PayoutWorkflowResult:
        p = self._p
        self._step("waiting for the bank to settle")
        while True:
            if self._rails:
                got = await self._wait_with_sla(
                    lambda: bool(self._notifications), timedelta(seconds=p.settlement_poll_seconds)
                )
            else:
                got = await wait_until(
                    lambda: bool(self._notifications), timedelta(seconds=p.settlement_poll_seconds)
                )
            if got:
                note = self._notifications.pop(0)
                kind = note.type
                failure_code, return_code = note.failure_code, note.return_code
            else:
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
        returned = await wait_until(
            lambda: any(n.type == "payment.returned" for n in self._notifications),
            timedelta(seconds=p.return_window_seconds),
        )
        if returned:
            note = next(n for n in self._notifications if n.type == "payment.returned")
            await self._return(note.return_code)
        return self._finish()

    # --- steps ------------------------------------------------------------------------

    async def _settle(self) -> None:
        await workflow.execute_activity_method(
            PayoutActivities.settle_payout,
            SettleInput(payout_id=self._p.payout_id, connector=self._state.connector or "",
                        bank_payment_id=self._state.bank_payment_id),
            **DB_ACTIVITY,
        )
        self._state.hold_status = "released"
        self._set_status(S.SETTLED)

    async def _return(self, return_code: str | None) -> None:
        await workflow.execute_activity_method(
            PayoutActivities.reverse_payout,
            ReverseInput(payout_id=self._p.payout_id, to_status=S.RETURNED, return_code=return_code or "R00",
                         connector=self._state.connector, reason=f"returned by the bank ({return_code})"),
            **DB_ACTIVITY,
        )
        self._state.failure_code = return_code
        self._set_status(S.RETURNED)

    async def _reverse(self, to_status: str, *, failure_code: str | None, reason: str, actor: str = "workflow") -> None:
        await workflow.execute_activity_method(
            PayoutActivities.reverse_payout,
            ReverseInput(payout_id=self._p.payout_id, to_status=to_status, failure_code=failure_code,
                         reason=reason, actor=actor),
            **DB_ACTIVITY,
        )
        if self._state.hold_status == "active":
            self._state.hold_status = "reversed"
        self._state.failure_code = failure_code
        self._set_status(to_status)

    async def _cancel_if_requested(self) -> None:
        if self._cancel is not None:
            await self._do_cancel()
            raise _Cancelled()

    async def _do_cancel(self) -> None:
        assert self._cancel is not None
        request = self._cancel
        await self._reverse(S.CANCELLED, failure_code="cancelled", reason=request.reason, actor=request.actor)
        self._cancel_result = OpsDecision(accepted=True, status=S.CANCELLED, detail="cancelled; hold reversed")

    async def _record(self, status: str, event_key: str, *, reason: str | None = None, actor: str = "workflow",
                      data: dict | None = None) -> None:
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
        workflow.upsert_search_attributes(
            [SA["PayoutStatus"].value_set(status)]
            + ([SA["Rail"].value_set(self._state.rail)] if self._state.rail else [])
        )

    def _step(self, step: str) -> None:
        self._state.step = step

    def _finish(self) -> PayoutWorkflowResult:
        self._step("done")
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
