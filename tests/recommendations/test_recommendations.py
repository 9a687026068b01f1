"""Recommendations on real PostgreSQL (and Temporal for the API's apply): each kind computed from
generated payouts whose right answer the test works out by itself (fees, saving, runway, top-up,
failure rate, confidence), recomputation without duplicates, apply once and twice, dismiss,
expiry, and a merchant seeing only its own."""

from __future__ import annotations

import asyncio
import math
import os
import statistics
from fractions import Fraction
import uuid
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from hypothesis import given, strategies as st
from sqlalchemy import func, insert, select, text

from core.ledger import service as ledger
from core.payouts.routing import ConnectorInfo
from core.platform.tables import connector_health, controls, merchants, ops_actions, payouts, recommendations
from core.recommendations import service
from core.recommendations.models import confidence, per_month

NOW = datetime.now(timezone.utc).replace(microsecond=0)
BASE = "/api/v1/recommendations"
OPS = "ops_admin"

# the connectors of this deployment, as the routing engine sees them: two serve ACH, the second
# preferred; wire payouts went through bank_wire
CONNECTORS = [
    ConnectorInfo("bank_wire", frozenset({"wire"})),
    ConnectorInfo("bank_ach", frozenset({"ach"}), preference=100),
    ConnectorInfo("bank_ach_2", frozenset({"ach"}), preference=50),
    ConnectorInfo("bank_sepa", frozenset({"sepa"})),
]


async def new_merchant(sm, *, currency="USD", funded_minor=0) -> str:
    mid = f"mer_{uuid.uuid4().hex[:12]}"
    async with sm() as s, s.begin():
        await s.execute(insert(merchants).values(id=mid, name=f"Merchant {mid}", default_currency=currency))
        if funded_minor:
            await ledger.fund_merchant(s, mid, funded_minor, currency, f"funding:{mid}:seed")
    return mid


async def add_payouts(sm, rows: list[dict]) -> None:
    """Payout rows as routing and settlement leave them (the columns the recommendations read)."""
    async with sm() as s, s.begin():
        for r in rows:
            await s.execute(insert(payouts).values(
                id=f"po_{uuid.uuid4().hex}", idempotency_key=uuid.uuid4().hex, beneficiary_encrypted=b"x",
                beneficiary_masked={}, **r))


def wire_payouts(merchant_id: str, *, days: list[int], per_day: int, target_after: timedelta) -> list[dict]:
    """USD payouts to the US that went by wire (1500 fixed) at 10:00 UTC on each of `days` ago."""
    out = []
    for d in days:
        for k in range(per_day):
            at = (NOW - timedelta(days=d)).replace(hour=10, minute=k, second=0)
            amount = 12_345 + 1_000 * k + 7 * d
            out.append(dict(merchant_id=merchant_id, amount_minor=amount, currency="USD", fee_minor=1500,
                            method="ach", priority="standard", rail="wire", connector="bank_wire",
                            status="settled", routing={"country": "US"}, created_at=at,
                            settlement_target_at=at + target_after))
    return out


