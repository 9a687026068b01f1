"""Alert expiry on real PostgreSQL and a real Temporal dev server with a worker: an open alert
nobody acknowledged expires once its severity's lifetime has passed since it last fired; a critical
one (lifetime 0) and an acknowledged one never do; a firing after expiry opens a new alert; the
`alert-expiry` Schedule exists once a worker has started and its workflow does the expiring."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from core.alerts import service as alert_service
from core.alerts.store import alert_audit_entries
from core.platform.settings import Settings
from core.platform.tables import alerts

LIFETIME_HOURS = 1.0


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={
        "alert_ttl_hours": LIFETIME_HOURS,
        "alert_ttl_hours_by_severity": {"critical": 0.0, "medium": 5.0},
        "alert_expiry_every_seconds": 1.0,
    })


async def fired(sm, *, severity: str, last_fired_ago: timedelta, rule: str | None = None,
                scope: str = "platform") -> dict:
    """An alert raised the way payops raises them, then aged: it last fired `last_fired_ago`."""
    rule = rule or f"test_rule_{uuid.uuid4().hex[:8]}"
    async with sm() as session, session.begin():
        a = await alert_service.raise_alert(session, rule=rule, severity=severity, scope=scope,
                                            message=f"{rule} fired", data={"merchant_id": None})
        await session.execute(text("UPDATE alerts SET last_seen_at = now() - make_interval(secs => :s), "
                                   "created_at = now() - make_interval(secs => :s) WHERE id = :id"),
                              {"s": last_fired_ago.total_seconds(), "id": a["id"]})
    return a


async def row(sm, alert_id: int) -> dict:
    async with sm() as session:
        return dict((await session.execute(select(alerts).where(alerts.c.id == alert_id))).mappings().one())


async def expire(sm, settings: Settings) -> list[int]:
    async with sm() as session, session.begin():
        return [a["id"] for a in await alert_service.expire_alerts(session, settings)]


async def test_unacknowledged_alert_expires_after_its_lifetime_audited(sessionmaker, settings):
    stale = await fired(sessionmaker, severity="low", last_fired_ago=timedelta(hours=LIFETIME_HOURS, minutes=1))
    fresh = await fired(sessionmaker, severity="low", last_fired_ago=timedelta(hours=LIFETIME_HOURS, minutes=-5))
    medium = await fired(sessionmaker, severity="medium", last_fired_ago=timedelta(hours=4))  # its own 5 h

    assert await expire(sessionmaker, settings) == [stale["id"]]
    got = await row(sessionmaker, stale["id"])
    assert got["status"] == "expired" and got["expired_at"] is not None and got["expired_at"] > got["last_seen_at"]
    assert (await row(sessionmaker, fresh["id"]))["status"] == "open"
    assert (await row(sessionmaker, medium["id"]))["status"] == "open"
    async with sessionmaker() as session:
        [audit] = await alert_audit_entries(session, stale["id"])
    assert (audit["event"], audit["actor"], audit["from_status"], audit["to_status"]) == (
        "expired", "alert-expiry", "open", "expired")
    assert audit["data"]["lifetime_hours"] == LIFETIME_HOURS and audit["data"]["severity"] == "low"
    assert await expire(sessionmaker, settings) == []  # a second pass finds nothing more


async def test_critical_with_lifetime_zero_never_expires(sessionmaker, settings):
    critical = await fired(sessionmaker, severity="critical", last_fired_ago=timedelta(days=365))
    assert await expire(sessionmaker, settings) == []
    assert (await row(sessionmaker, critical["id"]))["status"] == "open"
    # with no override, critical follows the default lifetime
    assert await expire(sessionmaker, settings.model_copy(update={"alert_ttl_hours_by_severity": {}})) == [
        critical["id"]]


async def test_acknowledged_alert_never_expires(sessionmaker, settings):
    a = await fired(sessionmaker, severity="high", last_fired_ago=timedelta(days=30))
    async with sessionmaker() as session, session.begin():
        await alert_service.acknowledge(session, a["id"], actor="ops-1", merchant_id=None)
    assert await expire(sessionmaker, settings) == []
    assert (await row(sessionmaker, a["id"]))["status"] == "acknowledged"


async def test_a_firing_after_expiry_opens_a_new_alert(sessionmaker, settings):
    old = await fired(sessionmaker, severity="low", last_fired_ago=timedelta(hours=2), rule="dlq_size_test")
    assert await expire(sessionmaker, settings) == [old["id"]]
    async with sessionmaker() as session, session.begin():
        again = await alert_service.raise_alert(session, rule="dlq_size_test", severity="low", scope="platform",
                                                message="fired again", data={"merchant_id": None})
        repeat = await alert_service.raise_alert(session, rule="dlq_size_test", severity="low", scope="platform",
                                                 message="and again", data={"merchant_id": None})
    assert again["opened"] and again["id"] != old["id"]
    assert not repeat["opened"] and repeat["id"] == again["id"] and repeat["occurrences"] == 2  # deduped as before
    assert (await row(sessionmaker, old["id"]))["status"] == "expired"
    assert (await row(sessionmaker, old["id"]))["occurrences"] == 1  # the expired one is not counted on


class TestExpiredInTheApi:
    async def test_status_filter_and_expired_at(self, client, token_for, sessionmaker, settings):
        a = await fired(sessionmaker, severity="low", last_fired_ago=timedelta(hours=3))
        live = await fired(sessionmaker, severity="low", last_fired_ago=timedelta(minutes=1))
        await expire(sessionmaker, settings)
        headers = token_for("ops_admin")
        r = await client.get("/api/v1/alerts", params={"status": "expired"}, headers=headers)
        assert r.status_code == 200, r.text
        [got] = r.json()["data"]
        assert got["id"] == a["id"] and got["status"] == "expired" and got["expired_at"]
        r = await client.get("/api/v1/alerts", params={"status": "open"}, headers=headers)
        assert [x["id"] for x in r.json()["data"]] == [live["id"]]

    async def test_an_expired_alert_cannot_be_acknowledged_or_resolved(self, client, token_for, sessionmaker,
                                                                       settings):
        a = await fired(sessionmaker, severity="low", last_fired_ago=timedelta(hours=3))
        await expire(sessionmaker, settings)
        for verb in ("acknowledge", "resolve"):
            r = await client.post(f"/api/v1/alerts/{a['id']}/{verb}", headers=token_for("ops_admin"))
            assert r.status_code == 409, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert "expired" in r.json()["detail"]

    async def test_unknown_status_is_422(self, client, token_for):
        r = await client.get("/api/v1/alerts", params={"status": "gone"}, headers=token_for("ops_admin"))
        assert r.status_code == 422


async def test_expiry_schedule_exists_after_worker_start_and_expires(temporal_client, worker, settings,
                                                                     sessionmaker):
    from workers.schedules import ALERT_EXPIRY_SCHEDULE_ID, ensure_schedules

    stale = await fired(sessionmaker, severity="high", last_fired_ago=timedelta(hours=2))
    critical = await fired(sessionmaker, severity="critical", last_fired_ago=timedelta(days=10))
    # what a worker does at start (workers/main.py run_worker), against this test's task queue
    assert ALERT_EXPIRY_SCHEDULE_ID in await ensure_schedules(temporal_client, settings)
    desc = await temporal_client.get_schedule_handle(ALERT_EXPIRY_SCHEDULE_ID).describe()
    assert desc.schedule.spec.intervals[0].every == timedelta(seconds=settings.alert_expiry_every_seconds)
    assert desc.schedule.action.workflow == "AlertExpiryWorkflow"
    assert desc.schedule.action.task_queue == settings.temporal_task_queue

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while (await row(sessionmaker, stale["id"]))["status"] != "expired":
        assert loop.time() < deadline, "the scheduled AlertExpiryWorkflow did not expire the stale alert"
        await asyncio.sleep(0.2)
    assert (await row(sessionmaker, critical["id"]))["status"] == "open"
    assert (await temporal_client.get_schedule_handle(ALERT_EXPIRY_SCHEDULE_ID).describe()).info.num_actions >= 1


def test_lifetimes_setting_refuses_unknown_severities_and_negative_hours():
    with pytest.raises(ValueError, match="unknown alert severities"):
        Settings(_env_file=None, alert_ttl_hours_by_severity={"urgent": 1})
    with pytest.raises(ValueError, match=">= 0"):
        Settings(_env_file=None, alert_ttl_hours_by_severity={"low": -1})
    s = Settings(_env_file=None, alert_ttl_hours=72, alert_ttl_hours_by_severity={"critical": 0})
    assert alert_service.alert_lifetimes(s) == {"low": 72, "medium": 72, "high": 72, "critical": 0}
