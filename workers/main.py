"""The one place a Worker is built: which workflows and activities run on which task queue.

`payops worker` (or `python -m workers.main`) runs one; run N of them to scale out.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import signal
from dataclasses import dataclass, field
from datetime import datetime, timezone

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.alerts import AlertActivities
from activities.api_logs import ApiLogActivities
from activities.ready_probe import ReadyProbeActivities
from activities.recommendations import RecommendationActivities
from activities.bank_reconciliation import BankReconciliationActivities
from activities.exports import ExportActivities
from activities.health import HealthActivities
from activities.ops_actions import OpsActionActivities
from activities.payout_temporal_ops import PayoutTemporalOpsActivities
from activities.payouts import PayoutActivities
from activities.rails import RailActivities
from activities.reconciliation import ReconciliationActivities
from activities.sync import SyncActivities
from activities.webhooks import WebhookActivities
from connectors.registry import ConnectorRegistry, build_registry
from core.platform.crypto import FieldCipher
from core.rails.rules import load_calendars
from core.platform.db import create_engine, create_sessionmaker
from workers.metrics import ActivityMetricsInterceptor, keep_queue_size_fresh
from workers.schedules import ensure_schedules
from core.platform.settings import Settings, get_settings
from core.platform.temporal import connect_temporal
from workflows.alerts import AlertCheckWorkflow, AlertExpiryWorkflow
from workflows.recommendations import RecommendationWorkflow
from workflows.bank_reconciliation import BankReconciliationWorkflow
from workflows.export import ExportWorkflow
from workflows.health import HealthCheckWorkflow
from workflows.ops_action import OpsActionWorkflow
from workflows.maintenance import PayoutSweepWorkflow
from workflows.maintenance import BankNotificationSweepWorkflow
from activities.bank_notifications import BankNotificationActivities
from workflows.batch import BatchWorkflow
from workflows.bulk_payouts import BulkPayoutIntakeWorkflow
from activities.bulk_payouts import BulkPayoutActivities
from workflows.payout_schedules import PayoutScheduleFireWorkflow
from activities.payout_schedules import PayoutScheduleActivities
from workflows.connector_health import ConnectorHealthWorkflow
from workflows.payout import PayoutWorkflow
from workflows.reaper import WorkflowReaperWorkflow
from workflows.reconciliation import ReconciliationWorkflow
from workflows.sync import SyncWorkflow
from workflows.webhooks import WebhookDeliveryWorkflow, WebhookDispatchWorkflow
from workflows.api_logs import ApiLogRetentionWorkflow
from workflows.ready_probe import ReadyProbeWorkflow
from core.webhooks.service import ensure_dispatcher
import workflows as workflow_package

log = logging.getLogger("payops.worker")


@dataclass
class WorkerDeps:
    """What activities need, built once per worker process; tests build their own."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis | None
    connectors: ConnectorRegistry
    cipher: FieldCipher
    extras: dict = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> "WorkerDeps":
        # No pre-ping: it costs three round trips per activity (half the batch bench's queueing
        # time); a connection the server dropped fails its activity, SQLAlchemy invalidates the
        # pool on the disconnect, and Temporal retries the activity on a fresh connection.
        engine = create_engine(settings.database_url, pre_ping=False)
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            redis=Redis.from_url(settings.redis_url) if settings.redis_url else None,
            connectors=build_registry(settings),
            cipher=FieldCipher(settings.codec_keys),
        )

    async def aclose(self) -> None:
        await self.connectors.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


def workflows() -> list[type]:
    return [HealthCheckWorkflow, PayoutWorkflow, PayoutSweepWorkflow, OpsActionWorkflow, WebhookDeliveryWorkflow, WebhookDispatchWorkflow, SyncWorkflow, AlertCheckWorkflow, BatchWorkflow, ConnectorHealthWorkflow, ReconciliationWorkflow, ExportWorkflow, BankNotificationSweepWorkflow, BankReconciliationWorkflow, WorkflowReaperWorkflow, BulkPayoutIntakeWorkflow, ApiLogRetentionWorkflow, AlertExpiryWorkflow, PayoutScheduleFireWorkflow, RecommendationWorkflow, ReadyProbeWorkflow]


