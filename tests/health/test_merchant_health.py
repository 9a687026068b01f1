"""Merchant health figures against real PostgreSQL: known rows are inserted (webhook attempts,
API log rows, `/ready` probes, payouts), and every figure is compared with a computation written
here independently, in Python, over the same rows read back from the database."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select

from core.health.service import merchant_health
from core.platform.tables import api_request_log, events, payouts, ready_probes, webhook_attempts, webhook_endpoints
from tests.factories import create_merchant

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)  # far from the real clock: no request of the test counts


def pct(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (what percentile_cont is defined as)."""
    if not values:
        return None
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def close(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-6)


# Offsets from NOW: inside 24 h, inside 7 d only, outside both (and the exclusive upper bound).
AGES = [timedelta(minutes=5), timedelta(hours=3), timedelta(hours=23, minutes=59), timedelta(days=2),
        timedelta(days=6, hours=23), timedelta(days=8), timedelta(seconds=-1)]


async def seed(sm, merchant: str, salt: int) -> None:
    endpoint, event = f"we_{uuid.uuid4().hex[:10]}", f"evt_{uuid.uuid4().hex[:10]}"
    async with sm() as s, s.begin():
        await s.execute(insert(webhook_endpoints).values(
            id=endpoint, merchant_id=merchant, url="https://example.test/h", event_types=["*"], secrets_encrypted=b"x"))
        await s.execute(insert(events).values(id=event, merchant_id=merchant, type="payout.settled", data={}))
        outcomes = ["succeeded", "failed", "succeeded", "refused", "succeeded"]
        rows = []
        for i, age in enumerate(AGES * 2):
            rows.append(dict(event_id=event, endpoint_id=endpoint, merchant_id=merchant, workflow_id=f"wf-{endpoint}",
                             attempt=i + 1, url="https://example.test/h", outcome=outcomes[(i + salt) % 5],
                             status_code=200, latency_ms=None if i % 6 == 5 else 10 * i + 7 * salt + 3,
                             created_at=NOW - age))
        await s.execute(insert(webhook_attempts), rows)
        statuses = [200, 201, 404, 500, 200, 422, 503, 200, 200]
        await s.execute(insert(api_request_log), [
            dict(at=NOW - age, merchant_id=merchant, principal="p", method="GET", route="/api/v1/payouts",
                 status=statuses[(i + salt) % len(statuses)], latency_ms=1.5 * i + salt + 0.25,
                 request_id=f"r{i}") for i, age in enumerate(AGES * 3)])
        rails = [("sepa_instant", "sandbox", "settled"), ("sepa_instant", "sandbox", "failed"),
                 ("sepa_ct", "sandbox", "submitted"), ("sepa_ct", None, "settled"), ("sepa_instant", "sandbox", "returned"),
                 (None, None, "rejected"), ("sepa_instant", "other", "settled")]
        await s.execute(insert(payouts), [
            dict(id=f"po_{uuid.uuid4().hex}", merchant_id=merchant, idempotency_key=uuid.uuid4().hex, amount_minor=100,
                 currency="EUR", method="sepa", priority="standard", rail=rail, connector=conn, status=status,
                 beneficiary_encrypted=b"x", beneficiary_masked={}, created_at=NOW - age)
            for i, (age, (rail, conn, status)) in enumerate(zip(AGES * 3, rails * 3))])


async def seed_probes(sm) -> None:
    async with sm() as s, s.begin():
        await s.execute(insert(ready_probes), [
            dict(at=NOW - age - timedelta(seconds=j), component=c, up=(i + j + k) % 4 != 0, latency_ms=1.0)
            for i, age in enumerate(AGES) for j in range(3) for k, c in enumerate(("postgres", "redis", "temporal"))])


async def expected(sm, merchant: str, since: datetime, until: datetime) -> dict:
    async with sm() as s:
        wh = (await s.execute(select(webhook_attempts).where(webhook_attempts.c.merchant_id == merchant))).mappings().all()
        api = (await s.execute(select(api_request_log).where(api_request_log.c.merchant_id == merchant))).mappings().all()
        probes = (await s.execute(select(ready_probes))).mappings().all()
        pos = (await s.execute(select(payouts).where(payouts.c.merchant_id == merchant))).mappings().all()
    inside = lambda t: since <= t < until  # noqa: E731
    wh = [r for r in wh if inside(r["created_at"])]
    api = [r for r in api if inside(r["at"])]
    probes = [r for r in probes if inside(r["at"])]
    pos = [r for r in pos if inside(r["created_at"]) and r["rail"] is not None]
    wlat = [r["latency_ms"] for r in wh if r["latency_ms"] is not None]
    ok = sum(r["outcome"] == "succeeded" for r in wh)
    alat = [r["latency_ms"] for r in api]
    uptime = {}
    for r in probes:
        n, up = uptime.get(r["component"], (0, 0))
        uptime[r["component"]] = (n + 1, up + r["up"])
    rails = {}
    for r in pos:
        key = (r["rail"], r["connector"])
        n, settled, finished = rails.get(key, (0, 0, 0))
        rails[key] = (n + 1, settled + (r["status"] == "settled"),
                      finished + (r["status"] in ("settled", "returned", "failed")))
    return {
        "webhooks": (len(wh), ok, ok / len(wh) if wh else None, pct(wlat, 0.5), pct(wlat, 0.95)),
        "api": (len(api), pct(alat, 0.5), pct(alat, 0.95),
                sum(r["status"] >= 500 for r in api) / len(api) if api else None,
                sum(400 <= r["status"] < 500 for r in api) / len(api) if api else None),
        "uptime": {c: (n, up, 100.0 * up / n) for c, (n, up) in uptime.items()},
        "rails": {k: (n, s, f, s / f if f else None) for k, (n, s, f) in rails.items()},
    }


