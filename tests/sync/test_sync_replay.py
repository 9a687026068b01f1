"""Record SyncWorkflow histories for tests/platform/test_replay.py (which replays every file in
tests/histories). Re-record after an intentional, versioned change:
`PAYOPS_RECORD_HISTORIES=1 .venv/bin/pytest tests/sync/test_sync_replay.py`."""

from __future__ import annotations

import json
import os
import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest

from core.sync.models import SyncWorkflowInput
from sandbox.vima import VimaConfig, running_vima
from workers.main import WorkerDeps, build_worker
from workflows.sync import SyncWorkflow

HISTORIES = Path(__file__).parent.parent / "histories"


def test_sync_histories_exist():
    names = {p.stem for p in HISTORIES.glob("sync_*.json")}
    assert {"sync_vima_backfill_continued", "sync_vima_auth_failed"} <= names


@pytest.mark.skipif(os.environ.get("PAYOPS_RECORD_HISTORIES") != "1", reason="set PAYOPS_RECORD_HISTORIES=1 to re-record")
async def test_record_sync_histories(temporal_client, settings):
    async with running_vima(VimaConfig(seed=1)) as vima:
        vima.state.generate(3_000, days=2)
        today = date.today()
        for name, extra, params in (
            ("sync_vima_backfill_continued", {},
             SyncWorkflowInput(source="vima", mode="backfill", date_from=(today - timedelta(days=3)).isoformat(),
                               date_to=today.isoformat(), pages_per_activity=1, activities_per_run=2)),
            ("sync_vima_auth_failed", {"vima_api_key": "wrong"}, SyncWorkflowInput(source="vima")),
        ):
            s = settings.model_copy(update={"vima_base_url": vima.url, "vima_page_size": 1000, **extra})
            deps = WorkerDeps.from_settings(s)
            try:
                async with build_worker(temporal_client, deps, task_queue=s.temporal_task_queue):
                    handle = await temporal_client.start_workflow(
                        SyncWorkflow.run, params, id=f"sync-record-{uuid.uuid4().hex[:8]}",
                        task_queue=s.temporal_task_queue)
                    await handle.result()
                    # the first run's history (for the backfill: the one ending in continue-as-new)
                    first = temporal_client.get_workflow_handle(handle.id, run_id=handle.result_run_id)
                    history = await first.fetch_history()
            finally:
                await deps.aclose()
            (HISTORIES / f"{name}.json").write_text(json.dumps(json.loads(history.to_json()), indent=1))
