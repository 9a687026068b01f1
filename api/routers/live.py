"""Live updates over WebSocket (`/ws/updates`) and Server-Sent Events (`/sse/updates`).

Both are fed by this process's LiveHub (one Redis pub/sub subscription shared by all clients),
so they work behind any number of API processes. Channels: transactions, payouts, ops_actions,
alerts, sync; each client gets those its roles allow, filtered to its merchant for merchant users.

WebSocket protocol: authenticate with `?token=<JWT>` or, as the first message within
PAYOPS_LIVE_AUTH_TIMEOUT_SECONDS, `{"type": "auth", "token": "...", "channels": [...]}`. The server
answers `{"type": "ready", "channels": [...]}`, then sends `{"channel": ..., "data": {...}}` per
update. `{"type": "subscribe", "channels": [...]}` changes the channels; `{"type": "ping"}` gets
a pong. Closes with 4401 (bad token) or 4403 (no channel allowed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from api.deps import view_as_live
from core.platform.auth_tokens import Principal, verify_token
from core.dashboards.cache import SnapshotCache
from core.platform.errors import Forbidden, PayopsError, ServiceUnavailable, Unauthorized
from core.platform.live_hub import CHANNELS, LiveHub, allowed_channels
from core.platform.settings import Settings

router = APIRouter(tags=["live"])

SSE_HEARTBEAT_SECONDS = 15.0


def start_live_services(app: FastAPI, settings: Settings) -> None:
    """The dashboard snapshot cache and the live hub (which invalidates it on new data)."""
    app.state.dashboard_cache = SnapshotCache(app.state.redis, ttl_seconds=settings.dashboard_cache_ttl_seconds,
                                              namespace=settings.database_url or "")
    app.state.live_hub = LiveHub(app.state.redis, on_new_data=app.state.dashboard_cache.invalidate)
    app.state.live_hub.start()


async def stop_live_services(app: FastAPI) -> None:
    hub = getattr(app.state, "live_hub", None)
    if hub is not None:
        await hub.aclose()


def _channels(raw: Any) -> list[str] | None:
    if raw is None or raw == "":
        return None
    names = raw.split(",") if isinstance(raw, str) else list(raw)
    return [n.strip() for n in names if n and n.strip()]


@router.websocket("/ws/updates")
async def ws_updates(websocket: WebSocket, token: str | None = None, channels: str | None = None):
    settings: Settings = websocket.app.state.settings
    hub: LiveHub = websocket.app.state.live_hub
    await websocket.accept()
    wanted = _channels(channels)
    try:
        if token is None:
            first = json.loads(await asyncio.wait_for(websocket.receive_text(), settings.live_auth_timeout_seconds))
            if not isinstance(first, dict) or first.get("type") != "auth" or not first.get("token"):
                raise Unauthorized('the first message must be {"type": "auth", "token": "..."}')
            token = str(first["token"])
            wanted = _channels(first.get("channels")) or wanted
        principal = verify_token(settings, token)
        await view_as_live(websocket.app, principal)
        names = allowed_channels(principal, wanted)
    except (asyncio.TimeoutError, ValueError, PayopsError, WebSocketDisconnect) as exc:
        code = 4403 if isinstance(exc, ValueError) and not isinstance(exc, json.JSONDecodeError) else 4401
        with contextlib.suppress(Exception):
            await websocket.send_json({"type": "error", "detail": str(exc) or "authentication timed out"})
            await websocket.close(code=code)
        return
    if not names:
        await websocket.send_json({"type": "error", "detail": "your roles allow none of these channels"})
        await websocket.close(code=4403)
        return
    if not hub.available:
        await websocket.send_json({"type": "error", "detail": "live updates need Redis"})
        await websocket.close(code=1011)
        return
    sub = hub.subscribe(principal, names)
    await websocket.send_json({"type": "ready", "channels": names})

    async def read_client() -> None:
        while True:
            try:
                msg = json.loads(await websocket.receive_text())
            except json.JSONDecodeError:
                continue
            if not isinstance(msg, dict):
                continue
            if msg.get("type") == "ping":
                await sub.queue.put({"type": "pong"})
            elif msg.get("type") == "subscribe":
                try:
                    sub.channels = set(allowed_channels(principal, _channels(msg.get("channels"))))
                except ValueError as exc:
                    await sub.queue.put({"type": "error", "detail": str(exc)})
                    continue
                await sub.queue.put({"type": "ready", "channels": sorted(sub.channels)})

    reader = asyncio.create_task(read_client())
    try:
        while True:
            getter = asyncio.ensure_future(sub.queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                getter.cancel()
                break
            await websocket.send_text(json.dumps(getter.result(), default=str))
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.unsubscribe(sub)
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader


async def _sse_principal(request: Request, token: str | None) -> Principal:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
    if not token:
        raise Unauthorized("missing bearer token (Authorization header, or `token` for EventSource)")
    principal = verify_token(request.app.state.settings, token)
    await view_as_live(request.app, principal)
    return principal


@router.get("/sse/updates", responses={200: {"content": {"text/event-stream": {}},
                                             "description": "one event per update; `event` is the channel"}})
async def sse_updates(
    request: Request,
    token: Annotated[str | None, Query(description="for EventSource, which cannot send headers")] = None,
    channels: Annotated[str | None, Query(description=f"comma-separated: {', '.join(CHANNELS)}")] = None,
):
    """The live updates as Server-Sent Events, for clients without WebSocket."""
    principal = await _sse_principal(request, token)
    try:
        names = allowed_channels(principal, _channels(channels))
    except ValueError as exc:
        raise Forbidden(str(exc)) from None
    if not names:
        raise Forbidden("your roles allow none of these channels")
    hub: LiveHub = request.app.state.live_hub
    if not hub.available:
        raise ServiceUnavailable("live updates need Redis")
    sub = hub.subscribe(principal, names)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield f"event: ready\ndata: {json.dumps({'channels': names})}\n\n".encode()
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), SSE_HEARTBEAT_SECONDS)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": keep-alive\n\n"
                    continue
                yield f"event: {item.get('channel', 'message')}\ndata: {json.dumps(item['data'] if 'data' in item else item, default=str)}\n\n".encode()
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
