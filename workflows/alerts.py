"""AlertCheckWorkflow: one evaluation of the alert rules, started by a Temporal Schedule."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from core.platform.names import ALERT_CHECK_WORKFLOW
    from activities.alerts import AlertActivities, AlertCheckActivityInput


class AlertCheckInput(BaseModel):
    pass


class AlertCheckResult(BaseModel):
    rules_checked: int
    fired: int
    opened: int


@workflow.defn(name=ALERT_CHECK_WORKFLOW)
class AlertCheckWorkflow:
    @workflow.run
    async def run(self, params: AlertCheckInput) -> AlertCheckResult:
        # the next scheduled run is the real retry; a few quick ones cover a blip
        result = await workflow.execute_activity_method(
            AlertActivities.check_alert_rules,
            AlertCheckActivityInput(),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        return AlertCheckResult(**result.model_dump())
