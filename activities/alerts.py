"""The alert check as an activity: evaluate every rule once, record firings, publish new alerts."""

from __future__ import annotations

from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.alerts import service as alert_service


class AlertCheckActivityInput(BaseModel):
    pass


class AlertCheckActivityResult(BaseModel):
    rules_checked: int
    fired: int  # opened + repeated
    opened: int


class AlertActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], redis: Redis | None) -> None:
        self._sessionmaker = sessionmaker
        self._redis = redis

    @activity.defn(name="check_alert_rules")
    async def check_alert_rules(self, params: AlertCheckActivityInput) -> AlertCheckActivityResult:
        async with self._sessionmaker() as session, session.begin():
            result = await alert_service.check_rules(session)
        fired = result["fired"]
        await alert_service.publish_alerts(self._redis, fired)  # after the commit
        return AlertCheckActivityResult(rules_checked=result["rules_checked"], fired=len(fired),
                                        opened=sum(1 for a in fired if a["opened"]))
