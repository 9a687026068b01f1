"""Payer country as a dimension (issue 20, item 5): the Vima normaliser keeps a valid ISO 3166-1
alpha-2 code and flags anything else (never failing the record); the sync stores it; migration
0022 backfills it from the raw record by the same rule; `by=country` equals a GROUP BY over the
same rows and keeps the merchant scope."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import asyncpg
import pycountry
import pytest
from alembic import command
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from core.dashboards import metrics as dm
from core.platform.db import alembic_config
from core.sync import store as sync_store
from core.transactions.normalize import NormalizedTransaction, normalize_vima
from tests.dashboards.test_dashboard_metrics import GENERATE, NOW, RAW_AGG

# the oracle: pycountry's list, not the module under test's
ISO = frozenset(c.alpha_2 for c in pycountry.countries)
_MISSING = object()

junk = st.one_of(
    st.none(), st.just(""), st.just(_MISSING),
    st.sampled_from(sorted(ISO)).flatmap(lambda c: st.sampled_from([c, c.lower(), c[0] + c[1].lower()])),
    # storable text (a NUL or a lone surrogate anywhere quarantines the whole record, as before)
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=4), st.text(alphabet="ABCXYZabcßİı é\n", min_size=1, max_size=3),
    st.integers(), st.booleans(), st.lists(st.sampled_from(sorted(ISO)), max_size=2),
    st.sampled_from(["XX", "ZZ", "UK", "EU", " SN", "SN ", "S1", "SEN", "ß", "\u0130N"]),
)


def expected_country(value) -> tuple[str | None, bool]:
    if value is _MISSING or value is None or value == "":
        return None, False
    ok = isinstance(value, str) and len(value) == 2 and value.isascii() and value.isalpha() and value.upper() in ISO
    return (value.upper(), False) if ok else (None, True)


def vima_op(i: int, country, when: datetime) -> dict:
    op = {"operation_id": 80_000_000 + i, "operation_update_id": 1, "complete_amount": "12.34",
          "complete_currency": "USD", "current_status": "success", "created_at": when.isoformat()}
    if country is not _MISSING:
        op["payer_country"] = country
    return op


@settings(max_examples=400, deadline=None)
@given(country=junk, i=st.integers(0, 10**6))
def test_normaliser_keeps_valid_codes_and_flags_junk_without_failing(country, i):
    got = normalize_vima(vima_op(i, country, datetime(2026, 11, 3, 12, tzinfo=timezone.utc)))
    assert isinstance(got, NormalizedTransaction), got  # a country never rejects a record
    assert (got.payer_country, got.payer_country_invalid) == expected_country(country)
    assert got.payer_country is None or got.payer_country in ISO


async def test_sync_store_writes_the_country(pg_conn):
    when = datetime(2026, 11, 3, 12, tzinfo=timezone.utc)
    rows = [normalize_vima(vima_op(i, c, when)) for i, c in enumerate(["sn", "XX", None, "GH", 7])]
    async with pg_conn.transaction():
        counts, rejected = await sync_store.store_page(pg_conn, "vima", rows, [])
    assert counts.inserted == 5 and rejected == []
    stored = {r["source_id"]: r["payer_country"] for r in await pg_conn.fetch(
        "SELECT source_id, payer_country FROM transactions")}
    assert stored == {"80000000": "SN", "80000001": None, "80000002": None, "80000003": "GH", "80000004": None}


# --- migration backfill ---------------------------------------------------------------------------

BACKFILL_VALUES = ["SN", "ci", "Gh", "XX", "UK", "", " SN", "SEN", "ß", "\u0130N", "1A", 12, True, None,
                   ["SN"], {"c": "SN"}, _MISSING, *sorted(ISO)[::7]]



def test_migration_backfills_from_raw_like_the_normaliser(scratch_db):
    cfg = alembic_config(scratch_db)
    command.upgrade(cfg, "0021_w19_bulk_rollups")
    when = datetime(2026, 10, 5, 9, tzinfo=timezone.utc)
    raws = [json.dumps({"n": i} | ({} if v is _MISSING else {"payer_country": v})) for i, v in enumerate(BACKFILL_VALUES)]

    async def seed_and_read(stage: str):
        conn = await asyncpg.connect(scratch_db.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            if stage == "seed":
                await conn.executemany(
                    "INSERT INTO transactions (source, source_id, amount_minor, currency, status, occurred_at, raw, "
                    "data_hash) VALUES ('vima', $1, 100, 'USD', 'success', $2, $3::jsonb, $4)",
                    [(f"s{i}", when + timedelta(minutes=i), r, f"h{i}") for i, r in enumerate(raws)])
                return None
            return {r["source_id"]: r["payer_country"] for r in await conn.fetch(
                "SELECT source_id, payer_country FROM transactions")}
        finally:
            await conn.close()

    asyncio.run(seed_and_read("seed"))
    command.upgrade(cfg, "0022_transaction_country")
    stored = asyncio.run(seed_and_read("read"))
    assert stored == {f"s{i}": expected_country(v)[0] for i, v in enumerate(BACKFILL_VALUES)}
    # the backfilled rows agree with what the normaliser would store for the same records
    for i, v in enumerate(BACKFILL_VALUES):
        assert stored[f"s{i}"] == normalize_vima(vima_op(i, v, when)).payer_country, v


# --- breakdown by country --------------------------------------------------------------------------

COUNTRIES = "UPDATE transactions SET payer_country = (ARRAY['SN', 'CI', 'GH', 'IN', NULL])[1 + id % 5]"


@pytest.fixture
async def data(sessionmaker):
    async with sessionmaker() as session, session.begin():
        for stmt in GENERATE.strip().split(";\n"):
            if stmt.strip():
                await session.execute(text(stmt), {"now": NOW} if ":now" in stmt else {})
        await session.execute(text(COUNTRIES))
    return sessionmaker


def _key(row: dict) -> tuple:
    return (row["key"], row["currency"])


@pytest.mark.parametrize("merchant", [None, "m_a"])
@pytest.mark.parametrize("period", ["24h", "30d"])
async def test_breakdown_by_country_equals_group_by(data, merchant, period):
    window = dm.Window.last(dm.PERIODS[period], NOW)
    async with data() as session:
        got = await dm.breakdown(session, window, dm.Scope(merchant_id=merchant), by="country")
        where = "occurred_at >= :s AND occurred_at < :e" + (" AND merchant_id = :m" if merchant else "")
        expected = (await session.execute(text(
            f"SELECT payer_country AS key, currency, {RAW_AGG} FROM transactions WHERE {where} "
            "GROUP BY payer_country, currency"), {"s": window.start, "e": window.end, "m": merchant})).mappings().all()
    assert got["by"] == "country" and expected
    assert {_key(r) for r in got["items"]} == {(r["key"], r["currency"]) for r in expected}
    assert None in {r["key"] for r in got["items"]}  # rows without a country: one "unknown" group
    by_key = {_key(r): r for r in got["items"]}
    for r in expected:
        item = by_key[(r["key"], r["currency"])]
        for k in ("transactions", "succeeded", "failed", "fraud_flagged", "gmv", "fees", "refunds"):
            assert item[k] == r[k], (r["key"], r["currency"], k)
    gmvs = [i["gmv"] for i in got["items"]]
    assert gmvs == sorted(gmvs, reverse=True)


async def test_breakdown_by_country_over_http_keeps_the_merchant_scope(client, token_for, data):
    end = NOW.replace(minute=0) + timedelta(hours=1)
    params = {"from": (end - timedelta(days=30)).isoformat(), "to": end.isoformat(), "by": "country"}
    mine = await client.get("/api/v1/metrics/breakdown", params=params,
                            headers=token_for("merchant_admin", merchant_id="m_a"))
    assert mine.status_code == 200 and mine.json()["merchant_id"] == "m_a"
    foreign = await client.get("/api/v1/metrics/breakdown", params={**params, "merchant_id": "m_b"},
                               headers=token_for("merchant_admin", merchant_id="m_a"))
    assert foreign.status_code == 403
    async with data() as session:
        n = (await session.execute(text(
            "SELECT count(*) FROM transactions WHERE merchant_id = 'm_a' AND occurred_at >= :s AND occurred_at < :e"),
            {"s": end - timedelta(days=30), "e": end})).scalar_one()
    assert sum(i["transactions"] for i in mine.json()["items"]) == n
    platform = (await client.get("/api/v1/metrics/breakdown", params=params, headers=token_for("ops_admin"))).json()
    assert sum(i["transactions"] for i in platform["items"]) > n
