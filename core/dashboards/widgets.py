"""Pluggable dashboard widgets: the catalog of widget kinds with their config schemas, the default
layout, and each tenant's layout (list, add, edit, delete, reorder; every change audited).

A tenant is (tenant_kind, tenant_id): the platform's layout is ("platform", "platform"), a
merchant's ("merchant", <merchant id>); ("agent", <agent id>) is reserved for agents. A tenant's
layout is created on its first read with a copy of DEFAULT_WIDGETS (audited as `seeded`); from
then on it is the tenant's own, so a layout emptied on purpose stays empty.

A widget's data is not computed here: the API serves it from the same services, cache keys and
snapshot cache as the Overview's own endpoints (api/routers/dashboard_widgets.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from core.agents import service as agent_service
from core.dashboards import store
from core.dashboards.metrics import COUNT_METRICS, MONEY_METRICS, RATE_METRICS, TREND_METRICS, derive
from core.payouts.models import PayoutStatus
from core.platform.auth_tokens import Principal
from core.platform.errors import Conflict, NotFound, Unprocessable, typed

MAX_WIDGETS = 30  # per layout

LayoutFull = typed(Conflict, "layout_full", "The layout has as many widgets as it may have")

Period = Literal["24h", "7d", "30d", "90d"]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Severity = Literal["low", "medium", "high", "critical"]

# what the Overview (GET /dashboard/overview) answers per window: the counts and rates for all
# currencies, the money per currency, and the float available per currency
OVERVIEW_METRICS = COUNT_METRICS + RATE_METRICS + MONEY_METRICS + ("float_available",)
GAUGE_METRICS = ("conversion_rate", "success_rate", "fraud_rate", "float_available")
BREAKDOWN_BY = ("project", "merchant", "source", "status", "currency", "rail", "country")
BREAKDOWN_METRICS = tuple(derive({}))  # every KPI of a breakdown row
RAIL_METRICS = ("payouts", "amount_minor", "settled", "failed", "settle_rate")
TRANSACTION_STATUSES = ("success", "failed", "pending", "refunded")


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KpiConfig(_Config):
    """One Overview figure against the previous window."""

    metric: Literal[OVERVIEW_METRICS] = Field(description="an Overview KPI; money ones per currency")  # type: ignore[valid-type]
    period: Period | None = Field(None, description="pinned window; null: the page's period")
    currency: CurrencyCode | None = Field(None, description="pinned currency; null: the page's currency")


class TrendConfig(_Config):
    """One metric over time (the Overview's trends)."""

    metric: Literal[TREND_METRICS]  # type: ignore[valid-type]
    granularity: Literal["hour", "day"] | None = Field(
        None, description="the interval; null: hours for a 24h window, days otherwise")
    period: Period | None = Field(None, description="the window; null: the page's period")
    currency: CurrencyCode | None = None
    chart: Literal["line", "bar"] = "line"


class BreakdownConfig(_Config):
    """KPIs per dimension, ranked (e.g. top countries by GMV)."""

    by: Literal[BREAKDOWN_BY]  # type: ignore[valid-type]
    metric: str = Field("gmv", description="the figure shown and ranked by; for by=rail one of "
                        + ", ".join(RAIL_METRICS))
    limit: int = Field(5, ge=1, le=50)
    period: Period | None = None
    currency: CurrencyCode | None = None

    @model_validator(mode="after")
    def _metric_fits(self) -> "BreakdownConfig":
        allowed = RAIL_METRICS if self.by == "rail" else BREAKDOWN_METRICS
        if self.metric not in allowed:
            raise ValueError(f"metric must be one of {', '.join(allowed)} for by={self.by}")
        return self


class Threshold(_Config):
    at: float = Field(description="from this value upward the gauge shows `level`")
    level: Literal["ok", "warn", "bad"]


class GaugeConfig(_Config):
    """One Overview figure on a dial between min and max, coloured by thresholds."""

    metric: Literal[GAUGE_METRICS]  # type: ignore[valid-type]
    min: float = 0
    max: float = Field(description="rates: 0..1; float_available: minor units")
    thresholds: list[Threshold] = Field(default_factory=list, max_length=5)
    currency: CurrencyCode | None = Field(None, description="float_available: pinned currency; null: the page's")
    period: Period | None = None

    @model_validator(mode="after")
    def _range(self) -> "GaugeConfig":
        if self.max <= self.min:
            raise ValueError("max must be greater than min")
        ats = [t.at for t in self.thresholds]
        if ats != sorted(set(ats)):
            raise ValueError("thresholds must be in ascending order of `at`, each `at` once")
        if any(not self.min <= a <= self.max for a in ats):
            raise ValueError("every threshold's `at` must lie between min and max")
        return self


class TableConfig(_Config):
    """The newest payouts or transactions (the Payouts and Transactions lists' first page)."""

    query: Literal["recent_payouts", "recent_transactions"]
    limit: int = Field(10, ge=1, le=50)
    status: str | None = None
    currency: CurrencyCode | None = None

    @model_validator(mode="after")
    def _status_fits(self) -> "TableConfig":
        allowed = ([s.value for s in PayoutStatus] if self.query == "recent_payouts" else list(TRANSACTION_STATUSES))
        if self.status is not None and self.status not in allowed:
            raise ValueError(f"status must be one of {', '.join(allowed)} for {self.query}")
        return self


class AlertsConfig(_Config):
    """The newest alerts of the chosen severities (the Alerts list)."""

    severity: list[Severity] = Field(default_factory=lambda: ["critical", "high"], min_length=1)
    status: Literal["open", "acknowledged", "resolved", "expired"] | None = "open"
    limit: int = Field(10, ge=1, le=50)

    @model_validator(mode="after")
    def _unique(self) -> "AlertsConfig":
        if len(set(self.severity)) != len(self.severity):
            raise ValueError("each severity once")
        return self


class MapConfig(_Config):
    """Agents (cash-in / cash-out points) clustered on a small map, as on the agent map.

    The box: `bbox` if given; else the box around `country`'s agents you can see; else West Africa.
    The zoom: `zoom` if given; else the zoom at which the box fits the widget."""

    bbox: str | None = Field(None, description="west,south,east,north in degrees (west > east crosses 180°)")
    zoom: int | None = Field(None, ge=0, le=agent_service.MAX_ZOOM, description="web-map zoom; null: fit the box")
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = Field(
        None, description="ISO country code: the box around that country's agents (when no bbox)")

    @model_validator(mode="after")
    def _bbox_valid(self) -> "MapConfig":
        if self.bbox is not None:
            try:
                box = agent_service.parse_bbox(self.bbox)
                if self.zoom is not None:
                    agent_service.check_box_size(box, self.zoom)
            except Unprocessable as exc:
                raise ValueError(str(exc).removeprefix("bbox: ")) from None
            self.bbox = agent_service.format_bbox(box)
        return self


CONFIGS: dict[str, type[_Config]] = {
    "kpi": KpiConfig, "trend": TrendConfig, "breakdown": BreakdownConfig, "gauge": GaugeConfig,
    "table": TableConfig, "alerts": AlertsConfig, "map": MapConfig,
}
KINDS = tuple(CONFIGS)
LABELS = {"kpi": "KPI", "trend": "Trend", "breakdown": "Breakdown", "gauge": "Gauge", "table": "Table",
          "alerts": "Alerts list", "map": "Agent map"}
SOURCES = {"kpi": "GET /api/v1/dashboard/overview", "trend": "GET /api/v1/metrics/trends",
           "breakdown": "GET /api/v1/metrics/breakdown", "gauge": "GET /api/v1/dashboard/overview",
           "table": "GET /api/v1/payouts or GET /api/v1/transactions", "alerts": "GET /api/v1/alerts",
           "map": "GET /api/v1/agents/clusters"}

# The plan's six defaults, in order (every tenant's first layout)
DEFAULT_WIDGETS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("trend", "GMV trend", {"metric": "gmv", "chart": "line"}),
    ("trend", "Transaction volume", {"metric": "transactions", "chart": "bar"}),
    ("gauge", "Float available", {"metric": "float_available", "min": 0, "max": 100_000_000, "thresholds": [
        {"at": 0, "level": "bad"}, {"at": 5_000_000, "level": "warn"}, {"at": 20_000_000, "level": "ok"}]}),
    ("gauge", "Conversion rate", {"metric": "conversion_rate", "min": 0, "max": 1, "thresholds": [
        {"at": 0, "level": "bad"}, {"at": 0.9, "level": "warn"}, {"at": 0.95, "level": "ok"}]}),
    ("breakdown", "Top countries", {"by": "country", "metric": "gmv", "limit": 5}),
    ("alerts", "Alerts", {"severity": ["critical", "high"], "status": "open", "limit": 10}),
)


