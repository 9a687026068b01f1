"""Dashboard numbers equal independent SQL over the raw rows, for the platform and for a merchant.

Data is generated in SQL (generate_series) over ~70 days, then partly updated and deleted, so
the statement triggers' insert, update and delete paths all feed the rollups being checked.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from core.dashboards import metrics as dm
from core.ledger import service as ledger
from core.dashboards.rollups import rebuild_rollups

NOW = datetime.now(timezone.utc).replace(minute=17, second=0, microsecond=0)

GENERATE = """
INSERT INTO merchants (id, name, default_currency) VALUES ('m_a', 'A', 'INR'), ('m_b', 'B', 'USD'), ('m_c', 'C', 'INR');
INSERT INTO transactions (source, source_id, client_operation_id, merchant_id, project, amount_minor, currency,
                          fee_minor, status, payer_email, utr, occurred_at, raw, data_hash)
SELECT (ARRAY['vima', 'payshack'])[1 + g % 2], 'src_' || g, 'op_' || g,
       CASE WHEN g % 17 = 0 THEN NULL ELSE (ARRAY['m_a', 'm_b', 'm_c'])[1 + g % 3] END,
       CASE WHEN g % 13 = 0 THEN NULL ELSE (ARRAY['alpha', 'beta'])[1 + (g / 3) % 2] END,
       100 + (g * 7919) % 100000, (ARRAY['INR', 'USD'])[1 + (g / 5) % 2], (g * 31) % 500,
       (ARRAY['success', 'success', 'success', 'failed', 'pending', 'refunded'])[1 + (g * 7) % 6],
       'payer' || (g % 50) || '@example.com', CASE WHEN g % 3 = 0 THEN 'UTR' || g END,
       CAST(:now AS timestamptz) - make_interval(secs => (g * 1237) % (70 * 86400)),
       jsonb_build_object('fraud_flag', g % 23 = 0, 'n', g), md5(g::text)
  FROM generate_series(1, 4000) g;
UPDATE transactions SET status = 'refunded' WHERE id % 29 = 0;
UPDATE transactions SET amount_minor = amount_minor + 5, raw = raw || '{"fraud_flag": true}' WHERE id % 31 = 0;
DELETE FROM transactions WHERE id % 37 = 0;
"""

RAW_AGG = """
    count(*) AS transactions,
    count(*) FILTER (WHERE status IN ('success', 'refunded')) AS succeeded,
    count(*) FILTER (WHERE status = 'failed') AS failed,
    count(*) FILTER (WHERE raw ->> 'fraud_flag' = 'true') AS fraud_flagged,
    coalesce(sum(amount_minor) FILTER (WHERE status IN ('success', 'refunded')), 0) AS gmv,
    coalesce(sum(fee_minor) FILTER (WHERE status IN ('success', 'refunded')), 0) AS fees,
    coalesce(sum(amount_minor) FILTER (WHERE status = 'refunded'), 0) AS refunds
