"""The agent map's SQL: agents and their floats, the nearby search on `cube` + `earthdistance`,
the grid clusters of a bounding box, and an agent's 30-day sales from `transactions.agent_id`.

Distances are great-circle distances on the mean Earth radius (IUGG, 6371.0088 km), the radius a
haversine normally uses: earthdistance works on a sphere of radius `earth()` (6378.168 km), so its
distances are scaled by MEAN_EARTH_RADIUS_M / earth(), and a radius in km is scaled the other way
before it becomes an `earth_box`. Each agent's point on that sphere is stored (`earth_pos`, a
generated column = ll_to_earth(lat, lon)) and indexed (GiST); the box is the index condition, the
chord length (`<->`, monotonic in the great-circle distance) the filter and the order.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

MEAN_EARTH_RADIUS_M = 6_371_008.8

# One agent's columns, its floats and its sales since :since (successful transactions), per
# currency, as JSON. `:since` is a parameter, not now() - interval: with a custom plan (_custom_plan)
# the planner prunes `transactions`' monthly partitions itself; with now() it planned every one of
# them, about 75 ms a statement.
_AGENT_DETAIL = """
    a.id, a.name, a.lat, a.lon, a.operator, a.merchant_id, a.country, a.city, a.status,
    a.created_at, a.updated_at,
    coalesce((SELECT jsonb_agg(jsonb_build_object(
                 'currency', f.currency, 'amount_minor', f.amount_minor,
                 'low_threshold_minor', f.low_threshold_minor,
                 'low', f.low_threshold_minor IS NOT NULL AND f.amount_minor < f.low_threshold_minor)
               ORDER BY f.currency)
                FROM agent_floats f WHERE f.agent_id = a.id), '[]'::jsonb) AS floats,
    coalesce((SELECT jsonb_agg(jsonb_build_object('currency', s.currency, 'amount_minor', s.amount_minor,
                                                  'count', s.n) ORDER BY s.currency)
                FROM (SELECT t.currency, sum(t.amount_minor) AS amount_minor, count(*) AS n
                        FROM transactions t
                       WHERE t.agent_id = a.id AND t.status = 'success' AND t.occurred_at >= :since
                       GROUP BY t.currency) s), '[]'::jsonb) AS sales_30d
