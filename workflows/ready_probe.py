"""On a Temporal Schedule (PAYOPS_READY_PROBE_EVERY_SECONDS): record one `/ready` probe."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.ready_probe import ReadyProbeActivities, ReadyProbeInput, ReadyProbeResult
    from core.platform.names import READY_PROBE_WORKFLOW


@workflow.defn(name=READY_PROBE_WORKFLOW)
class ReadyProbeWorkflow:
    @workflow.run
    async def run(self, params: ReadyProbeInput) -> ReadyProbeResult:
        return await workflow.execute_activity_method(
            ReadyProbeActivities.probe_ready, params, start_to_close_timeout=timedelta(seconds=30))
