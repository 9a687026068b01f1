"""A workflow that runs N no-op activities: the baseline the payout throughput is compared to.
Its own module, importing nothing but temporalio, so the workflow sandbox can load it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench_noop")
async def bench_noop(step: int) -> int:
    return step


@workflow.defn(name="BenchNoopWorkflow")
class BenchNoopWorkflow:
    @workflow.run
    async def run(self, activities: int) -> int:
        for i in range(activities):
            await workflow.execute_activity(bench_noop, i, start_to_close_timeout=timedelta(seconds=30))
        return activities
