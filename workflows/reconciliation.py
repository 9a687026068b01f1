"""ReconciliationWorkflow: one pair of sources over one date range in the reporting time zone.

prepare (record the run, size the day) → one `reconcile_shard` activity per key-hash shard, all
in parallel → finalize (probable matches, carry-forward, summary, alert). Started by the API, by
the daily Schedule (no dates: yesterday), or by hand. Progress is the `progress` query and the
run row. Deterministic: no I/O here.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from core.platform.names import RECONCILIATION_WORKFLOW
    from activities.reconciliation import ReconciliationActivities
    from core.reconciliation.models import (
        ERR_BAD_RUN,
        FailRunInput,
        FinalizeRunInput,
        PrepareRunInput,
        ReconciliationProgress,
        ReconciliationWorkflowInput,
        ReconciliationWorkflowResult,
        ShardInput,
        ShardResult,
    )

DB_ACTIVITY = dict(
    start_to_close_timeout=timedelta(minutes=2),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30),
                             maximum_attempts=10, non_retryable_error_types=[ERR_BAD_RUN]),
)
SHARD_ACTIVITY = dict(
    start_to_close_timeout=timedelta(minutes=20),
    heartbeat_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=60),
                             maximum_attempts=5, non_retryable_error_types=[ERR_BAD_RUN]),
)


def _describe(exc: ActivityError) -> str:
    cause = exc.cause
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or exc)


@workflow.defn(name=RECONCILIATION_WORKFLOW)
class ReconciliationWorkflow:
    @workflow.init
    def __init__(self, params: ReconciliationWorkflowInput) -> None:
        self._progress = ReconciliationProgress(date_from=params.date_from, date_to=params.date_to or params.date_from)

    @workflow.query(name="progress")
    def progress(self) -> ReconciliationProgress:
        return self._progress

    @workflow.run
    async def run(self, params: ReconciliationWorkflowInput) -> ReconciliationWorkflowResult:
        p = self._progress
        try:
            prepared = await workflow.execute_activity_method(
                ReconciliationActivities.prepare_reconciliation_run,
                PrepareRunInput(left_source=params.left_source, right_source=params.right_source,
                                date_from=params.date_from, date_to=params.date_to,
                                requested_by=params.requested_by, workflow_id=workflow.info().workflow_id,
                                shards=params.shards),
                **DB_ACTIVITY,
            )
        except ActivityError as exc:
            p.status, p.error = "error", _describe(exc)
            await workflow.wait_condition(workflow.all_handlers_finished)
            return ReconciliationWorkflowResult(run_id=None, status="error", error=p.error)

        p.run_id, p.status = prepared.run_id, "running"
        p.date_from, p.date_to = prepared.date_from, prepared.date_to
        p.shards_total, p.rows_in_window = prepared.shards, prepared.rows_in_window
        try:
            await asyncio.gather(*(self._shard(prepared.run_id, shard, prepared.shards)
                                   for shard in range(prepared.shards)))
            finished = await workflow.execute_activity_method(
                ReconciliationActivities.finalize_reconciliation_run,
                FinalizeRunInput(run_id=prepared.run_id, counts=p.counts),
                **DB_ACTIVITY,
            )
        except ActivityError as exc:
            p.status, p.error = "error", _describe(exc)
            await workflow.execute_activity_method(
                ReconciliationActivities.fail_reconciliation_run,
                FailRunInput(run_id=prepared.run_id, error=p.error), **DB_ACTIVITY,
            )
            await workflow.wait_condition(workflow.all_handlers_finished)
            return ReconciliationWorkflowResult(run_id=prepared.run_id, status="error", error=p.error)

        p.status = "success"
        p.counts = {**p.counts, "probable_match": finished.summary.get("counts", {}).get("probable_match", 0)}
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ReconciliationWorkflowResult(run_id=prepared.run_id, status="success", summary=finished.summary)

    async def _shard(self, run_id: str, shard: int, shards: int) -> ShardResult:
        result = await workflow.execute_activity_method(
            ReconciliationActivities.reconcile_shard, ShardInput(run_id=run_id, shard=shard, shards=shards),
            **SHARD_ACTIVITY,
        )
        p = self._progress
        p.shards_done += 1
        for category, n in result.counts.items():
            p.counts[category] = p.counts.get(category, 0) + n
        return result
