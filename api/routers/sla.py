"""SLA: the rules that set settlement targets, keyed by rail, connector, beneficiary country and
priority (most specific first; core/sla/rules.py), and the breaches: payouts past their settlement
target now (open breaches), and payouts that settled late, by day, grouped by rail, connector and
beneficiary country. The target on each payout is what routing set from the rule that applied."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from api.deps import PayoutOperate, Session, require
from api.schemas.common import problems
from api.schemas.sla import PriorityKey, SlaResolution, SlaRuleChange, SlaRuleIn, SlaRuleOut, SlaRulePatch
from connectors.registry import build_registry
from core.platform.auth_tokens import Principal
from core.platform.errors import Forbidden
from core.platform.roles import Permission
from core.rails import store as rail_store
from core.sla import service as sla_service
from core.sla import store as sla_store
from core.sla.rules import KEY_ORDER, PayoutKeys

router = APIRouter(prefix="/sla", tags=["rails"])

def _platform_reader(principal: Annotated[Principal, Depends(require(Permission.PAYOUTS_READ))]) -> Principal:
    if principal.is_merchant_user:
        raise Forbidden("SLA breaches are for platform roles")
    return principal


PlatformRead = Annotated[Principal, Depends(_platform_reader)]


def _platform_operator(principal: PayoutOperate) -> Principal:
    if principal.is_merchant_user:
        raise Forbidden("SLA rules are changed by platform roles")
    return principal


PlatformOperate = Annotated[Principal, Depends(_platform_operator)]

PRECEDENCE = ("the enabled rule that sets the most of the four keys wins; between rules that set as many, "
              f"the order {' > '.join(KEY_ORDER)} decides, then the older rule; no rule: the rail's own terms")


class SlaRuleApplied(BaseModel):
    id: int
    rail: str | None = None
    connector: str | None = None
    country: str | None = None
    priority: str | None = None
    target_seconds: int | None = None
    target_business_days: int | None = None
    specificity: int


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
    priority: str | None = None
    sla_rule: SlaRuleApplied | None = Field(
        default=None, description="the SLA rule that set the target at routing; null = the rail's own terms")


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


# --- SLA rules ------------------------------------------------------------------------------


def _rule_out(row: dict) -> dict:
    return {**row, "specificity": sum(row[k] is not None for k in KEY_ORDER)}


def _connector_names(request: Request) -> list[str]:
    registry = getattr(request.app.state, "connectors", None)
    if registry is None:
        registry = request.app.state.connectors = build_registry(request.app.state.settings)
    return registry.names()


@router.get("/rules", response_model=list[SlaRuleOut], responses=problems(401, 403))
async def list_sla_rules(principal: PlatformRead, session: Session):
    """Every SLA rule, most specific first. A payout's target comes from the enabled rule that
    matches its rail, connector, beneficiary country and priority and sets the most of those keys."""
    rows = [_rule_out(r) for r in await sla_store.list_rules(session)]
    return sorted(rows, key=lambda r: (-r["specificity"], *[r[k] is None for k in KEY_ORDER], r["id"]))


@router.get("/rules/resolve", response_model=SlaResolution, responses=problems(401, 403, 422))
async def resolve_sla_rule(
    principal: PlatformRead, session: Session,
    rail: str = Query(max_length=32),
    connector: str | None = Query(default=None, max_length=64),
    country: str | None = Query(default=None, pattern=r"^[A-Za-z]{2}$"),
    priority: PriorityKey | None = None,
):
    """Which rule applies to a payout with these keys, and why (each rule's verdict)."""
    keys = PayoutKeys(rail=rail, connector=connector, country=country.upper() if country else None,
                      priority=priority)
    found = await sla_service.resolve(session, keys)
    rule = found["rule"]
    row = await sla_store.get_rule(session, rule.id) if rule is not None else None
    return {**keys.model_dump(), "rule": _rule_out(row) if row else None, "why": found["why"],
            "precedence": PRECEDENCE, "rules": found["rules"]}


@router.get("/rules/changes", response_model=list[SlaRuleChange], responses=problems(401, 403, 422))
async def sla_rule_changes(principal: PlatformRead, session: Session, rule_id: int | None = None,
                           limit: int = Query(default=100, ge=1, le=500)):
    """The audit trail of SLA rules: who created, changed or deleted which rule, before and after."""
    return await sla_store.list_changes(session, rule_id, limit)


@router.post("/rules", status_code=201, response_model=SlaRuleOut, responses=problems(401, 403, 409, 422))
async def create_sla_rule(body: SlaRuleIn, principal: PlatformOperate, session: Session, request: Request):
    """Add a rule. It sets the target of payouts routed from now on whose keys match, where it is
    the most specific match."""
    row = await sla_service.create_rule(session, body.model_dump(), _connector_names(request), principal.sub)
    return _rule_out(row)


@router.patch("/rules/{rule_id}", response_model=SlaRuleOut, responses=problems(401, 403, 404, 409, 422))
async def update_sla_rule(rule_id: int, body: SlaRulePatch, principal: PlatformOperate, session: Session,
                          request: Request):
    """Change a rule's keys, target, description or enabled flag (payouts routed from now on)."""
    row = await sla_service.update_rule(session, rule_id, body.model_dump(exclude_unset=True),
                                        _connector_names(request), principal.sub)
    return _rule_out(row)


@router.delete("/rules/{rule_id}", status_code=204, responses=problems(401, 403, 404))
async def delete_sla_rule(rule_id: int, principal: PlatformOperate, session: Session):
    """Remove a rule: the next most specific match (or the rail's own terms) applies instead."""
    await sla_service.delete_rule(session, rule_id, principal.sub)
    return Response(status_code=204)
