"""The demo reconciles: the Vima and PayShack simulators serve the demo's shared payments
(sandbox/world.py) as `payops up` starts them, both are synced for real (Vima's REST API, PayShack's
portal through Chromium), and then the daily Schedule's run (yesterday) and a new user's first run
from the API (the console's default day) each find a match rate above 95 % with every discrepancy
category present. The reconciliation page's "next scheduled run" comes from the Schedule."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from core.platform.names import reconciliation_schedule_id
from core.reconciliation.models import DISCREPANCY_CATEGORIES, provider_run_id
from core.reconciliation.service import ensure_reconciliation_schedules
from core.sync.models import SyncWorkflowInput
from devstack.demo import DEMO_WORLD_SEED, demo_world_since
from sandbox.payshack import PayShackConfig, running_payshack
from sandbox.vima import VimaConfig, running_vima
from workflows.sync import SyncWorkflow
from tests.browser import needs_chromium

pytestmark = needs_chromium


@pytest.fixture
async def providers(base_settings):
    """Both simulators as `payops up` starts them (devstack/stack.py): the demo's world seed, from
    00:00 yesterday in the reconciliation's zone. Each reveals the world up to its own start; both
    are then brought to the same instant, as if their trickles had just ticked together."""
    since = demo_world_since(base_settings)
    async with running_vima(VimaConfig(world_seed=DEMO_WORLD_SEED, world_since=since)) as vima, \
            running_payshack(PayShackConfig(world_seed=DEMO_WORLD_SEED, world_since=since)) as portal:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        vima.state.reveal(now)
        portal.state.reveal(now)
        yield vima, portal


@pytest.fixture
def settings(settings, providers):
    vima, portal = providers
    return settings.model_copy(update={"vima_base_url": vima.url, "payshack_base_url": portal.url,
                                       "payshack_page_size": 500, "vima_sync_interval_seconds": 3600,
                                       "payshack_sync_interval_seconds": 3600})


async def _sync(client, settings, source: str):
    handle = await client.start_workflow(
        SyncWorkflow.run, SyncWorkflowInput(source=source),
        id=f"sync-{source}-demo-test-{uuid.uuid4().hex[:8]}", task_queue=settings.temporal_task_queue,
    )
    return await asyncio.wait_for(handle.result(), 240)


async def _run_done(client, headers, run_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get(f"/api/v1/reconciliation/runs/{run_id}", headers=headers)
        if r.status_code == 200 and r.json()["status"] in ("success", "error"):
            return r.json()
        assert time.monotonic() < deadline, r.text
        await asyncio.sleep(0.5)


def _assert_reconciles(run: dict, what: str) -> None:
    assert run["status"] == "success", (what, run.get("error"))
    summary = run["summary"]
    counts = summary["counts"]
    print(f"{what}: match rate {summary['match_rate']:.4f} of {summary['total_keys']} keys, {counts}")
    assert summary["match_rate"] > 0.95, (what, summary)
    missing = [c for c in DISCREPANCY_CATEGORIES if counts.get(c, 0) == 0]
    assert not missing, (what, f"no {missing}", counts)
    # "a realistic few": every category present, none a flood
    assert all(counts[c] <= 0.01 * summary["total_keys"] for c in DISCREPANCY_CATEGORIES if c != "probable_match"), \
        (what, counts)


async def test_the_scheduled_and_the_first_run_reconcile_the_demo(temporal_client, settings, worker, client,
                                                                   token_for, providers):
    vima, portal = providers
    ops = token_for("ops_admin")
    synced = await asyncio.gather(_sync(temporal_client, settings, "vima"),
                                  _sync(temporal_client, settings, "payshack"))
    for result in synced:
        assert result.status == "success", result.error
        assert result.totals.quarantined == 0
    assert synced[0].totals.inserted == len(vima.state.ops)
    assert synced[1].totals.inserted == len(portal.state.rows)

    # the daily Schedule, as the worker creates it, run now: it reconciles yesterday (reporting zone)
    await ensure_reconciliation_schedules(temporal_client, settings)
    schedule = (await client.get("/api/v1/reconciliation/schedule", headers=ops)).json()
    assert schedule["exists"] and not schedule["paused"], schedule
    next_run = datetime.fromisoformat(schedule["next_run_at"])
    tz = ZoneInfo(settings.reconciliation_timezone)
    assert timedelta(0) < next_run - datetime.now(timezone.utc) <= timedelta(days=1)
    assert next_run.astimezone(tz).hour == settings.reconciliation_daily_hour  # 02:00 in the reporting zone
    await temporal_client.get_schedule_handle(reconciliation_schedule_id("vima", "payshack")).trigger()
    yesterday = (datetime.now(tz) - timedelta(days=1)).date().isoformat()
    scheduled = await _run_done(client, ops, provider_run_id("vima", "payshack", yesterday, yesterday))
    assert scheduled["requested_by"] == "schedule"
    _assert_reconciles(scheduled, f"the scheduled run of {yesterday}")

    # a new user's first run, from the console: its default day is today's date (UTC)
    day = datetime.now(timezone.utc).date().isoformat()
    r = await client.post("/api/v1/reconciliation/run", headers=ops, json={"date_from": day})
    assert r.status_code == 202, r.text
    first = await _run_done(client, ops, r.json()["run_id"])
    _assert_reconciles(first, f"the first run of {day}")
    shown = (await client.get("/api/v1/reconciliation/summary", headers=ops, params={"date": day})).json()
    assert shown["match_rate"] > 0.95 and all(shown["totals"].get(c) for c in DISCREPANCY_CATEGORIES), shown

    # each kind of discrepancy is the one the world planted: e.g. the probable match pairs an order
    # id PayShack re-typed with Vima's original
    probable = (await client.get("/api/v1/reconciliation/discrepancies", headers=ops,
                                 params={"date": day, "category": "probable_match"})).json()["items"]
    assert probable and all(p["confidence"] >= 0.6 for p in probable)


def test_the_world_is_the_same_in_every_process_and_plants_each_discrepancy_per_block():
    """Two simulators (two processes) agree because the world is a function of (seed, time): the
    same span gives the same payments; each block holds exactly one payment of each fate."""
    from sandbox.world import DEFAULT_BLOCK, FATES, World

    start = datetime(2026, 12, 1, tzinfo=timezone.utc)
    end = start + timedelta(days=1)
    one, other = World(DEMO_WORLD_SEED).between(start, end), World(DEMO_WORLD_SEED).between(start, end)
    assert one == other and 6_000 < len(one) < 8_500
    assert all(start <= p.at < end for p in one) and [p.at for p in one] == sorted(p.at for p in one)
    assert len({p.key for p in one}) == len(one)
    world = World(DEMO_WORLD_SEED)
    block = [world.payment(k) for k in range(DEFAULT_BLOCK * 400, DEFAULT_BLOCK * 401)]
    assert sorted(p.fate for p in block if p.fate) == sorted(FATES)
    assert World(DEMO_WORLD_SEED + 1).between(start, end) != one


def test_the_portal_lists_no_row_before_its_time_and_stepwise_reveals_equal_one():
    """PayShack stamps a payment seconds after it happened and a duplicate a minute later: a row is
    listed only once its own time has come (a sync's window ending now would otherwise miss it
    forever in the test's count), and revealing in many small steps lists exactly the rows one
    reveal lists, each once."""
    from sandbox.payshack import PortalState

    since = datetime(2026, 12, 1, tzinfo=timezone.utc)
    until = since + timedelta(hours=3)
    config = PayShackConfig(world_seed=DEMO_WORLD_SEED, world_since=since)
    once, stepwise = PortalState(config), PortalState(config)
    once.reveal(until)
    assert once.rows and all(when < until for when in once.when)
    step = since
    while step < until:
        step = min(until, step + timedelta(seconds=37))
        stepwise.reveal(step)
        assert all(when < step for when in stepwise.when)
    assert sorted(r["transaction_id"] for r in stepwise.rows) == sorted(r["transaction_id"] for r in once.rows)
    assert len({r["transaction_id"] for r in once.rows}) == len(once.rows)
