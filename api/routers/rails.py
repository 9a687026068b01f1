"""Rails: SLA and fee rules per rail (read and change), holiday calendars, connector health."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from api.deps import OptionalTemporal, PayoutOperate, PayoutRead, Session, SettingsDep, require
from api.schemas.common import problems
from api.schemas.rails import CalendarDayIn, CalendarDayOut, ConnectorHealthOut, RailRuleOut, RailRuleUpdate
from core.rails import service as rail_service
from core.rails import store as rail_store
from core.platform.auth_tokens import Principal
from core.platform.errors import Forbidden, NotFound
from core.rails.rules import RailRule, next_cutoff
from core.platform.roles import Permission
from connectors.registry import build_registry

router = APIRouter(prefix="/rails", tags=["rails"])
connectors_router = APIRouter(prefix="/connectors", tags=["rails"])

def _platform_reader(principal: Annotated[Principal, Depends(require(Permission.PAYOUTS_READ))]) -> Principal:
    if principal.is_merchant_user:
        raise Forbidden("connector health is for platform roles")
    return principal


PlatformRead = Annotated[Principal, Depends(_platform_reader)]


async def _rule_view(session, row: dict) -> dict:
    rule = RailRule.model_validate({k: row[k] for k in RailRule.model_fields})
    calendars = await rail_store.load_calendars(session)
    cutoff = next_cutoff(rule, datetime.now(timezone.utc), calendars[rule.calendar])
    return {**row, "next_cutoff_at": cutoff and cutoff.astimezone(timezone.utc)}  # UTC, like every instant we serve


@router.get("", response_model=list[RailRuleOut], responses=problems(401, 403))
async def list_rails(principal: PayoutRead, session: Session):
    """Every rail's SLA rule (cutoff, time zone, settlement days or seconds, calendar) and fee."""
    rows = [await rail_store.get_rule_row(session, r.rail) for r in await rail_store.load_rules(session)]
    return [await _rule_view(session, r) for r in rows]


@router.get("/calendars/{calendar}", response_model=list[CalendarDayOut], responses=problems(401, 403, 404))
async def list_calendar(calendar: str, principal: PayoutRead, session: Session, year: int | None = None):
    """Holidays of a calendar (FED, TARGET, GB, NONE) in `year`: built-in ones and ops' overrides."""
    return await rail_store.list_calendar_days(session, calendar, year or datetime.now(timezone.utc).year)


@router.put("/calendars/{calendar}/days/{day}", response_model=CalendarDayOut, responses=problems(401, 403, 404, 422))
async def set_calendar_day(calendar: str, day: date, body: CalendarDayIn, principal: PayoutOperate, session: Session):
    """Declare a day a holiday (or, with `is_holiday: false`, a working day) in a calendar."""
    row = await rail_store.set_calendar_day(session, calendar, day, body.is_holiday, body.name, principal.sub)
    return {**row, "source": "override"}


@router.delete("/calendars/{calendar}/days/{day}", status_code=204, responses=problems(401, 403, 404))
async def delete_calendar_day(calendar: str, day: date, principal: PayoutOperate, session: Session):
    """Remove an override: the built-in calendar applies to that day again."""
    if not await rail_store.delete_calendar_day(session, calendar, day):
        raise NotFound(f"no override for {day} in {calendar}")
    return Response(status_code=204)


@router.get("/{rail}", response_model=RailRuleOut, responses=problems(401, 403, 404))
async def get_rail(rail: str, principal: PayoutRead, session: Session):
    """One rail's SLA and fee rule, with its next cutoff."""
    return await _rule_view(session, await rail_store.get_rule_row(session, rail))


@router.put("/{rail}", response_model=RailRuleOut, responses=problems(401, 403, 404, 422))
async def update_rail(rail: str, body: RailRuleUpdate, principal: PayoutOperate, session: Session,
                      temporal: OptionalTemporal, settings: SettingsDep):
    """Change a rail's SLA or fee rule. New payouts use it at once (fees at creation, cutoffs and
    targets at routing); a batch rail's Schedule moves to the new cutoff."""
    row = await rail_service.update_rule(session, temporal, settings, rail, body.model_dump(exclude_unset=True),
                                         principal.sub)
    return await _rule_view(session, row)


@connectors_router.get("/health", response_model=list[ConnectorHealthOut], responses=problems(401, 403))
async def connectors_health(principal: PlatformRead, session: Session, request: Request):
    """Each connector's circuit breaker (closed = routable, open = avoided), its last health check
    and its recent submission error rate."""
    registry = getattr(request.app.state, "connectors", None)
    if registry is None:
        registry = request.app.state.connectors = build_registry(request.app.state.settings)
    return await rail_service.connectors_health(session, registry)
