"""The GraphQL read API at /api/v1/graphql (Strawberry, mounted with its FastAPI router).

Same auth (Bearer JWT, the same `get_principal`), the same permissions and tenant scoping
(`merchant_scope`) and the same services as the REST routers: every resolver calls the function
its REST twin calls, so the numbers cannot drift. Read-only: no mutations.

Limits: query depth (QueryDepthLimiter), aliases (MaxAliasesLimiter) and tokens
(MaxTokensLimiter) bound a query's cost; `first` is at most PAYOPS_GRAPHQL_MAX_PAGE_SIZE.
Introspection is off when PAYOPS_ENV=prod. Not in the OpenAPI document
(a GraphQL endpoint has its own schema: `docs/graphql.md`).
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, NewType

import strawberry
from fastapi import Request
from graphql import GraphQLError
from strawberry.extensions import MaskErrors, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.extensions.disable_introspection import DisableIntrospection
from strawberry.fastapi import GraphQLRouter
from strawberry.scalars import JSON
from strawberry.schema.config import StrawberryConfig
from strawberry.types import Info

from api.deps import Authenticated, Session, merchant_scope
from api.routers.dashboard import _json_default
from api.schemas.common import BalanceOut
from api.schemas.dashboard import TransactionPage as RestTransactionPage
from api.schemas.merchant_settlement import SettlementOut
from api.schemas.payouts import PayoutOut
from api.schemas.webhooks import EventOut, WebhookAttemptOut
from core.api_logs import service as api_log_service
from core.dashboards import metrics as dm
from core.merchants import service as merchant_service
from core.merchants import settlement as merchant_settlement
from core.payouts import service as payout_service
from core.platform.auth_tokens import Principal
from core.platform.errors import Forbidden, PayopsError, Unprocessable
from core.platform.roles import Permission
from core.platform.settings import Settings
from core.transactions import queries as tq
from core.webhooks import events as webhook_events

Int64 = NewType("Int64", int)
SCALARS = {Int64: strawberry.scalar(name="Int64", serialize=int, parse_value=int,
                                    description="a 64-bit integer (amounts in minor units)")}

BREAKDOWN_BY = ("project", "merchant", "source", "status", "currency", "rail")


def _plain_json(value: Any) -> Any:
    """The value as REST's JSON has it (the dashboard's own encoder: ISO date-times)."""
    return json.loads(json.dumps(value, default=_json_default))


def _as_rest(model: Any, value: Any) -> Any:
    """The value through REST's response model, so both APIs spell every field alike."""
    return model.model_validate(value).model_dump(mode="json")


async def graphql_context(request: Request, principal: Authenticated, session: Session) -> dict[str, Any]:
    """Unauthenticated requests stop here with REST's 401 problem document."""
    return {"request": request, "principal": principal, "session": session,
            "settings": request.app.state.settings, "session_lock": asyncio.Lock()}


@asynccontextmanager
async def _session(info: Info):
    """The request's one session, one resolver at a time: GraphQL resolves sibling fields
    concurrently and an AsyncSession allows one operation at a time."""
    async with info.context["session_lock"]:
        yield info.context["session"]


def _caller(info: Info, permission: Permission) -> tuple[Principal, Settings]:
    principal: Principal = info.context["principal"]
    if permission not in principal.permissions:
        raise Forbidden(f"your roles do not grant {permission.value}")
    return principal, info.context["settings"]


def _page_size(first: int, settings: Settings) -> int:
    if not 1 <= first <= settings.graphql_max_page_size:
        raise Unprocessable(f"first must be between 1 and {settings.graphql_max_page_size}")
    return first


def _dashboard_scope(principal: Principal, merchant_id, project, source, currency) -> dm.Scope:
    return dm.Scope(merchant_scope(principal, merchant_id), project, source, currency)


@strawberry.type
class Payout:
    id: str
    merchant_id: str
    status: str
    amount: str
    amount_minor: Int64
    currency: str
    fee: str
    fee_minor: Int64
    method: str
    priority: str
    rail: str | None
    connector: str | None
    settlement_target_at: str | None
    beneficiary: JSON | None
    description: str | None
    metadata: JSON
    failure_code: str | None
    failure_message: str | None
    created_at: str
    updated_at: str

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "Payout":
        rest = _as_rest(PayoutOut, view)  # REST's spelling of every field (date-times included)
        return cls(**{name: rest.get(name) for name in cls.__annotations__})


