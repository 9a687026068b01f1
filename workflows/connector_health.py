"""ConnectorHealthWorkflow: on a Temporal Schedule, check every connector's health and feed the
circuit breakers routing reads."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.platform.names import CONNECTOR_HEALTH_WORKFLOW
    from activities.rails import RailActivities
    from core.rails.models import HealthRunInput, HealthRunResult


@workflow.defn(name=CONNECTOR_HEALTH_WORKFLOW)
class ConnectorHealthWorkflow:
    @workflow.run
    async def run(self, params: HealthRunInput) -> HealthRunResult:
        return await workflow.execute_activity_method(
            RailActivities.check_connectors_health, params, start_to_close_timeout=timedelta(seconds=60)
        )
