"""The agent map: mobile-money agents (cash-in/cash-out points), their float per currency, the
nearby search, the map's clusters, and low-float alerts.

Who sees what: an agent principal (role `agent`, claim `agent_id`) only its own agent; a merchant
user only its merchant's agents; platform roles every agent. A float below its agent's threshold
raises `agent_low_float` through core/alerts (dedupe key `agent_low_float:agent:<id>:<currency>`,
so a repeat only counts again) when the float is set, and on every alert check (a float nobody
updated stays alerted); a float set back at or above its threshold resolves the open alert.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.agents import store
from core.alerts import service as alert_service
from core.alerts.store import open_alert_ids_by_dedupe_keys
from core.platform.auth_tokens import Principal
from core.platform.errors import Forbidden, NotFound, Unprocessable
from core.platform.money import MoneyError, exponent

log = logging.getLogger("payops.agents")

LOW_FLOAT_RULE = "agent_low_float"
LOW_FLOAT_SEVERITY = "medium"
LOW_FLOAT_RESOLVER = "agent-float"
STATUSES = ("active", "suspended", "closed")
MAX_ZOOM = 22
# From this zoom on, the map shows every agent on its own (a cell is then a street or two).
SINGLES_ZOOM = 15
# A grid cell is a quarter of a 256-px web-map tile: about 64 px at every zoom.
CELLS_PER_TILE = 4
MAX_CELLS = 200_000  # a box this many cells wide at its zoom is a client error, not a query


@dataclass(frozen=True)
class AgentScope:
    """The rows a caller may see: one agent, one merchant's agents, or (both None) every agent."""

    agent_id: str | None = None
    merchant_id: str | None = None


def scope_of(principal: Principal, merchant_id: str | None = None) -> AgentScope:
    """An agent sees itself; a merchant user its own merchant's agents (asking for another
    merchant's is 403); ops every agent, or one merchant's when they ask."""
    if principal.is_agent_user:
        if merchant_id is not None:
            raise Forbidden("an agent may only access its own agent's data")
        return AgentScope(agent_id=principal.agent_id)
    if not principal.is_platform_user:
        if merchant_id is not None and merchant_id != principal.merchant_id:
            raise Forbidden("you may only access your own merchant's data")
        return AgentScope(merchant_id=principal.merchant_id or "")
    return AgentScope(merchant_id=merchant_id)


def _invalid(field: str, message: str) -> Unprocessable:
    return Unprocessable(f"{field}: {message}",
                         extra={"errors": [{"loc": ["query", field], "msg": message, "type": "value_error"}]})


def parse_statuses(status: list[str] | None) -> list[str] | None:
    for s in status or ():
        if s not in STATUSES:
            raise _invalid("status", f"must be one of {', '.join(STATUSES)}")
    return list(status) if status else None


SALES_WINDOW = timedelta(days=30)


def _sales_since() -> datetime:
    """The start of the 30-day sales window (successful transactions with this agent_id)."""
    return datetime.now(timezone.utc) - SALES_WINDOW


def _agent_view(row: dict[str, Any]) -> dict[str, Any]:
    out = {**row, "floats": [{**f, "amount_minor": int(f["amount_minor"])} for f in row["floats"]],
           "sales_30d": [{**x, "amount_minor": int(x["amount_minor"]), "count": int(x["count"])}
                         for x in row["sales_30d"]]}
    if "distance_km" in out:
        out["distance_km"] = float(out["distance_km"])
    return out


COORDINATE_DECIMALS = 7  # about a centimetre


def coordinate(value: float) -> float:
    """A latitude or longitude as payops keeps and queries it: to 7 decimal places. A float such as
    5e-324 (subnormal) made PostgreSQL's ll_to_earth fail with "value out of range: underflow",
    a 500 for a nearby search at lon=5e-324 and for an agent stored there."""
    return round(value, COORDINATE_DECIMALS) + 0.0  # + 0.0: no -0.0


# --- reads -----------------------------------------------------------------------------------------


