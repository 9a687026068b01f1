"""A trivial workflow that proves the stack end to end: client → server → worker → activity."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.platform.names import HEALTH_CHECK_WORKFLOW
    from activities.health import DependencyReport, HealthActivities


class HealthCheckInput(BaseModel):
    requested_by: str = "payops"


class HealthCheckResult(BaseModel):
    ok: bool
    report: DependencyReport


@workflow.defn(name=HEALTH_CHECK_WORKFLOW)
class HealthCheckWorkflow:
    @workflow.run
    async def run(self, params: HealthCheckInput) -> HealthCheckResult:
        report = await workflow.execute_activity_method(
            HealthActivities.check_worker_dependencies,
            start_to_close_timeout=timedelta(seconds=10),
        )
        return HealthCheckResult(ok=report.postgres_ok and report.redis_ok, report=report)
