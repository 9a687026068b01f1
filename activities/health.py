"""The worker's view of its dependencies, for the health workflow."""

from __future__ import annotations

import socket
import time

from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.platform.db import ping


class DependencyReport(BaseModel):
    worker_host: str
    postgres_ok: bool
    redis_ok: bool
    checked_at_unix: float


class HealthActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], redis: Redis | None) -> None:
        self._sessionmaker = sessionmaker
        self._redis = redis

    @activity.defn(name="check_worker_dependencies")
    async def check_worker_dependencies(self) -> DependencyReport:
        async with self._sessionmaker() as session:
            postgres_ok = await ping(session)
        redis_ok = bool(self._redis is not None and await self._redis.ping())
        return DependencyReport(
            worker_host=socket.gethostname(),
            postgres_ok=postgres_ok,
            redis_ok=redis_ok,
            checked_at_unix=time.time(),
        )
