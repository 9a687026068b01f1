"""`payops webhooks listen`: a local receiver that verifies deliveries and prints the events.

For merchants integrating (and for us when debugging): point a dev endpoint at it, create a
payout, watch the signed events arrive.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.webhooks.models import SIGNATURE_HEADER
from core.webhooks.signing import SignatureError, verify


def receiver_app(
    secrets: list[str], *, tolerance_seconds: float = 300, emit: Callable[[dict], None] = print
) -> Starlette:
    """An ASGI app accepting POSTs on any path; `emit` gets one dict per request (verified or not)."""

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        header = request.headers.get(SIGNATURE_HEADER)
        error = None
        for secret in secrets:
            try:
                verify(secret, header, body, tolerance_seconds=tolerance_seconds)
                error = None
                break
            except SignatureError as exc:
                error = exc
        if error is not None:
            emit({"verified": False, "error": error.code, "detail": str(error)})
            return JSONResponse({"error": error.code}, status_code=400)
        try:
            event = json.loads(body)
        except ValueError:
            emit({"verified": True, "error": "not_json"})
            return JSONResponse({"error": "not_json"}, status_code=400)
        emit({"verified": True, "event": event, "attempt": request.headers.get("Payops-Delivery-Attempt")})
        return JSONResponse({"received": event.get("id")})

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


def format_line(item: dict) -> str:
    if not item.get("verified"):
        return f"REFUSED  {item.get('error')}: {item.get('detail', '')}"
    event = item.get("event") or {}
    data = event.get("data") or {}
    return (f"{event.get('type', '?'):<18} {event.get('id')}  payout={data.get('id')} status={data.get('status')} "
            f"v{event.get('payout_version')} attempt={item.get('attempt')}")
