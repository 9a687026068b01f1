"""Property: for any set of request latencies and statuses, the API figures PostgreSQL computes
(percentile_cont, 5xx/4xx shares) equal the closest-ranks interpolation and counts done in Python."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import insert

from core.health.service import merchant_health
from core.platform.db import create_engine, create_sessionmaker
from core.platform.tables import api_request_log
from tests.health.test_merchant_health import close, pct

NOW = datetime(2031, 6, 1, tzinfo=timezone.utc)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.floats(0, 10_000, allow_nan=False).map(lambda x: round(x, 3)),
                               st.sampled_from([200, 201, 204, 400, 404, 409, 422, 500, 502, 503])),
                     min_size=1, max_size=40))
def test_api_figures_equal_python_over_any_rows(database_url, rows):
    merchant = f"mer_{uuid.uuid4().hex[:12]}"  # a fresh merchant per example in the same database

    async def run():
        engine = create_engine(database_url)
        try:
            sm = create_sessionmaker(engine)
            async with sm() as s, s.begin():
                await s.execute(insert(api_request_log), [
                    dict(at=NOW - timedelta(minutes=i + 1), merchant_id=merchant, principal="p", method="GET",
                         route="/r", status=status, latency_ms=latency, request_id=f"r{i}")
                    for i, (latency, status) in enumerate(rows)])
            async with sm() as s:
                return await merchant_health(s, merchant, now=NOW)
        finally:
            await engine.dispose()

    api = asyncio.run(run())["windows"]["24h"]["api"]
    latencies = [lat for lat, _ in rows]
    assert api["requests"] == len(rows)
    # the API rounds latencies to 0.001 ms
    assert abs(api["latency_p50_ms"] - pct(latencies, 0.5)) <= 0.0005 + 1e-9
    assert abs(api["latency_p95_ms"] - pct(latencies, 0.95)) <= 0.0005 + 1e-9
    assert close(api["error_rate_5xx"], sum(s >= 500 for _, s in rows) / len(rows))
    assert close(api["error_rate_4xx"], sum(400 <= s < 500 for _, s in rows) / len(rows))
