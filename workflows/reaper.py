"""WorkflowReaperWorkflow, on a Schedule (PAYOPS_WORKFLOW_REAPER_EVERY_SECONDS): find payouts and
ops actions whose workflow closed while their row is open or their hold active (Temporal's
Terminate cannot be intercepted) and raise a critical alert naming the repair."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.platform.names import WORKFLOW_REAPER_WORKFLOW
    from activities.payout_temporal_ops import PayoutTemporalOpsActivities
    from core.payouts.temporal_ops import ReaperInput, ReaperResult


@workflow.defn(name=WORKFLOW_REAPER_WORKFLOW)
class WorkflowReaperWorkflow:
    @workflow.run
    async def run(self, params: ReaperInput) -> ReaperResult:
        return await workflow.execute_activity_method(
            PayoutTemporalOpsActivities.reap_closed_workflows, params,
            start_to_close_timeout=timedelta(minutes=5),
        )
