"""The recommendation run as an activity: expire what is due, recompute every kind."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from connectors.registry import ConnectorRegistry
from core.payouts.routing import ConnectorInfo
from core.platform.settings import Settings
from core.recommendations import service as recommendation_service


class RecommendationRunInput(BaseModel):
    pass


class RecommendationRunResult(BaseModel):
    expired: int
    computed: int
    opened: int
    refreshed: int
    suppressed: int


class RecommendationActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], connectors: ConnectorRegistry,
                 settings: Settings) -> None:
        self._sessionmaker = sessionmaker
        self._connectors = connectors
        self._settings = settings

    def connector_infos(self) -> list[ConnectorInfo]:
        return [ConnectorInfo(name=c.name, rails=frozenset(c.rails), preference=c.preference, routable=c.routable)
                for c in self._connectors]

    @activity.defn(name="compute_recommendations")
    async def compute_recommendations(self, params: RecommendationRunInput) -> RecommendationRunResult:
        async with self._sessionmaker() as session, session.begin():
            counts = await recommendation_service.recompute(session, self._settings, self.connector_infos())
        return RecommendationRunResult(**counts)
