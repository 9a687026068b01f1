"""Dashboard widgets: each tenant's layout of pluggable widgets (the platform's for platform roles,
a merchant's for its users), the catalog of widget kinds, and each widget's data.

A widget's data is the answer of the Overview endpoint it shows, computed by the same code under
the same cache key (`overview_query`, `trends_query`, `breakdown_query` in api/routers/dashboard.py)
or by the same list service as the Payouts, Transactions and Alerts lists (a map widget: the agent
map's clusters, core/agents/service.clusters, in the caller's agent scope): the numbers are the
Overview's own. Another tenant's widget id is 404, as for every tenant-scoped resource."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.encoders import jsonable_encoder

from api.deps import Session, SettingsDep, require
from api.routers.dashboard import (
    CurrencyQ,
    DashboardRead,
    breakdown_query,
    cached_body,
    overview_query,
    trends_query,
)
from api.schemas.agents import ClustersOut
from api.schemas.common import problems
from api.schemas.dashboard import AlertPage, TransactionPage
from api.schemas.dashboard_widgets import (
    CatalogEntry,
    Layout,
    ReorderIn,
    WidgetChange,
    WidgetCreate,
    WidgetOut,
    WidgetPatch,
    WidgetPut,
)
from api.schemas.payouts import PayoutPage
from core.agents import service as agent_service
from core.alerts import service as alert_service
from core.dashboards import metrics as dm
from core.dashboards import widgets
from core.payouts import service as payout_service
from core.platform.auth_tokens import Principal
from core.platform.errors import Forbidden
from core.platform.roles import Permission
from core.transactions import queries as tq

router = APIRouter(prefix="/dashboard/widgets", tags=["dashboard widgets"])

DashboardEdit = Annotated[Principal, Depends(require(Permission.DASHBOARD_EDIT))]
WidgetPeriodQ = Annotated[str | None, Query(pattern="^(24h|7d|30d|90d)$",
                                            description="the page's period, for a widget that pins none")]


def _layout(principal: Principal, rows: list[dict]) -> dict:
    tenant = widgets.tenant_of(principal)
    return {"tenant_kind": tenant.kind, "tenant_id": tenant.id,
            "can_edit": Permission.DASHBOARD_EDIT in principal.permissions, "data": rows}


@router.get("", response_model=Layout, responses=problems(401, 403))
async def list_widgets(principal: DashboardRead, session: Session):
    """Your layout, in order: the platform's for platform roles, your merchant's for a merchant
    user. A layout's first read creates it with the six defaults (GMV trend, transaction volume,
    float gauge, conversion gauge, top countries, alerts), audited as `seeded`."""
    return _layout(principal, await widgets.list_widgets(session, widgets.tenant_of(principal), actor=principal.sub))


@router.get("/catalog", response_model=list[CatalogEntry], responses=problems(401, 403))
async def widget_catalog(principal: DashboardRead):
    """Every widget kind: its config's JSON schema and the endpoint its data comes from."""
    return widgets.catalog()


@router.get("/changes", response_model=list[WidgetChange], responses=problems(401, 403))
async def widget_changes(principal: DashboardRead, session: Session,
                         limit: Annotated[int, Query(ge=1, le=500)] = 100):
    """Your layout's audit trail, newest first: seeded, created, updated, deleted, reordered,
    with who and the widget before and after."""
    return await widgets.changes(session, widgets.tenant_of(principal), limit)


@router.post("", response_model=WidgetOut, status_code=201, responses=problems(401, 403, 409, 422))
async def add_widget(body: WidgetCreate, principal: DashboardEdit, session: Session):
    """Add a widget at the end of your layout. The config is checked against the kind's schema:
    422 names the field. 409 `layout_full` past 30 widgets. Ops roles with `dashboard:edit` edit
    the platform's layout, a merchant_admin its merchant's; a merchant_viewer gets 403."""
    return await widgets.add_widget(session, widgets.tenant_of(principal), actor=principal.sub, kind=body.kind,
                                    config=body.config, title=body.title)


@router.post("/reorder", response_model=Layout, responses=problems(401, 403, 422))
async def reorder_widgets(body: ReorderIn, principal: DashboardEdit, session: Session):
    """Put your layout in this order. `ids` must list every widget of your layout exactly once
    (422 otherwise, naming the missing, unknown or repeated ids)."""
    rows = await widgets.reorder(session, widgets.tenant_of(principal), body.ids, actor=principal.sub)
    return _layout(principal, rows)


@router.patch("/{widget_id}", response_model=WidgetOut, responses=problems(401, 403, 404, 422))
async def patch_widget(widget_id: str, body: WidgetPatch, principal: DashboardEdit, session: Session):
    """Change a widget's title and/or config (a given config replaces the whole config)."""
    return await widgets.edit_widget(session, widgets.tenant_of(principal), widget_id, actor=principal.sub,
                                     title=body.title, config=body.config)


@router.put("/{widget_id}", response_model=WidgetOut, responses=problems(401, 403, 404, 422))
async def put_widget(widget_id: str, body: WidgetPut, principal: DashboardEdit, session: Session):
    """Replace a widget's title and config (its kind stays)."""
    return await widgets.edit_widget(session, widgets.tenant_of(principal), widget_id, actor=principal.sub,
                                     title=body.title, config=body.config)


