"""Live updates end to end: a real uvicorn server, real WebSocket / SSE clients, Redis pub/sub."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest
import uvicorn
import websockets


@pytest.fixture
async def server(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        await asyncio.sleep(0.02)
    await asyncio.wait_for(app.state.live_hub.ready.wait(), 10)
    yield f"127.0.0.1:{port}"
    srv.should_exit = True
    await asyncio.wait_for(task, 10)


def _token(headers: dict) -> str:
    return headers["Authorization"].split()[1]


async def _recv(ws, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def test_websocket_fan_out_is_tenant_filtered(server, app, token_for):
    merchant = _token(token_for("merchant_viewer", merchant_id="m_a"))
    ops = _token(token_for("ops_admin"))
    async with websockets.connect(f"ws://{server}/api/v1/ws/updates?token={merchant}&channels=payouts,sync") as mws, \
            websockets.connect(f"ws://{server}/api/v1/ws/updates") as ows:
        assert (await _recv(mws)) == {"type": "ready", "channels": ["payouts"]}  # sync: platform only
        await ows.send(json.dumps({"type": "auth", "token": ops, "channels": ["payouts", "sync"]}))
        assert (await _recv(ows))["channels"] == ["payouts", "sync"]
        for merchant_id in ("m_b", "m_a"):
            await app.state.redis.publish("payops:updates:payouts", json.dumps(
                {"type": "payout.updated", "payout_id": f"po_{merchant_id}", "merchant_id": merchant_id}))
        await app.state.redis.publish("payops:updates:sync", json.dumps({"source": "vima", "status": "running"}))
        got = await _recv(mws)
        assert got["channel"] == "payouts" and got["data"]["merchant_id"] == "m_a"
        ops_seen = [await _recv(ows) for _ in range(3)]
        assert [m["channel"] for m in ops_seen] == ["payouts", "payouts", "sync"]
        await mws.send(json.dumps({"type": "ping"}))
        assert (await _recv(mws)) == {"type": "pong"}  # nothing else (m_b's, sync) was queued for it


async def test_websocket_rejects_a_bad_token(server):
    async with websockets.connect(f"ws://{server}/api/v1/ws/updates?token=nope") as ws:
        assert (await _recv(ws))["type"] == "error"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 4401


async def test_sse_streams_alerts_to_its_merchant(server, app, token_for):
    token = _token(token_for("merchant_admin", merchant_id="m_a"))
    async with httpx.AsyncClient(base_url=f"http://{server}") as client:
        async with client.stream("GET", "/api/v1/sse/updates", params={"token": token, "channels": "alerts"}) as r:
            assert r.status_code == 200
            lines = r.aiter_lines()
            assert await anext(lines) == "event: ready"
            for merchant_id in ("m_b", "m_a"):
                await app.state.redis.publish("payops:updates:alerts", json.dumps(
                    {"type": "alert.opened", "id": 1, "merchant_id": merchant_id}))
            events = []
            async with asyncio.timeout(5):
                async for line in lines:
                    if line.startswith("data:") and "alert.opened" in line:
                        events.append(json.loads(line[5:]))
                        break
            assert events[0]["merchant_id"] == "m_a"
        denied = await client.get("/api/v1/sse/updates", params={"channels": "alerts"})
        assert denied.status_code == 401


async def test_a_burst_of_new_data_invalidates_snapshots_a_few_times_and_after_the_last_message():
    """Each API process bumps the snapshot generation after new data; a burst of payout
    transitions coalesces into a few bumps, the last of which starts after the last message."""
    import asyncio

    from core.platform.live_hub import CHANNELS, LiveHub

    bumps: list[int] = []  # how many messages had arrived when each bump started
    arrived = 0
    release = asyncio.Event()

    async def bump() -> None:
        bumps.append(arrived)
        await release.wait()  # a slow Redis round trip

    hub = LiveHub(None, on_new_data=bump)
    for _ in range(50):
        arrived += 1
        await hub._dispatch({"channel": CHANNELS["payouts"].encode(), "data": b'{"merchant_id": "m"}'})
        await asyncio.sleep(0)
    release.set()
    for _ in range(100):  # let the coalesced follow-up run to completion
        await asyncio.sleep(0)
    assert bumps[0] == 1 and bumps[-1] == 50
    assert len(bumps) == 2
    await hub._dispatch({"channel": CHANNELS["sync"].encode(), "data": b"{}"})  # not data: no bump
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(bumps) == 2
    await hub.aclose()
