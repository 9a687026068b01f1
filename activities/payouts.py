"""Side effects of the PayoutWorkflow: ledger postings, status transitions, bank connector calls.

Every activity is idempotent: ledger postings carry a reference per payout, transitions an
event key, and the connector receives the payout id as its idempotency reference, so a retried
activity (or a worker killed mid-call) can never hold, pay or settle twice.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from connectors.base import ConnectorError, PermanentConnectorError, SubmitRequest
from connectors.registry import ConnectorRegistry
from core.ledger import service as ledger
from core.platform import metrics
from core.alerts.service import publish_alerts
from core.platform.crypto import FieldCipher
from core.platform.settings import Settings
from core.payouts.models import (
    ERR_CONNECTOR_PERMANENT,
    ERR_CONNECTOR_TRANSIENT,
    GateDecision,
    GateInput,
    HoldInput,
    HoldResult,
    InquiryInput,
    InquiryOutcome,
    PayoutStatus,
    ReverseInput,
    RouteDecision,
    RouteInput,
    SettleInput,
    StatusPollInput,
    StatusPollResult,
    SubmitInput,
    SubmitResult,
    TransitionInput,
    TransitionResult,
)
from core.payouts.store import (
    WORKFLOW_STARTED,
    gate_controls,
    get_payout_row,
    lock_payout_status,
    lock_submission_state,
    publish_payout_update,
    transition,
)
from core.payouts.routing import explain
from core.payouts.fee_difference import post_rail_fee_difference, record_unpaid_fee_difference
from core.payouts.service import sweep_unstarted_payouts
from core.rails.store import record_outcome

log = logging.getLogger("payops.activities.payouts")
# the bank has accepted the payment (it may since have settled or been returned): never submit again
BANK_ACCEPTED_STATUSES = frozenset({PayoutStatus.SUBMITTED, PayoutStatus.SETTLED, PayoutStatus.RETURNED})
# closed without a payment: the hold is reversed; nothing may be sent or moved any more
CLOSED_UNPAID_STATUSES = frozenset({PayoutStatus.CANCELLED, PayoutStatus.FAILED, PayoutStatus.REJECTED})

class SweepInput(BaseModel):
    older_than_seconds: float = 30.0


def _result(row: dict, applied: bool) -> TransitionResult:
    return TransitionResult(payout_id=row["id"], status=row["status"], version=row["version"], applied=applied)


class PayoutActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis | None,
        connectors: ConnectorRegistry,
        cipher: FieldCipher,
        settings: Settings | None = None,
    ) -> None:
        self._settings = settings
        self._sessionmaker = sessionmaker
        self._redis = redis
        self._connectors = connectors
        self._cipher = cipher

    async def _transition(self, **kwargs) -> TransitionResult:
        async with self._sessionmaker() as session, session.begin():
            row, applied = await transition(session, **kwargs)
        if applied:
            await publish_payout_update(self._redis, row)
        return _result(row, applied)

    @activity.defn(name="record_payout_transition")
    async def record_payout_transition(self, params: TransitionInput) -> TransitionResult:
        return await self._transition(
            payout_id=params.payout_id,
            to_status=params.to_status,
            event_key=params.event_key,
            actor=params.actor,
            reason=params.reason,
            failure_code=params.failure_code,
            failure_message=params.failure_message,
            data=params.data,
        )

    @activity.defn(name="place_payout_hold")
    async def place_payout_hold(self, params: HoldInput) -> HoldResult:
        """Hold amount + fee on the merchant's balance, or reject the payout with no hold."""
        try:
            # the payout's own rows first, the ledger last: the merchant's balance rows are locked
            # from the hold's last statement to the commit only (see ledger.post_journal)
            async with self._sessionmaker() as session, session.begin():
                row, applied = await transition(
                    session, payout_id=params.payout_id, to_status=PayoutStatus.HELD, event_key="held",
                    data={"held_minor": params.amount_minor + params.fee_minor},
                    extra_columns=WORKFLOW_STARTED,
                )
                await ledger.place_hold(
                    session,
                    payout_id=params.payout_id,
                    merchant_id=params.merchant_id,
                    amount_minor=params.amount_minor,
                    fee_minor=params.fee_minor,
                    currency=params.currency,
                    expires_at=params.expires_at,
                )
        except ledger.InsufficientFundsError as exc:
            result = await self._transition(
                payout_id=params.payout_id,
                to_status=PayoutStatus.REJECTED,
                event_key="rejected",
                reason="insufficient funds",
                failure_code="insufficient_funds",
                failure_message=str(exc),
                extra_columns=WORKFLOW_STARTED,
            )
            return HoldResult(placed=False, status=result.status, failure_code="insufficient_funds", detail=str(exc))
        if applied:
            await publish_payout_update(self._redis, row)
        return HoldResult(placed=True, status=PayoutStatus.HELD)

    @activity.defn(name="route_payout")
    async def route_payout(self, params: RouteInput) -> RouteDecision:
        decision = explain(params.method, params.currency, params.priority)
        await self._transition(
            payout_id=params.payout_id,
            to_status=PayoutStatus.ROUTED,
            event_key="routed",
            reason=decision["why"],
            data={"rail": decision["rail"], "connector": decision["connector"]},
            extra_columns={"rail": decision["rail"], "connector": decision["connector"], "routing": decision},
        )
        return RouteDecision(rail=decision["rail"], connector=decision["connector"], explanation=decision)

    @activity.defn(name="check_submission_gate")
    async def check_submission_gate(self, params: GateInput) -> GateDecision:
        """Frozen merchants and paused rails/connectors hold payouts before submission."""
        targets = [
            ("merchant_freeze", params.merchant_id),
            ("rail_pause", params.rail),
            ("connector_pause", params.connector),
        ]
        async with self._sessionmaker() as session:
            rows = await gate_controls(session, targets)
        if not rows:
            return GateDecision(action="proceed")
        reasons = [f"{r['kind'].replace('_', ' ')} on {r['target']}" + (f": {r['reason']}" if r["reason"] else "")
                   for r in rows]
        cancel = any(r["kind"] == "merchant_freeze" and (r["params"] or {}).get("cancel_queued") for r in rows)
        return GateDecision(action="cancel" if cancel else "wait", reasons=reasons)

    @activity.defn(name="submit_payout_to_connector")
    async def submit_payout_to_connector(self, params: SubmitInput) -> SubmitResult:
        """Send the payout to the bank, idempotent on the payout id.

        Never a second time once the bank accepted it: a Temporal Reset (or a REPAIR_PAYOUT restart)
        replays the submission, and the row already names the bank's payment. The recorded
        acceptance is returned instead of asking the bank again (issue 15, docs/operations.md §6),
        with the connector and rail it was accepted on: the new run may have routed elsewhere,
        and the workflow follows the bank that has the payment."""
        connector = self._connectors.get(params.connector)
        async with self._sessionmaker() as session, session.begin():
            accepted = await lock_submission_state(session, params.payout_id)
            if accepted is not None and accepted.bank_payment_id and accepted.status in BANK_ACCEPTED_STATUSES:
                log.warning("payout %s: submission %d not sent: the bank accepted it already (%s at %s, %s); "
                            "a reset or restart replayed it", params.payout_id, params.attempt,
                            accepted.bank_payment_id, accepted.connector, accepted.status)
                return SubmitResult(bank_payment_id=accepted.bank_payment_id, bank_status="accepted",
                                    connector=accepted.connector or params.connector,
                                    rail=accepted.rail or params.rail, replayed=True)
            if accepted is not None and accepted.status in CLOSED_UNPAID_STATUSES:
                # a Reset to before a cancel/failure: its hold is gone, sending it would pay unfunded
                raise ApplicationError(
                    f"payout_closed: the payout is {accepted.status}; not sent to the bank "
                    "(a Reset or restart replayed the submission)", "payout_closed",
                    type=ERR_CONNECTOR_PERMANENT, non_retryable=True)
            row, applied = await transition(
                session, payout_id=params.payout_id, to_status=PayoutStatus.SUBMITTING,
                event_key=f"submitting:{params.attempt}", data={"attempt": params.attempt},
                extra_columns={"attempts": params.attempt},
            )
        if applied:
            await publish_payout_update(self._redis, row)
        request = SubmitRequest(
            reference=row["id"],
            amount_minor=row["amount_minor"],
            currency=row["currency"],
            rail=params.rail,
            beneficiary=self._cipher.decrypt_json(row["beneficiary_encrypted"]),
            description=row["description"],
        )
        started = time.perf_counter()
        try:
            submitted = await connector.submit(request)
        except ConnectorError as exc:
            outcome = "permanent_error" if not exc.retryable else "transient_error"
            metrics.connector_requests_total.labels(params.connector, outcome).inc()
            metrics.observe_connector_call(params.connector, params.rail, outcome, error_code=exc.code,
                                           seconds=time.perf_counter() - started)
            await self._record_connector_outcome(params.connector, error=exc.retryable)
            # The message must not carry beneficiary details: connectors report codes only. The code
            # travels in the error's details (the workflow prefixes it once: "code: message");
            # str(exc) already starts with it, so it is not repeated here.
            message = exc.message or exc.code
            # Only a refusal is permanent: an unknown outcome (5xx, timeout, a reference conflict)
            # may be a payment the bank has, which the workflow resolves by inquiry.
            if exc.outcome == "unknown":
                raise ApplicationError(message, exc.code, type=ERR_CONNECTOR_TRANSIENT) from None
            raise ApplicationError(message, exc.code, type=ERR_CONNECTOR_PERMANENT, non_retryable=True) from None
        finally:
            metrics.connector_latency_seconds.labels(params.connector).observe(time.perf_counter() - started)
        metrics.connector_requests_total.labels(params.connector, "accepted").inc()
        metrics.observe_connector_call(params.connector, params.rail, "accepted", seconds=time.perf_counter() - started)
        await self._record_connector_outcome(params.connector, error=False)
        await self._transition(
            payout_id=params.payout_id,
            to_status=PayoutStatus.SUBMITTED,
            event_key="submitted",
            data={"bank_payment_id": submitted.payment_id, "attempt": params.attempt},
            extra_columns={"bank_payment_id": submitted.payment_id, "submitted_at": datetime.now(timezone.utc)},
        )
        return SubmitResult(bank_payment_id=submitted.payment_id, bank_status=submitted.status,
                            connector=params.connector, rail=params.rail)

    async def _record_connector_outcome(self, connector: str, *, error: bool) -> None:
        """Feed the connector's circuit breaker (recent error rate); never fails the submission."""
        if self._settings is None:
            return

        s = self._settings
        try:
            async with self._sessionmaker() as session, session.begin():
                await record_outcome(
                    session, connector, error, window_seconds=s.connector_error_window_seconds,
                    min_requests=s.connector_error_min_requests, error_rate_to_open=s.connector_error_rate_to_open,
                    now=datetime.now(timezone.utc),
                )
        except Exception as exc:  # noqa: BLE001 — health bookkeeping must not fail a payment
            log.warning("could not record the outcome of %s: %s", connector, exc)

    @activity.defn(name="poll_payout_status")
    async def poll_payout_status(self, params: StatusPollInput) -> StatusPollResult:
        connector = self._connectors.get(params.connector)
        try:
            status = await connector.poll_status(params.payout_id)
        except PermanentConnectorError as exc:
            if exc.code == "payment_not_found":
                return StatusPollResult(known=False)
            metrics.connector_errors_total.labels(params.connector, "unknown", metrics.error_type_label(exc.code)).inc()
            raise ApplicationError(str(exc), exc.code, type=ERR_CONNECTOR_PERMANENT, non_retryable=True) from None
        except ConnectorError as exc:
            metrics.connector_errors_total.labels(params.connector, "unknown", metrics.error_type_label(exc.code)).inc()
            raise ApplicationError(str(exc), exc.code, type=ERR_CONNECTOR_TRANSIENT) from None
        return StatusPollResult(
            known=True,
            status=status.status,
            bank_payment_id=status.payment_id,
            failure_code=status.failure_code,
            return_code=status.return_code,
        )

    @activity.defn(name="inquire_payout")
    async def inquire_payout(self, params: InquiryInput) -> InquiryOutcome:
        """Ask the bank whether it has a payment for this payout's reference. Never fails for the
        bank's errors (an inquiry that fails answers `unknown`); a payment found (and not failed)
        is recorded as submitted (idempotent), with the bank's payment id."""
        connector = self._connectors.get(params.connector)
        answer = await connector.inquire(params.payout_id)
        metrics.connector_requests_total.labels(params.connector, f"inquiry_{answer.answer}").inc()
        if answer.answer == "found" and params.record and answer.status != "failed":
            await self._transition(
                payout_id=params.payout_id, to_status=PayoutStatus.SUBMITTED, event_key="submitted",
                reason=f"the bank has it ({answer.status}) after an unknown outcome: {params.why}",
                data={"bank_payment_id": answer.payment_id, "inquiry": answer.status},
                extra_columns={"bank_payment_id": answer.payment_id, "submitted_at": datetime.now(timezone.utc)},
            )
        return InquiryOutcome(answer=answer.answer, status=answer.status, bank_payment_id=answer.payment_id,
                              failure_code=answer.failure_code, return_code=answer.return_code,
                              detail=answer.detail)

    @activity.defn(name="settle_payout")
    async def settle_payout(self, params: SettleInput) -> TransitionResult:
        """Release the hold into the final entries: paid to the bank's clearing, fee to revenue."""
        await self._charge_used_rail_fee(params.payout_id)  # first: the settled event shows it
        # the payout's own rows first, the ledger last (its clearing and revenue balance rows are
        # shared by every settlement: locked from the posting's last statement to the commit only)
        async with self._sessionmaker() as session, session.begin():
            row, applied = await transition(
                session, payout_id=params.payout_id, to_status=PayoutStatus.SETTLED, event_key="settled",
                data={"bank_payment_id": params.bank_payment_id},
                extra_columns={"settled_at": datetime.now(timezone.utc)},
            )
            await ledger.settle_hold(session, payout_id=params.payout_id, connector=params.connector)
        if applied:
            await publish_payout_update(self._redis, row)
            metrics.payouts_processed_total.labels(PayoutStatus.SETTLED).inc()
            if row["submitted_at"] is not None:
                settling = (row["settled_at"] - row["submitted_at"]).total_seconds()
                metrics.payout_settlement_duration_seconds.observe(settling)
                metrics.payout_settlement_duration_hours.labels(row["rail"] or "unknown").observe(settling / 3600)
            metrics.payout_processing_duration_seconds.observe(
                (row["settled_at"] - row["created_at"]).total_seconds()
            )
        return _result(row, applied)

    async def _charge_used_rail_fee(self, payout_id: str) -> None:
        """The fee follows the rail actually used (routing's fallback, a failover): the difference
        to the fee held is posted once, explained (core/rails/fees.py), before the settlement."""
        try:
            async with self._sessionmaker() as session, session.begin():
                posted = await post_rail_fee_difference(session, payout_id)
        except ledger.InsufficientFundsError as exc:
            log.warning("payout %s: the used rail's higher fee is not charged: %s", payout_id, exc)
            explained = getattr(exc, "fee_difference", None) or {}
            async with self._sessionmaker() as session, session.begin():
                alert = await record_unpaid_fee_difference(session, payout_id, explained, str(exc))
            if alert["opened"]:
                await publish_alerts(self._redis, [alert])
            return
        if posted:
            log.info("payout %s: fee follows the rail used: %s", payout_id, posted)

    @activity.defn(name="reverse_payout")
    async def reverse_payout(self, params: ReverseInput) -> TransitionResult:
        """Give the merchant its money back: reverse the hold, or post a bank return. A payout
        already closed unpaid (cancelled, failed, rejected: a Reset replayed its end) keeps its
        status and its audit trail; its hold is already reversed."""
        async with self._sessionmaker() as session, session.begin():
            current = await lock_payout_status(session, params.payout_id)
            if current in CLOSED_UNPAID_STATUSES and current != params.to_status:
                row = await get_payout_row(session, params.payout_id)
                log.warning("payout %s is already %s: not moved to %s (%s)", params.payout_id, current,
                            params.to_status, params.reason)
                return _result(row, False)
            row, applied = await transition(
                session,
                payout_id=params.payout_id,
                to_status=params.to_status,
                event_key=params.to_status,
                actor=params.actor,
                reason=params.reason,
                failure_code=params.failure_code or params.return_code,
                failure_message=params.reason,
                data=params.data or None,
            )
            # the ledger last: the balance rows are locked from its last statement to the commit
            if params.to_status == PayoutStatus.RETURNED:
                await ledger.post_return(
                    session, payout_id=params.payout_id, connector=params.connector or "",
                    return_code=params.return_code or "",
                )
            elif await ledger.get_hold(session, params.payout_id) is not None:
                await ledger.reverse_hold(session, payout_id=params.payout_id, reason=params.reason)
        if applied:
            await publish_payout_update(self._redis, row)
            metrics.payouts_processed_total.labels(params.to_status).inc()
        return _result(row, applied)

    @activity.defn(name="sweep_unstarted_payouts")
    async def sweep_unstarted_payouts(self, params: SweepInput) -> int:
        assert self._settings is not None, "the sweeper needs settings (task queue, retry policy)"
        return await sweep_unstarted_payouts(
            self._sessionmaker, activity.client(), self._settings, older_than_seconds=params.older_than_seconds
        )