def assert_window_matches(got: dict, want: dict) -> None:
    w = got["webhooks"]
    assert (w["attempts"], w["succeeded"]) == want["webhooks"][:2]
    for value, ref in zip((w["success_rate"], w["latency_p50_ms"], w["latency_p95_ms"]), want["webhooks"][2:]):
        assert close(value, ref), (value, ref)
    a = got["api"]
    assert a["requests"] == want["api"][0]
    for value, ref in zip((a["latency_p50_ms"], a["latency_p95_ms"], a["error_rate_5xx"], a["error_rate_4xx"]),
                          want["api"][1:]):
        assert close(value, ref), (value, ref)
    assert {u["component"]: (u["probes"], u["up"]) for u in got["uptime"]} == {
        c: v[:2] for c, v in want["uptime"].items()}
    for u in got["uptime"]:
        assert close(u["uptime_pct"], want["uptime"][u["component"]][2])
    assert {(r["rail"], r["connector"]): (r["payouts"], r["settled"], r["finished"]) for r in got["rails"]} == {
        k: v[:3] for k, v in want["rails"].items()}
    for r in got["rails"]:
        assert close(r["success_rate"], want["rails"][(r["rail"], r["connector"])][3])


async def test_every_figure_equals_an_independent_computation_over_the_stored_rows(sessionmaker):
    a, b = await create_merchant(sessionmaker), await create_merchant(sessionmaker)
    await seed(sessionmaker, a, salt=0)
    await seed(sessionmaker, b, salt=3)  # another merchant's rows must not leak into a's figures
    await seed_probes(sessionmaker)
    async with sessionmaker() as s:
        got = await merchant_health(s, a, now=NOW)
    assert set(got["windows"]) == {"24h", "7d"}
    for name, span in (("24h", timedelta(hours=24)), ("7d", timedelta(days=7))):
        window = got["windows"][name]
        assert (window["since"], window["until"]) == (NOW - span, NOW)
        want = await expected(sessionmaker, a, NOW - span, NOW)
        assert want["webhooks"][0] > 0 and want["api"][0] > 0 and want["rails"] and want["uptime"]
        assert_window_matches(window, want)
    # the windows differ (rows at 2 d and 6 d 23 h count in 7 d only)
    assert got["windows"]["7d"]["api"]["requests"] > got["windows"]["24h"]["api"]["requests"]


async def test_a_merchant_without_rows_gets_empty_figures_not_errors(sessionmaker):
    a = await create_merchant(sessionmaker)
    async with sessionmaker() as s:
        got = await merchant_health(s, a, now=NOW)
    w = got["windows"]["24h"]
    assert w["webhooks"] == {"attempts": 0, "succeeded": 0, "success_rate": None,
                             "latency_p50_ms": None, "latency_p95_ms": None}
    assert w["api"]["requests"] == 0 and w["api"]["error_rate_5xx"] is None
    assert w["uptime"] == [] and w["rails"] == []


class TestEndpoint:
    @pytest.fixture
    async def two(self, sessionmaker):
        a, b = await create_merchant(sessionmaker), await create_merchant(sessionmaker)
        return a, b

    async def test_a_merchant_reads_its_own_and_never_anothers(self, client, token_for, two, sessionmaker):
        a, b = two
        endpoint, event = "we_x", "evt_x"
        now = datetime.now(timezone.utc)
        async with sessionmaker() as s, s.begin():
            await s.execute(insert(webhook_endpoints).values(id=endpoint, merchant_id=b, url="https://b.test",
                                                             event_types=["*"], secrets_encrypted=b"x"))
            await s.execute(insert(events).values(id=event, merchant_id=b, type="payout.settled", data={}))
            await s.execute(insert(webhook_attempts).values(
                event_id=event, endpoint_id=endpoint, merchant_id=b, workflow_id="wf", attempt=1, url="https://b.test",
                outcome="succeeded", latency_ms=42, created_at=now - timedelta(hours=1)))
        mine = await client.get("/api/v1/health/merchant", headers=token_for("merchant_viewer", merchant_id=a))
        assert mine.status_code == 200, mine.text
        assert mine.json()["merchant_id"] == a
        assert mine.json()["windows"]["24h"]["webhooks"]["attempts"] == 0  # b's attempt is not a's
        theirs = await client.get("/api/v1/health/merchant", params={"merchant_id": b},
                                  headers=token_for("merchant_viewer", merchant_id=a))
        assert theirs.status_code == 403
        ops = await client.get("/api/v1/health/merchant", params={"merchant_id": b}, headers=token_for("ops_admin"))
        assert ops.status_code == 200
        wh = ops.json()["windows"]["24h"]["webhooks"]
        assert (wh["attempts"], wh["success_rate"], wh["latency_p50_ms"]) == (1, 1.0, 42.0)
        b_self = await client.get("/api/v1/health/merchant", headers=token_for("merchant_admin", merchant_id=b))
        assert b_self.json()["windows"]["24h"]["webhooks"] == wh

    async def test_ops_must_name_the_merchant(self, client, token_for):
        r = await client.get("/api/v1/health/merchant", headers=token_for("ops_admin"))
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("application/problem+json")

    async def test_unauthenticated_is_401(self, client):
        assert (await client.get("/api/v1/health/merchant")).status_code == 401
