"""BulkPayoutIntakeWorkflow: starts the PayoutWorkflows of a released bulk payout.

It never holds children: each payout's workflow is an independent workflow (id `payout-<id>`),
started by the `start_bulk_payout_chunk` activity a chunk at a time. The activity marks what it
started in PostgreSQL and each start is idempotent, so a worker killed mid-chunk only makes the
retried chunk find those payouts already started. The history stays bounded: a few events per
chunk, and continue-as-new every CHUNKS_PER_RUN chunks.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from core.payouts.models import BulkPayoutIntakeInput, StartChunkInput, StartChunkResult

CHUNKS_PER_RUN = 50


@workflow.defn(name="BulkPayoutIntakeWorkflow")
class BulkPayoutIntakeWorkflow:
    @workflow.run
    async def run(self, inp: BulkPayoutIntakeInput) -> int:
        started = inp.started_so_far
        for _ in range(CHUNKS_PER_RUN):
            result = await workflow.execute_activity(
                "start_bulk_payout_chunk",
                StartChunkInput(bulk_payout_id=inp.bulk_payout_id, chunk_size=inp.chunk_size),
                result_type=StartChunkResult,
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(seconds=15),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1),
                                         maximum_interval=timedelta(seconds=30)),
            )
            started += result.started
            if result.remaining == 0:
                return started
        workflow.continue_as_new(inp.model_copy(update={"started_so_far": started}))