@strawberry.type
class PayoutPage:
    data: list[Payout]
    next_cursor: str | None


@strawberry.type
class Balance:
    currency: str
    available: str
    held: str
    available_minor: Int64
    held_minor: Int64


@strawberry.type
class SettlementRail:
    rail: str
    methods: list[str]
    next_cutoff_at: str | None
    next_settlement_at: str
    calendar: str
    timezone: str
    continuous: bool


@strawberry.type
class CurrencySettlement:
    currency: str
    available: str
    available_minor: Int64
    held: str
    held_minor: Int64
    pending: str
    pending_minor: Int64
    in_flight: str
    in_flight_minor: Int64
    pending_payouts: int
    in_flight_payouts: int
    next_settlement_at: str | None
    rails: list[SettlementRail]


@strawberry.type
class Settlement:
    merchant_id: str
    computed_at: str
    kyc_status: str
    can_withdraw: bool
    currencies: list[CurrencySettlement]

    @classmethod
    def from_rest(cls, out: dict[str, Any]) -> "Settlement":
        currencies = [CurrencySettlement(**{**{k: c[k] for k in CurrencySettlement.__annotations__ if k != "rails"},
                                            "rails": [SettlementRail(**r) for r in c["rails"]]})
                      for c in out["currencies"]]
        return cls(merchant_id=out["merchant_id"], computed_at=out["computed_at"], kyc_status=out["kyc_status"],
                   can_withdraw=out["can_withdraw"], currencies=currencies)


@strawberry.type
class ApiLog:
    id: Int64
    at: datetime
    merchant_id: str | None
    principal: str
    method: str
    route: str
    status: int
    latency_ms: float
    idempotency_key: str | None
    request_id: str
    client_ip: str | None


@strawberry.type
class ApiLogPage:
    data: list[ApiLog]
    next_cursor: str | None


@strawberry.type
class TransactionPage:
    data: list[JSON]
    next_cursor: str | None


@strawberry.type
class WebhookAttempt:
    endpoint_id: str
    attempt: int
    outcome: str
    status_code: int | None
    latency_ms: int | None
    error: str | None
    created_at: str


@strawberry.type
class WebhookEvent:
    id: str
    type: str
    created: str
    payout_version: int | None
    data: JSON

    @strawberry.field(description="every delivery attempt of this event, oldest first")
    async def attempts(self, info: Info) -> list[WebhookAttempt]:
        async with _session(info) as session:
            rows = await webhook_events.event_attempts(session, self.id)
        return [WebhookAttempt(**{k: a[k] for k in WebhookAttempt.__annotations__})
                for a in (_as_rest(WebhookAttemptOut, r) for r in rows)]


@strawberry.type
class WebhookEventPage:
    data: list[WebhookEvent]
    next_cursor: str | None


From = Annotated[datetime | None, strawberry.argument(name="from", description="inclusive")]


