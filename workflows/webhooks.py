"""Merchant webhook workflows.

WebhookDispatchWorkflow (`webhook-dispatcher-{task queue}`): loops an activity that drains the
events outbox into delivery workflows; continues as new to keep its history short. It is the
only thing that starts deliveries for new events, so the PayoutWorkflow (and its recorded
histories) stays untouched.

WebhookDeliveryWorkflow (`webhook-{event}-{endpoint}`): signed attempts with exponential backoff
until one succeeds, the endpoint is disabled or deleted, or the retry budget (3 days by default)
runs out. The workflow owns the retry loop so every attempt is its own recorded activity.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core.platform.names import WEBHOOK_DELIVERY_WORKFLOW, WEBHOOK_DISPATCH_WORKFLOW
    from activities.webhooks import WebhookActivities
    from core.webhooks.models import (
        DeliveryAttemptInput,
        DeliveryAttemptResult,
        DispatchInput,
        WebhookDeliveryInput,
        WebhookDeliveryResult,
        WebhookDispatcherInput,
    )

# One HTTP attempt per activity: no activity-level retry, the workflow decides.
ATTEMPT_ACTIVITY = dict(start_to_close_timeout=timedelta(seconds=60), retry_policy=RetryPolicy(maximum_attempts=1))


@workflow.defn(name=WEBHOOK_DELIVERY_WORKFLOW)
class WebhookDeliveryWorkflow:
    @workflow.init
    def __init__(self, params: WebhookDeliveryInput) -> None:
        self._result = WebhookDeliveryResult(
            event_id=params.event_id, endpoint_id=params.endpoint_id, outcome="pending", attempts=0
        )

    @workflow.query(name="state")
    def state(self) -> WebhookDeliveryResult:
        return self._result

    @workflow.run
    async def run(self, params: WebhookDeliveryInput) -> WebhookDeliveryResult:
        started = workflow.now()
        retry = params.retry
        while True:
            self._result.attempts += 1
            attempt = self._result.attempts
            try:
                outcome = await workflow.execute_activity_method(
                    WebhookActivities.attempt_webhook_delivery,
                    DeliveryAttemptInput(
                        event_id=params.event_id, endpoint_id=params.endpoint_id,
                        workflow_id=workflow.info().workflow_id, attempt=attempt, now=workflow.now(),
                        disable_after_seconds=retry.disable_after_seconds,
                    ),
                    **ATTEMPT_ACTIVITY,
                )
            except ActivityError as exc:  # our side failed (database, worker): back off like a 5xx
                workflow.logger.warning("webhook attempt %d failed on our side: %s", attempt, exc.cause or exc)
                outcome = DeliveryAttemptResult(outcome="error", error=str(exc.cause or exc))
            self._result.last_status_code = outcome.status_code
            if outcome.outcome == "succeeded":
                return self._finish("delivered")
            if outcome.outcome in ("endpoint_disabled", "endpoint_gone"):
                return self._finish(outcome.outcome)
            if outcome.endpoint_disabled_now:
                return self._finish("endpoint_disabled")
            delay = retry.delay_after(attempt)
            if (workflow.now() - started).total_seconds() + delay > retry.budget_seconds:
                return self._finish("exhausted")
            self._result.outcome = "retrying"
            await workflow.sleep(timedelta(seconds=delay))

    def _finish(self, outcome: str) -> WebhookDeliveryResult:
        self._result.outcome = outcome
        return self._result


@workflow.defn(name=WEBHOOK_DISPATCH_WORKFLOW)
class WebhookDispatchWorkflow:
    @workflow.run
    async def run(self, params: WebhookDispatcherInput) -> None:
        for _ in range(params.iterations_per_run):
            await workflow.execute_activity_method(
                WebhookActivities.dispatch_webhook_events,
                DispatchInput(max_wait_seconds=params.max_wait_seconds, poll_seconds=params.poll_seconds),
                start_to_close_timeout=timedelta(seconds=params.max_wait_seconds + 60),
                heartbeat_timeout=timedelta(seconds=max(params.poll_seconds * 3, 30)),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)),
            )
            if workflow.info().is_continue_as_new_suggested():
                break
        workflow.continue_as_new(params)
