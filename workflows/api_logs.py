"""On a Temporal Schedule: prune the API request log past its retention."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.api_logs import ApiLogActivities, PruneApiLogsInput, PruneApiLogsResult
    from core.platform.names import API_LOG_RETENTION_WORKFLOW


class ApiLogRetentionInput(BaseModel):
    retention_days: float = 30.0


@workflow.defn(name=API_LOG_RETENTION_WORKFLOW)
class ApiLogRetentionWorkflow:
    @workflow.run
    async def run(self, params: ApiLogRetentionInput) -> PruneApiLogsResult:
        return await workflow.execute_activity_method(
            ApiLogActivities.prune_api_logs,
            PruneApiLogsInput(retention_days=params.retention_days),
            start_to_close_timeout=timedelta(minutes=10),
        )
