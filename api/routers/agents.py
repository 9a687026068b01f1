"""The agent map: mobile-money agents (cash-in/cash-out points) near a point, clustered for a map,
one by one; ops create them and set their floats. An agent (role `agent`) sees only itself, a
merchant user only its merchant's agents, ops every agent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AgentsManage, AgentsRead, Session
from api.schemas.agents import (
    AgentOut, AgentPage, AgentsUpsert, AgentsUpserted, CashTransactionsIn, CashTransactionsRecorded, ClustersOut,
    FloatOut, FloatsIn, NearbyOut,
)
from api.schemas.common import problems
from core.agents import service

router = APIRouter(prefix="/agents", tags=["agents"])

StatusFilter = Annotated[list[str] | None, Query(
    description="only agents in these statuses (repeatable); default: every status")]


@router.get("/nearby", response_model=NearbyOut, responses=problems(401, 403, 422))
async def nearby_agents(
    principal: AgentsRead, session: Session,
    lat: Annotated[float, Query(ge=-90, le=90, description="latitude, degrees")],
    lon: Annotated[float, Query(ge=-180, le=180, description="longitude, degrees")],
    radius_km: Annotated[float, Query(gt=0, le=500)] = 5.0,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
    status: StatusFilter = None,
    merchant_id: str | None = None,
):
    """Agents within `radius_km` of the point, nearest first, with `distance_km` (great circle on
    the mean Earth radius), float and 30-day sales per currency. Index-backed (GiST on
    ll_to_earth, cube + earthdistance)."""
    scope = service.scope_of(principal, merchant_id)
    return {"data": await service.nearby(session, scope, lat=lat, lon=lon, radius_km=radius_km, limit=limit,
                                         statuses=service.parse_statuses(status))}


@router.get("/clusters", response_model=ClustersOut, responses=problems(401, 403, 422))
async def agent_clusters(
    principal: AgentsRead, session: Session,
    bbox: Annotated[str, Query(description="west,south,east,north in degrees (west > east crosses 180°)")],
    zoom: Annotated[int, Query(ge=0, le=service.MAX_ZOOM, description="web-map zoom level")],
    status: StatusFilter = None,
    merchant_id: str | None = None,
):
    """The box's agents on a grid of cells a quarter of a map tile wide at this zoom (360 / 2^zoom / 4
    degrees): per cell the count, the centroid and the total float per currency. From zoom 15, and
    in a cell of one agent, the agent itself. The counts add up to `total`, the agents in the box."""
    scope = service.scope_of(principal, merchant_id)
    return await service.clusters(session, scope, bbox=bbox, zoom=zoom, statuses=service.parse_statuses(status))


@router.get("", response_model=AgentPage, responses=problems(401, 403, 422))
async def list_agents(
    principal: AgentsRead, session: Session, status: StatusFilter = None, merchant_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100, cursor: str | None = None,
):
    """Agents by id (keyset: pass `next_cursor` as `cursor`)."""
    scope = service.scope_of(principal, merchant_id)
    return await service.list_agents(session, scope, statuses=service.parse_statuses(status), after_id=cursor, limit=limit)


@router.put("", response_model=AgentsUpserted, responses=problems(401, 403, 422))
async def upsert_agents(body: AgentsUpsert, principal: AgentsManage, session: Session):
    """Create or update agents (up to 5000 a call). Each names an operator, a merchant, or both,
    and may carry its floats (low-float alerts as for PUT /agents/{id}/floats)."""
    return await service.upsert_agents(session, [a.model_dump(exclude_unset=True) | {"status": a.status}
                                                  for a in body.agents])


@router.post("/transactions", response_model=CashTransactionsRecorded, responses=problems(401, 403, 404, 422))
async def record_cash_transactions(body: CashTransactionsIn, principal: AgentsManage, session: Session):
    """Record successful cash-in / cash-out transactions made at agents (up to 5000 a call; an
    operator's report). Each is a transaction (source `agent`, project = its kind) carrying its
    agent's id, merchant and country, and counts in the agent's 30-day sales. Idempotent by `id`."""
    return await service.record_cash_transactions(session, [t.model_dump() for t in body.transactions])


@router.get("/{agent_id}", response_model=AgentOut, responses=problems(401, 403, 404))
async def get_agent(agent_id: str, principal: AgentsRead, session: Session):
    """One agent with its float and 30-day sales. 404 for an agent outside your scope."""
    return await service.get_agent(session, service.scope_of(principal), agent_id)


@router.put("/{agent_id}/floats", response_model=list[FloatOut], responses=problems(401, 403, 404, 422))
async def set_agent_floats(agent_id: str, body: FloatsIn, principal: AgentsManage, session: Session):
    """Set the agent's float per currency (and its low-float threshold). A float below its threshold
    raises `agent_low_float` (one open alert per agent and currency); one back at or above it
    resolves that alert."""
    floats = [{"agent_id": agent_id, **f.model_dump(exclude_unset=True)} for f in body.floats]
    return await service.set_floats(session, floats)
