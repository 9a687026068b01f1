"""The ReadyProbe Schedule's activity: run the readiness check `/ready` uses and store the result."""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio import activity

from core.health.ready import readiness
from core.health.service import record_probe


class ReadyProbeInput(BaseModel):
    retention_days: float = 30.0


class ReadyProbeResult(BaseModel):
    up: dict[str, bool]
    pruned: int


class ReadyProbeActivities:
    def __init__(self, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], redis: Redis | None) -> None:
        self._engine, self._sessionmaker, self._redis = engine, sessionmaker, redis

    @activity.defn(name="probe_ready")
    async def probe_ready(self, params: ReadyProbeInput) -> ReadyProbeResult:
        client = activity.client()

        async def temporal_client():
            return client

        checks = await readiness(self._engine, self._redis, temporal_client)
        pruned = await record_probe(self._sessionmaker, checks, at=datetime.now(timezone.utc),
                                    retention_days=params.retention_days)
        return ReadyProbeResult(up={k: v["status"] == "up" for k, v in checks.items()}, pruned=pruned)
