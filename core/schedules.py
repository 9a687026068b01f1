"""Temporal Schedules payops relies on, created or updated idempotently by every worker at
start-up (and by `payops up`), so N workers or a restart never duplicate them."""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from core.settings import Settings

log = logging.getLogger("payops.schedules")

PAYOUT_SWEEP_SCHEDULE_ID = "payout-sweeper"
ALERT_CHECK_SCHEDULE_ID = "alert-check"


async def upsert_schedule(client: Client, schedule_id: str, desired: Schedule) -> None:
    """Create the schedule, or update it in place keeping its paused/running state."""
    try:
        await client.create_schedule(schedule_id, desired)
    except ScheduleAlreadyRunningError:
        def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
            desired.state = current.description.schedule.state
            return ScheduleUpdate(schedule=desired)

        await client.get_schedule_handle(schedule_id).update(update)


def payout_sweep_schedule(settings: Settings) -> Schedule:
    from workflows.maintenance import PayoutSweepInput, PayoutSweepWorkflow

    return Schedule(
        action=ScheduleActionStartWorkflow(
            PayoutSweepWorkflow.run,
            PayoutSweepInput(older_than_seconds=settings.payout_sweep_after_seconds),
            id=PAYOUT_SWEEP_SCHEDULE_ID,
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.payout_sweep_every_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def alert_check_schedule(settings: Settings) -> Schedule:
    from workflows.alerts import AlertCheckInput, AlertCheckWorkflow

    return Schedule(
        action=ScheduleActionStartWorkflow(
            AlertCheckWorkflow.run,
            AlertCheckInput(),
            id=ALERT_CHECK_SCHEDULE_ID,
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.alert_check_every_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    from core.sync_service import ensure_sync_schedules

    await upsert_schedule(client, PAYOUT_SWEEP_SCHEDULE_ID, payout_sweep_schedule(settings))
    await upsert_schedule(client, ALERT_CHECK_SCHEDULE_ID, alert_check_schedule(settings))
    done = [PAYOUT_SWEEP_SCHEDULE_ID, ALERT_CHECK_SCHEDULE_ID, *await ensure_sync_schedules(client, settings)]
    from core.rail_schedules import ensure_rail_schedules

    done += await ensure_rail_schedules(client, settings)
    from core.reconciliation_service import ensure_reconciliation_schedules

    done += await ensure_reconciliation_schedules(client, settings)
    log.info("schedules ensured: %s", ", ".join(done))
    return done
