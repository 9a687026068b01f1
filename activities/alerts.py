"""The alert check as an activity: evaluate every rule once, record firings, publish new alerts;
and the alert expiry: unacknowledged alerts past their lifetime become `expired`."""

from __future__ import annotations

from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.agents import service as agent_service
from core.alerts import service as alert_service
from core.platform.settings import Settings, get_settings


class AlertCheckActivityInput(BaseModel):
    pass


class AlertCheckActivityResult(BaseModel):
    rules_checked: int
    fired: int  # opened + repeated
    opened: int


class AlertExpiryActivityInput(BaseModel):
    pass


class AlertExpiryActivityResult(BaseModel):
    expired: int
    alert_ids: list[int]
    lifetimes_hours: dict[str, float]  # per severity, as configured when it ran (0 = never)


class AlertActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], redis: Redis | None,
                 settings: Settings | None = None) -> None:
        self._sessionmaker = sessionmaker
        self._redis = redis
        self._settings = settings or get_settings()  # the alert lifetimes

    @activity.defn(name="expire_alerts")
    async def expire_alerts(self, params: AlertExpiryActivityInput) -> AlertExpiryActivityResult:
        async with self._sessionmaker() as session, session.begin():
            expired = await alert_service.expire_alerts(session, self._settings)
        await alert_service.publish_expired(self._redis, expired)  # after the commit
        return AlertExpiryActivityResult(expired=len(expired), alert_ids=[a["id"] for a in expired],
                                         lifetimes_hours=alert_service.alert_lifetimes(self._settings))

    @activity.defn(name="check_alert_rules")
    async def check_alert_rules(self, params: AlertCheckActivityInput) -> AlertCheckActivityResult:
        async with self._sessionmaker() as session, session.begin():
            result = await alert_service.check_rules(session)
            # agents' floats below their thresholds: alerted again while nobody tops them up
            low_floats = await agent_service.raise_low_float_alerts(session)
        fired = result["fired"] + low_floats
        await alert_service.publish_alerts(self._redis, fired)  # after the commit
        return AlertCheckActivityResult(rules_checked=result["rules_checked"], fired=len(fired),
                                        opened=sum(1 for a in fired if a["opened"]))
