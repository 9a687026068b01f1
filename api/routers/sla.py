"""SLA breaches for the console: payouts past their settlement target now (open breaches), and
payouts that settled late, by day, grouped by rail, connector and beneficiary country. Read-only,
over the payouts table; the target itself is what routing set from the rail's SLA rule."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.deps import Session, require
from api.schemas.common import problems
from core.platform.auth_tokens import Principal
from core.platform.errors import Forbidden
from core.platform.roles import Permission
from core.rails import store as rail_store

router = APIRouter(prefix="/sla", tags=["rails"])

def _platform_reader(principal: Annotated[Principal, Depends(require(Permission.PAYOUTS_READ))]) -> Principal:
    if principal.is_merchant_user:
        raise Forbidden("SLA breaches are for platform roles")
    return principal


PlatformRead = Annotated[Principal, Depends(_platform_reader)]


class BreachGroup(BaseModel):
    rail: str | None
    connector: str | None
    country: str | None = Field(description="the beneficiary's country (from its IBAN) when known")
    currency: str
    count: int
    amount_minor: int
    oldest_target_at: datetime | None = None


class OpenBreach(BaseModel):
    payout_id: str
    merchant_id: str
    rail: str | None
    connector: str | None
    country: str | None
    status: str
    amount_minor: int
    currency: str
    settlement_target_at: datetime
    overdue_seconds: float


class BreachDay(BaseModel):
    day: str = Field(description="UTC date the targets fell on")
    rail: str | None
    connector: str | None
    country: str | None
    due: int = Field(description="payouts whose target fell on that day")
    breached: int = Field(description="of those, settled after the target or not settled by it")


class SlaBreaches(BaseModel):
    open_total: int
    open_by_group: list[BreachGroup]
    open_payouts: list[OpenBreach] = Field(description="the 100 most overdue")
    history: list[BreachDay]
    days: int


@router.get("/breaches", response_model=SlaBreaches, responses=problems(401, 403, 422))
async def sla_breaches(principal: PlatformRead, session: Session, days: int = Query(default=14, ge=1, le=90)):
    """Open breaches (past the settlement target, not settled) by rail, connector, country and
    currency, the most overdue payouts, and per day over `days` how many targets were missed."""
    groups, rows, history = await rail_store.sla_breaches(session, days)
    return {
        "open_total": sum(g["count"] for g in groups),
        "open_by_group": [dict(g) for g in groups],
        "open_payouts": [dict(r) for r in rows],
        "history": [dict(r) for r in history],
        "days": days,
    }