async def nearby(session: AsyncSession, scope: AgentScope, *, lat: float, lon: float, radius_km: float, limit: int,
                 statuses: list[str] | None = None) -> list[dict[str, Any]]:
    """Agents within radius_km of (lat, lon), nearest first, each with distance_km (great circle on
    the mean Earth radius), its float and its 30-day sales per currency."""
    if not (-90 <= lat <= 90):
        raise _invalid("lat", "must be between -90 and 90")
    if not (-180 <= lon <= 180):
        raise _invalid("lon", "must be between -180 and 180")
    if not (0 < radius_km <= 500):
        raise _invalid("radius_km", "must be greater than 0 and at most 500")
    if not (1 <= limit <= 500):
        raise _invalid("limit", "must be between 1 and 500")
    rows = await store.nearby(session, lat=coordinate(lat), lon=coordinate(lon), radius_km=radius_km, limit=limit,
                              agent_id=scope.agent_id, merchant_id=scope.merchant_id, statuses=statuses,
                              since=_sales_since())
    return [_agent_view(r) for r in rows]


def parse_bbox(value: str) -> tuple[float, float, float, float]:
    """`west,south,east,north` in degrees; west > east crosses the antimeridian."""
    parts = value.split(",")
    if len(parts) != 4:
        raise _invalid("bbox", "must be west,south,east,north (four numbers)")
    try:
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        raise _invalid("bbox", "must be west,south,east,north (four numbers)") from None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise _invalid("bbox", "must be finite numbers")
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        raise _invalid("bbox", "west and east must be between -180 and 180")
    if not (-90 <= south <= 90 and -90 <= north <= 90):
        raise _invalid("bbox", "south and north must be between -90 and 90")
    if south > north:
        raise _invalid("bbox", "south must not be north of north")
    return coordinate(west), coordinate(south), coordinate(east), coordinate(north)


def cell_size_deg(zoom: int) -> float:
    """The grid's cell in degrees at a web-map zoom: a quarter of a tile (360 / 2^zoom degrees)."""
    return 360.0 / (2 ** zoom) / CELLS_PER_TILE


def check_box_size(bbox: tuple[float, float, float, float], zoom: int, *, field: str = "bbox") -> None:
    """A box more than MAX_CELLS grid cells at its zoom is a client error, not a query."""
    west, south, east, north = bbox
    cell = cell_size_deg(zoom)
    width = (east - west) if west <= east else (360 - west + east)
    if (width / cell) * ((north - south) / cell) > MAX_CELLS:
        raise _invalid(field, f"the box is too large for zoom {zoom}: zoom out or send a smaller box")


async def clusters(session: AsyncSession, scope: AgentScope, *, bbox: str, zoom: int,
                   statuses: list[str] | None = None) -> dict[str, Any]:
    """The box's agents clustered on a grid whose cell halves at each zoom level; at zoom
    SINGLES_ZOOM and above, and in any cell holding one agent, the agent itself."""
    if not (0 <= zoom <= MAX_ZOOM):
        raise _invalid("zoom", f"must be between 0 and {MAX_ZOOM}")
    west, south, east, north = parse_bbox(bbox)
    check_box_size((west, south, east, north), zoom)
    cell = cell_size_deg(zoom)
    singles = zoom >= SINGLES_ZOOM
    rows = await store.clusters(session, west=west, south=south, east=east, north=north, cell_deg=cell,
                                singles=singles, agent_id=scope.agent_id, merchant_id=scope.merchant_id,
                                statuses=statuses)
    out = []
    for r in rows:
        item = {"count": int(r["count"]), "lat": float(r["lat"]), "lon": float(r["lon"]),
                "float_totals": {k: int(v) for k, v in r["float_totals"].items()}, "agent": None}
        if item["count"] == 1:
            item["agent"] = {"id": r["first_id"], "name": r["first_name"], "status": r["first_status"]}
        out.append(item)
    return {"zoom": zoom, "cell_deg": cell, "bbox": [west, south, east, north],
            "total": sum(c["count"] for c in out), "clusters": out}


# West Africa (Senegal to Nigeria, the Sahel to the Gulf of Guinea): a map with no box of its own
WEST_AFRICA_BBOX = (-18.0, 4.0, 16.0, 25.0)
BBOX_MARGIN_DEG = 0.5  # around a country's agents, so the outermost are not on the map's edge
WIDGET_WIDTH_PX = 320  # the Overview's small map: the zoom at which a box fits this wide


def format_bbox(bbox: tuple[float, float, float, float]) -> str:
    return ",".join(f"{v:g}" for v in bbox)


