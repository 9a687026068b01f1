"""Temporal Schedules payops relies on, created or updated idempotently by every worker at
start-up (and by `payops up`), so N workers or a restart never duplicate them. This module gathers
each domain's Schedules; the create-or-update helper is core.platform.temporal.upsert_schedule."""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from core.payouts.schedules import ensure_payout_schedules
from core.payouts.temporal_ops import ReaperInput
from core.platform.settings import Settings
from core.platform.temporal import upsert_schedule
from core.rails.schedules import ensure_rail_schedules
from core.reconciliation.service import ensure_reconciliation_schedules
from core.sync.service import ensure_sync_schedules
from workflows.alerts import AlertCheckInput, AlertCheckWorkflow, AlertExpiryInput, AlertExpiryWorkflow
from workflows.api_logs import ApiLogRetentionInput, ApiLogRetentionWorkflow
from activities.ready_probe import ReadyProbeInput
from workflows.ready_probe import ReadyProbeWorkflow
from workflows.bank_reconciliation import BankReconciliationInput, BankReconciliationWorkflow
from workflows.maintenance import BankNotificationSweepInput, BankNotificationSweepWorkflow
from workflows.maintenance import PayoutSweepInput, PayoutSweepWorkflow
from workflows.reaper import WorkflowReaperWorkflow
from workflows.recommendations import RecommendationInput, RecommendationWorkflow

log = logging.getLogger("payops.schedules")

PAYOUT_SWEEP_SCHEDULE_ID = "payout-sweeper"
ALERT_CHECK_SCHEDULE_ID = "alert-check"
ALERT_EXPIRY_SCHEDULE_ID = "alert-expiry"
BANK_NOTIFICATION_SWEEP_SCHEDULE_ID = "bank-notification-sweeper"
BANK_RECONCILIATION_SCHEDULE_ID = "bank-reconciliation"
WORKFLOW_REAPER_SCHEDULE_ID = "workflow-reaper"
API_LOG_RETENTION_SCHEDULE_ID = "api-log-retention"
READY_PROBE_SCHEDULE_ID = "ready-probe"
RECOMMENDATIONS_SCHEDULE_ID = "recommendations"


def payout_sweep_schedule(settings: Settings) -> Schedule:
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


def alert_expiry_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            AlertExpiryWorkflow.run,
            AlertExpiryInput(),
            id=ALERT_EXPIRY_SCHEDULE_ID,
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.alert_expiry_every_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def bank_notification_sweep_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            BankNotificationSweepWorkflow.run,
            BankNotificationSweepInput(older_than_seconds=settings.bank_notification_redeliver_after_seconds),
            id=BANK_NOTIFICATION_SWEEP_SCHEDULE_ID,
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(
            every=timedelta(seconds=settings.bank_notification_redeliver_every_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def bank_reconciliation_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            BankReconciliationWorkflow.run,
            BankReconciliationInput(days=settings.bank_reconciliation_days,
                                    confirm_seconds=settings.bank_reconciliation_confirm_seconds),
            id=BANK_RECONCILIATION_SCHEDULE_ID,
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(
            every=timedelta(seconds=settings.bank_reconciliation_every_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def workflow_reaper_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            WorkflowReaperWorkflow.run,
            ReaperInput(min_age_seconds=settings.workflow_reaper_min_age_seconds),
            id=WORKFLOW_REAPER_SCHEDULE_ID,
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(
            every=timedelta(seconds=settings.workflow_reaper_every_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def api_log_retention_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ApiLogRetentionWorkflow.run,
            ApiLogRetentionInput(retention_days=settings.api_log_retention_days),
            id=API_LOG_RETENTION_SCHEDULE_ID,
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.api_log_prune_every_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def ready_probe_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ReadyProbeWorkflow.run,
            ReadyProbeInput(retention_days=settings.api_log_retention_days),
            id=READY_PROBE_SCHEDULE_ID,
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.ready_probe_every_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def recommendations_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RecommendationWorkflow.run,
            RecommendationInput(),
            id=RECOMMENDATIONS_SCHEDULE_ID,
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(
            every=timedelta(seconds=settings.recommendation_every_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    await upsert_schedule(client, PAYOUT_SWEEP_SCHEDULE_ID, payout_sweep_schedule(settings))
    await upsert_schedule(client, ALERT_CHECK_SCHEDULE_ID, alert_check_schedule(settings))
    done = [PAYOUT_SWEEP_SCHEDULE_ID, ALERT_CHECK_SCHEDULE_ID, *await ensure_sync_schedules(client, settings)]
    await upsert_schedule(client, ALERT_EXPIRY_SCHEDULE_ID, alert_expiry_schedule(settings))
    done.append(ALERT_EXPIRY_SCHEDULE_ID)
    await upsert_schedule(client, BANK_NOTIFICATION_SWEEP_SCHEDULE_ID, bank_notification_sweep_schedule(settings))
    done.append(BANK_NOTIFICATION_SWEEP_SCHEDULE_ID)
    await upsert_schedule(client, WORKFLOW_REAPER_SCHEDULE_ID, workflow_reaper_schedule(settings))
    done.append(WORKFLOW_REAPER_SCHEDULE_ID)
    done += await ensure_rail_schedules(client, settings)
    done += await ensure_reconciliation_schedules(client, settings)
    await upsert_schedule(client, BANK_RECONCILIATION_SCHEDULE_ID, bank_reconciliation_schedule(settings))
    done.append(BANK_RECONCILIATION_SCHEDULE_ID)
    await upsert_schedule(client, API_LOG_RETENTION_SCHEDULE_ID, api_log_retention_schedule(settings))
    done.append(API_LOG_RETENTION_SCHEDULE_ID)
    done += await ensure_payout_schedules(client, settings)  # merchants' and platform's payout schedules
    await upsert_schedule(client, RECOMMENDATIONS_SCHEDULE_ID, recommendations_schedule(settings))
    done.append(RECOMMENDATIONS_SCHEDULE_ID)
    await upsert_schedule(client, READY_PROBE_SCHEDULE_ID, ready_probe_schedule(settings))
    done.append(READY_PROBE_SCHEDULE_ID)
    log.info("schedules ensured: %s", ", ".join(done))
    return done
