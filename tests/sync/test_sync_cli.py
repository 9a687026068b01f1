"""`payops sync backfill` follows the workflow's progress query to the end."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

import cli.main
from sandbox.vima import VimaConfig, running_vima
from workers.main import WorkerDeps, build_worker


@pytest.fixture
async def vima():
    async with running_vima(VimaConfig(seed=21)) as running:
        running.state.generate(2_500, days=2)
        yield running


async def test_backfill_command_shows_progress_and_the_outcome(temporal_client, settings, vima, monkeypatch):
    settings = settings.model_copy(update={"vima_base_url": vima.url, "vima_page_size": 500,
                                           "sync_pages_per_activity": 2})
    monkeypatch.setattr(cli.main, "get_settings", lambda: settings)
    today = datetime.now(timezone.utc).date()  # the provider's days are UTC days, whatever the local zone
    args = ["sync", "backfill", "--source", "vima", "--from", (today - timedelta(days=3)).isoformat(),
            "--to", today.isoformat()]
    deps = WorkerDeps.from_settings(settings)
    try:
        async with build_worker(temporal_client, deps, task_queue=settings.temporal_task_queue):
            # the CLI runs its own event loop, so it runs in a thread beside the worker's
            result = await asyncio.to_thread(CliRunner().invoke, cli.main.app, args)
    finally:
        await deps.aclose()
    assert result.exit_code == 0, result.output
    assert "backfill started: sync-vima-backfill-" in result.output
    assert "done: 2500 rows read, 2500 new, 0 updated" in result.output

    bad = await asyncio.to_thread(CliRunner().invoke, cli.main.app, ["sync", "backfill", "--source", "vima",
                                                                     "--from", "2026-02-01", "--to", "2026-01-01"])
    assert bad.exit_code == 2 and "date_from must not be after date_to" in bad.output