@strawberry.type
class Query:
    @strawberry.field(description="GET /api/v1/dashboard/overview, the same document")
    async def overview(self, info: Info, period: str | None = None, from_: From = None, to: datetime | None = None,
                       merchant_id: str | None = None, project: str | None = None, source: str | None = None,
                       currency: str | None = None) -> JSON:
        principal, _ = _caller(info, Permission.DASHBOARD_READ)
        scope = _dashboard_scope(principal, merchant_id, project, source, currency)
        window = dm.resolve_window(period, from_, to)
        async with _session(info) as session:
            return _plain_json(await dm.overview(session, window, scope))

    @strawberry.field(description="GET /api/v1/metrics/trends, the same document")
    async def trends(self, info: Info, metric: str = "gmv", granularity: str = "day", tz: str | None = None,
                     period: str | None = None, from_: From = None, to: datetime | None = None,
                     merchant_id: str | None = None, project: str | None = None, source: str | None = None,
                     currency: str | None = None) -> JSON:
        principal, settings = _caller(info, Permission.DASHBOARD_READ)
        if granularity not in ("hour", "day"):
            raise Unprocessable("granularity must be hour or day")
        scope = _dashboard_scope(principal, merchant_id, project, source, currency)
        window = dm.resolve_window(period, from_, to, default="30d" if granularity == "day" else "24h")
        async with _session(info) as session:
            return _plain_json(await dm.trends(session, window, scope, metric=metric, granularity=granularity,  # type: ignore[arg-type]
                                               tz_name=tz or settings.dashboard_timezone))

    @strawberry.field(description="GET /api/v1/metrics/breakdown, the same document")
    async def breakdown(self, info: Info, by: str, period: str | None = None, from_: From = None,
                        to: datetime | None = None, merchant_id: str | None = None, project: str | None = None,
                        source: str | None = None, currency: str | None = None, limit: int = 100) -> JSON:
        principal, settings = _caller(info, Permission.DASHBOARD_READ)
        if by not in BREAKDOWN_BY:
            raise Unprocessable(f"by must be one of {', '.join(BREAKDOWN_BY)}")
        scope = _dashboard_scope(principal, merchant_id, project, source, currency)
        window = dm.resolve_window(period, from_, to, default="30d")
        size = _page_size(limit, settings)
        async with _session(info) as session:
            return _plain_json(await dm.breakdown(session, window, scope, by=by, limit=size))  # type: ignore[arg-type]

    @strawberry.field(description="GET /api/v1/transactions: rows as REST returns them")
    async def transactions(self, info: Info, merchant_id: str | None = None, source: str | None = None,
                           project: str | None = None, status: str | None = None, currency: str | None = None,
                           occurred_from: datetime | None = None, occurred_to: datetime | None = None,
                           q: str | None = None, sort: str = "-occurred_at", first: int = 50,
                           after: str | None = None) -> TransactionPage:
        principal, settings = _caller(info, Permission.DASHBOARD_READ)
        if sort.lstrip("-") not in ("occurred_at", "amount_minor"):
            raise Unprocessable("sort must be occurred_at or amount_minor, optionally prefixed with -")
        filters = tq.TransactionFilters(merchant_scope(principal, merchant_id), source, project, status, currency,
                                        occurred_from, occurred_to, None, None, q)
        size = _page_size(first, settings)
        async with _session(info) as session:
            page = await tq.list_transactions(session, filters, sort=sort, cursor=after, limit=size)  # type: ignore[arg-type]
        rest = _as_rest(RestTransactionPage, {"data": page["items"], "next_cursor": page["next_cursor"]})
        return TransactionPage(data=rest["data"], next_cursor=rest["next_cursor"])

    @strawberry.field(description="GET /api/v1/payouts: newest first, `after` = the previous page's nextCursor")
    async def payouts(self, info: Info, merchant_id: str | None = None, status: str | None = None,
                      method: str | None = None, rail: str | None = None, currency: str | None = None,
                      created_from: datetime | None = None, created_to: datetime | None = None,
                      first: int = 50, after: str | None = None) -> PayoutPage:
        principal, settings = _caller(info, Permission.PAYOUTS_READ)
        scope, size = merchant_scope(principal, merchant_id), _page_size(first, settings)
        async with _session(info) as session:
            rows, next_cursor = await payout_service.list_payouts(
                session, merchant_id=scope, status=status, method=method, rail=rail, currency=currency,
                created_from=created_from, created_to=created_to, limit=size, cursor=after)
        return PayoutPage(data=[Payout.from_view(payout_service.payout_view(r, settings)) for r in rows],
                          next_cursor=next_cursor)

    @strawberry.field(description="GET /api/v1/payouts/{id} (without the live workflow state)")
    async def payout(self, info: Info, id: str) -> Payout:
        principal, settings = _caller(info, Permission.PAYOUTS_READ)
        async with _session(info) as session:
            row = await payout_service.get_payout(session, id, merchant_scope(principal, None))
        return Payout.from_view(payout_service.payout_view(row, settings))

    @strawberry.field(description="GET /api/v1/balances")
    async def balances(self, info: Info, merchant_id: str | None = None) -> list[Balance]:
        principal, _ = _caller(info, Permission.BALANCES_READ)
        scope = merchant_scope(principal, merchant_id)
        if scope is None:
            raise Unprocessable("merchantId is required for platform roles")
        async with _session(info) as session:
            balances = await merchant_service.get_balances(session, scope)
        return [Balance(**{k: b[k] for k in Balance.__annotations__})
                for b in (_as_rest(BalanceOut, x) for x in balances)]

    @strawberry.field(description="GET /api/v1/merchants/{id}/settlement: funds per currency (available, pending, "
                                  "in flight) and each rail's next cutoff and settlement date (bank accounts: REST only)")
    async def settlement(self, info: Info, merchant_id: str | None = None) -> Settlement:
        principal, _ = _caller(info, Permission.BALANCES_READ)
        scope = merchant_scope(principal, merchant_id)
        if scope is None:
            raise Unprocessable("merchantId is required for platform roles")
        async with _session(info) as session:
            panel = await merchant_settlement.settlement_panel(session, scope)
        return Settlement.from_rest(_as_rest(SettlementOut, panel))

    @strawberry.field(description="GET /api/v1/events: payout events webhooks deliver, with their attempts")
    async def webhook_deliveries(self, info: Info, merchant_id: str | None = None, type: str | None = None,
                                 payout_id: str | None = None, first: int = 50,
                                 after: str | None = None) -> WebhookEventPage:
        principal, settings = _caller(info, Permission.PAYOUTS_READ)
        scope, size = merchant_scope(principal, merchant_id), _page_size(first, settings)
        async with _session(info) as session:
            rows, next_cursor = await webhook_events.list_events(
                session, merchant_id=scope, event_type=type, payout_id=payout_id, limit=size, cursor=after)
        events = [_as_rest(EventOut, webhook_events.envelope(r)) for r in rows]
        return WebhookEventPage(data=[WebhookEvent(
            id=e["id"], type=e["type"], created=e["created"], payout_version=e.get("payout_version"), data=e["data"])
            for e in events], next_cursor=next_cursor)

    @strawberry.field(description="GET /api/v1/api-logs")
    async def api_logs(self, info: Info, method: str | None = None, status: int | None = None,
                       route: str | None = None, principal: str | None = None, from_: From = None,
                       to: datetime | None = None, merchant_id: str | None = None, first: int = 50,
                       after: str | None = None) -> ApiLogPage:
        caller, settings = _caller(info, Permission.DASHBOARD_READ)
        scope, size = merchant_scope(caller, merchant_id), _page_size(first, settings)
        async with _session(info) as session:
            page = await api_log_service.list_api_logs(
                session, merchant_id=scope, method=method, status=status, route=route, principal=principal,
                at_from=from_, at_to=to, limit=size, cursor=after)
        return ApiLogPage(data=[ApiLog(**row) for row in page["data"]], next_cursor=page["next_cursor"])


