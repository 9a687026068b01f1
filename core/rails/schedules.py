"""Temporal Schedules of the rails: one BatchWorkflow per batch rail at the rail's cutoff (local
time of the rail, business weekdays; a holiday's run finds nothing due and does nothing), and the
connector health checks. Ensured by every worker at start and again when ops change a rule."""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
)

from core.platform.db import create_engine, create_sessionmaker
from core.platform.names import BATCH_WORKFLOW, CONNECTOR_HEALTH_WORKFLOW
from core.rails.models import BatchInput, HealthRunInput
from core.rails.rules import RailRule
from core.rails.store import load_rules
from core.platform.temporal import upsert_schedule
from core.platform.settings import Settings

log = logging.getLogger("payops.schedules")

CONNECTOR_HEALTH_SCHEDULE_ID = "connector-health"


def batch_schedule_id(rail: str) -> str:
    return f"payout-batch-{rail}"


def batch_schedule(rule: RailRule, settings: Settings) -> Schedule:
    hour, minute = (int(x) for x in (rule.cutoff_time or "00:00").split(":"))
    return Schedule(
        action=ScheduleActionStartWorkflow(
            BATCH_WORKFLOW, BatchInput(rail=rule.rail), id=batch_schedule_id(rule.rail),
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[ScheduleCalendarSpec(
                hour=[ScheduleRange(hour)], minute=[ScheduleRange(minute)], second=[ScheduleRange(0)],
                day_of_week=[ScheduleRange(1, 5)],
            )],
            time_zone_name=rule.timezone,
        ),
        # A late run still collects the cutoff's payouts (they are claimed by cutoff time, not by
        # when the run starts); two runs of one cutoff never overlap.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.BUFFER_ONE, catchup_window=timedelta(days=3)),
    )


def connector_health_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            CONNECTOR_HEALTH_WORKFLOW, HealthRunInput(), id=CONNECTOR_HEALTH_SCHEDULE_ID,
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.connector_health_every_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def load_batch_rules(settings: Settings) -> list[RailRule]:
    engine = create_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        async with create_sessionmaker(engine)() as session:
            return [r for r in await load_rules(session) if r.batch and r.enabled and r.cutoff_time]
    finally:
        await engine.dispose()


async def ensure_rail_schedules(client: Client, settings: Settings, rules: list[RailRule] | None = None) -> list[str]:
    if not settings.rail_schedules_enabled:
        return []
    await upsert_schedule(client, CONNECTOR_HEALTH_SCHEDULE_ID, connector_health_schedule(settings))
    done = [CONNECTOR_HEALTH_SCHEDULE_ID]
    if rules is None:
        if not settings.database_url:
            return done
        rules = await load_batch_rules(settings)
    for rule in rules:
        if rule.batch and rule.cutoff_time:
            await upsert_schedule(client, batch_schedule_id(rule.rail), batch_schedule(rule, settings))
            done.append(batch_schedule_id(rule.rail))
    return done