"""


@pytest.fixture
async def data(sessionmaker):
    async with sessionmaker() as session, session.begin():
        for stmt in GENERATE.strip().split(";\n"):
            if stmt.strip():
                await session.execute(text(stmt), {"now": NOW} if ":now" in stmt else {})
        await ledger.fund_merchant(session, "m_a", 500_000, "INR", ref="fund-a-1")
        await ledger.fund_merchant(session, "m_b", 70_000, "USD", ref="fund-b-1")
    return sessionmaker


async def raw(session, where: str, params: dict, group: str = "currency"):
    rows = (await session.execute(text(
        f"SELECT {group}, {RAW_AGG} FROM transactions WHERE {where} GROUP BY {group}"), params)).mappings().all()
    return [dict(r) for r in rows]


def window_where(merchant: str | None) -> str:
    return "occurred_at >= :s AND occurred_at < :e" + (" AND merchant_id = :m" if merchant else "")


@pytest.mark.parametrize("merchant", [None, "m_a"])
@pytest.mark.parametrize("period", ["24h", "7d", "30d"])
async def test_overview_equals_raw_sql(data, merchant, period):
    window = dm.Window.last(dm.PERIODS[period], NOW)
    async with data() as session:
        got = await dm.overview(session, window, dm.Scope(merchant_id=merchant))
        for label, w in (("value", window), ("previous", window.previous)):
            expected = await raw(session, window_where(merchant), {"s": w.start, "e": w.end, "m": merchant})
            totals = {k: sum(r[k] for r in expected) for k in ("transactions", "succeeded", "failed", "fraud_flagged")}
            for k, v in totals.items():
                assert got["kpis"][k][label] == v, (k, label)
            assert got["kpis"]["success_rate"][label] == dm.derive(totals)["success_rate"]
            by_cur = {b["currency"]: b for b in got["by_currency"]}
            for r in expected:
                block = by_cur[r["currency"]]
                assert block["gmv"][label] == r["gmv"]
                assert block["fees"][label] == r["fees"]
                assert block["refunds"][label] == r["refunds"]
                assert block["net_revenue"][label] == r["gmv"] - r["fees"] - r["refunds"]
        assert got["kpis"]["transactions"]["value"] > 0


async def test_overview_float_from_the_ledger(data):
    window = dm.Window.last(timedelta(hours=24), NOW)
    async with data() as session:
        platform = await dm.overview(session, window, dm.Scope())
        mine = await dm.overview(session, window, dm.Scope(merchant_id="m_a"))
    floats = {b["currency"]: b["float_available"] for b in platform["by_currency"]}
    assert floats["INR"]["value"] == 500_000 and floats["USD"]["value"] == 70_000
    assert {b["currency"]: b["float_available"]["value"] for b in mine["by_currency"]}["INR"] == 500_000
    # funded within the window: nothing was available at its start
    assert floats["INR"]["previous"] == 0


@pytest.mark.parametrize("merchant", [None, "m_b"])
@pytest.mark.parametrize("tz", ["UTC", "America/New_York"])
async def test_daily_trends_equal_raw_sql(data, merchant, tz):
    window = dm.Window.last(timedelta(days=30), NOW)
    async with data() as session:
        got = await dm.trends(session, window, dm.Scope(merchant_id=merchant), metric="gmv", granularity="day",
                              tz_name=tz)
        rows = await raw(session, window_where(merchant), {"s": window.start, "e": window.end, "m": merchant, "tz": tz},
                         group="currency, (occurred_at AT TIME ZONE :tz)::date")
    assert got["exact"] is True
    expected = {(r["currency"], r["timezone"].isoformat()): r["gmv"] for r in rows}
    seen = {(s["currency"], p["t"]): p["value"] for s in got["series"] for p in s["points"]}
    for k, v in expected.items():
        assert seen[k] == v, k
    assert sum(seen.values()) == sum(expected.values())


async def test_hourly_trend_of_a_rate_equals_raw_sql(data):
    window = dm.Window.last(timedelta(hours=24), NOW)
    async with data() as session:
        got = await dm.trends(session, window, dm.Scope(), metric="transactions", granularity="hour", tz_name="UTC")
        rows = await raw(session, window_where(None), {"s": window.start, "e": window.end},
                         group="date_trunc('hour', occurred_at, 'UTC')")
    points = got["series"][0]["points"]
    assert len(points) == 24
    expected = {r["date_trunc"]: r["transactions"] for r in rows}
    for p in points:
        assert p["value"] == expected.get(datetime.fromisoformat(p["t"]), 0)


@pytest.mark.parametrize("by", ["project", "merchant", "source", "status", "currency"])
async def test_breakdown_equals_raw_sql(data, by):
    window = dm.Window.last(timedelta(days=30), NOW)
    col = dm.DIMENSIONS[by]
    async with data() as session:
        got = await dm.breakdown(session, window, dm.Scope(), by=by)  # type: ignore[arg-type]
        group = col if col == "currency" else f"{col}, currency"
        rows = await raw(session, window_where(None), {"s": window.start, "e": window.end}, group=group)
    expected = {(r[col] or None, r["currency"]): (r["transactions"], r["gmv"]) for r in rows}
    assert {(i["key"], i["currency"]): (i["transactions"], i["gmv"]) for i in got["items"]} == expected


async def test_merchant_breakdown_and_heatmap_equal_raw_sql(data):
    window = dm.Window.last(timedelta(days=30), NOW)
    async with data() as session:
        got = await dm.heatmap(session, window, dm.Scope(merchant_id="m_c"), metric="transactions",
                               tz_name="Europe/Paris")
        rows = (await session.execute(text("""
            SELECT extract(isodow FROM occurred_at AT TIME ZONE 'Europe/Paris')::int AS w,
                   extract(hour FROM occurred_at AT TIME ZONE 'Europe/Paris')::int AS h, count(*) AS n
              FROM transactions WHERE occurred_at >= :s AND occurred_at < :e AND merchant_id = 'm_c'
             GROUP BY 1, 2"""), {"s": window.start, "e": window.end})).mappings().all()
    expected = {(r["w"], r["h"]): r["n"] for r in rows}
    assert {(c["weekday"], c["hour"]): c["value"] for c in got["cells"] if c["value"]} == expected


async def place_around_local_midnights(session, tz: str, days: int = 5) -> None:
    """Rows a minute before, exactly at and a minute after each recent local midnight of `tz`,
    and at the quarter hours around it: a day built from whole UTC hours would misplace them."""
    await session.execute(text("""
        INSERT INTO transactions (source, source_id, merchant_id, project, amount_minor, currency, fee_minor, status,
                                  occurred_at, raw, data_hash)
        SELECT 'vima', 'edge_' || :tz || '_' || d || '_' || o, 'm_b', 'alpha', 1000 + d * 10 + o, 'INR', 7,
               (ARRAY['success', 'failed', 'refunded'])[1 + (d + o + 100) % 3],
               (date_trunc('day', CAST(:now AS timestamptz) AT TIME ZONE :tz) - make_interval(days => d))
                   AT TIME ZONE :tz + make_interval(mins => o),
               '{}', 'e'
          FROM generate_series(0, :days) d, unnest(ARRAY[-46, -31, -16, -1, 0, 1, 14, 15, 29, 30, 44, 45, 59]) o"""),
        {"tz": tz, "now": NOW, "days": days})


@pytest.mark.parametrize("merchant", [None, "m_b"])
@pytest.mark.parametrize("tz", ["Asia/Kolkata", "Asia/Kathmandu", "Australia/Adelaide", "America/St_Johns"])
async def test_fractional_offset_days_are_exact(data, merchant, tz):
    async with data() as session, session.begin():
        await place_around_local_midnights(session, tz)
    window = dm.Window.last(timedelta(days=30), NOW)
    async with data() as session:
        for metric in ("transactions", "gmv"):
            got = await dm.trends(session, window, dm.Scope(merchant_id=merchant), metric=metric, granularity="day",
                                  tz_name=tz)
            rows = await raw(session, window_where(merchant),
                             {"s": window.start, "e": window.end, "m": merchant, "tz": tz},
                             group="currency, (occurred_at AT TIME ZONE :tz)::date")
            assert got["exact"] is True
            key = (lambda r: (r["currency"], r["timezone"].isoformat())) if metric == "gmv" else \
                (lambda r: (None, r["timezone"].isoformat()))
            expected: dict = {}
            for r in rows:
                expected[key(r)] = expected.get(key(r), 0) + r[metric]
            seen = {(s["currency"], p["t"]): p["value"] for s in got["series"] for p in s["points"] if p["value"]}
            assert seen == {k: v for k, v in expected.items() if v}, metric


@pytest.mark.parametrize("tz", ["Asia/Kolkata", "Asia/Kathmandu"])
async def test_fractional_offset_heatmap_is_exact(data, tz):
    async with data() as session, session.begin():
        await place_around_local_midnights(session, tz)
    window = dm.Window.last(timedelta(days=14), NOW)
    async with data() as session:
        got = await dm.heatmap(session, window, dm.Scope(), metric="transactions", tz_name=tz)
        rows = (await session.execute(text("""
            SELECT extract(isodow FROM occurred_at AT TIME ZONE :tz)::int AS w,
                   extract(hour FROM occurred_at AT TIME ZONE :tz)::int AS h, count(*) AS n
              FROM transactions WHERE occurred_at >= :s AND occurred_at < :e GROUP BY 1, 2"""),
            {"s": window.start, "e": window.end, "tz": tz})).mappings().all()
    assert got["exact"] is True
    expected = {(r["w"], r["h"]): r["n"] for r in rows}
    assert {(c["weekday"], c["hour"]): c["value"] for c in got["cells"] if c["value"]} == expected


def test_edges_of_local_days_and_hours():
    window = dm.Window.of(datetime(2025, 3, 1, tzinfo=timezone.utc), datetime(2025, 3, 4, tzinfo=timezone.utc))
    edges, exact = dm.local_edges(window, dm.zone("Asia/Kolkata"), "day")  # midnight IST = 18:30 UTC
    assert exact and edges == [(datetime(2025, 3, d, 18, tzinfo=timezone.utc), 30) for d in (1, 2, 3)]
    edges, exact = dm.local_edges(window, dm.zone("Asia/Kathmandu"), "day")  # 18:15 UTC
    assert exact and [c for _, c in edges] == [15, 15, 15]
    assert dm.local_edges(window, dm.zone("Europe/Paris"), "hour") == ([], True)
    edges, _ = dm.local_edges(window, dm.zone("America/St_Johns"), "hour")  # -03:30: every hour
    assert len(edges) == 72 and {c for _, c in edges} == {30}
    old = dm.Window.of(datetime(1900, 1, 1, tzinfo=timezone.utc), datetime(1900, 1, 3, tzinfo=timezone.utc))
    assert dm.local_edges(old, dm.zone("Asia/Kolkata"), "day")[1] is False  # local mean time +05:53:28


async def test_payout_rollups_follow_status_changes(data, engine):
    async with data() as session, session.begin():
        await session.execute(text("""
            INSERT INTO payouts (id, merchant_id, idempotency_key, amount_minor, currency, method, priority, status,
                                 beneficiary_encrypted, beneficiary_masked, rail)
            SELECT 'po_' || g, 'm_a', 'k' || g, 1000 * g, 'INR', 'bank_transfer', 'normal', 'pending', '\\x00', '{}',
                   (ARRAY['imps', 'neft'])[1 + g % 2]
              FROM generate_series(1, 12) g"""))
        await session.execute(text("UPDATE payouts SET status = 'settled' WHERE id IN ('po_1', 'po_2', 'po_3')"))
        await session.execute(text("UPDATE payouts SET status = 'dlq' WHERE id = 'po_4'"))
    window = dm.Window.last(timedelta(hours=24), datetime.now(timezone.utc))
    async with data() as session:
        got = await dm.overview(session, window, dm.Scope(merchant_id="m_a", currency="INR"))
        rail = await dm.breakdown(session, window, dm.Scope(), by="rail")
    groups = got["by_currency"][0]["payouts"]
    assert groups["settled"]["count"]["value"] == 3 and groups["settled"]["amount_minor"]["value"] == 6000
    assert groups["dlq"]["count"]["value"] == 1
    assert groups["pending"]["count"]["value"] == 8
    assert sum(i["payouts"] for i in rail["items"]) == 12


async def test_payout_groups_over_long_windows_equal_raw_sql(data):
    async with data() as session, session.begin():
        await session.execute(text("""
            INSERT INTO payouts (id, merchant_id, idempotency_key, amount_minor, currency, method, priority, status,
                                 beneficiary_encrypted, beneficiary_masked, rail, created_at)
            SELECT 'pl_' || g, (ARRAY['m_a', 'm_b'])[1 + g % 2], 'l' || g, 100 + g, 'INR', 'bank_transfer', 'normal',
                   (ARRAY['settled', 'failed', 'dlq', 'submitted', 'held'])[1 + g % 5], '\\x00', '{}', 'imps',
                   CAST(:now AS timestamptz) - make_interval(secs => g * 2311)
              FROM generate_series(1, 2000) g"""), {"now": NOW})
        await session.execute(text("UPDATE payouts SET status = 'settled' WHERE id LIKE 'pl_%' AND status = 'submitted' "
                                   "AND right(id, 1) IN ('1', '2')"))
    for merchant in (None, "m_b"):
        window = dm.Window.last(timedelta(days=30), NOW)
        async with data() as session:
            got = await dm.overview(session, window, dm.Scope(merchant_id=merchant))
            for label, w in (("value", window), ("previous", window.previous)):
                rows = (await session.execute(text(
                    "SELECT status, count(*) AS n, sum(amount_minor) AS a FROM payouts "
                    "WHERE created_at >= :s AND created_at < :e AND (CAST(:m AS text) IS NULL OR merchant_id = :m) "
                    "GROUP BY status"), {"s": w.start, "e": w.end, "m": merchant})).mappings().all()
                by_status = {r["status"]: (r["n"], r["a"]) for r in rows}
                groups = {b["currency"]: b["payouts"] for b in got["by_currency"]}["INR"]
                for group, statuses in dm.PAYOUT_GROUPS.items():
                    n = sum(by_status.get(st, (0, 0))[0] for st in statuses)
                    a = sum(by_status.get(st, (0, 0))[1] for st in statuses)
                    assert (groups[group]["count"][label], groups[group]["amount_minor"][label]) == (n, a), (group, label)


async def test_rebuild_reproduces_the_trigger_maintained_rollups(data, engine):
    async with engine.connect() as conn:
        before = (await conn.execute(text(
            "SELECT day, merchant_id, project, source, currency, status, txn_count, amount_minor, fee_minor, "
            "fraud_count FROM transaction_rollups_daily WHERE txn_count <> 0 ORDER BY 1, 2, 3, 4, 5, 6"))).all()
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE transaction_rollups_hourly SET txn_count = 0, amount_minor = 0"))
        await conn.execute(text("DELETE FROM transaction_rollups_daily"))
    first, last = (NOW - timedelta(days=71)).date(), NOW.date()
    seen: list[date] = []
    result = await rebuild_rollups(engine, first, last, progress=lambda d, n: seen.append(d))
    assert len(seen) == result.days == (last - first).days + 1
    async with engine.connect() as conn:
        after = (await conn.execute(text(
            "SELECT day, merchant_id, project, source, currency, status, txn_count, amount_minor, fee_minor, "
            "fraud_count FROM transaction_rollups_daily WHERE txn_count <> 0 ORDER BY 1, 2, 3, 4, 5, 6"))).all()
        total = (await conn.execute(text("SELECT count(*) FROM transactions"))).scalar_one()
    assert after == before
    assert result.transactions == total


@pytest.mark.parametrize("tz, end, last_day", [
    # 18:15 UTC is midnight in Kathmandu (+05:45): a window ending at 19:00 UTC holds 45 minutes of the 22nd
    ("Asia/Kathmandu", datetime(2026, 11, 21, 19, 0, tzinfo=timezone.utc), "2026-11-22"),
    ("Asia/Kathmandu", datetime(2026, 11, 21, 18, 0, tzinfo=timezone.utc), "2026-11-21"),
    ("Asia/Kolkata", datetime(2026, 11, 21, 19, 0, tzinfo=timezone.utc), "2026-11-22"),  # midnight at 18:30
    ("Asia/Kolkata", datetime(2026, 11, 21, 18, 30, tzinfo=timezone.utc), "2026-11-21"),  # ends at midnight
    ("UTC", datetime(2026, 11, 22, 0, 0, tzinfo=timezone.utc), "2026-11-21"),
])
def test_the_last_daily_bucket_is_the_local_day_of_the_windows_last_instant(tz, end, last_day):
    """Found when the suite ran at 18:22 UTC: the current Kathmandu day had rows in the last
    hour of the window but no bucket, so its transactions were missing from the trend."""
    window = dm.Window(end - timedelta(days=2), end)
    buckets = dm._buckets(window, "day", dm.zone(tz))
    assert buckets[-1].date().isoformat() == last_day
