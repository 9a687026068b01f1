"""The API request log's middleware: after each authenticated request, hand one row (merchant,
principal, method, route template, status, latency, idempotency key, request id, client IP) to
the in-memory recorder (core/api_logs/recorder.py). Never a body, never any other header.

The principal is the one `api.deps.get_principal` verified and left in the request's state; a
request it refused (or never checked) is not logged. Every response carries `X-Request-ID`: the
caller's (if it is a plain token of at most 64 characters) or a new one.

A plain ASGI middleware (see api/app.py RequestCounter for why not `@app.middleware("http")`).
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timezone

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PRINCIPAL_STATE_KEY = "payops_principal"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def route_template(scope: Scope) -> str:
    """The matched route's template with its router's prefix: FastAPI >= 0.16x keeps included
    routers as they were declared, so `scope["route"].path` is `/payouts/{payout_id}` without the
    `/api/v1` it was mounted under. The prefix is the request path's leading segments the
    template does not account for (a `{...:path}` parameter spans several: then the raw length)."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not template:
        return "unmatched"
    if ":path}" in template:
        return template
    path_segments = scope["path"].rstrip("/").split("/")
    template_segments = template.rstrip("/").split("/")
    prefix = "/".join(path_segments[:max(len(path_segments) - len(template_segments), 0) + 1])
    return (prefix + template) if prefix else template


class ApiRequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        at = datetime.now(timezone.utc)
        given = _header(scope, b"x-request-id")
        request_id = given if given and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        status = 500

        async def send_logging(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_logging)
        finally:
            principal = state.get(PRINCIPAL_STATE_KEY)
            recorder = getattr(scope["app"].state, "api_log", None) if "app" in scope else None
            if principal is not None and recorder is not None:
                client = scope.get("client")
                key = _header(scope, b"idempotency-key")
                recorder.record({
                    "at": at, "merchant_id": principal.merchant_id, "principal": principal.sub[:128],
                    "method": scope["method"][:8], "route": route_template(scope)[:255],
                    "status": status, "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                    "idempotency_key": key[:255] if key else None, "request_id": request_id,
                    "client_ip": client[0][:64] if client else None,
                })
