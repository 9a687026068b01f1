"""Provider syncs as the API and CLI see them: schedules (create/update idempotently, pause,
resume), manual triggers, backfills and their progress, and the status of every source."""

from __future__ import annotations

import logging
import uuid
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from core.platform.errors import NotFound, ServiceUnavailable, Unprocessable
from core.platform.temporal import upsert_schedule
from core.platform.names import SYNC_WORKFLOW, sync_backfill_workflow_id, sync_manual_workflow_id, sync_schedule_id, sync_workflow_id
from core.platform.settings import Settings
from core.sync.models import SOURCES, SyncProgress, SyncWorkflowInput
from core.platform.tables import sync_quarantine, sync_runs, sync_state

log = logging.getLogger("payops.sync")

QUERY_TIMEOUT = timedelta(seconds=5)


def check_source(source: str) -> str:
    if source not in SOURCES:
        raise Unprocessable(f"unknown sync source {source!r}; known: {', '.join(SOURCES)}")
    return source


def source_configured(settings: Settings, source: str) -> bool:
    return bool({"vima": settings.vima_base_url, "payshack": settings.payshack_base_url}.get(source))


def interval_seconds(settings: Settings, source: str) -> int:
    return {"vima": settings.vima_sync_interval_seconds, "payshack": settings.payshack_sync_interval_seconds}[source]


def _workflow_input(settings: Settings, source: str, **fields: Any) -> SyncWorkflowInput:
    return SyncWorkflowInput(
        source=source, pages_per_activity=settings.sync_pages_per_activity,
        activities_per_run=settings.sync_activities_per_run, **fields,
    )


def _schedule(settings: Settings, source: str) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SYNC_WORKFLOW, _workflow_input(settings, source, requested_by="schedule"),
            id=sync_workflow_id(source), task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=interval_seconds(settings, source)))]),
        # a run still catching up when the next is due: skip the next one, never pile up
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_sync_schedules(client: Client, settings: Settings) -> list[str]:
    """Create or update the schedule of every configured source; a paused schedule stays paused.
    Idempotent: call it on every start."""
    done = []
    for source in SOURCES:
        if not source_configured(settings, source):
            continue
        schedule_id = sync_schedule_id(source)
        await upsert_schedule(client, schedule_id, _schedule(settings, source))  # keeps paused/note
        done.append(schedule_id)
    return done


async def _schedule_handle(client: Client, source: str):
    handle = client.get_schedule_handle(sync_schedule_id(check_source(source)))
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"no sync schedule for {source} (is the source configured?)") from None
        raise ServiceUnavailable(f"Temporal: {exc.message}") from exc
    return handle, description


async def pause_schedule(client: Client, source: str, *, note: str | None = None) -> dict[str, Any]:
    handle, _ = await _schedule_handle(client, source)
    await handle.pause(note=note or "paused via payops")
    return await schedule_info(client, source)


async def resume_schedule(client: Client, source: str, *, note: str | None = None) -> dict[str, Any]:
    handle, _ = await _schedule_handle(client, source)
    await handle.unpause(note=note or "resumed via payops")
    return await schedule_info(client, source)


async def schedule_info(client: Client | None, source: str) -> dict[str, Any] | None:
    if client is None:
        return None
    try:
        _, d = await _schedule_handle(client, source)
    except (NotFound, ServiceUnavailable):
        return None
    every = d.schedule.spec.intervals[0].every if d.schedule.spec.intervals else None
    return {
        "schedule_id": sync_schedule_id(source),
        "paused": d.schedule.state.paused,
        "note": d.schedule.state.note or None,
        "interval_seconds": int(every.total_seconds()) if every else None,
        "next_run_at": d.info.next_action_times[0] if d.info.next_action_times else None,
        "running_workflows": [a.workflow_id for a in d.info.running_actions],
    }


async def trigger_sync(client: Client, settings: Settings, source: str, *, requested_by: str | None) -> dict[str, Any]:
    """Run an incremental sync now. A manual run already in progress is returned, not doubled."""
    check_source(source)
    workflow_id = sync_manual_workflow_id(source)
    handle = await client.start_workflow(
        SYNC_WORKFLOW, _workflow_input(settings, source, requested_by=requested_by), id=workflow_id,
        task_queue=settings.temporal_task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return {"source": source, "workflow_id": workflow_id, "run_id": handle.result_run_id}


def _parse_day(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise Unprocessable(f"{field} must be an ISO date (YYYY-MM-DD), got {value!r}") from None


async def start_backfill(client: Client, settings: Settings, source: str, date_from: str, date_to: str, *,
                         requested_by: str | None) -> dict[str, Any]:
    """Re-read a date range (inclusive days) from the provider; returns the workflow to watch."""
    check_source(source)
    first, last = _parse_day(date_from, "date_from"), _parse_day(date_to, "date_to")
    if first > last:
        raise Unprocessable("date_from must not be after date_to")
    workflow_id = sync_backfill_workflow_id(source, uuid.uuid4().hex[:12])
    await client.start_workflow(
        SYNC_WORKFLOW,
        _workflow_input(settings, source, mode="backfill", date_from=first.isoformat(), date_to=last.isoformat(),
                        requested_by=requested_by),
        id=workflow_id, task_queue=settings.temporal_task_queue,
    )
    return {"source": source, "workflow_id": workflow_id, "date_from": first.isoformat(), "date_to": last.isoformat()}


async def sync_progress(client: Client, workflow_id: str) -> SyncProgress:
    if not workflow_id.startswith("sync-"):
        raise NotFound(f"no sync workflow {workflow_id}")
    handle = client.get_workflow_handle(workflow_id)
    try:
        return await handle.query("progress", result_type=SyncProgress, rpc_timeout=QUERY_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"no sync workflow {workflow_id}") from None
        raise ServiceUnavailable(f"Temporal: {exc.message}") from exc


async def sync_status(session: AsyncSession, client: Client | None, *, recent_runs: int = 5) -> list[dict[str, Any]]:
    states = {r.source: r._mapping for r in (await session.execute(select(sync_state))).all()}
    out = []
    for source in SOURCES:
        state = states.get(source)
        runs = (await session.execute(
            select(sync_runs).where(sync_runs.c.source == source).order_by(sync_runs.c.started_at.desc()).limit(recent_runs)
        )).all()
        out.append({
            "source": source,
            "status": state["status"] if state else "never_run",
            "error": state["error"] if state else None,
            "cursors": dict(state["cursors"]) if state else {},
            "records_synced": state["records_synced"] if state else 0,
            "records_quarantined": state["records_quarantined"] if state else 0,
            "last_run_at": state["last_run_at"] if state else None,
            "last_success_at": state["last_success_at"] if state else None,
            "schedule": await schedule_info(client, source),
            "recent_runs": [dict(r._mapping) for r in runs],
        })
    return out


async def list_quarantine(session: AsyncSession, *, source: str | None, before_id: int | None,
                          limit: int) -> list[dict[str, Any]]:
    """Quarantined provider records, newest first; page with `before_id` (the last id seen)."""
    query = select(sync_quarantine).order_by(sync_quarantine.c.id.desc()).limit(limit)
    if source is not None:
        query = query.where(sync_quarantine.c.source == check_source(source))
    if before_id is not None:
        query = query.where(sync_quarantine.c.id < before_id)
    return [dict(r._mapping) for r in (await session.execute(query)).all()]