def catalog() -> list[dict[str, Any]]:
    """Every widget kind with its config's JSON schema and where its data comes from."""
    return [{"kind": k, "label": LABELS[k], "description": (CONFIGS[k].__doc__ or "").strip(),
             "data_source": SOURCES[k], "config_schema": CONFIGS[k].model_json_schema()} for k in KINDS]


def validate_config(kind: str, config: Any) -> dict[str, Any]:
    """The config normalised (defaults filled in), or 422 naming the field."""
    model = CONFIGS.get(kind)
    if model is None:
        raise Unprocessable(f"kind: must be one of {', '.join(KINDS)}",
                            extra={"errors": [{"loc": ["body", "kind"], "msg": "unknown widget kind",
                                               "type": "literal_error"}]})
    if not isinstance(config, dict):
        raise Unprocessable("config: must be an object", extra={"errors": [
            {"loc": ["body", "config"], "msg": "must be an object", "type": "dict_type"}]})
    try:
        return model.model_validate(config).model_dump(mode="json", exclude_none=False)
    except ValidationError as exc:
        errors = [{"loc": ["body", "config", *[str(p) for p in e["loc"]]], "msg": e["msg"], "type": e["type"]}
                  for e in exc.errors(include_url=False, include_context=False)]
        first = errors[0]
        raise Unprocessable(f"{'.'.join(first['loc'][1:])}: {first['msg']}", extra={"errors": errors}) from None


