"""A reporting day with known reconciliation truth: every category, duplicates on either side,
tolerance edges, a status equivalence, rows without a key, and pairs either side of midnight in a
non-UTC reporting zone (Asia/Kolkata, UTC+05:30; the day starts at 18:30 UTC the day before)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg

TZ = ZoneInfo("Asia/Kolkata")
DAY = date(2026, 11, 20)
TOLERANCE = 100  # minor units, set on the pair by `install_pair_rules`


def local(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), tzinfo=TZ)


@dataclass
class Row:
    source: str
    key: str | None
    amount: int
    at: datetime
    status: str = "success"
    currency: str = "INR"
    email: str | None = None


@dataclass
class Truth:
    rows: list[Row] = field(default_factory=list)
    expected: dict[str, str] = field(default_factory=dict)  # key -> category in DAY's run
    excluded: set[str] = field(default_factory=set)  # keys that belong to another day
    missing_without_key: int = 0  # missing_left rows with no key

    def pair(self, key: str, category: str, left: list[Row], right: list[Row]) -> None:
        self.rows += left + right
        self.expected[key] = category

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for category in self.expected.values():
            out[category] = out.get(category, 0) + 1
        if self.missing_without_key:
            out["missing_left"] = out.get("missing_left", 0) + self.missing_without_key
        return out

    def discrepancies(self) -> dict[str, str]:
        """The keys a run stores a row for: matched keys are only counted."""
        return {k: c for k, c in self.expected.items() if c != "matched"}

    def discrepancy_rows(self) -> int:
        return sum(n for c, n in self.counts().items() if c != "matched")


def build_day() -> Truth:
    t = Truth()
    noon = local(DAY, 12)
    v, p = "vima", "payshack"
    for i in range(5):
        k = f"m{i}"
        t.pair(k, "matched", [Row(v, k, 1000 + i, noon)], [Row(p, k, 1000 + i, noon + timedelta(seconds=5))])
    t.pair("tol_edge", "matched", [Row(v, "tol_edge", 5000, noon)], [Row(p, "tol_edge", 5000 + TOLERANCE, noon)])
    t.pair("tol_edge_down", "matched", [Row(v, "tol_edge_down", 5000, noon)],
           [Row(p, "tol_edge_down", 5000 - TOLERANCE, noon)])
    t.pair("tol_over", "amount_mismatch", [Row(v, "tol_over", 5000, noon)],
           [Row(p, "tol_over", 5000 + TOLERANCE + 1, noon)])
    t.pair("ccy", "amount_mismatch", [Row(v, "ccy", 5000, noon)], [Row(p, "ccy", 5000, noon, currency="USD")])
    t.pair("status", "status_mismatch", [Row(v, "status", 700, noon)], [Row(p, "status", 700, noon, status="failed")])
    # pending on Vima, success on PayShack: equivalent for this pair
    t.pair("status_eq", "matched", [Row(v, "status_eq", 700, noon, status="pending")],
           [Row(p, "status_eq", 700, noon)])
    t.pair("amount_and_status", "amount_mismatch", [Row(v, "amount_and_status", 700, noon)],
           [Row(p, "amount_and_status", 9700, noon, status="failed")])
    t.pair("only_left", "missing_right", [Row(v, "only_left", 4242, local(DAY, 3))], [])
    t.pair("only_right", "missing_left", [], [Row(p, "only_right", 4343, local(DAY, 4))])
    t.pair("dup_left", "duplicate_key", [Row(v, "dup_left", 100, noon), Row(v, "dup_left", 100, noon)],
           [Row(p, "dup_left", 100, noon)])
    t.pair("dup_right", "duplicate_key", [Row(v, "dup_right", 100, noon)],
           [Row(p, "dup_right", 100, noon), Row(p, "dup_right", 100, noon + timedelta(minutes=1))])
    # either side of midnight: a pair belongs to its left row's day
    t.pair("late_left", "matched", [Row(v, "late_left", 900, local(DAY, 23, 59, 50))],
           [Row(p, "late_left", 900, local(DAY + timedelta(days=1), 0, 0, 20))])
    t.pair("early_left", "matched", [Row(v, "early_left", 901, local(DAY, 0, 0, 5))],
           [Row(p, "early_left", 901, local(DAY - timedelta(days=1), 23, 59, 40))])
    # 01:30 local is still the previous day in UTC; 00:30 local next day is still DAY in UTC
    t.pair("utc_previous_day", "matched", [Row(v, "utc_previous_day", 902, local(DAY, 1, 30))],
           [Row(p, "utc_previous_day", 902, local(DAY, 1, 30))])
    for key, at in (("next_local_day", local(DAY + timedelta(days=1), 0, 30)),
                    ("prev_local_day", local(DAY - timedelta(days=1), 23, 59, 50))):
        t.rows += [Row(v, key, 903, at), Row(p, key, 903, at + timedelta(seconds=30))]
        t.excluded.add(key)
    # the left row of DAY's last second and a right row the next day, 2 hours later: past the grace
    t.pair("past_grace", "missing_right", [Row(v, "past_grace", 904, local(DAY, 23, 0))], [])
    t.rows.append(Row(p, "past_grace", 904, local(DAY + timedelta(days=1), 1, 30)))
    # a probable match: different keys, same amount, a minute apart, same payer
    t.pair("prob_l", "missing_right", [Row(v, "prob_l", 7777, local(DAY, 15), email="Asha@Example.com")], [])
    t.pair("prob_r", "missing_left", [], [Row(p, "prob_r", 7777, local(DAY, 15, 1), email="asha@example.com")])
    # a PayShack row without an order id: missing on the left, no key
    t.rows.append(Row(p, None, 1111, local(DAY, 9)))
    t.missing_without_key = 1
    return t


async def install_pair_rules(conn: asyncpg.Connection, *, tolerance: int = TOLERANCE,
                             threshold: float | None = None) -> None:
    await conn.execute(
        "UPDATE reconciliation_pairs SET amount_tolerance_minor = $1, status_equivalents = $2::jsonb, "
        "probable_window_seconds = 900, probable_min_confidence = 0.6, match_rate_threshold = $3 "
        "WHERE id = 'vima:payshack'",
        tolerance, '[["pending", "success"]]', threshold,
    )


async def insert_rows(conn: asyncpg.Connection, rows: list[Row]) -> None:
    months = {r.at.astimezone(TZ).date().replace(day=1) for r in rows} | {DAY.replace(day=1)}
    for month in sorted(months):
        await conn.execute("SELECT ensure_transaction_partitions($1, 2)", month - timedelta(days=1))
        await conn.execute("SELECT ensure_transaction_partitions($1, 1)", month)
    await conn.execute(
        """
        INSERT INTO transactions (id, source, source_id, client_operation_id, amount_minor, currency, status,
                                  payer_email, occurred_at, raw, data_hash)
        SELECT nextval('transactions_id_seq'), r.source, r.source || '-' || nextval('transactions_id_seq'), r.key,
               r.amount, r.currency, r.status, r.email, r.at, '{}'::jsonb, 'test'
        FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
            AS r(source, key, amount, currency, status, email, at)
        """,
        [r.source for r in rows], [r.key for r in rows], [r.amount for r in rows], [r.currency for r in rows],
        [r.status for r in rows], [r.email for r in rows], [r.at for r in rows],
    )
