"""The connector's circuit breaker counts submissions in a rolling window and opens on the error
rate (core.rails.store.record_outcome), against the real database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from core.rails.store import record_outcome
from core.platform.tables import connector_health

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
RULES = dict(window_seconds=60, min_requests=4, error_rate_to_open=0.5)


async def _record(sessionmaker, connector: str, error: bool, now: datetime) -> None:
    async with sessionmaker() as session, session.begin():
        await record_outcome(session, connector, error, now=now, **RULES)


async def _row(sessionmaker, connector: str) -> dict:
    async with sessionmaker() as session:
        return dict((await session.execute(
            select(connector_health).where(connector_health.c.connector == connector))).mappings().one())


async def test_opens_on_the_error_rate_once_enough_requests_and_not_before(sessionmaker) -> None:
    c = f"test-{uuid.uuid4().hex[:8]}"
    await _record(sessionmaker, c, True, T0)  # the first outcome creates the row
    await _record(sessionmaker, c, False, T0 + timedelta(seconds=1))
    await _record(sessionmaker, c, True, T0 + timedelta(seconds=2))
    row = await _row(sessionmaker, c)
    assert (row["window_requests"], row["window_errors"], row["state"]) == (3, 2, "closed")  # under min_requests
    await _record(sessionmaker, c, False, T0 + timedelta(seconds=3))
    row = await _row(sessionmaker, c)
    assert (row["window_requests"], row["window_errors"], row["state"]) == (4, 2, "open")  # 2/4 >= 0.5
    assert row["open_reason"] == "error rate 2/4 in the last 60s" and row["opened_at"] == T0 + timedelta(seconds=3)


async def test_a_new_window_starts_the_count_again(sessionmaker) -> None:
    c = f"test-{uuid.uuid4().hex[:8]}"
    for i in range(3):
        await _record(sessionmaker, c, True, T0 + timedelta(seconds=i))
    later = T0 + timedelta(seconds=61)  # the window that began at T0 is over
    await _record(sessionmaker, c, False, later)
    row = await _row(sessionmaker, c)
    assert (row["window_requests"], row["window_errors"], row["window_started_at"], row["state"]) == (
        1, 0, later, "closed")


async def test_concurrent_outcomes_are_all_counted(sessionmaker) -> None:
    c = f"test-{uuid.uuid4().hex[:8]}"
    await asyncio.gather(*(_record(sessionmaker, c, i == 7, T0) for i in range(20)))
    row = await _row(sessionmaker, c)
    assert (row["window_requests"], row["window_errors"], row["state"]) == (20, 1, "closed")
