"""The demo seeder (over HTTP, like a user's client) and `payops demo --reset`: only the demo
merchants' data goes, the ledger still balances, and the demo seeds again."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import datetime, timezone

import pytest

from devstack.demo import DEMO_MERCHANTS, DemoClient, seed
from devstack.demo_agents import demo_agent_sales, demo_agents
from devstack.demo_reset import reset_demo_data
from core.ledger.service import run_ledger_check


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"payout_retry_initial_seconds": 0.1, "payout_retry_max_interval_seconds": 0.2,
                                       "payout_retry_max_attempts": 2, "payout_settlement_poll_seconds": 0.5})


@pytest.fixture
async def served(settings, temporal_client, worker):
    from api.app import create_app
    from sandbox.serving import serve_in_background

    async with serve_in_background(create_app(settings, temporal_client=temporal_client)) as running:
        yield running.url


async def _statuses(client: DemoClient, ids: list[str]) -> list[str]:
    return [(await client.http.get(f"/payouts/{pid}", headers=client.ops)).json()["status"] for pid in ids]


async def test_seed_then_reset_removes_only_demo_data(served, settings):
    client = DemoClient(served, settings)
    try:
        # someone else's merchant, with a payout, must survive the reset
        other = f"mer_{uuid.uuid4().hex[:10]}"
        r = await client.http.post("/merchants", headers=client.ops, json={"id": other, "name": "Not a demo",
                                                                            "default_currency": "EUR", "country": "FR"})
        assert r.status_code == 201, r.text
        r = await client.http.post(f"/merchants/{other}/funding", headers={**client.ops, "Idempotency-Key": "f1"},
                                   json={"amount": "100.00", "currency": "EUR"})
        assert r.status_code == 201, r.text

        created = await seed(client, payouts_per_merchant=2, failing_per_merchant=1, rng=random.Random(1), syncs=False)
        assert len(created) == 2 * len(DEMO_MERCHANTS)
        pending = (await client.http.get("/ops/actions", headers=client.ops,
                                         params={"status": "pending_approval"})).json()["data"]
        assert any(a["type"] == "RETRY_PAYOUTS" for a in pending)
        # the demo agents: loaded once, some of them Baobab Telecom's
        first = await client.http.get("/agents/agt_demo_000000", headers=client.ops)
        assert first.status_code == 200 and first.json()["floats"], first.text
        baobab = await client.http.get("/agents", headers=client.merchant(DEMO_MERCHANTS[2]), params={"limit": 500})
        assert baobab.json()["data"] and all(a["merchant_id"] == "mer_demo_baobab" for a in baobab.json()["data"])
        # some demo agents sold in the last 30 days: their 30-day sales are what the demo recorded
        sales = demo_agent_sales(demo_agents(merchant_for={"SN": "mer_demo_baobab"}), datetime.now(timezone.utc))
        seller = sales[0]["agent_id"]
        expected: dict[str, list[int]] = {}
        for t in sales:
            if t["agent_id"] == seller:
                expected.setdefault(t["currency"], []).append(t["amount_minor"])
        got = (await client.http.get(f"/agents/{seller}", headers=client.ops)).json()["sales_30d"]
        assert [(s["currency"], s["amount_minor"], s["count"]) for s in got] == [
            (c, sum(v), len(v)) for c, v in sorted(expected.items())]
        page = (await client.http.get("/agents", headers=client.ops, params={"limit": 500})).json()["data"]
        assert sum(1 for a in page if any(s["amount_minor"] > 0 for s in a["sales_30d"])) >= 10
        assert await client.ensure_agent_sales() == 0  # recorded once

        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:  # a failing one parks in dlq, the others settle
            statuses = await _statuses(client, created)
            if "dlq" in statuses and all(s in ("settled", "dlq") for s in statuses):
                break
            await asyncio.sleep(0.3)
        assert "dlq" in statuses and "settled" in statuses, statuses

        report = await reset_demo_data(settings)
        assert report.merchants == len(DEMO_MERCHANTS) and report.payouts == len(created)
        assert report.rollups_error is None
        for m in DEMO_MERCHANTS:
            assert (await client.http.get(f"/merchants/{m.id}", headers=client.ops)).status_code == 404
        assert (await client.http.get(f"/payouts/{created[0]}", headers=client.ops)).status_code == 404
        assert (await client.http.get("/agents/agt_demo_000000", headers=client.ops)).status_code == 404
        assert (await client.http.get("/transactions", headers=client.ops, params={"source": "agent"})).json()["data"] == []
        assert (await client.http.get("/ops/actions", headers=client.ops,
                                      params={"status": "pending_approval"})).json()["data"] == []
        balances = (await client.http.get("/balances", headers=client.ops, params={"merchant_id": other})).json()
        assert balances[0]["available_minor"] == 10_000
        check = await run_ledger_check(settings.database_url)
        assert check.ok, check

        again = await seed(client, payouts_per_merchant=1, failing_per_merchant=0, syncs=False)
        assert len(again) == len(DEMO_MERCHANTS)
    finally:
        await client.aclose()
