"""The activity feed on a few thousand rows: three merchants with ~2,400 source rows each (every
kind), the whole feed of one merchant walked page by page through the API. Prints the per-page
latency (run with -s to see it) and asserts every event comes exactly once and that a page stays
well under the request budget."""

from __future__ import annotations

import statistics
import time

from tests.factories import create_merchant
from tests.portal.seed import seed_activity


async def test_walking_a_large_feed(client, token_for, sessionmaker, pg_conn):
    merchants = [await create_merchant(sessionmaker) for _ in range(3)]
    expected = [await seed_activity(sessionmaker, m, n=400, salt=i) for i, m in enumerate(merchants)]
    await pg_conn.execute("ANALYZE")
    total_rows = 0
    for t in ("transactions", "payout_events", "webhook_attempts", "webhook_endpoints", "ops_action_audit"):
        total_rows += await pg_conn.fetchval(f"SELECT count(*) FROM {t}")
    headers = token_for("merchant_viewer", merchant_id=merchants[1])
    # warm-up: the app's first request (connection pool, first statements) is not the feed's cost
    assert (await client.get("/api/v1/activity", headers=token_for("merchant_viewer", merchant_id=merchants[0]),
                             params={"limit": 1})).status_code == 200
    seen, cursor, latencies = [], None, []
    while True:
        started = time.perf_counter()
        r = await client.get("/api/v1/activity", headers=headers,
                             params={"limit": 100, **({"cursor": cursor} if cursor else {})})
        latencies.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200
        seen += [e["id"] for e in r.json()["data"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    want = set().union(*expected[1].values())
    assert len(seen) == len(set(seen)) and set(seen) == want
    p50, worst = statistics.median(latencies), max(latencies)
    print(f"\nactivity feed: {total_rows} source rows, {len(want)} events of one merchant, {len(latencies)} pages "
          f"of 100: p50 {p50:.1f} ms, max {worst:.1f} ms (first page {latencies[0]:.1f} ms, last {latencies[-1]:.1f} ms)")
    assert p50 < 250, latencies
