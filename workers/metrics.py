"""The worker's own metrics: activities in progress and failing (an activity interceptor), and the
task queue's backlog (Temporal's DescribeTaskQueue, refreshed in the background).

Exported on the worker's Prometheus endpoint (PAYOPS_WORKER_METRICS_PORT); the gauges and counters
live in core/platform/metrics.py with every other metric.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from core.platform import metrics

log = logging.getLogger("payops.worker.metrics")

_ERROR_TYPE = re.compile(r"[A-Za-z0-9_]{1,48}")
TASK_TYPES = {"workflow": TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, "activity": TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY}


def error_type_of(exc: BaseException) -> str:
    """An ApplicationError's type (payops's stable names: ConnectorTransient, ...), else the class."""
    name = exc.type if isinstance(exc, ApplicationError) and exc.type else type(exc).__name__
    return name if _ERROR_TYPE.fullmatch(name) else "other"


class _ActivityMetrics(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        name = activity.info().activity_type
        in_progress = metrics.worker_processing_count.labels(name)
        in_progress.inc()
        try:
            return await super().execute_activity(input)
        except Exception as exc:
            metrics.worker_errors_total.labels(name, error_type_of(exc)).inc()
            raise
        finally:
            in_progress.dec()


class ActivityMetricsInterceptor(Interceptor):
    """worker_processing_count (gauge, by activity) and worker_errors_total (counter, by activity
    and error type: every failed attempt, whether Temporal retries it or not)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityMetrics(super().intercept_activity(next))


async def refresh_queue_size(client: Client, task_queue: str) -> dict[str, int]:
    """Set worker_queue_size{task_queue, task_type} from the server's approximate backlog count."""
    sizes: dict[str, int] = {}
    for label, task_type in TASK_TYPES.items():
        response = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=task_type,
            report_stats=True,
        ))
        sizes[label] = int(response.stats.approximate_backlog_count)
        metrics.worker_queue_size.labels(task_queue, label).set(sizes[label])
    return sizes


async def keep_queue_size_fresh(client: Client, task_queue: str, *, every_seconds: float = 15.0) -> None:
    """Refresh the backlog gauge until cancelled; a failed describe keeps the last value (logged)."""
    while True:
        try:
            await refresh_queue_size(client, task_queue)
        except Exception as exc:  # noqa: BLE001 — a metric must never stop the worker
            log.warning("could not describe task queue %s: %s", task_queue, exc)
        await asyncio.sleep(every_seconds)
