"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.health.ready import readiness

from core.payouts.store import open_payouts_past_target
from core.platform.metrics import payouts_past_target_date

log = logging.getLogger("payops.api.health")

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Readiness: PostgreSQL, Redis and Temporal, each reported. 503 unless all are up."""
    state = request.app.state
    checks = await readiness(state.engine, state.redis, state.temporal_holder.get)
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
