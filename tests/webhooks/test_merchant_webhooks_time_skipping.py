"""Webhook retry budget and auto-disable over days of backoff, skipped in seconds."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType

from core.platform.names import webhook_delivery_workflow_id
from core.payouts.store import get_payout_row
from core.platform.tables import alerts, webhook_attempts, webhook_endpoints
from core.webhooks.events import record_payout_event
from core.webhooks.models import EventType as WebhookEventType
from core.webhooks.models import RetrySchedule, WebhookDeliveryInput
from core.webhooks.service import create_endpoint
from sandbox.serving import serve_in_background
from tests.factories import create_merchant, create_payout_row
from tests.webhook_receiver import WebhookReceiver
from workers.main import build_worker
from workflows.webhooks import WebhookDeliveryWorkflow

HOUR = 3600




@pytest.fixture
async def always_down():
    receiver = WebhookReceiver(fail_first=10**9)
    async with serve_in_background(receiver.app()) as served:
        receiver.url = served.url + "/hooks"
        yield receiver


async def event_and_endpoint(sessionmaker, settings, url: str) -> tuple[str, str]:
    merchant = await create_merchant(sessionmaker)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    async with sessionmaker() as session, session.begin():
        row = await get_payout_row(session, params.payout_id)
        event_id = await record_payout_event(session, row, event_type=WebhookEventType.PAYOUT_CREATED,
                                             settings=settings)
        endpoint, _ = await create_endpoint(session, settings, merchant_id=merchant, url=url, event_types=None,
                                            description=None, enabled=True)
    return event_id, endpoint["id"]


async def run_delivery(env, worker_deps, settings, event_id, endpoint_id, retry: RetrySchedule):
    async with build_worker(env.client, worker_deps, task_queue=settings.temporal_task_queue):
        handle = await env.client.start_workflow(
            WebhookDeliveryWorkflow.run, WebhookDeliveryInput(event_id=event_id, endpoint_id=endpoint_id, retry=retry),
            id=webhook_delivery_workflow_id(event_id, endpoint_id), task_queue=settings.temporal_task_queue,
        )
        return handle, await handle.result()


async def timers(handle) -> list[float]:
    history = await handle.fetch_history()
    return [e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
            for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]


async def test_retries_back_off_exponentially_and_stop_after_three_days(
    skipping_env, worker_deps, settings, sessionmaker, always_down
):
    event_id, endpoint_id = await event_and_endpoint(sessionmaker, settings, always_down.url)
    retry = RetrySchedule(initial_seconds=60, backoff=2, max_interval_seconds=6 * HOUR,
                          budget_seconds=72 * HOUR, disable_after_seconds=1000 * HOUR)
    handle, result = await run_delivery(skipping_env, worker_deps, settings, event_id, endpoint_id, retry)

    assert result.outcome == "exhausted" and result.last_status_code == 500
    waits = await timers(handle)
    assert waits[:4] == [60, 120, 240, 480] and max(waits) == 6 * HOUR
    assert sum(waits) <= 72 * HOUR < sum(waits) + 6 * HOUR  # used the budget, never exceeded it
    assert result.attempts == len(waits) + 1 == len(always_down.requests)
    async with sessionmaker() as session:
        recorded = (await session.execute(select(webhook_attempts.c.attempt, webhook_attempts.c.status_code)
                                          .order_by(webhook_attempts.c.attempt))).all()
        enabled = await session.scalar(select(webhook_endpoints.c.enabled))
    assert [r.attempt for r in recorded] == list(range(1, result.attempts + 1))
    assert {r.status_code for r in recorded} == {500} and enabled


async def test_an_endpoint_failing_for_the_configured_period_is_disabled_and_alerted(
    skipping_env, worker_deps, settings, sessionmaker, always_down
):
    event_id, endpoint_id = await event_and_endpoint(sessionmaker, settings, always_down.url)
    retry = RetrySchedule(initial_seconds=60, backoff=2, max_interval_seconds=4 * HOUR,
                          budget_seconds=72 * HOUR, disable_after_seconds=48 * HOUR)
    handle, result = await run_delivery(skipping_env, worker_deps, settings, event_id, endpoint_id, retry)

    assert result.outcome == "endpoint_disabled"
    assert 48 * HOUR <= sum(await timers(handle)) < 52 * HOUR
    async with sessionmaker() as session:
        endpoint = (await session.execute(select(webhook_endpoints))).mappings().one()
        [alert] = (await session.execute(select(alerts))).mappings().all()
    assert endpoint["enabled"] is False and "failed since" in endpoint["disabled_reason"]
    assert alert["rule"] == "webhook_endpoint_disabled" and alert["dedupe_key"] == f"webhook_endpoint_disabled:{endpoint_id}"
    assert alert["data"]["merchant_id"] == endpoint["merchant_id"] and alert["status"] == "open"
    sent = len(always_down.requests)

    # a disabled endpoint receives nothing more: a new delivery to it stops before sending
    other_event, _ = await event_and_endpoint(sessionmaker, settings, always_down.url)
    _, again = await run_delivery(skipping_env, worker_deps, settings, other_event, endpoint_id, retry)
    assert again.outcome == "endpoint_disabled" and len(always_down.requests) == sent
