"""The bench's baselines, run on an in-process worker: a workflow of N no-op activities (what the
payout throughput is compared to), and the least a payout with a durable workflow of its own can
be (one step as a local activity, then the wait for a settlement signal). Their own module,
importing nothing but temporalio, so the workflow sandbox can load it."""

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


@workflow.defn(name="BenchFloorWorkflow")
class BenchFloorWorkflow:
    """A payout's least possible shape: start, one step (a local activity, as the lean payout's
    database steps), wait for the bank's settlement signal, complete. What Temporal spends on it
    is a floor under any payout that has a workflow of its own."""

    def __init__(self) -> None:
        self._settled = False

    @workflow.run
    async def run(self) -> bool:
        await workflow.execute_local_activity(bench_noop, 0, start_to_close_timeout=timedelta(seconds=30))
        await workflow.wait_condition(lambda: self._settled)
        return True

    @workflow.signal(name="settled")
    def settled(self) -> None:
        self._settled = True