def activities(deps: WorkerDeps) -> list:
    health = HealthActivities(deps.sessionmaker, deps.redis)
    payouts = PayoutActivities(deps.sessionmaker, deps.redis, deps.connectors, deps.cipher, deps.settings)
    webhooks = WebhookActivities(deps.sessionmaker, deps.cipher, deps.settings)
    ops_actions = OpsActionActivities(deps.sessionmaker, deps.redis, deps.settings)
    sync = SyncActivities(deps.sessionmaker, deps.redis, deps.settings)
    alerts = AlertActivities(deps.sessionmaker, deps.redis, deps.settings)
    recommendations = RecommendationActivities(deps.sessionmaker, deps.connectors, deps.settings)
    return [
        recommendations.compute_recommendations,
        health.check_worker_dependencies,
        payouts.place_payout_hold,
        payouts.route_payout,
        payouts.check_submission_gate,
        payouts.record_payout_transition,
        payouts.submit_payout_to_connector,
        payouts.poll_payout_status,
        payouts.inquire_payout,
        payouts.settle_payout,
        payouts.reverse_payout,
        payouts.sweep_unstarted_payouts,
        *payout_temporal_ops_activities(deps),
        *rail_activities(deps),
        webhooks.dispatch_webhook_events,
        webhooks.attempt_webhook_delivery,
        ops_actions.record_ops_action_step,
        ops_actions.record_ops_action_vote,
        ops_actions.execute_ops_action,
        ops_actions.verify_ops_grant,
        ops_actions.record_ops_refusal,
        sync.start_sync_run,
        sync.fetch_sync_pages,
        sync.finish_sync_run,
        alerts.check_alert_rules,
        alerts.expire_alerts,
        *reconciliation_activities(deps),
        *export_activities(deps),
        BankNotificationActivities(deps.sessionmaker).redeliver_bank_notifications,
        *bank_reconciliation_activities(deps),
        BulkPayoutActivities(deps.sessionmaker, deps.settings).start_bulk_payout_chunk,
        ApiLogActivities(deps.sessionmaker).prune_api_logs,
        ReadyProbeActivities(deps.engine, deps.sessionmaker, deps.redis).probe_ready,
        PayoutScheduleActivities(deps.sessionmaker, deps.settings).make_scheduled_bulk_payout,
    ]


def payout_temporal_ops_activities(deps: WorkerDeps) -> list:
    ops = PayoutTemporalOpsActivities(deps.sessionmaker, deps.redis, deps.connectors)
    return [ops.recall_payout_at_bank, ops.record_payout_note, ops.reap_closed_workflows]


def bank_reconciliation_activities(deps: WorkerDeps) -> list:
    bank = BankReconciliationActivities(deps.sessionmaker, deps.connectors)
    return [bank.compare_payouts_with_bank, bank.confirm_bank_discrepancies]


def export_activities(deps: WorkerDeps) -> list:
    exports = ExportActivities(deps.engine, deps.settings)
    return [exports.write_export_file, exports.expire_export_file, exports.fail_export_job]


def rail_activities(deps: WorkerDeps) -> list:
    rails = RailActivities(deps.sessionmaker, deps.redis, deps.connectors, deps.cipher, deps.settings)
    return [
        rails.route_payout_by_rules,
        rails.fail_over_payout,
        rails.enqueue_payout_for_batch,
        rails.withdraw_payout_from_batch,
        rails.raise_sla_breach_alert,
        rails.open_payout_batch,
        rails.build_payout_batch_file,
        rails.submit_payout_batch_file,
        rails.signal_batch_outcomes,
        rails.check_connectors_health,
    ]


