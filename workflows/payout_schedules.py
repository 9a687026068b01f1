"""PayoutScheduleFireWorkflow: one fire of a payout schedule's Temporal Schedule.

The fire time is the Schedule's nominal time (the TemporalScheduledStartTime search attribute
Temporal sets on every scheduled or backfilled start), not the wall clock, so a late or backfilled
run still names the time it stands for; the activity makes that time's batch through the bulk
payout path, idempotently. A refusal (an invalid item in an all_or_nothing template, a frozen
merchant) fails the run non-retryably, visible in the Temporal UI, and is recorded on the schedule.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from core.payouts.models import PayoutScheduleFireInput, ScheduledBatchInput, ScheduledBatchResult

SCHEDULED_START_TIME = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")


@workflow.defn(name="PayoutScheduleFireWorkflow")
class PayoutScheduleFireWorkflow:
    @workflow.run
    async def run(self, inp: PayoutScheduleFireInput) -> ScheduledBatchResult:
        fire_time = inp.fire_time or workflow.info().typed_search_attributes.get(SCHEDULED_START_TIME)
        if fire_time is None:
            raise ApplicationError("no fire time: start it from its Schedule or give fire_time",
                                   type="no_fire_time", non_retryable=True)
        return await workflow.execute_activity(
            "make_scheduled_bulk_payout",
            ScheduledBatchInput(schedule_id=inp.schedule_id, fire_time=fire_time),
            result_type=ScheduledBatchResult,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1),
                                     non_retryable_error_types=["scheduled_batch_refused"]),
        )