def fit_zoom(bbox: tuple[float, float, float, float], width_px: int = WIDGET_WIDTH_PX) -> int:
    """The largest web-map zoom at which the box is at most `width_px` wide (256-px tiles)."""
    west, _, east, _ = bbox
    width = (east - west) if west <= east else (360 - west + east)
    if width <= 0:
        return SINGLES_ZOOM
    return max(0, min(SINGLES_ZOOM, math.floor(math.log2(360.0 * width_px / 256.0 / width))))


async def country_bbox(session: AsyncSession, scope: AgentScope, country: str) -> tuple[float, float, float, float]:
    """The box around the country's agents in the caller's scope (with a margin); West Africa
    when the scope has none there."""
    ext = await store.country_extent(session, country=country, agent_id=scope.agent_id,
                                     merchant_id=scope.merchant_id)
    if ext is None:
        return WEST_AFRICA_BBOX
    m = BBOX_MARGIN_DEG
    return (max(-180.0, float(ext["west"]) - m), max(-90.0, float(ext["south"]) - m),
            min(180.0, float(ext["east"]) + m), min(90.0, float(ext["north"]) + m))


async def get_agent(session: AsyncSession, scope: AgentScope, agent_id: str) -> dict[str, Any]:
    row = await store.get_agent(session, agent_id, since=_sales_since())
    if row is None or (scope.agent_id is not None and row["id"] != scope.agent_id) \
            or (scope.merchant_id is not None and row["merchant_id"] != scope.merchant_id):
        raise NotFound(f"agent {agent_id} not found")
    return _agent_view(row)


async def list_agents(session: AsyncSession, scope: AgentScope, *, statuses: list[str] | None, after_id: str | None,
                      limit: int) -> dict[str, Any]:
    rows = await store.list_agents(session, agent_id=scope.agent_id, merchant_id=scope.merchant_id,
                                   statuses=statuses, after_id=after_id, limit=limit + 1, since=_sales_since())
    more = len(rows) > limit
    rows = rows[:limit]
    return {"data": [_agent_view(r) for r in rows], "next_cursor": rows[-1]["id"] if more and rows else None}


async def first_agent_with_prefix(session: AsyncSession, prefix: str) -> dict[str, Any] | None:
    """The first active agent whose id starts with `prefix` ({id, name}), e.g. the console's demo agent."""
    return await store.first_agent_with_prefix(session, prefix)


# --- writes ------------------------------------------------------------------------------------------


def _check_currency(currency: str) -> None:
    try:
        exponent(currency)
    except MoneyError as exc:
        raise Unprocessable(str(exc)) from None


async def upsert_agents(session: AsyncSession, agents: list[dict[str, Any]]) -> dict[str, int]:
    """Create or update agents (ops). Each names an operator, a merchant, or both; each may carry
    its floats (set as by set_floats, alerts included)."""
    ids = [a["id"] for a in agents]
    if len(set(ids)) != len(ids):
        raise Unprocessable("each agent id may appear once per request")
    merchant_ids = sorted({a["merchant_id"] for a in agents if a.get("merchant_id")})
    unknown = set(merchant_ids) - await store.existing_merchant_ids(session, merchant_ids)
    if unknown:
        raise Unprocessable(f"merchant {sorted(unknown)[0]} not found")
    for a in agents:
        if a.get("status", "active") not in STATUSES:
            raise Unprocessable(f"agent {a['id']}: status must be one of {', '.join(STATUSES)}")
        if not a.get("operator") and not a.get("merchant_id"):
            raise Unprocessable(f"agent {a['id']}: give an operator or a merchant_id")
    rows = [{"status": "active", "operator": None, "merchant_id": None,
             **{k: v for k, v in a.items() if k != "floats"}, "lat": coordinate(a["lat"]), "lon": coordinate(a["lon"])}
            for a in agents]
    upserted = await store.upsert_agents(session, rows)
    floats = [{"agent_id": a["id"], **f} for a in agents for f in (a.get("floats") or [])]
    stored = await set_floats(session, floats) if floats else []
    return {"upserted": upserted, "floats": len(stored), "low_float_alerts": sum(1 for f in stored if f["alert"])}


