"""AlertCheckWorkflow: one evaluation of the alert rules; AlertExpiryWorkflow: one pass expiring the
unacknowledged alerts past their lifetime. Each is started by its Temporal Schedule."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from core.platform.names import ALERT_CHECK_WORKFLOW, ALERT_EXPIRY_WORKFLOW
    from activities.alerts import AlertActivities, AlertCheckActivityInput, AlertExpiryActivityInput


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


class AlertExpiryInput(BaseModel):
    pass


class AlertExpiryResult(BaseModel):
    expired: int
    alert_ids: list[int]


@workflow.defn(name=ALERT_EXPIRY_WORKFLOW)
class AlertExpiryWorkflow:
    @workflow.run
    async def run(self, params: AlertExpiryInput) -> AlertExpiryResult:
        # one set-based statement (bounded per run); the next scheduled run takes what is left
        result = await workflow.execute_activity_method(
            AlertActivities.expire_alerts,
            AlertExpiryActivityInput(),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        return AlertExpiryResult(expired=result.expired, alert_ids=result.alert_ids)
