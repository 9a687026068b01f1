"""The `/ready` history: ReadyProbeWorkflow on a real worker stores one row per component (the same
check `/ready` answers with) and prunes probes past the retention; its Schedule's interval."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone

from pathlib import Path

from sqlalchemy import insert, select

from core.health.ready import readiness
from core.health.service import merchant_health
from core.platform.tables import ready_probes
from tests.factories import create_merchant


async def probe_rows(sm) -> list[dict]:
    async with sm() as s:
        return [dict(r) for r in (await s.execute(select(ready_probes).order_by(ready_probes.c.id))).mappings()]


async def test_the_probe_workflow_writes_a_row_per_component_and_prunes_old_ones(
        worker, temporal_client, settings, sessionmaker, client):
    from activities.ready_probe import ReadyProbeInput  # why: the worker's module, imported after its fixture
    from workflows.ready_probe import ReadyProbeWorkflow  # why: the worker's module, imported after its fixture

    now = datetime.now(timezone.utc)
    async with sessionmaker() as s, s.begin():
        await s.execute(insert(ready_probes), [
            dict(at=now - timedelta(days=31), component="redis", up=False, latency_ms=None),
            dict(at=now - timedelta(days=2), component="redis", up=False, latency_ms=None)])
    started = datetime.now(timezone.utc)
    handle = await temporal_client.start_workflow(
        ReadyProbeWorkflow.run, ReadyProbeInput(retention_days=30),
        id=f"ready-probe-{uuid.uuid4().hex}", task_queue=settings.temporal_task_queue)
    result = await handle.result()
    if os.environ.get("PAYOPS_RECORD_HISTORIES") == "1":  # tests/platform/test_replay.py replays it
        (Path(__file__).parent.parent / "histories" / "ready_probe_run.json").write_text(
            (await handle.fetch_history()).to_json())
    assert result.up == {"postgres": True, "redis": True, "temporal": True}
    assert result.pruned == 1
    rows = await probe_rows(sessionmaker)
    fresh = [r for r in rows if r["at"] >= started]
    assert sorted(r["component"] for r in fresh) == ["postgres", "redis", "temporal"]
    assert all(r["up"] and r["latency_ms"] is not None for r in fresh)
    assert len({r["at"] for r in fresh}) == 1  # one probe, one timestamp
    assert [r["at"] for r in rows if r not in fresh] == [now - timedelta(days=2)]  # 31 d old pruned, 2 d kept

    # what `/ready` answers is the same check, all up
    ready = await client.get("/ready")
    assert ready.status_code == 200 and set(ready.json()["checks"]) == {"postgres", "redis", "temporal"}

    # the uptime the merchant sees: redis 1 of 2 probes up over 7 d, 1 of 1 over 24 h
    merchant = await create_merchant(sessionmaker)
    async with sessionmaker() as s:
        health = await merchant_health(s, merchant)
    week = {u["component"]: u for u in health["windows"]["7d"]["uptime"]}
    day = {u["component"]: u for u in health["windows"]["24h"]["uptime"]}
    assert (week["redis"]["probes"], week["redis"]["up"], week["redis"]["uptime_pct"]) == (2, 1, 50.0)
    assert day["redis"]["uptime_pct"] == 100.0 and day["postgres"]["uptime_pct"] == 100.0


async def test_a_missing_dependency_is_reported_down_not_raised(engine):
    async def no_temporal():
        return None

    checks = await readiness(engine, None, no_temporal)
    assert checks["postgres"]["status"] == "up"
    assert checks["redis"]["status"] == "down" and "PAYOPS_REDIS_URL" in checks["redis"]["error"]
    assert checks["temporal"]["status"] == "down"


def test_the_schedule_runs_every_configured_interval(settings):
    from workers.schedules import ready_probe_schedule  # why: imports workflow modules

    schedule = ready_probe_schedule(settings.model_copy(update={"ready_probe_every_seconds": 15.0,
                                                                "api_log_retention_days": 7.0}))
    assert schedule.action.workflow == "ReadyProbeWorkflow"
    assert schedule.spec.intervals[0].every == timedelta(seconds=15)
    assert schedule.action.args[0].retention_days == 7.0
    assert type(settings).model_fields["ready_probe_every_seconds"].default == 60.0
