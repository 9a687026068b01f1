"""The payout schedule's activity: make one fire time's batch through the bulk-payout path."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.payouts import schedules
from core.payouts.models import ScheduledBatchInput, ScheduledBatchResult
from core.platform.errors import MerchantFrozen, NotFound, Unprocessable
from core.platform.settings import Settings


class PayoutScheduleActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings

    @activity.defn(name="make_scheduled_bulk_payout")
    async def make_scheduled_bulk_payout(self, params: ScheduledBatchInput) -> ScheduledBatchResult:
        try:
            return await schedules.fire(self._sessionmaker, activity.client(), self._settings,
                                        params.schedule_id, params.fire_time)
        except (Unprocessable, MerchantFrozen, NotFound) as exc:
            raise ApplicationError(f"{exc.type}: {exc.detail}", type="scheduled_batch_refused",
                                   non_retryable=True) from exc