"""


def _scope_sql(agent_id: str | None, merchant_id: str | None, params: dict[str, Any]) -> str:
    conds = []
    if agent_id is not None:
        conds.append("a.id = :scope_agent_id")
        params["scope_agent_id"] = agent_id
    if merchant_id is not None:
        conds.append("a.merchant_id = :scope_merchant_id")
        params["scope_merchant_id"] = merchant_id
    return "".join(f" AND {c}" for c in conds)


def _status_sql(statuses: list[str] | None, params: dict[str, Any]) -> str:
    if not statuses:
        return ""
    params["statuses"] = list(statuses)
    return " AND a.status = ANY(:statuses)"


def _nearby_sql(scope: str) -> str:
    """The candidate scan on `earth_pos` (ll_to_earth(lat, lon), stored): the earth_box is the GiST
    index condition, the chord length (cube_distance, `<->`) against the radius's chord the exact
    filter, and `<->` the index's KNN order. sec_to_gc turns a chord into the great-circle distance
    (what earth_distance does); every function of the point alone is folded to a constant."""
    return f"""
        SELECT a.id, sec_to_gc(a.earth_pos <-> ll_to_earth(:lat, :lon)) * :mean_r / earth() / 1000.0 AS distance_km
          FROM agents a
         WHERE earth_box(ll_to_earth(:lat, :lon), :radius_m * earth() / :mean_r) @> a.earth_pos
           AND (a.earth_pos <-> ll_to_earth(:lat, :lon)) <= gc_to_sec(:radius_m * earth() / :mean_r){scope}
         ORDER BY a.earth_pos <-> ll_to_earth(:lat, :lon)
         LIMIT :limit"""


def _nearby_params(lat: float, lon: float, radius_km: float, limit: int) -> dict[str, Any]:
    return {"lat": lat, "lon": lon, "radius_m": radius_km * 1000.0, "limit": limit, "mean_r": MEAN_EARTH_RADIUS_M}


async def _custom_plan(session: AsyncSession, *, knn: bool = False) -> None:
    """Plan this transaction's next statements for their parameters: after five runs of a prepared
    statement PostgreSQL may switch to a generic plan, which cannot see how small a box or a
    radius is (a generic plan of the clusters' query nested-looped its cells: seconds instead of
    milliseconds). `knn`: no bitmap scans, so the nearby search walks the GiST index in distance
    order and stops at `limit`; left to itself the planner bitmap-scanned every agent in a wide
    radius and sorted them (110 ms instead of 0.9 ms for 25 km in Dakar, 100,000 agents)."""
    await session.execute(text("SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
                               "set_config('enable_bitmapscan', :bitmap, true)"),
                          {"bitmap": "off" if knn else "on"})


async def nearby(session: AsyncSession, *, lat: float, lon: float, radius_km: float, limit: int,
                 agent_id: str | None, merchant_id: str | None, statuses: list[str] | None,
                 since: datetime) -> list[dict[str, Any]]:
    """Agents within `radius_km` of (lat, lon), nearest first, at most `limit`, with distance_km
    and their sales since `since`."""
    params = {**_nearby_params(lat, lon, radius_km, limit), "since": since}
    scope = _scope_sql(agent_id, merchant_id, params) + _status_sql(statuses, params)
    await _custom_plan(session, knn=True)
    rows = (await session.execute(text(f"""
        WITH near AS ({_nearby_sql(scope)})
        SELECT near.distance_km, {_AGENT_DETAIL}
          FROM near JOIN agents a ON a.id = near.id
         ORDER BY near.distance_km, a.id"""), params)).mappings().all()
    return [dict(r) for r in rows]


async def clusters(session: AsyncSession, *, west: float, south: float, east: float, north: float,
                   cell_deg: float, singles: bool, agent_id: str | None, merchant_id: str | None,
                   statuses: list[str] | None) -> list[dict[str, Any]]:
    """The bounding box's agents snapped to a grid of `cell_deg` degrees: per cell the count, the
    centroid and the total float per currency; a cell of one agent (or every agent, `singles`)
    also carries that agent. A box with west > east crosses the antimeridian."""
    params: dict[str, Any] = {"w": west, "s": south, "e": east, "n": north, "cell": cell_deg}
    lon_cond = "a.lon BETWEEN :w AND :e" if west <= east else "(a.lon >= :w OR a.lon <= :e)"
    scope = _scope_sql(agent_id, merchant_id, params) + _status_sql(statuses, params)
    await _custom_plan(session)
    key = "a.id" if singles else "floor(a.lat / :cell)::bigint || ':' || floor(a.lon / :cell)::bigint"
    rows = (await session.execute(text(f"""
        WITH pts AS MATERIALIZED (
            SELECT a.id, a.name, a.status, a.lat, a.lon, ({key}) AS cell_key
              FROM agents a
             WHERE a.lat BETWEEN :s AND :n AND {lon_cond}{scope}),
        cells AS (
            SELECT cell_key, count(*) AS n, avg(lat) AS lat, avg(lon) AS lon, min(id) AS first_id,
                   min(name) AS first_name, min(status) AS first_status
              FROM pts GROUP BY cell_key),
        totals AS (
            SELECT cell_key, jsonb_object_agg(currency, amount_minor) AS float_totals
              FROM (SELECT p.cell_key, f.currency, sum(f.amount_minor) AS amount_minor
                      FROM pts p JOIN agent_floats f ON f.agent_id = p.id GROUP BY p.cell_key, f.currency) per_currency
             GROUP BY cell_key)
        SELECT c.n AS count, c.lat, c.lon, c.first_id, c.first_name, c.first_status,
               coalesce(t.float_totals, '{{}}'::jsonb) AS float_totals
          FROM cells c LEFT JOIN totals t ON t.cell_key = c.cell_key
         ORDER BY c.n DESC, c.first_id"""), params)).mappings().all()
    return [dict(r) for r in rows]


async def country_extent(session: AsyncSession, *, country: str, agent_id: str | None,
                         merchant_id: str | None) -> dict[str, Any] | None:
    """The min/max lat and lon of the country's agents in the scope (None when it has none)."""
    params: dict[str, Any] = {"country": country}
    scope = _scope_sql(agent_id, merchant_id, params)
    row = (await session.execute(text(f"""
        SELECT min(a.lon) AS west, min(a.lat) AS south, max(a.lon) AS east, max(a.lat) AS north
          FROM agents a WHERE a.country = :country{scope}"""), params)).mappings().first()
    return dict(row) if row is not None and row["west"] is not None else None


