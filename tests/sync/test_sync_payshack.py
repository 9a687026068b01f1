"""PayShack sync through real Chromium against the sandbox portal: login, paging, a forced
session expiry, session reuse from Redis, and a wrong password."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from core.sync.models import ERR_AUTH_FAILED, SyncWorkflowInput
from sandbox.payshack import PayShackConfig, running_payshack
from workers.main import WorkerDeps, build_worker
from workflows.sync import SyncWorkflow
from tests.browser import needs_chromium

pytestmark = needs_chromium


@pytest.fixture
async def portal():
    async with running_payshack(PayShackConfig(seed=5, initial_rows=2_100, days=1)) as running:
        yield running


@pytest.fixture
async def db(database_url):
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    yield conn
    await conn.close()


def portal_settings(settings, portal, **extra):
    return settings.model_copy(update={"payshack_base_url": portal.url, "payshack_page_size": 200, **extra})


async def sync_once(client, settings):
    handle = await client.start_workflow(
        SyncWorkflow.run, SyncWorkflowInput(source="payshack"),
        id=f"sync-payshack-test-{uuid.uuid4().hex[:8]}", task_queue=settings.temporal_task_queue,
    )
    return await asyncio.wait_for(handle.result(), 60)


async def test_portal_sync_pages_through_an_expired_session_and_reuses_it(temporal_client, settings, portal, db):
    settings = portal_settings(settings, portal)
    portal.state.expire_after_calls = 4  # the portal ends every session after the 4th data call
    deps = WorkerDeps.from_settings(settings)
    try:
        async with build_worker(temporal_client, deps, task_queue=settings.temporal_task_queue):
            first = await sync_once(temporal_client, settings)
            stats_after_first = dict(portal.state.stats)
            portal.state.update(25)  # pending payments settle at the portal
            second = await sync_once(temporal_client, settings)
    finally:
        await deps.aclose()

    assert first.status == "success", first.error
    assert first.totals.pages == 11 and first.totals.inserted == 2_100
    assert stats_after_first["logins"] == 2 and stats_after_first["unauthorized"] >= 1  # re-logged in once
    rows = await db.fetchval("SELECT count(*) FROM transactions WHERE source = 'payshack'")
    assert rows == 2_100 == await db.fetchval("SELECT count(DISTINCT source_id) FROM transactions")
    # the next run reuses the session stored in Redis: no new login
    assert second.status == "success"
    assert portal.state.stats["logins"] == 2
    assert (second.totals.inserted, second.totals.updated, second.totals.unchanged) == (0, 25, 2_075)
    row = await db.fetchrow("SELECT * FROM transactions WHERE source_id = 'PSK0000000001'")
    source = portal.state.rows[0]
    assert row["client_operation_id"] == source["order_id"] and row["project"] == "91game"
    assert row["amount_minor"] == int(source["amount"].replace(",", "").replace(".", ""))
    assert row["occurred_at"].utcoffset().total_seconds() == 0


async def test_wrong_password_is_a_clear_error_not_a_crash_loop(temporal_client, settings, portal, db):
    settings = portal_settings(settings, portal, payshack_password="not-the-password")
    deps = WorkerDeps.from_settings(settings)
    try:
        async with build_worker(temporal_client, deps, task_queue=settings.temporal_task_queue):
            result = await sync_once(temporal_client, settings)
    finally:
        await deps.aclose()
    assert result.status == "error" and result.error_type == ERR_AUTH_FAILED
    assert "Invalid email or password" in result.error
    assert portal.state.stats["failed_logins"] == 1  # tried once, not again and again
    state = await db.fetchrow("SELECT status, error FROM sync_state WHERE source = 'payshack'")
    assert state["status"] == "error" and "Invalid email or password" in state["error"]
    run = await db.fetchrow("SELECT status, error FROM sync_runs WHERE id = $1", result.run_id)
    assert run["status"] == "error"
