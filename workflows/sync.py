"""SyncWorkflow: pull one provider's transactions into the unified table until caught up.

Started by a Temporal Schedule per source (overlap SKIP), by a manual trigger, or as a
backfill over a date range. Each `fetch_sync_pages` activity fetches and stores up to N pages,
heartbeating its cursor, so a restarted activity resumes where the last one stored; the
workflow continues as new after a number of activity calls so a long backfill keeps a short
history. A failure that retrying cannot fix (wrong password, refused API key) ends the run with
the error recorded in sync status instead of retrying forever. Deterministic: no I/O here.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from core.platform.names import SYNC_WORKFLOW
    from activities.sync import SyncActivities
    from core.sync.models import (
        ERR_AUTH_FAILED,
        ERR_BAD_REQUEST,
        ERR_NOT_CONFIGURED,
        FetchPagesInput,
        FinishRunInput,
        StartRunInput,
        SyncProgress,
        SyncTotals,
        SyncWorkflowInput,
        SyncWorkflowResult,
    )

DEFAULT_ACTIVITIES_PER_RUN = 20

DB_ACTIVITY = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)),
)
# The connector already retries 429/5xx within an attempt; these retries cover worker crashes
# and longer outages. After them the run ends as an error and the next scheduled run tries again.
FETCH_ACTIVITY = dict(
    start_to_close_timeout=timedelta(minutes=30),
    heartbeat_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=6,
        non_retryable_error_types=[ERR_AUTH_FAILED, ERR_BAD_REQUEST, ERR_NOT_CONFIGURED],
    ),
)


def _describe(exc: ActivityError) -> tuple[str, str | None]:
    cause = exc.cause
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        return cause.message, cause.type
    return str(cause or exc), None


@workflow.defn(name=SYNC_WORKFLOW)
class SyncWorkflow:
    @workflow.init
    def __init__(self, params: SyncWorkflowInput) -> None:
        self._progress = SyncProgress(
            run_id=params.run_id,
            source=params.source,
            mode=params.mode,
            status="starting" if params.run_id is None else "running",
            totals=params.totals or SyncTotals(),
            expected_total=params.expected_total,
            cursor=params.cursor,
            generation=params.generation,
        )

    @workflow.query(name="progress")
    def progress(self) -> SyncProgress:
        return self._progress

    @workflow.run
    async def run(self, params: SyncWorkflowInput) -> SyncWorkflowResult:
        p = self._progress
        run_id = params.run_id or str(workflow.uuid4())
        p.run_id = run_id
        cursor = params.cursor
        if cursor is None:
            started = await workflow.execute_activity_method(
                SyncActivities.start_sync_run,
                StartRunInput(run_id=run_id, source=params.source, mode=params.mode,
                              workflow_id=workflow.info().workflow_id,
                              date_from=params.date_from, date_to=params.date_to),
                **DB_ACTIVITY,
            )
            cursor = started.cursor
        p.status, p.cursor = "running", cursor
        per_run = params.activities_per_run or DEFAULT_ACTIVITIES_PER_RUN
        calls = 0
        while True:
            try:
                fetched = await workflow.execute_activity_method(
                    SyncActivities.fetch_sync_pages,
                    FetchPagesInput(run_id=run_id, source=params.source, mode=params.mode, cursor=cursor,
                                    date_from=params.date_from, date_to=params.date_to,
                                    max_pages=params.pages_per_activity),
                    **FETCH_ACTIVITY,
                )
            except ActivityError as exc:
                message, error_type = _describe(exc)
                return await self._finish(params, "error", f"{message}", error_type)
            p.totals = p.totals.add(fetched.totals)
            p.cursor = cursor = fetched.cursor
            if fetched.expected_total is not None:
                p.expected_total = fetched.expected_total
            if fetched.caught_up:
                break
            calls += 1
            if calls >= per_run or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(params.model_copy(update={
                    "run_id": run_id, "cursor": cursor, "totals": p.totals,
                    "expected_total": p.expected_total, "generation": params.generation + 1,
                }))
        return await self._finish(params, "success", None, None)

    async def _finish(self, params: SyncWorkflowInput, status: str, error: str | None,
                      error_type: str | None) -> SyncWorkflowResult:
        p = self._progress
        assert p.run_id is not None
        finished = await workflow.execute_activity_method(
            SyncActivities.finish_sync_run,
            FinishRunInput(run_id=p.run_id, source=params.source, mode=params.mode, status=status,  # type: ignore[arg-type]
                           error=error, totals=p.totals),
            **DB_ACTIVITY,
        )
        if finished.totals is not None:
            p.totals = finished.totals
        p.status, p.error = status, error  # type: ignore[assignment]
        await workflow.wait_condition(workflow.all_handlers_finished)
        return SyncWorkflowResult(run_id=p.run_id, source=params.source, mode=params.mode, status=status,  # type: ignore[arg-type]
                                  totals=p.totals, error=error, error_type=error_type)
