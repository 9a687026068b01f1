"""Side effects of Temporal-native ops on payouts: the bank's recall when a submitted payout's
workflow is cancelled through Temporal, the audit note a refused cancel leaves, and the workflow
reaper's pass (rows whose workflow closed under them: terminate)."""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from connectors.base import ConnectorError
from connectors.registry import ConnectorRegistry
from core.payouts.models import ERR_CONNECTOR_TRANSIENT
from core.payouts.store import record_note
from core.payouts.temporal_ops import PayoutNoteInput, ReaperInput, ReaperResult, RecallInput, RecallOutcome
from core.payouts.reaper import reap

log = logging.getLogger("payops.activities.workflow_reaper")


class PayoutTemporalOpsActivities:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], redis: Redis | None, connectors: ConnectorRegistry
    ) -> None:
        self._sessionmaker = sessionmaker
        self._redis = redis
        self._connectors = connectors

    @activity.defn(name="recall_payout_at_bank")
    async def recall_payout_at_bank(self, params: RecallInput) -> RecallOutcome:
        """Ask the bank to stop a payment it accepted. A refusal (or a bank without recall) is an
        answer, not an error; a transient error is retried by the workflow's retry policy."""
        connector = self._connectors.get(params.connector)
        try:
            answer = await connector.recall(params.payout_id)
        except ConnectorError as exc:
            if exc.retryable:
                raise ApplicationError(str(exc), exc.code, type=ERR_CONNECTOR_TRANSIENT) from None
            return RecallOutcome(recalled=False, detail=str(exc))
        return RecallOutcome(recalled=answer.recalled, detail=answer.detail)

    @activity.defn(name="record_payout_note")
    async def record_payout_note(self, params: PayoutNoteInput) -> bool:
        """Append an audit event that changes no status (idempotent on its event key)."""
        async with self._sessionmaker() as session, session.begin():
            return await record_note(session, payout_id=params.payout_id, event_key=params.event_key,
                                     actor=params.actor, reason=params.reason, data=params.data)

    @activity.defn(name="reap_closed_workflows")
    async def reap_closed_workflows(self, params: ReaperInput) -> ReaperResult:
        result = await reap(self._sessionmaker, activity.client(), min_age_seconds=params.min_age_seconds,
                            limit=params.limit)
        if result.orphaned:
            log.critical("workflow reaper: %d row(s) whose workflow is closed, %d new alert(s)",
                         len(result.orphaned), result.alerts_raised)
        return result
