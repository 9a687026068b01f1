"""The FastAPI app factory. `uvicorn api.app:create_app --factory`."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from redis.asyncio import Redis
from temporalio.client import Client

from api.openapi import install_openapi
from api.codec_server import CODEC_PATH, create_codec_app
from api.problems import install_problem_handlers
from api.request_guard import install_request_guard
from api.request_log import ApiRequestLog
from api.routers import console, health
from api.routers.graphql import graphql_router
from api.routers.live import start_live_services, stop_live_services
from connectors.registry import build_registry
from core.api_logs.recorder import ApiLogRecorder
from core.platform.db import create_engine, create_sessionmaker
from core.platform.metrics import http_requests_total
from core.platform.settings import Settings, get_settings
from core.platform.temporal import connect_temporal
from api.routers import ROUTERS

log = logging.getLogger("payops.api")

DESCRIPTION = """
The payops API: merchants create payouts (idempotently), ops act on them, and the dashboards
read from here. Authenticate with `Authorization: Bearer <JWT>` (`payops token --role ...` mints
a dev token). Every error is an RFC 9457 problem-details document with a stable `type`.
"""


class TemporalHolder:
    """One Temporal client per process, connected lazily so the API starts before Temporal."""

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._settings = settings
        self.client = client
        self._lock = asyncio.Lock()

    async def get(self, timeout: float = 3.0) -> Client | None:
        if self.client is not None:
            return self.client
        async with self._lock:
            if self.client is None:
                try:
                    self.client = await asyncio.wait_for(connect_temporal(self._settings), timeout)
                except Exception as exc:  # noqa: BLE001 — reported by /ready
                    log.warning("Temporal not reachable at %s: %s", self._settings.temporal_address, exc)
        return self.client


def create_app(settings: Settings | None = None, *, temporal_client: Client | None = None,
               warm: bool = True) -> FastAPI:
    """`warm=False` leaves each router's routes to be built by its first request (see
    `warm_routes`): for the test suite, which starts an app per test and calls a few routes of it."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.async_database_url  # fails clearly when no database is configured
        engine = create_engine(settings.database_url, pre_ping=False)  # see api/problems.py: _database
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        app.state.connectors = build_registry(settings)
        app.state.temporal_holder = TemporalHolder(settings, temporal_client)
        await app.state.temporal_holder.get()
        start_live_services(app, settings)  # dashboard snapshot cache + live updates hub
        if warm:
            warm_routes(app)
        app.state.api_log = None
        if settings.api_log_enabled:
            app.state.api_log = ApiLogRecorder(
                app.state.sessionmaker, max_buffered=settings.api_log_queue_size,
                batch_size=settings.api_log_batch_size, flush_interval_seconds=settings.api_log_flush_interval_seconds)
            app.state.api_log.start()
        try:
            yield
        finally:
            if app.state.api_log is not None:
                await app.state.api_log.stop()  # what is buffered is written before the engine goes
            await stop_live_services(app)
            await app.state.connectors.aclose()
            if app.state.redis is not None:
                await app.state.redis.aclose()
            await engine.dispose()

    app = FastAPI(
        title="payops",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    install_problem_handlers(app)

    app.add_middleware(RequestCounter)
    if settings.api_log_enabled:
        app.add_middleware(ApiRequestLog)
    install_request_guard(app, hsts=settings.env == "prod")  # outermost: 422s + security headers
    app.include_router(health.router)
    for router in _resource_routers():
        app.include_router(router, prefix="/api/v1")
    app.include_router(graphql_router(settings), prefix="/api/v1")  # built per app: its limits are settings
    _mount_console(app)
    install_openapi(app)  # every real status and content type documented
    app.mount(CODEC_PATH, create_codec_app(settings))  # Temporal's remote codec protocol, for its UI and CLI
    return app


class RequestCounter:
    """Counts requests by method, route template and status: a plain ASGI middleware (not
    `@app.middleware("http")`, whose task group and body streams cost about a millisecond a
    request on the payout create path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts: an exception escaping to the server error handler
        route: str | None = None

        async def send_counting(message: Message) -> None:
            nonlocal status, route
            if message["type"] == "http.response.start":
                status, route = message["status"], route_template(scope)
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        finally:
            route = route or route_template(scope)
            http_requests_total.labels(scope["method"], route or "unmatched", str(status)).inc()


def route_template(scope: Scope) -> str | None:
    """The matched route's path as the API documents it: `/api/v1/payouts/{payout_id}`. The
    router writes the matched route into this same scope; for a route of an included router that
    route is the router's own (`/payouts/{payout_id}`, without the prefix), and FastAPI (>= 0.16x)
    keeps the included route, prefix and all, beside it while the request is handled."""
    context = scope.get("fastapi", {}).get("effective_route_context")
    return getattr(context, "path", None) or getattr(scope.get("route"), "path", None)


def warm_routes(app: FastAPI) -> None:
    """Build every included router's effective routes now, at startup. FastAPI (>= 0.16x) builds
    them lazily, on the first request that is matched against the router (each route's
    dependants, body fields, response fields: ~0.3 s of CPU per process for payops's ~140
    routes), which the first requests after a start or a deploy would wait for. The build is
    cached until routes change; an app without such routers is left alone."""
    for route in app.router.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            for _ in contexts():
                pass


CONSOLE_DIR = Path(__file__).parent / "console"


def _mount_console(app: FastAPI) -> None:
    """The ops console: static files (no Node at run time) calling this same API."""
    app.include_router(console.router, prefix="/api/v1")
    app.mount("/console", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")

    @app.get("/", include_in_schema=False)
    async def root(request: Request):
        # browsers go to the console; API clients asking for JSON get a pointer instead
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/console/", status_code=307)
        return {"console": "/console/", "docs": "/docs", "openapi": "/openapi.json"}


def _resource_routers():
    return ROUTERS
