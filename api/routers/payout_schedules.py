"""Payout schedules: a merchant's or the platform's batch of payouts on a calendar or cron, each
a Temporal Schedule whose fires go through the bulk-payout path (POST /bulk-payouts)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, Response

from api.deps import OptionalTemporal, PayoutRead, PayoutWrite, Session, SettingsDep, merchant_scope
from api.routers.payouts import _creating_merchant
from api.schemas.common import problems
from api.schemas.payout_schedules import (
    PayoutScheduleCreate,
    PayoutScheduleOut,
    PayoutSchedulePage,
    PayoutScheduleUpdate,
    Preview,
    PreviewRequest,
    SchedulePreview,
)
from core.payouts import schedules
from core.payouts.schedule_spec import MAX_PREVIEW, to_cron
from core.platform.errors import Unprocessable

router = APIRouter(prefix="/payout-schedules", tags=["payout schedules"])

_AFTER = Query(default=None, description="compute from this instant (ISO 8601 with offset) instead of now")


@router.post("", response_model=PayoutScheduleOut, status_code=201, responses=problems(401, 403, 404, 422))
async def create_payout_schedule(body: PayoutScheduleCreate, principal: PayoutWrite, session: Session,
                                 temporal: OptionalTemporal, settings: SettingsDep):
    """Schedule a batch of payouts: daily at HH:MM, weekly on weekdays at HH:MM, or a 5-field cron
    expression, in an IANA time zone. Each fire makes one bulk payout (as POST /bulk-payouts, with
    its approval threshold) whose Idempotency-Key is the schedule id plus the fire time, so a time
    fired twice or backfilled never makes a second batch. A merchant admin's schedule is the
    merchant's (`owner: merchant`); an ops one names `merchant_id` and is the platform's."""
    merchant_id = _creating_merchant(principal, body.merchant_id)
    return await schedules.create_schedule(
        session, temporal, settings, merchant_id=merchant_id,
        owner=schedules.MERCHANT if principal.is_merchant_user else schedules.PLATFORM, actor=principal.sub,
        name=body.name, spec=body.spec, time_zone=body.time_zone, mode=body.mode, items=body.items,
        enabled=body.enabled)


@router.get("", response_model=PayoutSchedulePage, responses=problems(401, 403, 422))
async def list_payout_schedules(principal: PayoutRead, session: Session,
                                merchant_id: str | None = Query(default=None, max_length=64)):
    """Payout schedules, newest first. Merchant users see only their own merchant's."""
    return {"data": await schedules.list_schedules(session, merchant_id=merchant_scope(principal, merchant_id))}


@router.post("/preview", response_model=Preview, responses=problems(401, 403, 422))
async def preview_payout_schedule_spec(body: PreviewRequest, principal: PayoutRead,
                                       after: datetime | None = _AFTER):
    """The next `count` fire times of a spec not saved yet (croniter on the same cron expression
    the Temporal Schedule would run). A bad cron expression or time zone is a 422 saying why."""
    cron = to_cron(body.spec)
    return {"cron": cron, "time_zone": body.time_zone,
            "next": schedules.preview(cron, body.time_zone, body.count, _aware(after))}


@router.get("/{schedule_id}", response_model=PayoutScheduleOut, responses=problems(401, 403, 404))
async def get_payout_schedule(schedule_id: str, principal: PayoutRead, session: Session):
    """One schedule with its last fires (the bulk payout each made, or why none)."""
    return await schedules.get_schedule(session, schedule_id, merchant_scope(principal, None))


@router.get("/{schedule_id}/preview", response_model=SchedulePreview, responses=problems(401, 403, 404, 422))
async def preview_payout_schedule(schedule_id: str, principal: PayoutRead, session: Session,
                                  count: int = Query(default=5, ge=1, le=MAX_PREVIEW), after: datetime | None = _AFTER):
    """The schedule's next `count` fire times, in its time zone and in UTC."""
    return await schedules.schedule_preview(session, schedule_id, merchant_scope(principal, None), count,
                                            _aware(after))


@router.patch("/{schedule_id}", response_model=PayoutScheduleOut, responses=problems(401, 403, 404, 422))
async def update_payout_schedule(schedule_id: str, body: PayoutScheduleUpdate, principal: PayoutWrite,
                                 session: Session, temporal: OptionalTemporal, settings: SettingsDep):
    """Change a schedule; `{"enabled": false}` pauses it (its Temporal Schedule too), `true`
    resumes it. A merchant may change its own schedules, not the platform's (403)."""
    return await schedules.update_schedule(
        session, temporal, settings, schedule_id, scope_merchant_id=merchant_scope(principal, None),
        is_merchant_user=principal.is_merchant_user, changes={field: getattr(body, field) for field in body.model_fields_set})


@router.delete("/{schedule_id}", status_code=204, response_class=Response, responses=problems(401, 403, 404))
async def delete_payout_schedule(schedule_id: str, principal: PayoutWrite, session: Session,
                                 temporal: OptionalTemporal):
    """Delete the schedule and its Temporal Schedule. Batches it made stay."""
    await schedules.delete_schedule(session, temporal, schedule_id, scope_merchant_id=merchant_scope(principal, None),
                                    is_merchant_user=principal.is_merchant_user)
    return Response(status_code=204)


def _aware(after: datetime | None) -> datetime | None:
    if after is not None and after.tzinfo is None:
        raise Unprocessable("after needs a UTC offset (e.g. 2026-01-05T00:00:00Z)",
                            extra={"errors": [{"loc": ["query", "after"], "msg": "naive datetime",
                                               "type": "value_error"}]})
    if after is not None and not 1970 <= after.year <= 9000:
        raise Unprocessable("after must lie between the years 1970 and 9000",
                            extra={"errors": [{"loc": ["query", "after"], "msg": "out of range",
                                               "type": "value_error"}]})
    return after
