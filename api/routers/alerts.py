"""Alerts raised by the alert check (and other parts of payops): list, acknowledge, resolve; the
rules they come from. A merchant user sees only alerts about its own merchant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Session, merchant_scope
from api.routers.dashboard import DashboardRead
from api.schemas.common import problems
from api.schemas.dashboard import AlertOut, AlertPage, AlertRuleOut
from core.alerts import service as alert_service

router = APIRouter(prefix="/alerts", tags=["alerts"])

SEVERITIES = "^(low|medium|high|critical)(,(low|medium|high|critical))*$"


@router.get("", response_model=AlertPage, responses=problems(401, 403, 422))
async def list_alerts(
    principal: DashboardRead, session: Session,
    status: Annotated[str | None, Query(pattern="^(open|acknowledged|resolved|expired)$")] = None,
    severity: Annotated[str | None, Query(pattern=SEVERITIES, description="one, or several: critical,high")] = None,
    rule: str | None = None, merchant_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: str | None = None,
):
    """Alerts, newest first. A repeated firing of an open (or acknowledged) alert raises its
    `occurrences` and `last_seen_at` instead of opening another. An open alert nobody acknowledged
    becomes `expired` once its severity's lifetime has passed since it last fired
    (PAYOPS_ALERT_TTL_HOURS, PAYOPS_ALERT_TTL_HOURS_BY_SEVERITY); if it fires again, a new alert opens."""
    return await alert_service.list_alerts(session, merchant_id=merchant_scope(principal, merchant_id),
                                           status=status, severity=severity, rule=rule, limit=limit, cursor=cursor)


@router.get("/rules", response_model=list[AlertRuleOut], responses=problems(401, 403))
async def list_rules(principal: DashboardRead, session: Session):
    """The rules the alert check evaluates (seeded with defaults by the migration)."""
    return await alert_service.list_rules(session)


@router.post("/{alert_id}/acknowledge", response_model=AlertOut, responses=problems(401, 403, 404, 409))
async def acknowledge_alert(alert_id: int, principal: DashboardRead, session: Session):
    """Someone is on it: an acknowledged alert never expires. Repeated firings keep counting on it.
    409 once resolved or expired."""
    return await alert_service.acknowledge(session, alert_id, actor=principal.sub,
                                           merchant_id=merchant_scope(principal, None))


@router.post("/{alert_id}/resolve", response_model=AlertOut, responses=problems(401, 403, 404, 409))
async def resolve_alert(alert_id: int, principal: DashboardRead, session: Session):
    """Close the alert; if its condition holds at the next check, a new alert opens. 409 once expired."""
    return await alert_service.resolve(session, alert_id, actor=principal.sub,
                                       merchant_id=merchant_scope(principal, None))
