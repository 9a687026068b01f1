"""The API request log's retention: delete rows older than PAYOPS_API_LOG_RETENTION_DAYS."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.api_logs.service import prune_api_logs


class PruneApiLogsInput(BaseModel):
    retention_days: float


class PruneApiLogsResult(BaseModel):
    deleted: int


class ApiLogActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn(name="prune_api_logs")
    async def prune_api_logs(self, params: PruneApiLogsInput) -> PruneApiLogsResult:
        deleted = await prune_api_logs(self._sessionmaker, retention_days=params.retention_days)
        return PruneApiLogsResult(deleted=deleted)
