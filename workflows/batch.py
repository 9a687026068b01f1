"""BatchWorkflow: at a batch rail's cutoff, collect the payouts waiting for it, build one file
(NACHA for ACH, pain.001 for SEPA) with control totals, submit it, and signal each payout with
its outcome. Started by the rail's Temporal Schedule at the cutoff (or by hand for a cutoff).

Re-running a cutoff is harmless: the batch is one row per (rail, cutoff), a payout is claimed by
one batch ever, the file goes to the bank under the batch id, and payouts ignore a repeated
outcome signal.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from core.platform.names import BATCH_WORKFLOW
    from activities.rails import RailActivities
    from core.rails.models import BatchIdInput, BatchInput, BatchResult

DB = dict(start_to_close_timeout=timedelta(minutes=2),
          retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)))
BANK = dict(start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=2),
                                     non_retryable_error_types=["NoFileFormat"]))
SIGNALS = dict(start_to_close_timeout=timedelta(minutes=30), heartbeat_timeout=timedelta(minutes=2),
               retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1)))

SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")


@workflow.defn(name=BATCH_WORKFLOW)
class BatchWorkflow:
    @workflow.run
    async def run(self, params: BatchInput) -> BatchResult:
        cutoff = params.cutoff_at or workflow.info().typed_search_attributes.get(SCHEDULED_START) or workflow.now()
        opened = await workflow.execute_activity_method(
            RailActivities.open_payout_batch, BatchInput(rail=params.rail, cutoff_at=cutoff), **DB
        )
        if opened.batch_id is None:
            return BatchResult(batch_id=None, rail=params.rail, cutoff_at=cutoff, status="empty")
        ref = BatchIdInput(batch_id=opened.batch_id)
        await workflow.execute_activity_method(RailActivities.build_payout_batch_file, ref, **DB)
        submitted = await workflow.execute_activity_method(RailActivities.submit_payout_batch_file, ref, **BANK)
        await workflow.execute_activity_method(RailActivities.signal_batch_outcomes, ref, **SIGNALS)
        return BatchResult(
            batch_id=opened.batch_id, rail=params.rail, cutoff_at=cutoff, status=submitted.status,
            entry_count=opened.entry_count, accepted_count=submitted.accepted_count,
            rejected_count=submitted.rejected_count,
        )
