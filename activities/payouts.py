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
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from connectors.base import ConnectorError, PermanentConnectorError, SubmitRequest
from connectors.registry import ConnectorRegistry
from core import ledger, metrics
from core.crypto import FieldCipher
from core.settings import Settings
from core.payout_models import (
    ERR_CONNECTOR_PERMANENT,
    ERR_CONNECTOR_TRANSIENT,
    GateDecision,
    GateInput,
    HoldInput,
    HoldResult,
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
from core.payout_store import publish_payout_update, transition
from core.routing import explain
from core.tables import controls, payouts

log = logging.getLogger("payops.activities.payouts")

# The workflow's first activity records that the workflow exists, so the API need not (the
# sweeper starts the workflows of payouts that never got this far).
WORKFLOW_STARTED = {"workflow_started_at": func.coalesce(payouts.c.workflow_started_at, func.now())}


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
            rows = (await session.execute(
                select(controls.c.kind, controls.c.target, controls.c.params, controls.c.reason).where(
                    controls.c.active,
                    or_(*[and_(controls.c.kind == k, controls.c.target == t) for k, t in targets]),
                )
            )).mappings().all()
        if not rows:
            return GateDecision(action="proceed")
        reasons = [f"{r['kind'].replace('_', ' ')} on {r['target']}" + (f": {r['reason']}" if r["reason"] else "")
                   for r in rows]
        cancel = any(r["kind"] == "merchant_freeze" and (r["params"] or {}).get("cancel_queued") for r in rows)
        return GateDecision(action="cancel" if cancel else "wait", reasons=reasons)

    @activity.defn(name="submit_payout_to_connector")
    async def submit_payout_to_connector(self, params: SubmitInput) -> SubmitResult:
        """Send the payout to the bank, idempotent on the payout id."""
        connector = self._connectors.get(params.connector)
        async with self._sessionmaker() as session, session.begin():
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
            await self._record_connector_outcome(params.connector, error=exc.retryable)
            # The message must not carry beneficiary details: connectors report codes only.
            message = f"{exc.code}: {exc}"
            if exc.retryable:
                raise ApplicationError(message, exc.code, type=ERR_CONNECTOR_TRANSIENT) from None
            raise ApplicationError(message, exc.code, type=ERR_CONNECTOR_PERMANENT, non_retryable=True) from None
        finally:
            metrics.connector_latency_seconds.labels(params.connector).observe(time.perf_counter() - started)
        metrics.connector_requests_total.labels(params.connector, "accepted").inc()
        await self._record_connector_outcome(params.connector, error=False)
        await self._transition(
            payout_id=params.payout_id,
            to_status=PayoutStatus.SUBMITTED,
            event_key="submitted",
            data={"bank_payment_id": submitted.payment_id, "attempt": params.attempt},
            extra_columns={"bank_payment_id": submitted.payment_id, "submitted_at": datetime.now(timezone.utc)},
        )
        return SubmitResult(bank_payment_id=submitted.payment_id, bank_status=submitted.status)

    async def _record_connector_outcome(self, connector: str, *, error: bool) -> None:
        """Feed the connector's circuit breaker (recent error rate); never fails the submission."""
        if self._settings is None:
            return
        from core.rail_store import record_outcome

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
            raise ApplicationError(str(exc), exc.code, type=ERR_CONNECTOR_PERMANENT, non_retryable=True) from None
        except ConnectorError as exc:
            raise ApplicationError(str(exc), exc.code, type=ERR_CONNECTOR_TRANSIENT) from None
        return StatusPollResult(
            known=True,
            status=status.status,
            bank_payment_id=status.payment_id,
            failure_code=status.failure_code,
            return_code=status.return_code,
        )

    @activity.defn(name="settle_payout")
    async def settle_payout(self, params: SettleInput) -> TransitionResult:
        """Release the hold into the final entries: paid to the bank's clearing, fee to revenue."""
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
                metrics.payout_settlement_duration_seconds.observe(
                    (row["settled_at"] - row["submitted_at"]).total_seconds()
                )
            metrics.payout_processing_duration_seconds.observe(
                (row["settled_at"] - row["created_at"]).total_seconds()
            )
        return _result(row, applied)

    @activity.defn(name="reverse_payout")
    async def reverse_payout(self, params: ReverseInput) -> TransitionResult:
        """Give the merchant its money back: reverse the hold, or post a bank return."""
        async with self._sessionmaker() as session, session.begin():
            row, applied = await transition(
                session,
                payout_id=params.payout_id,
                to_status=params.to_status,
                event_key=params.to_status,
                actor=params.actor,
                reason=params.reason,
                failure_code=params.failure_code or params.return_code,
                failure_message=params.reason,
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
        from core.payout_service import sweep_unstarted_payouts

        assert self._settings is not None, "the sweeper needs settings (task queue, retry policy)"
        return await sweep_unstarted_payouts(
            self._sessionmaker, activity.client(), self._settings, older_than_seconds=params.older_than_seconds
        )