# --- tenants and layouts ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    kind: str  # platform | merchant | agent
    id: str

    @property
    def merchant_id(self) -> str | None:
        """The merchant a widget's data is limited to (None: the platform, all merchants)."""
        return self.id if self.kind == "merchant" else None


PLATFORM = Tenant("platform", "platform")


def tenant_of(principal: Principal) -> Tenant:
    """The layout a caller reads and edits: its merchant's, or the platform's for platform roles."""
    if principal.is_merchant_user:
        return Tenant("merchant", principal.merchant_id or "")
    return PLATFORM


def _new_id() -> str:
    return f"wdg_{uuid.uuid4().hex}"


async def _ensure_layout(session: AsyncSession, tenant: Tenant, actor: str) -> None:
    """Create the tenant's layout with the defaults on its first read (once, however many race)."""
    if not await store.create_layout(session, tenant.kind, tenant.id, actor):
        return
    seeded = []
    for position, (kind, title, config) in enumerate(DEFAULT_WIDGETS):
        row = await store.insert_widget(session, {
            "id": _new_id(), "tenant_kind": tenant.kind, "tenant_id": tenant.id, "kind": kind, "title": title,
            "config": validate_config(kind, config), "position": position, "created_by": actor, "updated_by": actor})
        seeded.append(store.audit_view(row))
    await store.audit(session, tenant.kind, tenant.id, change="seeded", actor=actor, after={"widgets": seeded})


async def list_widgets(session: AsyncSession, tenant: Tenant, *, actor: str) -> list[dict[str, Any]]:
    await _ensure_layout(session, tenant, actor)
    return await store.list_widgets(session, tenant.kind, tenant.id)


async def get_widget(session: AsyncSession, tenant: Tenant, widget_id: str, *, actor: str) -> dict[str, Any]:
    """The tenant's widget; 404 for an id that is not the tenant's (another tenant's included)."""
    await _ensure_layout(session, tenant, actor)
    row = await store.get_widget(session, tenant.kind, tenant.id, widget_id)
    if row is None:
        raise NotFound(f"widget {widget_id} not found")
    return row


