"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.platform.db import server_version

from core.payouts.store import open_payouts_past_target
from core.platform.metrics import payouts_past_target_date

log = logging.getLogger("payops.api.health")

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
        return {"version": await server_version(state.engine)}

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
    # Not ready is a 503 with Retry-After like every outage answer (api/outages.py); the body stays
    # the per-dependency report load balancers and `payops up` read.
    return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503,
                        headers=None if ok else {"Retry-After": "5"})


_past_target_rails: set[str] = set()


async def refresh_past_target_gauge(sessionmaker) -> None:
    """payouts_past_target_date{rail} from SQL: a rail with none left is set to 0, not dropped."""
    async with sessionmaker() as session:
        counts = await open_payouts_past_target(session)
    for rail in _past_target_rails | set(counts):
        payouts_past_target_date.labels(rail).set(counts.get(rail, 0))
    _past_target_rails.update(counts)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    sessionmaker = getattr(request.app.state, "sessionmaker", None)
    if sessionmaker is not None:
        try:  # scrape-time gauges; a database outage keeps their last values, never fails the scrape
            await asyncio.wait_for(refresh_past_target_gauge(sessionmaker), timeout=2.0)
        except Exception as exc:  # noqa: BLE001
            log.warning("payouts_past_target_date not refreshed: %s", exc)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
