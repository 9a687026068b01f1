"""Side effects of merchant webhooks: draining the events outbox into delivery workflows, and
one signed HTTP attempt of one delivery (recorded, with the endpoint's failure bookkeeping).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.platform.crypto import FieldCipher
from core.platform.settings import Settings
from core.alerts.store import upsert_alert
from core.webhooks import store
from core.webhooks.events import envelope_body
from core.webhooks.models import (
    NOTIFY_CHANNEL,
    SIGNATURE_HEADER,
    DeliveryAttemptInput,
    DeliveryAttemptResult,
    DispatchInput,
    DispatchResult,
)
from core.webhooks.service import dispatch_pending_events, live_secrets
from core.webhooks.signing import sign
from core.webhooks.targets import WebhookTargetRefused, check_webhook_url

log = logging.getLogger("payops.activities.webhooks")

EXCERPT_BYTES = 1024
USER_AGENT = "payops-webhooks/1"
# One TLS context for every attempt: building one per client costs more than the request.
_SSL_CONTEXT = ssl.create_default_context()


@dataclass
class _Attempt:
    outcome: str  # succeeded | failed | refused
    status_code: int | None = None
    latency_ms: int | None = None
    excerpt: str | None = None  # the start of the receiver's response body
    error: str | None = None  # why there was no (good) response


class WebhookActivities:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], cipher: FieldCipher, settings: Settings
    ) -> None:
        self._sessionmaker = sessionmaker
        self._cipher = cipher
        self._settings = settings

    # --- dispatch ----------------------------------------------------------------------------

    @activity.defn(name="dispatch_webhook_events")
    async def dispatch_webhook_events(self, params: DispatchInput) -> DispatchResult:
        """Start deliveries for new events for up to `max_wait_seconds`, woken by the events
        table's NOTIFY (and polling every `poll_seconds` in case one is missed)."""
        temporal = activity.client()
        wake = asyncio.Event()
        total_events = total_started = 0
        deadline = time.monotonic() + params.max_wait_seconds
        engine = self._sessionmaker.kw["bind"]
        async with engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            listener = lambda *_: wake.set()  # noqa: E731
            await raw.add_listener(NOTIFY_CHANNEL, listener)
            try:
                while True:
                    wake.clear()
                    n_events, n_started = await dispatch_pending_events(
                        self._sessionmaker, temporal, self._settings, batch_size=params.batch_size
                    )
                    total_events, total_started = total_events + n_events, total_started + n_started
                    activity.heartbeat(total_events)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    if n_events >= params.batch_size:
                        continue  # a backlog: keep draining
                    try:
                        await asyncio.wait_for(wake.wait(), min(params.poll_seconds, remaining))
                    except asyncio.TimeoutError:
                        pass
            finally:
                await raw.remove_listener(NOTIFY_CHANNEL, listener)
        return DispatchResult(events=total_events, deliveries_started=total_started)

    # --- one attempt -------------------------------------------------------------------------

    @activity.defn(name="attempt_webhook_delivery")
    async def attempt_webhook_delivery(self, params: DeliveryAttemptInput) -> DeliveryAttemptResult:
        async with self._sessionmaker() as session:
            endpoint, event = await store.endpoint_and_event(session, params.endpoint_id, params.event_id)
        if endpoint is None or event is None or endpoint["deleted_at"] is not None:
            return DeliveryAttemptResult(outcome="endpoint_gone")
        if not endpoint["enabled"]:
            return DeliveryAttemptResult(outcome="endpoint_disabled")

        body = envelope_body(event)
        secrets = live_secrets(self._cipher.decrypt_json(endpoint["secrets_encrypted"]), datetime.now(timezone.utc))
        attempt = await self._send(endpoint["url"], body, secrets, params)
        disabled_now = await self._record(endpoint, params, attempt)
        return DeliveryAttemptResult(
            outcome=attempt.outcome, status_code=attempt.status_code, latency_ms=attempt.latency_ms,
            error=attempt.error, endpoint_disabled_now=disabled_now,
        )

    async def _send(self, url: str, body: bytes, secrets: list[str], params: DeliveryAttemptInput) -> _Attempt:
        try:
            await check_webhook_url(url, self._settings)  # again: DNS may have changed since registration
        except WebhookTargetRefused as exc:
            return _Attempt(outcome="refused", error=exc.detail)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(secrets, body, int(time.time())),
            "Payops-Event-Id": params.event_id,
            "Payops-Delivery-Attempt": str(params.attempt),
        }
        limit = self._settings.webhook_timeout_seconds
        started = time.perf_counter()
        excerpt = b""
        try:
            async with httpx.AsyncClient(
                timeout=httpx.Timeout(limit, connect=min(5.0, limit)), follow_redirects=False,
                verify=_SSL_CONTEXT, trust_env=False,
            ) as http:
                async with asyncio.timeout(limit + 1):  # a slow-drip response cannot hold us longer
                    async with http.stream("POST", url, content=body, headers=headers) as response:
                        async for chunk in response.aiter_raw():
                            excerpt += chunk
                            if len(excerpt) >= EXCERPT_BYTES:
                                break
        except (httpx.HTTPError, TimeoutError) as exc:
            return _Attempt(
                outcome="failed", latency_ms=int((time.perf_counter() - started) * 1000),
                error=(f"{type(exc).__name__}: {exc}")[:500],
            )
        code = response.status_code
        return _Attempt(
            outcome="succeeded" if 200 <= code < 300 else "failed",
            status_code=code,
            latency_ms=int((time.perf_counter() - started) * 1000),
            excerpt=excerpt[:EXCERPT_BYTES].decode("utf-8", "replace"),
            error=None if 200 <= code < 300 else f"HTTP {code}",
        )

    async def _record(self, endpoint: dict, params: DeliveryAttemptInput, attempt: _Attempt) -> bool:
        """Store the attempt; keep the endpoint's failure run; disable it (and alert) once the run
        is longer than allowed. Returns whether this attempt disabled the endpoint."""
        disabled_now = False
        async with self._sessionmaker() as session, session.begin():
            await store.record_attempt(
                session, event_id=params.event_id, endpoint_id=params.endpoint_id, merchant_id=endpoint["merchant_id"],
                workflow_id=params.workflow_id, attempt=params.attempt, url=endpoint["url"],
                outcome=attempt.outcome, status_code=attempt.status_code, latency_ms=attempt.latency_ms,
                response_excerpt=attempt.excerpt, error=attempt.error,
            )
            if attempt.outcome == "succeeded":
                await store.clear_failing(session, params.endpoint_id)
                return False
            failing_since = await store.mark_failing(session, params.endpoint_id, params.now)
            if params.now - failing_since >= timedelta(seconds=params.disable_after_seconds):
                reason = f"every delivery failed since {failing_since.isoformat()}"
                disabled = await store.disable_endpoint(session, params.endpoint_id, reason)
                if disabled is not None:
                    disabled_now = True
                    await self._alert(session, endpoint, reason)
        return disabled_now

    async def _alert(self, session: AsyncSession, endpoint: dict, reason: str) -> None:
        message = (f"webhook endpoint {endpoint['id']} of merchant {endpoint['merchant_id']} "
                   f"({endpoint['url']}) was disabled: {reason}")
        await upsert_alert(
            session, rule="webhook_endpoint_disabled", severity="medium",
            dedupe_key=f"webhook_endpoint_disabled:{endpoint['id']}", message=message,
            data={"merchant_id": endpoint["merchant_id"], "endpoint_id": endpoint["id"], "url": endpoint["url"]},
            refresh=("message",),
        )
        log.warning(message)
