"""The bank-notification sweeper's activity: redeliver notifications that are stored but not yet
delivered to their payout (Temporal was down at intake, or the payout's workflow had not started)."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.payouts.bank_notifications import redeliver_pending


class RedeliverInput(BaseModel):
    older_than_seconds: float = 10.0
    limit: int = 500


class RedeliverResult(BaseModel):
    pending: int
    delivered: int


class BankNotificationActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn(name="redeliver_bank_notifications")
    async def redeliver_bank_notifications(self, params: RedeliverInput) -> RedeliverResult:
        counts = await redeliver_pending(
            self._sessionmaker, activity.client(), older_than_seconds=params.older_than_seconds, limit=params.limit
        )
        return RedeliverResult(**counts)
