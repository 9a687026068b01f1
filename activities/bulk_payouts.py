"""The bulk intake's activity: start the next chunk of a batch's payout workflows."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.payouts import bulk
from core.platform.settings import Settings
from core.payouts.models import StartChunkInput, StartChunkResult


class BulkPayoutActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings

    @activity.defn(name="start_bulk_payout_chunk")
    async def start_bulk_payout_chunk(self, params: StartChunkInput) -> StartChunkResult:
        started, remaining = await bulk.start_chunk(
            self._sessionmaker, activity.client(), self._settings, params.bulk_payout_id, params.chunk_size,
            heartbeat=activity.heartbeat,
        )
        activity.heartbeat(started)
        return StartChunkResult(started=started, remaining=remaining)
