"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


async def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(), timeout=3.0)
        return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 1), **(detail or {})}
    except Exception as exc:  # noqa: BLE001 — a failing dependency is reported, not raised
        return {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Readiness: PostgreSQL, Redis and Temporal, each reported. 503 unless all are up."""
    state = request.app.state

    async def postgres():
        async with state.engine.connect() as conn:
            version = (await conn.execute(text("SHOW server_version"))).scalar_one()
        return {"version": version}

    async def redis():
        if state.redis is None:
            raise RuntimeError("PAYOPS_REDIS_URL is not set")
        await state.redis.ping()

    async def temporal():
        client = await state.temporal_holder.get()
        if client is None:
            raise RuntimeError("not connected")
        await client.service_client.check_health()

    checks = dict(zip(("postgres", "redis", "temporal"), await asyncio.gather(
        _timed(postgres), _timed(redis), _timed(temporal)
    )))
    ok = all(c["status"] == "up" for c in checks.values())
    return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