async def _locked(session: AsyncSession, tenant: Tenant, actor: str) -> None:
    await _ensure_layout(session, tenant, actor)
    await store.lock_layout(session, tenant.kind, tenant.id)


def _title(value: str | None, kind: str) -> str:
    title = (value if value is not None else LABELS[kind]).strip()
    if not title or len(title) > 200:
        raise Unprocessable("title: 1 to 200 characters", extra={"errors": [
            {"loc": ["body", "title"], "msg": "1 to 200 characters", "type": "string_length"}]})
    return title


async def add_widget(session: AsyncSession, tenant: Tenant, *, actor: str, kind: str, config: Any,
                     title: str | None = None) -> dict[str, Any]:
    """Append a widget to the end of the tenant's layout."""
    clean = validate_config(kind, config)
    name = _title(title, kind)
    await _locked(session, tenant, actor)
    count, position = await store.next_position(session, tenant.kind, tenant.id)
    if count >= MAX_WIDGETS:
        raise LayoutFull(f"a layout has at most {MAX_WIDGETS} widgets; remove one first")
    row = await store.insert_widget(session, {
        "id": _new_id(), "tenant_kind": tenant.kind, "tenant_id": tenant.id, "kind": kind, "title": name,
        "config": clean, "position": position, "created_by": actor, "updated_by": actor})
    await store.audit(session, tenant.kind, tenant.id, change="created", actor=actor, widget_id=row["id"],
                      after=store.audit_view(row))
    return row


async def edit_widget(session: AsyncSession, tenant: Tenant, widget_id: str, *, actor: str,
                      title: str | None = None, config: Any = None) -> dict[str, Any]:
    """Change a widget's title and/or config (its kind stays: remove and add for another kind)."""
    await _locked(session, tenant, actor)
    before = await get_widget(session, tenant, widget_id, actor=actor)
    values: dict[str, Any] = {}
    if title is not None:
        values["title"] = _title(title, before["kind"])
    if config is not None:
        values["config"] = validate_config(before["kind"], config)
    if not values:
        return before
    row = await store.update_widget(session, widget_id, values, actor)
    await store.audit(session, tenant.kind, tenant.id, change="updated", actor=actor, widget_id=widget_id,
                      before=store.audit_view(before), after=store.audit_view(row))
    return row


async def delete_widget(session: AsyncSession, tenant: Tenant, widget_id: str, *, actor: str) -> None:
    await _locked(session, tenant, actor)
    before = await get_widget(session, tenant, widget_id, actor=actor)
    await store.delete_widget(session, widget_id)
    await store.audit(session, tenant.kind, tenant.id, change="deleted", actor=actor, widget_id=widget_id,
                      before=store.audit_view(before))


async def reorder(session: AsyncSession, tenant: Tenant, ids: list[str], *, actor: str) -> list[dict[str, Any]]:
    """Put the layout in the order of `ids`, which must name every widget of the layout once."""
    await _locked(session, tenant, actor)
    current = [w["id"] for w in await store.list_widgets(session, tenant.kind, tenant.id)]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    unknown = sorted(set(ids) - set(current))
    missing = [i for i in current if i not in set(ids)]
    if duplicates or unknown or missing:
        problems = []
        if duplicates:
            problems.append(f"listed more than once: {', '.join(duplicates)}")
        if unknown:
            problems.append(f"not in your layout: {', '.join(unknown)}")
        if missing:
            problems.append(f"missing: {', '.join(missing)}")
        raise Unprocessable("ids: must list every widget of your layout exactly once (" + "; ".join(problems) + ")",
                            extra={"errors": [{"loc": ["body", "ids"], "msg": "; ".join(problems),
                                               "type": "not_a_permutation"}]})
    if ids != current:
        await store.set_positions(session, ids, actor)
        await store.audit(session, tenant.kind, tenant.id, change="reordered", actor=actor,
                          before={"ids": current}, after={"ids": ids})
    return await store.list_widgets(session, tenant.kind, tenant.id)


async def changes(session: AsyncSession, tenant: Tenant, limit: int = 100) -> list[dict[str, Any]]:
    return await store.list_changes(session, tenant.kind, tenant.id, limit)