async def insert_cash_transactions(session: AsyncSession, source: str, rows: list[dict[str, Any]]) -> int:
    """Record agents' cash-in / cash-out transactions (successful) in `transactions`, with their
    agent_id, each once per (source, id) through transaction_keys (a repeat is skipped). Each row:
    id, agent_id, kind, amount_minor, currency, occurred_at (ISO), merchant_id, country.
    Returns how many were new."""
    if not rows:
        return 0
    ats = [datetime.fromisoformat(r["occurred_at"]) for r in rows]
    first, last = min(ats), max(ats)
    months = (last.year - first.year) * 12 + last.month - first.month + 1
    await session.execute(text("SELECT ensure_transaction_partitions(CAST(:first AS date), :months)"),
                          {"first": first.date().replace(day=1), "months": months})
    result = await session.execute(text("""
        WITH input AS (
            SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(
                id text, agent_id text, kind text, amount_minor bigint, currency text, occurred_at timestamptz,
                merchant_id text, country text)),
        fresh AS (
            SELECT i.*, nextval('transactions_id_seq') AS tid FROM input i
             WHERE NOT EXISTS (SELECT 1 FROM transaction_keys k WHERE k.source = :source AND k.source_id = i.id)),
        keys AS (
            INSERT INTO transaction_keys (source, source_id, transaction_id, occurred_at)
            SELECT :source, f.id, f.tid, f.occurred_at FROM fresh f
            ON CONFLICT DO NOTHING RETURNING source_id)
        INSERT INTO transactions (id, source, source_id, client_operation_id, merchant_id, project, amount_minor,
                                  currency, status, original_status, payer_country, occurred_at, raw, data_hash,
                                  agent_id)
        SELECT f.tid, :source, f.id, f.id, f.merchant_id, f.kind, f.amount_minor, f.currency, 'success', 'success',
               f.country, f.occurred_at,
               jsonb_build_object('id', f.id, 'agent_id', f.agent_id, 'kind', f.kind, 'amount_minor', f.amount_minor,
                                  'currency', f.currency, 'occurred_at', f.occurred_at),
               md5(f.id || ':' || f.agent_id || ':' || f.kind || ':' || f.amount_minor || ':' || f.currency),
               f.agent_id
          FROM fresh f JOIN keys k ON k.source_id = f.id"""), {"source": source, "rows": json.dumps(rows)})
    return result.rowcount or 0


async def get_agent(session: AsyncSession, agent_id: str, *, since: datetime) -> dict[str, Any] | None:
    await _custom_plan(session)
    row = (await session.execute(text(f"SELECT {_AGENT_DETAIL} FROM agents a WHERE a.id = :id"),
                                 {"id": agent_id, "since": since})).mappings().first()
    return dict(row) if row is not None else None


async def list_agents(session: AsyncSession, *, agent_id: str | None, merchant_id: str | None,
                      statuses: list[str] | None, after_id: str | None, limit: int,
                      since: datetime) -> list[dict[str, Any]]:
    await _custom_plan(session)
    params: dict[str, Any] = {"limit": limit, "since": since}
    scope = _scope_sql(agent_id, merchant_id, params) + _status_sql(statuses, params)
    if after_id is not None:
        scope += " AND a.id > :after_id"
        params["after_id"] = after_id
    rows = (await session.execute(text(f"""
        SELECT {_AGENT_DETAIL} FROM agents a WHERE true{scope} ORDER BY a.id LIMIT :limit"""),
        params)).mappings().all()
    return [dict(r) for r in rows]


async def upsert_agents(session: AsyncSession, agents: list[dict[str, Any]]) -> int:
    """Insert or update agents (id, name, lat, lon, operator, merchant_id, country, city, status)."""
    if not agents:
        return 0
    result = await session.execute(text("""
        INSERT INTO agents (id, name, lat, lon, operator, merchant_id, country, city, status)
        SELECT x.id, x.name, x.lat, x.lon, x.operator, x.merchant_id, x.country, x.city, x.status
          FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(id text, name text, lat float8, lon float8,
               operator text, merchant_id text, country text, city text, status text)
        ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
            operator = EXCLUDED.operator, merchant_id = EXCLUDED.merchant_id, country = EXCLUDED.country,
            city = EXCLUDED.city, status = EXCLUDED.status, updated_at = now()"""),
        {"rows": json.dumps(agents)})
    return result.rowcount or 0