def _masked(error: GraphQLError) -> bool:
    """Validation errors and payops's own errors (their messages are written for callers) pass;
    anything else is masked, as REST never shows a stack trace or an internal message."""
    original = error.original_error
    return original is not None and not isinstance(original, (PayopsError, GraphQLError))


def build_schema(settings: Settings) -> strawberry.Schema:
    extensions: list[Any] = [
        lambda: QueryDepthLimiter(max_depth=settings.graphql_max_depth),
        lambda: MaxAliasesLimiter(max_alias_count=settings.graphql_max_aliases),
        lambda: MaxTokensLimiter(max_token_count=settings.graphql_max_tokens),
        lambda: MaskErrors(should_mask_error=_masked),
    ]
    if settings.env == "prod":
        extensions.append(DisableIntrospection)
    return strawberry.Schema(query=Query, extensions=extensions, config=StrawberryConfig(scalar_map=SCALARS))


def graphql_router(settings: Settings) -> GraphQLRouter:
    return GraphQLRouter(
        build_schema(settings), path="/graphql", context_getter=graphql_context,
        # no GraphiQL page: it would need the token before it could render (the context getter
        # authenticates every request); GraphQL clients that send headers use introspection instead
        graphql_ide=None, allow_queries_via_get=False,
        include_in_schema=False,
    )