@router.delete("/{widget_id}", status_code=204, responses=problems(401, 403, 404))
async def delete_widget(widget_id: str, principal: DashboardEdit, session: Session):
    """Remove a widget from your layout."""
    await widgets.delete_widget(session, widgets.tenant_of(principal), widget_id, actor=principal.sub)
    return Response(status_code=204)


def _dumps(value: Any) -> bytes:
    return json.dumps(jsonable_encoder(value), separators=(",", ":")).encode()


@router.get("/{widget_id}/data", responses={**problems(401, 403, 404, 422),
                                              200: {"description": "{widget, source: {path, params}, data}"}})
async def widget_data(
    widget_id: str, request: Request, principal: DashboardRead, session: Session, settings: SettingsDep,
    period: WidgetPeriodQ = None, currency: CurrencyQ = None,
    tz: Annotated[str | None, Query(description="IANA zone for trends by day")] = None,
):
    """The widget's data: `data` is exactly what `source.path` answers with `source.params` for
    your tenant (same code, same snapshot cache). A widget's pinned period/currency win over
    the page's `period`/`currency`; with neither, the Overview's default (24h, all currencies)."""
    tenant = widgets.tenant_of(principal)
    widget = await widgets.get_widget(session, tenant, widget_id, actor=principal.sub)
    cfg, kind = widget["config"], widget["kind"]
    per = cfg.get("period") or period or "24h"
    cur = cfg.get("currency") or currency
    scope = dm.Scope(tenant.merchant_id, None, None, cur)
    params: dict[str, Any] = {"period": per}
    if cur:
        params["currency"] = cur
    hit: bool | None = None
    if kind in ("kpi", "gauge"):
        path = "/api/v1/dashboard/overview"
        body, hit = await cached_body(request, *overview_query(session, scope, per, None, None))
    elif kind == "trend":
        granularity = cfg.get("granularity") or ("hour" if per == "24h" else "day")
        tz_name = tz or settings.dashboard_timezone
        path = "/api/v1/metrics/trends"
        params.update(metric=cfg["metric"], granularity=granularity, tz=tz_name)
        body, hit = await cached_body(request, *trends_query(session, scope, metric=cfg["metric"],
                                                             granularity=granularity, tz_name=tz_name,
                                                             period=per, from_=None, to=None))
    elif kind == "breakdown":
        path = "/api/v1/metrics/breakdown"
        params.update(by=cfg["by"], limit=cfg["limit"])
        body, hit = await cached_body(request, *breakdown_query(session, scope, by=cfg["by"], limit=cfg["limit"],
                                                                period=per, from_=None, to=None))
    elif kind == "table":
        params = {"limit": cfg["limit"], **{k: cfg[k] for k in ("status", "currency") if cfg.get(k)}}
        if cfg["query"] == "recent_payouts":
            if Permission.PAYOUTS_READ not in principal.permissions:
                raise Forbidden("your roles do not grant payouts:read")
            path = "/api/v1/payouts"
            rows, next_cursor = await payout_service.list_payouts(
                session, merchant_id=tenant.merchant_id, status=cfg.get("status"), currency=cfg.get("currency"),
                limit=cfg["limit"])
            page = PayoutPage.model_validate({"data": [payout_service.payout_view(r, settings) for r in rows],
                                              "next_cursor": next_cursor})
        else:
            path = "/api/v1/transactions"
            filters = tq.TransactionFilters(merchant_id=tenant.merchant_id, status=cfg.get("status"),
                                            currency=cfg.get("currency"))
            found = await tq.list_transactions(session, filters, sort="-occurred_at", cursor=None, limit=cfg["limit"])
            page = TransactionPage.model_validate({"data": found["items"], "next_cursor": found["next_cursor"]})
        body = _dumps(page.model_dump(mode="json", by_alias=True))
    elif kind == "alerts":
        path = "/api/v1/alerts"
        severity = ",".join(cfg["severity"])
        params = {"severity": severity, "limit": cfg["limit"], **({"status": cfg["status"]} if cfg.get("status") else {})}
        found = await alert_service.list_alerts(session, merchant_id=tenant.merchant_id, status=cfg.get("status"),
                                                severity=severity, rule=None, limit=cfg["limit"], cursor=None)
        body = _dumps(AlertPage.model_validate(found).model_dump(mode="json", by_alias=True))
    else:  # map: the agent map's clusters, for the agents the caller may see
        if Permission.AGENTS_READ not in principal.permissions:
            raise Forbidden("your roles do not grant agents:read")
        agent_scope = agent_service.scope_of(principal)
        if cfg.get("bbox"):
            box = agent_service.parse_bbox(cfg["bbox"])
        elif cfg.get("country"):
            box = await agent_service.country_bbox(session, agent_scope, cfg["country"])
        else:
            box = agent_service.WEST_AFRICA_BBOX
        zoom = cfg["zoom"] if cfg.get("zoom") is not None else agent_service.fit_zoom(box)
        path = "/api/v1/agents/clusters"
        params = {"bbox": agent_service.format_bbox(box), "zoom": zoom}
        found = await agent_service.clusters(session, agent_scope, bbox=params["bbox"], zoom=zoom)
        body = _dumps(ClustersOut.model_validate(found).model_dump(mode="json"))
    head = _dumps({"widget": WidgetOut.model_validate(widget).model_dump(mode="json"),
                   "source": {"path": path, "params": params}})
    headers = {} if hit is None else {"X-Cache": "hit" if hit else "miss"}
    return Response(head[:-1] + b',"data":' + body + b"}", media_type="application/json", headers=headers)