async def set_floats(session: AsyncSession, floats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set agents' floats (and thresholds); raise or resolve their low-float alerts. Returns the
    floats as stored, each with `alert` (the alert raised, or None)."""
    for f in floats:
        _check_currency(f["currency"])
    keys = [(f["agent_id"], f["currency"]) for f in floats]
    if len(set(keys)) != len(keys):
        raise Unprocessable("each currency may appear once per agent")
    ids = sorted({f["agent_id"] for f in floats})
    missing = set(ids) - await store.existing_agent_ids(session, ids)
    if missing:
        raise NotFound(f"agent {sorted(missing)[0]} not found")
    stored = await store.upsert_floats(session, floats)
    ok = [f for f in stored if not _is_low(f)]
    open_ids = await open_alert_ids_by_dedupe_keys(session, [_dedupe_key(f["agent_id"], f["currency"]) for f in ok])
    for f in ok:
        alert_id = open_ids.get(_dedupe_key(f["agent_id"], f["currency"]))
        if alert_id is not None:  # back at or above its threshold: the open alert is over
            await alert_service.resolve(session, alert_id, actor=LOW_FLOAT_RESOLVER, merchant_id=None)
            log.info("low-float alert %s resolved: agent %s float %s back at or above its threshold",
                     alert_id, f["agent_id"], f["currency"])
    return [{**f, "alert": await raise_low_float_alert(session, f) if _is_low(f) else None} for f in stored]


def _is_low(f: dict[str, Any]) -> bool:
    return f["low_threshold_minor"] is not None and f["amount_minor"] < f["low_threshold_minor"]


def _dedupe_scope(agent_id: str, currency: str) -> str:
    return f"agent:{agent_id}:{currency}"


def _dedupe_key(agent_id: str, currency: str) -> str:
    return f"{LOW_FLOAT_RULE}:{_dedupe_scope(agent_id, currency)}"


async def raise_low_float_alert(session: AsyncSession, f: dict[str, Any]) -> dict[str, Any]:
    message = (f"agent {f['agent_id']} ({f['name']}) float {f['currency']} {int(f['amount_minor'])} is below its "
               f"threshold {int(f['low_threshold_minor'])} (minor units)")
    return await alert_service.raise_alert(
        session, rule=LOW_FLOAT_RULE, severity=LOW_FLOAT_SEVERITY, scope=_dedupe_scope(f["agent_id"], f["currency"]),
        message=message,
        data={"agent_id": f["agent_id"], "merchant_id": f["merchant_id"], "currency": f["currency"],
              "amount_minor": int(f["amount_minor"]), "low_threshold_minor": int(f["low_threshold_minor"])})


async def raise_low_float_alerts(session: AsyncSession) -> list[dict[str, Any]]:
    """Every float below its threshold raises (or counts again) its alert: the alert check's pass."""
    return [await raise_low_float_alert(session, f) for f in await store.low_floats(session)]


# --- agents' own transactions (cash-in / cash-out) ------------------------------------------------------

CASH_SOURCE = "agent"  # transactions.source of the cash-in / cash-out recorded at agents
CASH_KINDS = ("cash_in", "cash_out")


async def record_cash_transactions(session: AsyncSession, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Record successful cash-in / cash-out transactions made at agents (an operator's report):
    each goes into `transactions` (source `agent`, project = its kind, the agent's merchant and
    country) with its agent_id, so it counts in the agent's 30-day sales. Idempotent by `id`."""
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise Unprocessable("each transaction id may appear once per request")
    for r in rows:
        _check_currency(r["currency"])
        if r["kind"] not in CASH_KINDS:
            raise Unprocessable(f"transaction {r['id']}: kind must be one of {', '.join(CASH_KINDS)}")
    agent_ids = sorted({r["agent_id"] for r in rows})
    agents = await store.agents_by_id(session, agent_ids)
    missing = set(agent_ids) - set(agents)
    if missing:
        raise NotFound(f"agent {sorted(missing)[0]} not found")
    out = [{"id": r["id"], "agent_id": r["agent_id"], "kind": r["kind"], "amount_minor": int(r["amount_minor"]),
            "currency": r["currency"], "occurred_at": r["occurred_at"].astimezone(timezone.utc).isoformat(),
            "merchant_id": agents[r["agent_id"]]["merchant_id"], "country": agents[r["agent_id"]]["country"]}
           for r in rows]
    inserted = await store.insert_cash_transactions(session, CASH_SOURCE, out)
    return {"recorded": inserted, "duplicates": len(rows) - inserted}
