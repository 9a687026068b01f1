"""The API request log's writer: rows wait in a bounded in-memory buffer and a background task
writes them in batches, so logging never adds a database round trip to a request.

`record` never blocks and never raises: a full buffer drops the row and counts it
(api_log_dropped_total). `stop` writes what is buffered (the API's shutdown).
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.api_logs import store
from core.api_logs.models import ApiLogEntry
from core.platform.metrics import api_log_dropped_total, api_log_written_total

log = logging.getLogger("payops.api_logs")


class ApiLogRecorder:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, max_buffered: int = 10_000,
                 batch_size: int = 500, flush_interval_seconds: float = 1.0) -> None:
        self._sessionmaker = sessionmaker
        self._max = max_buffered
        self._batch = batch_size
        self._interval = flush_interval_seconds
        self._buffer: list[ApiLogEntry] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def record(self, entry: ApiLogEntry) -> None:
        if len(self._buffer) >= self._max:
            api_log_dropped_total.inc()
            return
        self._buffer.append(entry)
        if len(self._buffer) >= self._batch:
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="api-log-flusher")

    async def stop(self) -> None:
        """Stop the background task, then write everything still buffered."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush()

    async def flush(self) -> int:
        """Write every buffered row now (batch by batch); the number written."""
        written = 0
        async with self._lock:
            while self._buffer:
                batch, self._buffer = self._buffer[:self._batch], self._buffer[self._batch:]
                written += await self._write(batch)
        return written

    async def _write(self, batch: list[ApiLogEntry]) -> int:
        try:
            async with self._sessionmaker.begin() as session:
                await store.insert_entries(session, batch)
        except Exception as exc:  # noqa: BLE001 — the log must never take the API down; counted
            log.warning("api log: %d rows not written: %s", len(batch), exc)
            api_log_dropped_total.inc(len(batch))
            return 0
        api_log_written_total.inc(len(batch))
        return len(batch)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()