def reconciliation_activities(deps: WorkerDeps) -> list:
    reconciliation = ReconciliationActivities(deps.sessionmaker, deps.settings)
    return [
        reconciliation.prepare_reconciliation_run,
        reconciliation.reconcile_shard,
        reconciliation.finalize_reconciliation_run,
        reconciliation.fail_reconciliation_run,
    ]


@contextlib.contextmanager
def no_cyclic_gc():
    """Worker() validates every workflow by importing it in the sandbox. On CPython < 3.12 a GC
    finalizer that imports while the sandbox holds a module lock raises KeyError(<thread id>)
    (cpython#91351, temporalio/sdk-python#585) and the worker fails to build. Collect first,
    then keep the collector out of validation; 3.12+ fixed the lock."""
    if sys.version_info >= (3, 12) or not gc.isenabled():
        yield
        return
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def cache_workflow_bytecode() -> None:
    """The sandbox imports a workflow's module afresh for every run it starts (and every replay
    after a cache eviction). Under PYTHONDONTWRITEBYTECODE=1 (the image sets it) no .pyc exists,
    so each run compiled workflows/*.py from source again: most of a payout workflow's start cost
    in a profile. Compile the workflow package once per process into a private pycache (the
    source tree may be read-only); the import system reads .pyc files even when it writes none."""
    if not sys.dont_write_bytecode:
        return  # imports write and reuse .pyc files themselves
    import importlib.util
    import os
    import py_compile
    import tempfile
    from pathlib import Path


    if sys.pycache_prefix is None:
        sys.pycache_prefix = str(Path(tempfile.gettempdir()) / f"payops-pycache-{os.getuid()}")
    for source in Path(workflow_package.__file__).parent.glob("*.py"):
        try:
            py_compile.compile(str(source), cfile=importlib.util.cache_from_source(str(source)), doraise=True)
        except (OSError, py_compile.PyCompileError) as exc:  # a slower start, not a broken worker
            log.warning("could not cache the bytecode of %s: %s", source, exc)


# The sandbox keeps its call restrictions (no clock, no randomness, no I/O in workflow code) but
# imports no module afresh per workflow run: re-importing the workflow modules in every new run
# (and in every replay after a cache eviction) was about a tenth of the worker's CPU per payout in a
# profile of bench/payouts.py (issue 19). Workflow modules therefore keep no mutable module-level
# state (tests/platform/test_workflow_modules.py checks).
WORKFLOW_RUNNER = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_all_modules())


def build_worker(client: Client, deps: WorkerDeps, *, task_queue: str | None = None) -> Worker:
    cache_workflow_bytecode()
    with no_cyclic_gc():
        return Worker(
            client,
            task_queue=task_queue or deps.settings.temporal_task_queue,
            workflows=workflows(),
            activities=activities(deps),
            workflow_runner=WORKFLOW_RUNNER,
            max_concurrent_activities=200,
            max_cached_workflows=deps.settings.worker_max_cached_workflows,
            interceptors=[ActivityMetricsInterceptor()],
        )


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    if settings.worker_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
        log.info("worker metrics on http://%s:%s/metrics", settings.worker_metrics_host, settings.worker_metrics_port)
    client = await connect_temporal(settings)
    deps = WorkerDeps.from_settings(settings)
    load_calendars(datetime.now(timezone.utc).date())  # routing's holiday calendars, before the first payout
    worker = build_worker(client, deps)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker polling task queue %s on %s", settings.temporal_task_queue, settings.temporal_address)
    async with worker:
        await ensure_dispatcher(client, settings)  # idempotent: the first worker up starts it
        await ensure_schedules(client, settings)  # idempotent: sweeper, provider syncs
        backlog = (asyncio.create_task(keep_queue_size_fresh(client, settings.temporal_task_queue))
                   if settings.worker_metrics_port else None)
        await stop.wait()
        if backlog is not None:
            backlog.cancel()
    await deps.aclose()


def main() -> None:
    logging.basicConfig(level=get_settings().log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_worker())


if __name__ == "__main__":
    main()
