"""Events: what happened to your payouts, as webhooks deliver it; list, fetch, redeliver."""

from __future__ import annotations

from fastapi import APIRouter, Query

from api.deps import PayoutRead, PayoutWrite, Session, SettingsDep, TemporalDep, merchant_scope
from api.schemas.common import problems
from api.schemas.webhooks import EventDetail, EventPage, RedeliverBody, RedeliverResult
from core.webhooks import events as webhook_events
from core.webhooks import service as webhook_service
from core.webhooks.models import EventType

router = APIRouter(prefix="/events", tags=["webhooks"])


@router.get("", response_model=EventPage, responses=problems(401, 403, 422))
async def list_events(
    principal: PayoutRead,
    session: Session,
    merchant_id: str | None = None,
    type: EventType | None = Query(default=None, description="only this event type"),
    payout_id: str | None = None,
    limit: int = Query(default=50, ge=1, le=200),
    cursor: str | None = Query(default=None, description="`next_cursor` of the previous page"),
):
    """Events, newest first, keyset-paginated. Merchant users see only their own."""
    rows, next_cursor = await webhook_events.list_events(
        session, merchant_id=merchant_scope(principal, merchant_id), event_type=type.value if type else None,
        payout_id=payout_id, limit=limit, cursor=cursor,
    )
    return {"data": [webhook_events.envelope(r) for r in rows], "next_cursor": next_cursor}


@router.get("/{event_id}", response_model=EventDetail, responses=problems(401, 403, 404))
async def get_event(event_id: str, principal: PayoutRead, session: Session):
    """One event, with every delivery attempt made for it."""
    row = await webhook_events.get_event(session, event_id, merchant_scope(principal, None))
    attempts = await webhook_events.event_attempts(session, event_id)
    return {**webhook_events.envelope(row), "attempts": attempts}


@router.post("/{event_id}/redeliver", response_model=RedeliverResult, status_code=202,
             responses=problems(401, 403, 404, 409, 503))
async def redeliver_event(event_id: str, principal: PayoutWrite, session: Session, temporal: TemporalDep,
                          settings: SettingsDep, body: RedeliverBody | None = None):
    """Send the event again (same id, same body, fresh signature), to one endpoint or every
    enabled endpoint subscribed to its type. 409 when the endpoint is disabled."""
    started = await webhook_service.redeliver(
        session, temporal, settings, event_id, merchant_scope(principal, None), body.endpoint_id if body else None
    )
    return {"deliveries": started}
