"""Housekeeping on a Temporal Schedule: start the workflows of payouts whose start was lost
(a crash or a Temporal outage between the API's commit and its start_workflow call)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.payouts import PayoutActivities, SweepInput


class PayoutSweepInput(BaseModel):
    older_than_seconds: float = 30.0


class PayoutSweepResult(BaseModel):
    started: int


@workflow.defn(name="PayoutSweepWorkflow")
class PayoutSweepWorkflow:
    @workflow.run
    async def run(self, params: PayoutSweepInput) -> PayoutSweepResult:
        started = await workflow.execute_activity_method(
            PayoutActivities.sweep_unstarted_payouts,
            SweepInput(older_than_seconds=params.older_than_seconds),
            start_to_close_timeout=timedelta(minutes=5),
        )
        return PayoutSweepResult(started=started)