async def upsert_floats(session: AsyncSession, floats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set floats (agent_id, currency, amount_minor, low_threshold_minor); a missing
    low_threshold_minor key keeps the stored threshold. Returns the rows as stored, with the
    agent's merchant_id."""
    if not floats:
        return []
    rows = (await session.execute(text("""
        WITH x AS (
            SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
                AS x(agent_id text, currency text, amount_minor bigint, low_threshold_minor bigint,
                     keep_threshold boolean)),
        up AS (
            INSERT INTO agent_floats (agent_id, currency, amount_minor, low_threshold_minor)
            SELECT agent_id, currency, amount_minor, low_threshold_minor FROM x
            ON CONFLICT (agent_id, currency) DO UPDATE SET amount_minor = EXCLUDED.amount_minor,
                low_threshold_minor = CASE WHEN (SELECT keep_threshold FROM x
                                                  WHERE x.agent_id = EXCLUDED.agent_id
                                                    AND x.currency = EXCLUDED.currency)
                                           THEN agent_floats.low_threshold_minor
                                           ELSE EXCLUDED.low_threshold_minor END,
                updated_at = now()
            RETURNING agent_id, currency, amount_minor, low_threshold_minor)
        SELECT up.*, a.merchant_id, a.name FROM up JOIN agents a ON a.id = up.agent_id
         ORDER BY up.agent_id, up.currency"""),
        {"rows": json.dumps([{**f, "keep_threshold": "low_threshold_minor" not in f} for f in floats])}
    )).mappings().all()
    return [dict(r) for r in rows]


async def low_floats(session: AsyncSession) -> list[dict[str, Any]]:
    """Every float below its threshold (of agents not closed), with the agent's merchant and name."""
    rows = (await session.execute(text("""
        SELECT f.agent_id, f.currency, f.amount_minor, f.low_threshold_minor, a.merchant_id, a.name
          FROM agent_floats f JOIN agents a ON a.id = f.agent_id
         WHERE f.low_threshold_minor IS NOT NULL AND f.amount_minor < f.low_threshold_minor
           AND a.status <> 'closed'
         ORDER BY f.agent_id, f.currency"""))).mappings().all()
    return [dict(r) for r in rows]


async def first_agent_with_prefix(session: AsyncSession, prefix: str) -> dict[str, Any] | None:
    row = (await session.execute(text("""
        SELECT id, name FROM agents WHERE id LIKE :p AND status = 'active' ORDER BY id LIMIT 1"""),
        {"p": prefix.replace("_", "\\_") + "%"})).mappings().first()
    return dict(row) if row is not None else None


async def agents_by_id(session: AsyncSession, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = (await session.execute(text("SELECT id, merchant_id, country FROM agents WHERE id = ANY(:ids)"),
                                  {"ids": list(ids)})).mappings().all()
    return {r["id"]: dict(r) for r in rows}


async def existing_agent_ids(session: AsyncSession, ids: list[str]) -> set[str]:
    rows = await session.execute(text("SELECT id FROM agents WHERE id = ANY(:ids)"), {"ids": ids})
    return {r[0] for r in rows}


async def existing_merchant_ids(session: AsyncSession, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    rows = await session.execute(text("SELECT id FROM merchants WHERE id = ANY(:ids)"), {"ids": ids})
    return {r[0] for r in rows}


async def explain_nearby(session: AsyncSession, *, lat: float, lon: float, radius_km: float, limit: int) -> str:
    """EXPLAIN (ANALYZE) of the nearby search's candidate scan, for the bench."""
    await _custom_plan(session, knn=True)
    rows = await session.execute(text("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)" + _nearby_sql("")),
                                 _nearby_params(lat, lon, radius_km, limit))
    return "\n".join(r[0] for r in rows)


async def explain_clusters_scan(session: AsyncSession, *, west: float, south: float, east: float,
                                north: float) -> str:
    rows = await session.execute(text("""EXPLAIN (ANALYZE, COSTS OFF)
        SELECT count(*) FROM agents a WHERE a.lat BETWEEN :s AND :n AND a.lon BETWEEN :w AND :e"""),
        {"w": west, "s": south, "e": east, "n": north})
    return "\n".join(r[0] for r in rows)
