"""ExportWorkflow (`export-{job_id}`): a very large export written to a file by a worker, kept for
the retention, then removed.

write_export_file → (success) timer of the retention → expire_export_file
                  → (failure after its retries) fail_export_job
The `progress` query answers live: the writing activity signals its row count every few seconds.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.exports import (
        PROGRESS_SIGNAL,
        ExportActivities,
        ExportFailInput,
        ExportFileInput,
        ExportJobIdInput,
        ExportProgressSignal,
    )
    from core.exports.models import ExportProgress, ExportWorkflowInput
    from core.platform.names import EXPORT_WORKFLOW


@workflow.defn(name=EXPORT_WORKFLOW)
class ExportWorkflow:
    def __init__(self) -> None:
        self._progress = ExportProgress(status="running")

    @workflow.run
    async def run(self, params: ExportWorkflowInput) -> ExportProgress:
        try:
            result = await workflow.execute_activity_method(
                ExportActivities.write_export_file,
                ExportFileInput(job_id=params.job_id, retention_seconds=params.retention_seconds),
                start_to_close_timeout=timedelta(hours=12),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_attempts=5, non_retryable_error_types=["invalid_export",
                                                                                        "export_job_missing"]),
            )
        except ActivityError as exc:
            cause = exc.cause or exc
            self._progress = ExportProgress(status="failed", rows_written=self._progress.rows_written,
                                            error=str(cause))
            await workflow.execute_activity_method(
                ExportActivities.fail_export_job, ExportFailInput(job_id=params.job_id, error=str(cause)),
                start_to_close_timeout=timedelta(seconds=60))
            await workflow.wait_condition(workflow.all_handlers_finished)
            return self._progress
        self._progress = ExportProgress(status="succeeded", rows_written=result.rows_written,
                                        rows_total=result.rows_written, bytes=result.bytes)
        await workflow.sleep(timedelta(seconds=params.retention_seconds))
        await workflow.execute_activity_method(
            ExportActivities.expire_export_file, ExportJobIdInput(job_id=params.job_id),
            start_to_close_timeout=timedelta(seconds=60))
        self._progress = self._progress.model_copy(update={"status": "expired"})
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._progress

    @workflow.signal(name=PROGRESS_SIGNAL)
    def report_progress(self, update: ExportProgressSignal) -> None:
        if self._progress.status == "running":
            # a retried attempt starts over from the first row: the latest report wins
            self._progress = ExportProgress(status="running", rows_written=update.rows_written,
                                            rows_total=update.rows_total)

    @workflow.query(name="progress")
    def progress(self) -> ExportProgress:
        return self._progress
