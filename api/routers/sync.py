"""Provider syncs: status of every source, manual trigger, backfills, pausing a schedule."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query

from api.deps import OptionalTemporal, Session, SettingsDep, TemporalDep, require
from api.schemas.common import problems
from api.schemas.sync import (
    BackfillBody,
    QuarantinedRecord,
    ScheduleNote,
    ScheduleOut,
    Source,
    SourceStatus,
    SyncProgress,
    SyncStarted,
    TriggerBody,
)
from core.sync import service as sync_service
from core.platform.auth_tokens import Principal
from core.platform.errors import Forbidden
from core.platform.roles import Permission

router = APIRouter(prefix="/sync", tags=["sync"])


def _platform_reader(principal: Annotated[Principal, Depends(require(Permission.DASHBOARD_READ))]) -> Principal:
    if principal.is_merchant_user:
        raise Forbidden("sync status is platform information")
    return principal


SyncRead = Annotated[Principal, Depends(_platform_reader)]
SyncManage = Annotated[Principal, Depends(require(Permission.SYNC_MANAGE))]


@router.get("/status", response_model=list[SourceStatus], responses=problems(401, 403))
async def get_sync_status(principal: SyncRead, session: Session,
                          temporal: OptionalTemporal):
    """Every source: state (idle/running/error and the last error), cursors, records synced and
    quarantined, its schedule (paused, interval, next run) and its recent runs. Works while
    Temporal is unreachable (schedule is then null)."""
    return await sync_service.sync_status(session, temporal)


@router.get("/quarantine", response_model=list[QuarantinedRecord], responses=problems(401, 403, 422))
async def get_sync_quarantine(
    principal: SyncRead, session: Session,
    source: Annotated[Source | None, Query(description="only this source's records")] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="records older than this id (paging)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
):
    """Provider records a sync could not store, newest first, each with the reason (bad amount,
    unknown status, a NUL character, a text too long to keep whole, what the database refused)
    and the record as received. The rest of their pages was stored."""
    return await sync_service.list_quarantine(session, source=source, before_id=before_id, limit=limit)


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
