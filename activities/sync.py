"""Side effects of the SyncWorkflow: fetch provider pages, normalize, upsert, record progress.

Each page is stored in one database transaction together with the run's cursor and counters,
then the cursor is heartbeated: a retried activity resumes from
`activity.info().heartbeat_details` and re-reads at most the page in flight, which the upsert
(dedupe by source + source_id, data_hash) makes harmless.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from connectors.payshack import PayShackAuthError, PayShackError, PayShackPortal
from connectors.vima import VimaAuthError, VimaClient, VimaRequestError
from core.platform import metrics
from core.sync import store as sync_store
from core.platform.db import driver_connection
from core.transactions.normalize import NormalizedTransaction, Rejected, normalize_payshack, normalize_vima
from core.platform.settings import Settings
from core.sync.models import (
    ERR_AUTH_FAILED,
    ERR_BAD_REQUEST,
    ERR_NOT_CONFIGURED,
    FetchPagesInput,
    FetchPagesResult,
    FinishRunInput,
    FinishRunResult,
    StartRunInput,
    StartRunResult,
    SyncTotals,
)

log = logging.getLogger("payops.activities.sync")

HEARTBEAT_EVERY_SECONDS = 5.0


@dataclass
class FetchedPage:
    records: list[dict[str, Any]]
    cursor: dict[str, Any]  # where the next page starts
    done: bool
    expected_total: int | None = None


def _furthest(a: dict[str, Any], b: dict[str, Any] | None) -> dict[str, Any]:
    """The cursor further along (same kind of cursor: Vima create/update id, portal page)."""
    if not b:
        return a
    for key in ("update", "create", "page"):
        if key in a and key in b and (a.get("from"), a.get("to")) == (b.get("from"), b.get("to")):
            return b if int(b[key]) > int(a[key]) else a
    return a


class SyncActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis | None,
        settings: Settings,
        *,
        vima_client_factory: Callable[..., VimaClient] | None = None,
        payshack_factory: Callable[[], PayShackPortal] | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._redis = redis
        self._settings = settings
        self._vima_client_factory = vima_client_factory or self._default_vima_client
        self._payshack_factory = payshack_factory or self._default_payshack

    # --- connectors ---------------------------------------------------------------------------

    def _default_vima_client(self, sleep) -> VimaClient:
        s = self._settings
        if not s.vima_base_url:
            raise ApplicationError("PAYOPS_VIMA_BASE_URL is not set", type=ERR_NOT_CONFIGURED, non_retryable=True)
        return VimaClient(base_url=s.vima_base_url, api_key=s.vima_api_key, timeout=s.vima_timeout_seconds,
                          max_retries=s.vima_max_retries, retry_after_cap=s.vima_retry_after_cap_seconds, sleep=sleep)

    def _default_payshack(self) -> PayShackPortal:
        s = self._settings
        if not s.payshack_base_url:
            raise ApplicationError("PAYOPS_PAYSHACK_BASE_URL is not set", type=ERR_NOT_CONFIGURED, non_retryable=True)
        return PayShackPortal(
            base_url=s.payshack_base_url, email=s.payshack_email, password=s.payshack_password, redis=self._redis,
            session_ttl_seconds=s.payshack_session_ttl_seconds, chromium_path=s.chromium_path,
            page_size=s.payshack_page_size,
        )

    # --- activities -----------------------------------------------------------------------------

    @activity.defn(name="start_sync_run")
    async def start_sync_run(self, params: StartRunInput) -> StartRunResult:
        """Record the run, mark the source running, and say where the run starts reading."""
        async with self._sessionmaker() as session, session.begin():
            conn = await driver_connection(session)
            state_cursors = await sync_store.start_run(
                conn, run_id=params.run_id, source=params.source, mode=params.mode, workflow_id=params.workflow_id,
                params={"date_from": params.date_from, "date_to": params.date_to},
            )
        cursor = self._initial_cursor(params, state_cursors)
        await sync_store.publish(self._redis, sync_store.SYNC_UPDATES_CHANNEL,
                                 {"source": params.source, "run_id": params.run_id, "mode": params.mode, "status": "running"})
        return StartRunResult(cursor=cursor)

    def _initial_cursor(self, params: StartRunInput, state_cursors: dict[str, Any]) -> dict[str, Any]:
        if params.source == "vima":
            if params.mode == "backfill":
                return {"create": 0}
            return {"update": int(state_cursors.get("update", 0))}
        if params.source == "payshack":
            if params.mode == "backfill":
                if not (params.date_from and params.date_to):
                    raise ApplicationError("a PayShack backfill needs date_from and date_to", type=ERR_BAD_REQUEST,
                                           non_retryable=True)
                return {"page": 1, "from": params.date_from, "to": params.date_to}
            # The portal has no change feed: each run re-reads a window fixed at the run's start,
            # and unchanged rows are skipped by their hash.
            now = datetime.now(timezone.utc)
            since = now - timedelta(hours=self._settings.payshack_lookback_hours)
            return {"page": 1, "from": since.isoformat(timespec="seconds"), "to": now.isoformat(timespec="seconds")}
        raise ApplicationError(f"unknown sync source {params.source!r}", type=ERR_BAD_REQUEST, non_retryable=True)

    @activity.defn(name="fetch_sync_pages")
    async def fetch_sync_pages(self, params: FetchPagesInput) -> FetchPagesResult:
        info = activity.info()
        cursor = params.cursor
        if info.heartbeat_details:
            cursor = dict(info.heartbeat_details[0])
        if info.attempt > 1:
            # Heartbeats are throttled by the SDK, so the last one to reach the server may be a page
            # or two behind; the run's cursor in the database is committed with each page's rows.
            cursor = _furthest(cursor, await self._stored_cursor(params.run_id))
            log.info("sync %s run %s resuming at %s (attempt %d)", params.source, params.run_id, cursor, info.attempt)
        max_pages = params.max_pages or self._settings.sync_pages_per_activity
        totals = SyncTotals()
        expected_total: int | None = None
        activity.heartbeat(cursor)
        pages = self._pages(params, cursor)
        caught_up = False
        try:
            async for page in pages:
                batch, by_merchant = await self._store(params, page, totals)
                cursor = page.cursor
                if page.expected_total is not None:
                    expected_total = page.expected_total
                activity.heartbeat(cursor)
                # One message per merchant whose transactions changed, each carrying its merchant_id
                # (None: unmapped provider accounts, platform users only): a merchant user's
                # live view gets its own transactions and never another merchant's.
                for merchant_id, per in by_merchant.items():
                    await sync_store.publish(self._redis, sync_store.TRANSACTION_UPDATES_CHANNEL, {
                        "type": "transactions.synced", "source": params.source, "run_id": params.run_id,
                        "merchant_id": merchant_id, **per,
                    })
                await sync_store.publish(self._redis, sync_store.SYNC_UPDATES_CHANNEL, {
                    "source": params.source, "run_id": params.run_id, "mode": params.mode, "status": "running",
                    "cursor": cursor, "totals": totals.model_dump(), "expected_total": expected_total,
                })
                if page.done:
                    caught_up = True
                    break
                if totals.pages >= max_pages:
                    break
        except (VimaAuthError, PayShackAuthError) as exc:
            raise ApplicationError(str(exc), type=ERR_AUTH_FAILED, non_retryable=True) from exc
        except VimaRequestError as exc:
            raise ApplicationError(str(exc), type=ERR_BAD_REQUEST, non_retryable=True) from exc
        finally:
            await pages.aclose()
        return FetchPagesResult(cursor=cursor, totals=totals, caught_up=caught_up, expected_total=expected_total)

    @activity.defn(name="finish_sync_run")
    async def finish_sync_run(self, params: FinishRunInput) -> FinishRunResult:
        async with self._sessionmaker() as session, session.begin():
            conn = await driver_connection(session)
            run = await sync_store.finish_run(conn, run_id=params.run_id, source=params.source,
                                              status=params.status, error=params.error)
        totals = None
        metrics.sync_runs_total.labels(params.source, params.status).inc()
        if params.status == "success":
            metrics.sync_last_success_timestamp_seconds.labels(params.source).set_to_current_time()
        if run is not None:
            for outcome in ("inserted", "updated", "unchanged", "quarantined"):
                metrics.sync_rows_total.labels(params.source, outcome).inc(run[f"rows_{outcome}"] or 0)
            totals = SyncTotals(pages=run["pages"], rows_fetched=run["rows_fetched"], inserted=run["rows_inserted"],
                                updated=run["rows_updated"], unchanged=run["rows_unchanged"],
                                quarantined=run["rows_quarantined"])
        await sync_store.publish(self._redis, sync_store.SYNC_UPDATES_CHANNEL, {
            "source": params.source, "run_id": params.run_id, "mode": params.mode, "status": params.status,
            "error": params.error, "totals": (totals or params.totals or SyncTotals()).model_dump(),
        })
        return FinishRunResult(totals=totals)

    # --- helpers --------------------------------------------------------------------------------

    async def _stored_cursor(self, run_id: str) -> dict[str, Any] | None:
        async with self._sessionmaker() as session:
            conn = await driver_connection(session)
            raw = await sync_store.stored_cursor(conn, run_id)
        if raw is None:
            return None
        return json.loads(raw) if isinstance(raw, str) else dict(raw)

    async def _store(self, params: FetchPagesInput, page: FetchedPage,
                     totals: SyncTotals) -> tuple[SyncTotals, dict[str | None, dict[str, int]]]:
        normalized: list[NormalizedTransaction] = []
        rejected: list[Rejected] = []
        if params.source == "vima":
            results = [normalize_vima(r) for r in page.records]
        else:
            s = self._settings
            results = [normalize_payshack(r, project=s.payshack_project, local_tz=s.payshack_timezone)
                       for r in page.records]
        for r in results:
            (normalized if isinstance(r, NormalizedTransaction) else rejected).append(r)
        invalid_countries = sum(1 for r in normalized if r.payer_country_invalid)
        if invalid_countries:
            metrics.sync_invalid_country_total.labels(params.source).inc(invalid_countries)
        state_cursors = page.cursor if (params.source == "vima" and params.mode == "incremental") else None
        async with self._sessionmaker() as session, session.begin():
            conn = await driver_connection(session)
            counts, rejected = await sync_store.store_page(conn, params.source, normalized, rejected)
            quarantined = await sync_store.quarantine(conn, rejected, params.run_id)
            await sync_store.record_batch(
                conn, run_id=params.run_id, source=params.source, cursor=page.cursor, fetched=len(page.records),
                counts=counts, quarantined=quarantined, state_cursors=state_cursors,
                expected_total=page.expected_total,
            )
        batch = SyncTotals(pages=1, rows_fetched=len(page.records), inserted=counts.inserted, updated=counts.updated,
                           unchanged=counts.unchanged, quarantined=quarantined)
        totals.pages += 1
        totals.rows_fetched += batch.rows_fetched
        totals.inserted += batch.inserted
        totals.updated += batch.updated
        totals.unchanged += batch.unchanged
        totals.quarantined += batch.quarantined
        return batch, counts.by_merchant

    def _pages(self, params: FetchPagesInput, cursor: dict[str, Any]) -> AsyncIterator[FetchedPage]:
        if params.source == "vima":
            return self._vima_pages(params, cursor)
        if params.source == "payshack":
            return self._payshack_pages(params, cursor)
        raise ApplicationError(f"unknown sync source {params.source!r}", type=ERR_BAD_REQUEST, non_retryable=True)

    async def _vima_pages(self, params: FetchPagesInput, cursor: dict[str, Any]) -> AsyncIterator[FetchedPage]:
        kind = "create" if params.mode == "backfill" else "update"
        position = int(cursor.get(kind, 0))
        heartbeat_cursor = dict(cursor)

        async def sleep_heartbeating(seconds: float) -> None:
            # a long Retry-After must not look like a dead worker
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds
            while (left := end - loop.time()) > 0:
                activity.heartbeat(heartbeat_cursor)
                await asyncio.sleep(min(left, HEARTBEAT_EVERY_SECONDS))

        client = self._vima_client_factory(sleep_heartbeating)
        try:
            first = True
            while True:
                page = await client.fetch_page(
                    kind, position, limit=self._settings.vima_page_size,
                    date_from=params.date_from if kind == "create" else None,
                    date_to=params.date_to if kind == "create" else None,
                    with_total=first and kind == "create",
                )
                first = False
                position = page.cursor
                heartbeat_cursor = {kind: position}
                yield FetchedPage(records=page.operations, cursor={kind: position}, done=not page.has_more,
                                  expected_total=page.total)
                if not page.has_more:
                    return
        finally:
            await client.aclose()

    async def _payshack_pages(self, params: FetchPagesInput, cursor: dict[str, Any]) -> AsyncIterator[FetchedPage]:
        start_page = int(cursor.get("page", 1))
        window_from, window_to = cursor["from"], cursor["to"]
        current = dict(cursor)  # the last stored position: what a heartbeat during login reports
        try:
            async with self._payshack_factory() as portal:
                async for page in portal.pages(window_from, window_to, start_page=start_page,
                                               on_progress=lambda: activity.heartbeat(current)):
                    done = page.page >= page.last_page
                    next_cursor = {"page": page.page + 1, "from": window_from, "to": window_to}
                    yield FetchedPage(records=page.rows, cursor=next_cursor, done=done, expected_total=page.total)
                    current = next_cursor
                    if done:
                        return
        except PayShackAuthError:
            raise
        except PayShackError as exc:
            raise RuntimeError(f"PayShack portal: {exc}") from exc
