"""Provider syncs: status of every source, manual trigger, backfills, pausing a schedule."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from temporalio.client import Client

from api.deps import Session, SettingsDep, TemporalDep, require
from api.schemas.common import problems
from api.schemas.sync import BackfillBody, ScheduleNote, ScheduleOut, SourceStatus, SyncProgress, SyncStarted, TriggerBody
from core import sync_service
from core.auth_tokens import Principal
from core.errors import Forbidden
from core.roles import Permission

router = APIRouter(prefix="/sync", tags=["sync"])


def _platform_reader(principal: Annotated[Principal, Depends(require(Permission.DASHBOARD_READ))]) -> Principal:
    if principal.is_merchant_user:
        raise Forbidden("sync status is platform information")
    return principal


SyncRead = Annotated[Principal, Depends(_platform_reader)]
SyncManage = Annotated[Principal, Depends(require(Permission.SYNC_MANAGE))]


async def _optional_temporal(request: Request) -> Client | None:
    return await request.app.state.temporal_holder.get()


@router.get("/status", response_model=list[SourceStatus], responses=problems(401, 403))
async def get_sync_status(principal: SyncRead, session: Session,
                          temporal: Annotated[Client | None, Depends(_optional_temporal)]):
    """Every source: state (idle/running/error and the last error), cursors, records synced and
    quarantined, its schedule (paused, interval, next run) and its recent runs. Works while
    Temporal is unreachable (schedule is then null)."""
    return await sync_service.sync_status(session, temporal)


@router.post("/trigger", response_model=SyncStarted, status_code=202, responses=problems(401, 403, 422, 503))
async def trigger_sync(body: TriggerBody, principal: SyncManage, temporal: TemporalDep, settings: SettingsDep):
    """Run an incremental sync of `source` now. While a manual run is in progress the same run
    is returned."""
    return await sync_service.trigger_sync(temporal, settings, body.source, requested_by=principal.sub)


@router.post("/backfill", response_model=SyncStarted, status_code=202, responses=problems(401, 403, 422, 503))
async def start_backfill(body: BackfillBody, principal: SyncManage, temporal: TemporalDep, settings: SettingsDep):
    """Re-read `date_from`..`date_to` (inclusive days) from the provider. Rows already stored are
    updated only when they changed. Watch it with `GET /sync/runs/{workflow_id}`."""
    return await sync_service.start_backfill(temporal, settings, body.source, body.date_from, body.date_to,
                                             requested_by=principal.sub)


@router.get("/runs/{workflow_id}", response_model=SyncProgress, responses=problems(401, 403, 404, 503))
async def get_sync_progress(workflow_id: str, principal: SyncRead, temporal: TemporalDep):
    """Live progress of a sync workflow (pages, rows, expected total, cursor, status)."""
    return await sync_service.sync_progress(temporal, workflow_id)


@router.post("/{source}/pause", response_model=ScheduleOut, responses=problems(401, 403, 404, 422, 503))
async def pause_sync(source: str, principal: SyncManage, temporal: TemporalDep,
                     body: Annotated[ScheduleNote | None, Body()] = None):
    """Pause the source's schedule (runs in progress finish)."""
    return await sync_service.pause_schedule(temporal, source, note=body.note if body else None)


@router.post("/{source}/resume", response_model=ScheduleOut, responses=problems(401, 403, 404, 422, 503))
async def resume_sync(source: str, principal: SyncManage, temporal: TemporalDep,
                      body: Annotated[ScheduleNote | None, Body()] = None):
    """Resume the source's schedule."""
    return await sync_service.resume_schedule(temporal, source, note=body.note if body else None)
