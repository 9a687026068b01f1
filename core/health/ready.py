"""The readiness check (`GET /ready`, and the ReadyProbeWorkflow's history): PostgreSQL, Redis and
Temporal, each timed and reported up or down, never raised."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core.platform.db import server_version

COMPONENTS = ("postgres", "redis", "temporal")


async def timed(check: Callable[[], Awaitable[dict | None]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(), timeout=3.0)
        return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 1), **(detail or {})}
    except Exception as exc:  # noqa: BLE001 — a failing dependency is reported, not raised
        return {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}


async def readiness(engine, redis, temporal_client: Callable[[], Awaitable[Any]]) -> dict[str, dict[str, Any]]:
    """`temporal_client()` returns a connected client or None."""

    async def postgres():
        return {"version": await server_version(engine)}

    async def redis_check():
        if redis is None:
            raise RuntimeError("PAYOPS_REDIS_URL is not set")
        await redis.ping()

    async def temporal():
        client = await temporal_client()
        if client is None:
            raise RuntimeError("not connected")
        await client.service_client.check_health()

    return dict(zip(COMPONENTS, await asyncio.gather(timed(postgres), timed(redis_check), timed(temporal))))