def ach_fee(amount: int) -> int:
    """The ACH rule the test sets: 10 fixed + 30 bps, rounded half up (worked out independently)."""
    return 10 + int((Decimal(amount) * Decimal(30) / Decimal(10_000)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def expected_confidence(n: int, daily: list[float]) -> float:
    mean = sum(daily) / len(daily)
    cv = statistics.pstdev(daily) / mean if mean else 0.0
    return round(n / (n + 10) * (1 / (1 + cv)), 3)


def daily_counts(rows: list[dict], field: str | None = None) -> list[float]:
    first = (NOW - timedelta(days=30)).date()
    days = [first + timedelta(days=i) for i in range((NOW.date() - first).days + 1)]
    return [float(sum((r[field] if field else 1) for r in rows if r["created_at"].date() == d)) for d in days]


@pytest.fixture
def rec_settings(settings):
    return settings.model_copy(update={"recommendation_window_days": 30, "recommendation_runway_days": 7,
                                       "recommendation_ttl_hours": 72.0, "recommendation_failure_window_hours": 24.0,
                                       "recommendation_failure_rate": 0.2, "recommendation_failure_min_payouts": 10})


async def recompute(sm, settings, now=NOW) -> dict:
    async with sm() as s, s.begin():
        return await service.recompute(s, settings, CONNECTORS, now=now)


async def recs(sm, **where) -> list[dict]:
    async with sm() as s:
        stmt = select(recommendations).where(*[getattr(recommendations.c, k) == v for k, v in where.items()])
        return [dict(r) for r in (await s.execute(stmt.order_by(recommendations.c.created_at))).mappings()]


@pytest.fixture
async def ach_fee_rule(sessionmaker):
    async with sessionmaker() as s, s.begin():
        await s.execute(text("UPDATE rail_rules SET fee_fixed_minor = 10, fee_bps = 30 WHERE rail = 'ach'"))


# --- the arithmetic ----------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=365))
def test_per_month_scales_a_window_to_30_days_rounded_half_up(amount, days):
    exact = Fraction(amount * 30, days)
    assert per_month(amount, days) == math.floor(exact + Fraction(1, 2))


@given(st.integers(min_value=0, max_value=10_000), st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=60))
def test_confidence_is_in_0_1_and_grows_with_the_sample(n, daily):
    value, words = confidence(n, [float(d) for d in daily])
    assert 0 <= value <= 1
    assert f"{value:.2f}" in words
    assert confidence(n + 10, [float(d) for d in daily])[0] >= value


# --- kind 1: cheaper route -----------------------------------------------------------------------


async def test_cheaper_route_saving_is_the_fees_paid_minus_the_alternative_rails_fees(sessionmaker, rec_settings,
                                                                                   ach_fee_rule):
    roomy = await new_merchant(sessionmaker)  # targets a week out: ACH (next business day) meets them
    tight = await new_merchant(sessionmaker)  # targets an hour out: only wire meets them
    rows = wire_payouts(roomy, days=[1, 2, 3, 5, 8, 13, 21], per_day=3, target_after=timedelta(days=7))
    await add_payouts(sessionmaker, rows + wire_payouts(tight, days=[1, 2], per_day=4,
                                                         target_after=timedelta(hours=1)))

    counts = await recompute(sessionmaker, rec_settings)

    [rec] = await recs(sessionmaker, merchant_id=roomy, kind="cheaper_route")
    paid = 1500 * len(rows)
    would = sum(ach_fee(r["amount_minor"]) for r in rows)
    assert rec["impact_minor"] == paid - would  # a 30-day window is one month
    assert rec["currency"] == "USD"
    assert f"saving ({paid} - {would}) x 30/30 days = {paid - would} USD minor per month" in rec["impact_arithmetic"]
    assert rec["evidence"]["payouts"] == len(rows) and rec["evidence"]["fees_paid_minor"] == paid
    assert rec["evidence"]["alternative_fees_minor"] == would
    # the preferred of the two ACH connectors, forced for this merchant by a route override
    assert rec["action_type"] == "ROUTE_OVERRIDE"
    assert rec["action_params"]["merchant_id"] == roomy and rec["action_params"]["connector"] == "bank_ach_2"
    assert float(rec["confidence"]) == pytest.approx(expected_confidence(len(rows), daily_counts(rows)), abs=1e-3)
    assert rec["dedupe_key"] == f"cheaper_route:{roomy}:USD:US:wire"
    assert await recs(sessionmaker, merchant_id=tight, kind="cheaper_route") == []
    assert counts["opened"] >= 1

    # a recomputation refreshes the pending one: no duplicate
    await add_payouts(sessionmaker, wire_payouts(roomy, days=[4], per_day=1, target_after=timedelta(days=7)))
    await recompute(sessionmaker, rec_settings)
    [again] = await recs(sessionmaker, merchant_id=roomy, kind="cheaper_route")
    assert again["id"] == rec["id"] and again["evidence"]["payouts"] == len(rows) + 1


async def test_no_cheaper_route_when_the_alternative_connector_is_paused_or_its_breaker_open(sessionmaker,
                                                                                          rec_settings):
    mid = await new_merchant(sessionmaker)
    await add_payouts(sessionmaker, wire_payouts(mid, days=[1, 2, 3], per_day=2, target_after=timedelta(days=7)))
    async with sessionmaker() as s, s.begin():
        await s.execute(insert(connector_health).values(connector="bank_ach_2", state="open", open_reason="test"))
    await recompute(sessionmaker, rec_settings)
    [rec] = await recs(sessionmaker, merchant_id=mid, kind="cheaper_route")
    assert rec["action_params"]["connector"] == "bank_ach"  # the open breaker's connector is skipped


# --- kind 2: float runway ------------------------------------------------------------------------


async def test_float_runway_suggests_a_top_up_to_a_month_of_payouts(sessionmaker, rec_settings):
    short = await new_merchant(sessionmaker, currency="EUR", funded_minor=50_000)
    long = await new_merchant(sessionmaker, currency="EUR", funded_minor=100_000)
    rows = []
    for mid in (short, long):
        for d in range(1, 31, 3):  # ten payouts over the window: 29,000 + 1,000 fee each
            rows.append(dict(merchant_id=mid, amount_minor=29_000, currency="EUR", fee_minor=1_000, method="sepa",
                             priority="standard", status="settled", rail="sepa", connector="bank_sepa",
                             routing={"country": "FR"}, created_at=NOW - timedelta(days=d, hours=1)))
    rows.append(dict(merchant_id=short, amount_minor=500_000, currency="EUR", fee_minor=20, method="sepa",
                     priority="standard", status="failed", created_at=NOW - timedelta(days=2)))  # no money out
    await add_payouts(sessionmaker, rows)

    await recompute(sessionmaker, rec_settings)

    [rec] = await recs(sessionmaker, merchant_id=short, kind="float_runway")
    outflow = 10 * 30_000
    runway = 50_000 * 30 / outflow  # 5 days < 7
    assert runway < 7
    assert rec["impact_minor"] == outflow - 50_000 == 250_000
    assert rec["evidence"]["runway_days"] == round(runway, 2)
    assert "300000 - 50000 = 250000 EUR minor" in rec["impact_arithmetic"]
    assert rec["action_type"] is None  # informational: a top-up is the merchant's transfer
    mine = [r for r in rows if r["merchant_id"] == short and r["status"] == "settled"]
    expected = expected_confidence(len(mine), [float(x) for x in daily_counts(
        [{**r, "v": r["amount_minor"] + r["fee_minor"]} for r in mine], "v")])
    assert float(rec["confidence"]) == pytest.approx(expected, abs=1e-3)
    assert await recs(sessionmaker, merchant_id=long, kind="float_runway") == []  # 10 days of runway


# --- kind 3: failing connector ------------------------------------------------------------------


async def test_failing_connector_from_its_failure_rate_or_open_breaker(sessionmaker, rec_settings):
    mid = await new_merchant(sessionmaker, currency="GBP")
    rows = []
    for name, failing in (("bank_fps", 6), ("bank_fps_2", 1)):
        for i in range(20):
            status = "failed" if i < failing else "settled"
            rows.append(dict(merchant_id=mid, amount_minor=1_000 + i, currency="GBP", fee_minor=30,
                             method="faster_payments", priority="instant", status=status, rail="faster_payments",
                             connector=name, routing={"country": "GB"}, created_at=NOW - timedelta(hours=2 + i / 10)))
    await add_payouts(sessionmaker, rows)
    async with sessionmaker() as s, s.begin():
        await s.execute(insert(connector_health).values(connector="momo_xof", state="open",
                                                        open_reason="3 failed health check(s)"))

    await recompute(sessionmaker, rec_settings)

    by_connector = {r["action_params"]["connector"]: r for r in await recs(sessionmaker, kind="failing_connector")}
    assert set(by_connector) == {"bank_fps", "momo_xof"}  # bank_fps_2 fails 5 %: below 20 %
    fps = by_connector["bank_fps"]
    failed_minor = sum(1_000 + i for i in range(6))
    assert fps["impact_minor"] == failed_minor * 30 and fps["currency"] == "GBP"
    assert fps["action_type"] == "PAUSE_PAYOUTS" and fps["merchant_id"] is None
    p, n = 6 / 20, 20
    expected = round(n / (n + 10) * (1 - math.sqrt(p * (1 - p) / n) / p), 3)
    assert float(fps["confidence"]) == pytest.approx(expected, abs=1e-3)
    assert float(by_connector["momo_xof"]["confidence"]) >= 0.9
    assert by_connector["momo_xof"]["evidence"]["breaker_open"] is True


# --- kind 4: batch instead of standard -------------------------------------------------------------


def half_up_bps(amount: int, bps: int) -> int:
    return int((Decimal(amount) * Decimal(bps) / Decimal(10_000)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def instant_fee(amount: int) -> int:
    """What the SEPA Instant payouts paid: the seeded sepa_instant rule, 50 fixed + 5 bps."""
    return 50 + half_up_bps(amount, 5)


def sepa_batch_fee(amount: int) -> int:
    """The SEPA batch rule the test sets: 20 fixed + 2 bps, rounded half up."""
    return 20 + half_up_bps(amount, 2)


@pytest.fixture
async def sepa_fee_rule(sessionmaker):
    async with sessionmaker() as s, s.begin():
        await s.execute(text("UPDATE rail_rules SET fee_fixed_minor = 20, fee_bps = 2 WHERE rail = 'sepa'"))


def instant_payouts(merchant_id: str, *, days: list[int], per_day: int, priority: str = "standard",
                    target_after: timedelta | None, fee=instant_fee) -> list[dict]:
    """EUR payouts to France that went by sepa_instant (through bank_sepa_inst, which only serves
    it) at 10:00 UTC on each of `days` ago. A target a week out leaves room for any SEPA batch
    (next business day after the 18:00 Paris cutoff, whatever the weekday or TARGET holiday); an
    hour out leaves none."""
    out = []
    for d in days:
        for k in range(per_day):
            at = (NOW - timedelta(days=d)).replace(hour=10, minute=k, second=0)
            amount = 50_000 + 3_333 * k + 11 * d
            out.append(dict(merchant_id=merchant_id, amount_minor=amount, currency="EUR", fee_minor=fee(amount),
                            method="sepa", priority=priority, rail="sepa_instant", connector="bank_sepa_inst",
                            status="settled", routing={"country": "FR"}, created_at=at,
                            settlement_target_at=None if target_after is None else at + target_after))
    return out


WEEK, HOUR = timedelta(days=7), timedelta(hours=1)


def mixed_corridor(mid: str) -> tuple[list[dict], list[dict]]:
    """(the payouts that qualify, all of the corridor's payouts)."""
    roomy = instant_payouts(mid, days=[1, 2, 3, 5, 8, 13, 21], per_day=2, target_after=WEEK)
    any_time = instant_payouts(mid, days=[6], per_day=2, priority="batch", target_after=None)  # no deadline
    too_near = (instant_payouts(mid, days=[1, 4], per_day=2, target_after=HOUR)
                + instant_payouts(mid, days=[2], per_day=2, priority="instant", target_after=None))  # 1 h budget
    fastest = instant_payouts(mid, days=[3], per_day=1, priority="priority", target_after=None)  # no budget
    cheap = instant_payouts(mid, days=[9], per_day=1, target_after=WEEK, fee=lambda a: 10)  # batch costs more
    return roomy + any_time, roomy + any_time + too_near + fastest + cheap


async def test_batch_instead_of_standard_counts_the_payouts_whose_deadlines_leave_room(sessionmaker, rec_settings,
                                                                                        sepa_fee_rule):
    mid = await new_merchant(sessionmaker, currency="EUR")
    other = await new_merchant(sessionmaker, currency="EUR")  # every deadline an hour out: nothing qualifies
    qualifying, corridor = mixed_corridor(mid)
    await add_payouts(sessionmaker, corridor + instant_payouts(other, days=[1, 2, 3], per_day=3,
                                                               target_after=HOUR))

    await recompute(sessionmaker, rec_settings)

    [rec] = await recs(sessionmaker, merchant_id=mid, kind="batch_instead_of_standard")
    paid = sum(r["fee_minor"] for r in qualifying)
    would = sum(sepa_batch_fee(r["amount_minor"]) for r in qualifying)
    assert len(qualifying) == 16 and len(corridor) == 24
    assert rec["impact_minor"] == paid - would > 0  # a 30-day window is one month
    assert rec["currency"] == "EUR"
    assert rec["impact_arithmetic"].startswith("16 of 24 settled sepa_instant payout(s) in 30 days")
    assert f"saving ({paid} - {would}) x 30/30 days = {paid - would} EUR minor per month" in rec["impact_arithmetic"]
    ev = rec["evidence"]
    assert (ev["payouts"], ev["corridor_payouts"]) == (16, 24)
    assert ev["not_qualifying"] == {"batch_fee_not_lower": 1, "deadline_too_near": 6, "no_deadline_budget": 1}
    assert (ev["fees_paid_minor"], ev["batch_fees_minor"]) == (paid, would)
    assert (ev["rail"], ev["batch_rail"], ev["batch_connectors"]) == ("sepa_instant", "sepa", ["bank_sepa"])
    assert float(rec["confidence"]) == pytest.approx(expected_confidence(16, daily_counts(qualifying)), abs=1e-3)
    assert rec["dedupe_key"] == f"batch_instead_of_standard:{mid}:EUR:FR:sepa_instant"
    assert rec["action_type"] is None and rec["action_params"] is None  # the merchant's choice per payout
    # not every payout of the corridor meets SEPA's batch, so no route override is suggested for it
    assert await recs(sessionmaker, merchant_id=mid, kind="cheaper_route") == []
    assert await recs(sessionmaker, merchant_id=other, kind="batch_instead_of_standard") == []

    # a recomputation refreshes the pending one: no duplicate
    await add_payouts(sessionmaker, instant_payouts(mid, days=[4], per_day=1, target_after=WEEK))
    await recompute(sessionmaker, rec_settings)
    [again] = await recs(sessionmaker, merchant_id=mid, kind="batch_instead_of_standard")
    assert again["id"] == rec["id"]
    assert (again["evidence"]["payouts"], again["evidence"]["corridor_payouts"]) == (17, 25)


async def test_no_batch_suggestion_while_the_batch_rail_is_paused_or_its_connector_unhealthy(sessionmaker,
                                                                                          rec_settings):
    mid = await new_merchant(sessionmaker, currency="EUR")
    _, corridor = mixed_corridor(mid)
    await add_payouts(sessionmaker, corridor)

    async with sessionmaker() as s, s.begin():
        await s.execute(insert(controls).values(kind="rail_pause", target="sepa", created_by="ops", reason="test"))
    await recompute(sessionmaker, rec_settings)
    assert await recs(sessionmaker, merchant_id=mid, kind="batch_instead_of_standard") == []

    async with sessionmaker() as s, s.begin():
        await s.execute(controls.update().values(active=False))
        await s.execute(insert(controls).values(kind="connector_pause", target="bank_sepa", created_by="ops"))
    await recompute(sessionmaker, rec_settings)
    assert await recs(sessionmaker, merchant_id=mid, kind="batch_instead_of_standard") == []

    async with sessionmaker() as s, s.begin():
        await s.execute(controls.update().values(active=False))
        await s.execute(insert(connector_health).values(connector="bank_sepa", state="open", open_reason="test"))
    await recompute(sessionmaker, rec_settings)
    assert await recs(sessionmaker, merchant_id=mid, kind="batch_instead_of_standard") == []

    async with sessionmaker() as s, s.begin():  # healthy again: the same payouts qualify
        await s.execute(connector_health.update().values(state="closed"))
    await recompute(sessionmaker, rec_settings)
    [rec] = await recs(sessionmaker, merchant_id=mid, kind="batch_instead_of_standard")
    assert rec["evidence"]["payouts"] == 16


async def test_no_batch_suggestion_where_cheaper_route_already_counts_the_saving(sessionmaker, rec_settings,
                                                                                  sepa_fee_rule):
    mid = await new_merchant(sessionmaker, currency="EUR")
    rows = instant_payouts(mid, days=[1, 2, 3, 5], per_day=2, target_after=WEEK)  # every one fits the batch
    await add_payouts(sessionmaker, rows)
    await recompute(sessionmaker, rec_settings)
    [route] = await recs(sessionmaker, merchant_id=mid, kind="cheaper_route")
    saving = sum(r["fee_minor"] - sepa_batch_fee(r["amount_minor"]) for r in rows)
    assert route["impact_minor"] == saving and route["action_params"]["connector"] == "bank_sepa"
    assert await recs(sessionmaker, merchant_id=mid, kind="batch_instead_of_standard") == []


async def test_batch_suggestion_is_informational_and_scoped_to_its_merchant(sessionmaker, rec_settings, client,
                                                                            token_for):
    a = await new_merchant(sessionmaker, currency="EUR")
    b = await new_merchant(sessionmaker, currency="EUR")
    await add_payouts(sessionmaker, mixed_corridor(a)[1] + mixed_corridor(b)[1])
    await recompute(sessionmaker, rec_settings)
    by = {r["merchant_id"]: r["id"] for r in await recs(sessionmaker, kind="batch_instead_of_standard")}
    assert set(by) == {a, b}

    merchant_a = token_for("merchant_admin", merchant_id=a)
    listed = (await client.get(BASE, params={"kind": "batch_instead_of_standard"}, headers=merchant_a)).json()
    assert [x["id"] for x in listed["data"]] == [by[a]]
    assert listed["data"][0]["suggested_action"] is None
    assert (await client.get(f"{BASE}/{by[b]}", headers=merchant_a)).status_code == 404

    r = await client.post(f"{BASE}/{by[a]}/apply", headers=token_for(OPS))
    assert r.status_code == 409 and r.json()["type"] == "recommendation_not_applicable"
    assert await action_count(sessionmaker, by[a]) == 0
    r = await client.post(f"{BASE}/{by[a]}/dismiss", headers=token_for(OPS))
    assert r.status_code == 200 and r.json()["status"] == "dismissed"


# --- expiry ---------------------------------------------------------------------------------------


async def test_a_pending_recommendation_expires_and_a_later_run_opens_a_new_one(sessionmaker, rec_settings,
                                                                                client, token_for):
    mid = await new_merchant(sessionmaker)
    await add_payouts(sessionmaker, wire_payouts(mid, days=[1, 2], per_day=2, target_after=timedelta(days=7)))
    await recompute(sessionmaker, rec_settings)
    [first] = await recs(sessionmaker, merchant_id=mid, kind="cheaper_route")
    assert first["expires_at"] == NOW + timedelta(hours=72)

    # past its lifetime it reads as expired at once, and cannot be applied
    async with sessionmaker() as s, s.begin():
        await s.execute(recommendations.update().where(recommendations.c.id == first["id"])
                        .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    body = (await client.get(f"{BASE}/{first['id']}", headers=token_for(OPS))).json()
    assert body["status"] == "expired"
    r = await client.post(f"{BASE}/{first['id']}/apply", headers=token_for(OPS))
    assert r.status_code == 409 and r.json()["type"] == "recommendation_not_pending"
    listed = (await client.get(BASE, params={"status": "expired"}, headers=token_for(OPS))).json()["data"]
    assert [x["id"] for x in listed] == [first["id"]]

    counts = await recompute(sessionmaker, rec_settings, now=NOW + timedelta(hours=73))
    assert counts["expired"] >= 1
    rows = await recs(sessionmaker, merchant_id=mid, kind="cheaper_route")
    assert [r["status"] for r in rows] == ["expired", "pending"]
    assert rows[1]["id"] != first["id"]


# --- the API: apply, dismiss, tenants --------------------------------------------------------------


@pytest.fixture
async def computed(sessionmaker, rec_settings):
    """Merchant A with a cheaper route and a float runway; merchant B with a cheaper route."""
    a = await new_merchant(sessionmaker)
    b = await new_merchant(sessionmaker)
    await add_payouts(sessionmaker, wire_payouts(a, days=[1, 2, 3], per_day=2, target_after=timedelta(days=7))
                      + wire_payouts(b, days=[1, 2], per_day=2, target_after=timedelta(days=7)))
    await recompute(sessionmaker, rec_settings)
    by = {(r["merchant_id"], r["kind"]): r["id"] for r in await recs(sessionmaker)}
    return {"a": a, "b": b, "a_route": by[(a, "cheaper_route")], "a_float": by[(a, "float_runway")],
            "b_route": by[(b, "cheaper_route")]}


async def action_count(sm, rec_id: str) -> int:
    async with sm() as s:
        return await s.scalar(select(func.count()).select_from(ops_actions).where(
            ops_actions.c.reason.like(f"recommendation {rec_id}:%")))


class TestList:
    async def test_401(self, client):
        assert (await client.get(BASE)).status_code == 401

    async def test_422_for_an_unknown_filter_or_cursor(self, client, token_for):
        assert (await client.get(BASE, params={"kind": "nope"}, headers=token_for(OPS))).status_code == 422
        assert (await client.get(BASE, params={"cursor": "zz"}, headers=token_for(OPS))).status_code == 422

    async def test_filters_and_pages(self, client, token_for, computed):
        r = await client.get(BASE, params={"kind": "cheaper_route", "limit": 1}, headers=token_for(OPS))
        assert r.status_code == 200
        page1 = r.json()
        assert len(page1["data"]) == 1 and page1["next_cursor"]
        page2 = (await client.get(BASE, params={"kind": "cheaper_route", "limit": 1, "cursor": page1["next_cursor"]},
                                  headers=token_for(OPS))).json()
        assert {page1["data"][0]["id"], page2["data"][0]["id"]} == {computed["a_route"], computed["b_route"]}
        mine = (await client.get(BASE, params={"merchant_id": computed["a"]}, headers=token_for(OPS))).json()["data"]
        assert {x["id"] for x in mine} == {computed["a_route"], computed["a_float"]}
        top = (await client.get(BASE, params={"sort": "impact", "status": "pending", "limit": 3},
                                headers=token_for(OPS))).json()["data"]
        assert [x["impact"]["amount_minor"] for x in top] == sorted((x["impact"]["amount_minor"] for x in top),
                                                                    reverse=True)

    async def test_a_merchant_sees_only_its_own(self, client, token_for, computed):
        merchant_a = token_for("merchant_admin", merchant_id=computed["a"])
        listed = (await client.get(BASE, headers=merchant_a)).json()["data"]
        assert {x["id"] for x in listed} == {computed["a_route"], computed["a_float"]}
        assert (await client.get(BASE, params={"merchant_id": computed["b"]}, headers=merchant_a)).status_code == 403
        assert (await client.get(f"{BASE}/{computed['b_route']}", headers=merchant_a)).status_code == 404
        assert (await client.get(f"{BASE}/{computed['a_route']}", headers=merchant_a)).status_code == 200


class TestApply:
    async def test_401_403(self, client, token_for, computed):
        assert (await client.post(f"{BASE}/{computed['a_route']}/apply")).status_code == 401
        merchant_a = token_for("merchant_admin", merchant_id=computed["a"])
        for rid in (computed["a_route"], computed["b_route"]):
            assert (await client.post(f"{BASE}/{rid}/apply", headers=merchant_a)).status_code == 403

    async def test_404(self, client, token_for):
        assert (await client.post(f"{BASE}/rec_nope/apply", headers=token_for(OPS))).status_code == 404

    async def test_apply_creates_exactly_one_action_and_twice_no_second(self, client, token_for, computed,
                                                                          sessionmaker):
        rid = computed["a_route"]
        r = await client.post(f"{BASE}/{rid}/apply", headers=token_for("risk_ops", sub="ops-1"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "applied" and body["action_id"] and body["decided_by"] == "ops-1"
        action = (await client.get(f"/api/v1/ops/actions/{body['action_id']}", headers=token_for(OPS))).json()
        assert action["type"] == "ROUTE_OVERRIDE" and action["status"] == "pending_approval"
        assert action["params"]["merchant_id"] == computed["a"] and action["params"]["connector"] == "bank_ach_2"
        assert action["created_by"] == "ops-1"  # the usual approvals: its creator cannot approve it
        again = await client.post(f"{BASE}/{rid}/apply", headers=token_for("risk_ops", sub="ops-2"))
        assert again.status_code == 200 and again.json()["action_id"] == body["action_id"]
        assert await action_count(sessionmaker, rid) == 1

    async def test_two_applies_racing_create_one_action(self, client, token_for, computed, sessionmaker):
        rid = computed["b_route"]
        first, second = await asyncio.gather(
            client.post(f"{BASE}/{rid}/apply", headers=token_for("risk_ops", sub="ops-1")),
            client.post(f"{BASE}/{rid}/apply", headers=token_for("treasury_ops", sub="ops-2")))
        assert first.status_code == second.status_code == 200, (first.text, second.text)
        assert first.json()["action_id"] == second.json()["action_id"]
        assert await action_count(sessionmaker, rid) == 1

    async def test_an_informational_one_cannot_be_applied(self, client, token_for, computed):
        r = await client.post(f"{BASE}/{computed['a_float']}/apply", headers=token_for(OPS))
        assert r.status_code == 409 and r.json()["type"] == "recommendation_not_applicable"


class TestDismiss:
    async def test_dismiss_then_apply_is_refused_and_recompute_does_not_reopen(self, client, token_for, computed,
                                                                               sessionmaker, rec_settings):
        rid = computed["b_route"]
        assert (await client.post(f"{BASE}/{rid}/dismiss", headers=token_for("merchant_admin",
                                                                            merchant_id=computed["b"]))).status_code == 403
        r = await client.post(f"{BASE}/{rid}/dismiss", headers=token_for(OPS))
        assert r.status_code == 200 and r.json()["status"] == "dismissed"
        r = await client.post(f"{BASE}/{rid}/apply", headers=token_for(OPS))
        assert r.status_code == 409 and r.json()["type"] == "recommendation_not_pending"
        assert await action_count(sessionmaker, rid) == 0
        counts = await recompute(sessionmaker, rec_settings)
        assert counts["suppressed"] >= 1
        assert [x["status"] for x in await recs(sessionmaker, merchant_id=computed["b"], kind="cheaper_route")] == [
            "dismissed"]


# --- the Schedule and the workflow on a real worker -----------------------------------------------


async def test_the_recommendations_schedule_runs_the_workflow_which_opens_them(temporal_client, worker, settings,
                                                                             sessionmaker):
    from tests.polling import wait_until
    from workers.schedules import RECOMMENDATIONS_SCHEDULE_ID, recommendations_schedule
    from core.platform.temporal import upsert_schedule

    mid = await new_merchant(sessionmaker)
    await add_payouts(sessionmaker, wire_payouts(mid, days=[1, 2, 3], per_day=2, target_after=timedelta(days=7)))
    await upsert_schedule(temporal_client, RECOMMENDATIONS_SCHEDULE_ID, recommendations_schedule(settings))
    handle = temporal_client.get_schedule_handle(RECOMMENDATIONS_SCHEDULE_ID)
    try:
        described = await handle.describe()
        assert described.schedule.action.workflow == "RecommendationWorkflow"
        await handle.trigger()
        [rec] = await wait_until(lambda: recs(sessionmaker, merchant_id=mid, kind="cheaper_route"), timeout=30,
                                 interval=0.1, what="the scheduled run's recommendation")
        # the worker's connectors are the sandbox bank's: ACH goes through bank_ach
        assert rec["action_params"]["connector"] == "bank_ach"
        assert rec["impact_minor"] == 6 * (1500 - 25)  # the seeded ACH fee: 25 fixed
        query = f'WorkflowType = "RecommendationWorkflow" AND TaskQueue = "{settings.temporal_task_queue}"'
        [run] = [w async for w in temporal_client.list_workflows(query)]
        result = await temporal_client.get_workflow_handle(run.id, run_id=run.run_id).result()
        assert result["opened"] >= 1  # no result type given: the JSON object
        if os.environ.get("PAYOPS_RECORD_HISTORIES") == "1":  # tests/platform/test_replay.py replays it
            history = await temporal_client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history()
            (Path(__file__).parent.parent / "histories" / "recommendations_run.json").write_text(history.to_json())
    finally:
        await handle.delete()
