"""Dashboard KPIs, trends, breakdowns and the heatmap: answered from the rollups, cached briefly
in Redis. Every read is tenant-scoped: a merchant user sees only its own merchant."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from api.deps import Session, merchant_scope, require
from api.schemas.common import problems
from api.schemas.dashboard import Breakdown, Heatmap, Overview, Trends
from core.dashboards import metrics as dm
from core.platform.auth_tokens import Principal
from core.platform.roles import Permission

router = APIRouter(tags=["dashboard"])

DashboardRead = Annotated[Principal, Depends(require(Permission.DASHBOARD_READ))]
PeriodQ = Annotated[str | None, Query(description="24h | 7d | 30d | 90d (ignored when from/to are given)")]
FromQ = Annotated[datetime | None, Query(alias="from", description="inclusive; floored to the UTC hour")]
ToQ = Annotated[datetime | None, Query(description="exclusive; ceiled to the UTC hour")]
CurrencyQ = Annotated[str | None, Query(pattern=r"^[A-Z]{3}$")]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


async def cached_body(request: Request, key: str, compute: Callable[[], Awaitable[dict]]) -> tuple[bytes, bool]:
    """The JSON answer from the snapshot cache, or computed (and stored); and whether it was a hit."""
    cache = request.app.state.dashboard_cache

    async def produce() -> bytes:
        return json.dumps(await compute(), default=_json_default, separators=(",", ":")).encode()

    return await cache.get_or_compute(key, produce)


async def cached_json(request: Request, key: str, compute: Callable[[], Awaitable[dict]]) -> Response:
    """The answer from the snapshot cache, or computed (and stored); `X-Cache` says which."""
    body, hit = await cached_body(request, key, compute)
    return Response(body, media_type="application/json", headers={"X-Cache": "hit" if hit else "miss"})


def _scope(principal: Principal, merchant_id, project, source, currency) -> dm.Scope:
    return dm.Scope(merchant_scope(principal, merchant_id), project, source, currency)


@router.get("/dashboard/overview", response_model=Overview, responses=problems(401, 403, 422))
async def overview(
    request: Request, principal: DashboardRead, session: Session,
    period: PeriodQ = None, from_: FromQ = None, to: ToQ = None,
    merchant_id: str | None = None, project: str | None = None, source: str | None = None,
    currency: CurrencyQ = None,
):
    """GMV, net revenue, fees, refunds, average transaction, payouts by status group (counts and
    amounts), float available (merchants' available ledger balances), success rate, conversion and
    fraud rate — each with the previous window's value. Money comes per currency. Default window:
    the last 24 hours (whole UTC hours, the current one included)."""
    scope = _scope(principal, merchant_id, project, source, currency)
    return await cached_json(request, *overview_query(session, scope, period, from_, to))


# The reads below are shared with the dashboard widgets' data (api/routers/dashboard_widgets.py):
# the same computation under the same cache key, so a widget shows the Overview's own numbers.
Query_ = tuple[str, Callable[[], Awaitable[dict]]]


def overview_query(session, scope: dm.Scope, period, from_, to) -> Query_:
    window = dm.resolve_window(period, from_, to)
    key = dm.cache_key("overview", w=[window.start, window.end], s=scope.key())
    return key, lambda: dm.overview(session, window, scope)


def trends_query(session, scope: dm.Scope, *, metric: str, granularity: str, tz_name: str, period, from_, to) -> Query_:
    window = dm.resolve_window(period, from_, to, default="30d" if granularity == "day" else "24h")
    key = dm.cache_key("trends", w=[window.start, window.end], s=scope.key(), m=metric, g=granularity, tz=tz_name)
    return key, lambda: dm.trends(session, window, scope, metric=metric, granularity=granularity,  # type: ignore[arg-type]
                                  tz_name=tz_name)


def breakdown_query(session, scope: dm.Scope, *, by: str, limit: int, period, from_, to) -> Query_:
    window = dm.resolve_window(period, from_, to, default="30d")
    key = dm.cache_key("breakdown", w=[window.start, window.end], s=scope.key(), by=by, n=limit)
    return key, lambda: dm.breakdown(session, window, scope, by=by, limit=limit)  # type: ignore[arg-type]


@router.get("/metrics/trends", response_model=Trends, responses=problems(401, 403, 422))
async def trends(
    request: Request, principal: DashboardRead, session: Session,
    metric: Annotated[str, Query(description=", ".join(dm.TREND_METRICS))] = "gmv",
    granularity: Annotated[str, Query(pattern="^(hour|day)$")] = "day",
    tz: Annotated[str | None, Query(description="IANA time zone for day buckets and labels")] = None,
    period: PeriodQ = None, from_: FromQ = None, to: ToQ = None,
    merchant_id: str | None = None, project: str | None = None, source: str | None = None,
    currency: CurrencyQ = None,
):
    """One metric over time, by hour or by day in a reporting time zone; money metrics give one
    series per currency. Empty buckets are zero (or null for rates)."""
    scope = _scope(principal, merchant_id, project, source, currency)
    tz_name = tz or request.app.state.settings.dashboard_timezone
    return await cached_json(request, *trends_query(session, scope, metric=metric, granularity=granularity,
                                                    tz_name=tz_name, period=period, from_=from_, to=to))


@router.get("/metrics/breakdown", response_model=Breakdown, responses=problems(401, 403, 422))
async def breakdown(
    request: Request, principal: DashboardRead, session: Session,
    by: Annotated[str, Query(pattern="^(project|merchant|source|status|currency|rail|country)$")],
    period: PeriodQ = None, from_: FromQ = None, to: ToQ = None,
    merchant_id: str | None = None, project: str | None = None, source: str | None = None,
    currency: CurrencyQ = None, limit: Annotated[int, Query(ge=1, le=500)] = 100,
):
    """KPIs per project, merchant, source, status, currency or payer country (per currency, by
    GMV; `country` is ISO 3166-1 alpha-2, null when unknown, read from the transactions rather
    than the rollups); `rail` breaks payouts down by rail."""
    scope = _scope(principal, merchant_id, project, source, currency)
    return await cached_json(request, *breakdown_query(session, scope, by=by, limit=limit, period=period,
                                                       from_=from_, to=to))


@router.get("/metrics/heatmap", response_model=Heatmap, responses=problems(401, 403, 422))
async def heatmap(
    request: Request, principal: DashboardRead, session: Session,
    metric: Annotated[str, Query(pattern="^(transactions|succeeded|failed|gmv|fraud_flagged)$")] = "transactions",
    tz: str | None = None, period: PeriodQ = None, from_: FromQ = None, to: ToQ = None,
    merchant_id: str | None = None, project: str | None = None, source: str | None = None,
    currency: CurrencyQ = None,
):
    """Hour of day × weekday (ISO, 1 = Monday) in the reporting time zone; 168 cells."""
    scope = _scope(principal, merchant_id, project, source, currency)
    window = dm.resolve_window(period, from_, to, default="30d")
    tz_name = tz or request.app.state.settings.dashboard_timezone
    key = dm.cache_key("heatmap", w=[window.start, window.end], s=scope.key(), m=metric, tz=tz_name)
    return await cached_json(request, key, lambda: dm.heatmap(session, window, scope, metric=metric, tz_name=tz_name))
