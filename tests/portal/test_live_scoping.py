"""Live messages carry the merchant id, end to end: the Vima sandbox synced by the real sync
activity into PostgreSQL (its projects mapped to two merchants through /provider-accounts), its
per-merchant messages published on Redis, and three real WebSocket clients (merchant A, merchant
B, a platform user) on a real uvicorn server."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
import websockets
from temporalio.testing import ActivityEnvironment

from activities.sync import SyncActivities
from core.payouts.store import publish_payout_update
from core.sync.models import FetchPagesInput, StartRunInput
from sandbox.vima import VimaConfig, running_vima
from tests.dashboards.test_dashboard_live import server  # noqa: F401 — the live server fixture, shared
from tests.factories import create_merchant


@pytest.fixture
async def vima():
    async with running_vima(VimaConfig(seed=11)) as running:
        yield running


@pytest.fixture
async def db(database_url):
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    yield conn
    await conn.close()


async def _recv(ws, timeout: float = 10.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def _until(ws, total: int) -> list[dict]:
    """Transaction messages until their inserted counts add up to `total`, then a ping/pong: the
    pong comes after everything queued before it, so nothing else was sent to this client."""
    got, seen = [], 0
    while seen < total:
        msg = await _recv(ws)
        assert msg["channel"] == "transactions", msg
        got.append(msg["data"])
        seen += msg["data"]["inserted"]
    await ws.send(json.dumps({"type": "ping"}))
    assert (await _recv(ws)) == {"type": "pong"}
    return got


def _token(headers: dict) -> str:
    return headers["Authorization"].split()[1]


async def test_synced_transactions_reach_only_their_merchant_live(server, app, client, token_for, sessionmaker,  # noqa: F811
                                                                   settings, vima, db):
    a, b = await create_merchant(sessionmaker), await create_merchant(sessionmaker)
    ops = token_for("ops_admin")
    for project, merchant in (("monetix", a), ("caroussel", b)):
        r = await client.put(f"/api/v1/provider-accounts/vima/{project}", headers=ops, json={"merchant_id": merchant})
        assert r.status_code == 200 and r.json()["merchant_id"] == merchant, r.text
    vima.state.generate(300, days=1)
    url = f"ws://{server}/api/v1/ws/updates?channels=transactions,payouts&token="
    async with websockets.connect(url + _token(token_for("merchant_viewer", merchant_id=a))) as wa, \
            websockets.connect(url + _token(token_for("merchant_admin", merchant_id=b))) as wb, \
            websockets.connect(url + _token(ops)) as wo:
        for ws in (wa, wb, wo):
            assert (await _recv(ws))["type"] == "ready"
        activities = SyncActivities(sessionmaker, app.state.redis, settings.model_copy(update={
            "vima_base_url": vima.url, "vima_page_size": 50}))
        env = ActivityEnvironment()
        await env.run(activities.start_sync_run, StartRunInput(run_id="live-1", source="vima", mode="incremental"))
        result = await env.run(activities.fetch_sync_pages, FetchPagesInput(
            run_id="live-1", source="vima", mode="incremental", cursor={"update": 0}, max_pages=100))
        assert result.caught_up and result.totals.inserted == 300
        counts = {r["merchant_id"]: r["n"] for r in await db.fetch(
            "SELECT merchant_id, count(*) AS n FROM transactions GROUP BY merchant_id")}
        by_project = {r["project"]: r["merchant_id"] for r in await db.fetch(
            "SELECT DISTINCT project, merchant_id FROM transactions")}
        assert by_project["monetix"] == a and by_project["caroussel"] == b and by_project["starbet"] is None
        assert counts[a] > 0 and counts[b] > 0 and counts[None] > 0
        got_a, got_b, got_o = await _until(wa, counts[a]), await _until(wb, counts[b]), await _until(wo, 300)
        assert {m["merchant_id"] for m in got_a} == {a}
        assert {m["merchant_id"] for m in got_b} == {b}
        assert {m["merchant_id"] for m in got_o} == {a, b, None}
        assert all("merchant_id" in m and m["type"] == "transactions.synced" for m in got_o)
        # payouts: each merchant its own, the platform both
        for merchant in (b, a):
            await publish_payout_update(app.state.redis, {"id": f"po_{merchant}", "merchant_id": merchant,
                                                          "status": "held", "amount_minor": 1, "currency": "EUR",
                                                          "version": 1})
        assert (await _recv(wa))["data"]["payout_id"] == f"po_{a}"
        assert (await _recv(wb))["data"]["payout_id"] == f"po_{b}"
        assert [(await _recv(wo))["data"]["merchant_id"] for _ in range(2)] == [b, a]
        for ws in (wa, wb):
            await ws.send(json.dumps({"type": "ping"}))
            assert (await _recv(ws)) == {"type": "pong"}


async def test_mapping_an_account_reassigns_its_stored_transactions(client, token_for, sessionmaker, settings,
                                                                    vima, db):
    vima.state.generate(120, days=1)
    activities = SyncActivities(sessionmaker, None, settings.model_copy(update={"vima_base_url": vima.url}))
    env = ActivityEnvironment()
    await env.run(activities.start_sync_run, StartRunInput(run_id="map-1", source="vima", mode="incremental"))
    await env.run(activities.fetch_sync_pages, FetchPagesInput(
        run_id="map-1", source="vima", mode="incremental", cursor={"update": 0}, max_pages=100))
    assert await db.fetchval("SELECT count(*) FROM transactions WHERE merchant_id IS NOT NULL") == 0
    merchant = await create_merchant(sessionmaker)
    expected = await db.fetchval("SELECT count(*) FROM transactions WHERE project = 'luckyjet'")
    ops = token_for("ops_admin")
    r = await client.put("/api/v1/provider-accounts/vima/luckyjet", headers=ops, json={"merchant_id": merchant})
    assert r.status_code == 200 and r.json()["reassigned"] == expected > 0
    assert await db.fetchval("SELECT count(*) FROM transactions WHERE merchant_id = $1", merchant) == expected
    listed = (await client.get("/api/v1/provider-accounts", headers=ops)).json()["data"]
    assert [(x["source"], x["project"], x["merchant_id"]) for x in listed] == [("vima", "luckyjet", merchant)]
    # the merchant now sees them; a merchant user cannot manage the mapping
    mine = token_for("merchant_viewer", merchant_id=merchant)
    assert (await client.put("/api/v1/provider-accounts/vima/luckyjet", headers=mine,
                             json={"merchant_id": merchant})).status_code == 403
    assert (await client.put("/api/v1/provider-accounts/vima/x", headers=ops,
                             json={"merchant_id": "mer_nope"})).status_code == 404
    assert (await client.delete("/api/v1/provider-accounts/vima/luckyjet", headers=ops)).status_code == 204
    assert await db.fetchval("SELECT count(*) FROM transactions WHERE merchant_id IS NOT NULL") == 0
