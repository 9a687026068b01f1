"""The sync API: status, trigger, backfill + progress, schedule pause/resume (and their auth)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from core.platform.names import sync_schedule_id
from core.sync.service import ensure_sync_schedules
from sandbox.vima import VimaConfig, running_vima
from workers.main import WorkerDeps, build_worker


@pytest.fixture
async def vima():
    async with running_vima(VimaConfig(seed=9)) as running:
        running.state.generate(300, days=2)
        yield running


@pytest.fixture
def settings(settings, vima):
    return settings.model_copy(update={"vima_base_url": vima.url, "vima_sync_interval_seconds": 3600})


@pytest.fixture
async def sync_worker(temporal_client, settings):
    deps = WorkerDeps.from_settings(settings)
    async with build_worker(temporal_client, deps, task_queue=settings.temporal_task_queue):
        yield
    await deps.aclose()


@pytest.fixture
async def schedules(temporal_client, settings):
    created = await ensure_sync_schedules(temporal_client, settings)
    yield created
    for schedule_id in created:
        with contextlib.suppress(Exception):
            await temporal_client.get_schedule_handle(schedule_id).delete()


async def wait_for(client: httpx.AsyncClient, headers, predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        body = (await client.get("/api/v1/sync/status", headers=headers)).json()
        if predicate(body):
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.2)


class TestStatus:
    async def test_requires_a_token(self, client):
        assert (await client.get("/api/v1/sync/status")).status_code == 401

    async def test_merchants_may_not_read_it(self, client, token_for):
        r = await client.get("/api/v1/sync/status", headers=token_for("merchant_admin", merchant_id="mer_1"))
        assert r.status_code == 403

    async def test_lists_every_source(self, client, token_for):
        r = await client.get("/api/v1/sync/status", headers=token_for("finance_ops"))
        assert r.status_code == 200
        assert {s["source"]: s["status"] for s in r.json()} == {"vima": "never_run", "payshack": "never_run"}


class TestTrigger:
    async def test_needs_sync_manage(self, client, token_for):
        r = await client.post("/api/v1/sync/trigger", json={"source": "vima"}, headers=token_for("finance_ops"))
        assert r.status_code == 403

    async def test_unknown_source(self, client, token_for):
        r = await client.post("/api/v1/sync/trigger", json={"source": "nope"}, headers=token_for("ops_admin"))
        assert r.status_code == 422

    async def test_runs_a_sync(self, client, token_for, sync_worker):
        admin = token_for("ops_admin")
        r = await client.post("/api/v1/sync/trigger", json={"source": "vima"}, headers=admin)
        assert r.status_code == 202 and r.json()["workflow_id"] == "sync-vima-manual"
        body = await wait_for(client, admin, lambda b: b[0]["last_success_at"] is not None)
        vima = body[0]
        assert vima["status"] == "idle" and vima["records_synced"] == 300 and vima["cursors"] == {"update": 300}
        assert vima["recent_runs"][0]["rows_inserted"] == 300


class TestBackfill:
    async def test_rejects_a_reversed_range(self, client, token_for):
        r = await client.post("/api/v1/sync/backfill", headers=token_for("ops_admin"),
                              json={"source": "vima", "date_from": "2026-02-01", "date_to": "2026-01-01"})
        assert r.status_code == 422

    async def test_backfills_and_reports_progress(self, client, token_for, sync_worker):
        admin = token_for("ops_admin")
        today = datetime.now(timezone.utc).date()  # the provider's days are UTC days, whatever the local zone
        r = await client.post("/api/v1/sync/backfill", headers=admin, json={
            "source": "vima", "date_from": (today - timedelta(days=3)).isoformat(), "date_to": today.isoformat()})
        assert r.status_code == 202
        workflow_id = r.json()["workflow_id"]
        deadline = time.monotonic() + 30
        while True:
            progress = (await client.get(f"/api/v1/sync/runs/{workflow_id}", headers=admin)).json()
            if progress["status"] == "success":
                break
            assert time.monotonic() < deadline, progress
            await asyncio.sleep(0.2)
        assert progress["totals"]["inserted"] == 300 and progress["expected_total"] == 300
        r = await client.get("/api/v1/sync/runs/sync-nope", headers=admin)
        assert r.status_code == 404


class TestPauseResume:
    async def test_pause_and_resume_the_schedule(self, client, token_for, schedules, temporal_client, settings):
        assert schedules == [sync_schedule_id("vima")]  # payshack is not configured here
        assert await ensure_sync_schedules(temporal_client, settings) == schedules  # idempotent
        admin = token_for("ops_admin")
        r = await client.post("/api/v1/sync/vima/pause", headers=admin, json={"note": "provider maintenance"})
        assert r.status_code == 200 and r.json()["paused"] is True and r.json()["note"] == "provider maintenance"
        await ensure_sync_schedules(temporal_client, settings)  # an update keeps it paused
        status = (await client.get("/api/v1/sync/status", headers=admin)).json()
        assert status[0]["schedule"]["paused"] is True and status[0]["schedule"]["interval_seconds"] == 3600
        r = await client.post("/api/v1/sync/vima/resume", headers=admin)
        assert r.status_code == 200 and r.json()["paused"] is False

    async def test_no_schedule_is_404(self, client, token_for, schedules):
        r = await client.post("/api/v1/sync/payshack/pause", headers=token_for("ops_admin"))
        assert r.status_code == 404

    async def test_needs_sync_manage(self, client, token_for, schedules):
        r = await client.post("/api/v1/sync/vima/pause", headers=token_for("auditor"))
        assert r.status_code == 403
