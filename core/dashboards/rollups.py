"""Rebuilding the dashboard rollups from the raw rows, one UTC day per transaction.

The triggers of migration 0007_dashboards keep the rollups current as data arrives; a rebuild
is for repair (a rule change, a restore, rows loaded with triggers disabled). Each day is
recomputed under a SHARE lock on `transactions` and `payouts`: writers wait for that day's
rebuild (a fraction of a second) instead of racing it, so a rebuild never loses a concurrent
write nor counts it twice. Reads are not blocked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_DIMS = "merchant_id, project, source, currency, status"
# an hour's sums over its first 15/30/45 minutes (migration 0010_exports), for fractional-offset zones
_MEASURES = (("txn_count", "1"), ("amount_minor", "amount_minor"), ("fee_minor", "fee_minor"), ("fraud_count", "fraud"))
QUARTER_COLUMNS = [f"{m}_lt{q}" for m, _ in _MEASURES for q in (15, 30, 45)]
_QUARTER_SUMS = ", ".join(f"sum(CASE WHEN utc_minute < {q} THEN {e} ELSE 0 END)"
                          for _, e in _MEASURES for q in (15, 30, 45))

_STEPS = [
    "LOCK TABLE transactions, payouts IN SHARE MODE",
    "DELETE FROM transaction_rollups_hourly WHERE bucket >= :s AND bucket < :e",
    "DELETE FROM transaction_rollups_daily WHERE day = :d",
    "DELETE FROM payout_rollups_hourly WHERE bucket >= :s AND bucket < :e",
    "DELETE FROM payout_rollups_daily WHERE day = :d",
    f"""INSERT INTO transaction_rollups_hourly (bucket, {_DIMS}, txn_count, amount_minor, fee_minor, fraud_count,
                                            {", ".join(QUARTER_COLUMNS)})
        SELECT date_trunc('hour', occurred_at, 'UTC'), coalesce(merchant_id, ''), coalesce(project, ''), source,
               currency, status, count(*), sum(amount_minor), sum(fee_minor), sum(fraud), {_QUARTER_SUMS}
          FROM (SELECT *, dashboard_fraud_flag(raw) AS fraud,
                       extract(minute FROM occurred_at AT TIME ZONE 'UTC') AS utc_minute
                  FROM transactions WHERE occurred_at >= :s AND occurred_at < :e) t
         GROUP BY 1, 2, 3, 4, 5, 6""",
    f"""INSERT INTO transaction_rollups_daily (day, {_DIMS}, txn_count, amount_minor, fee_minor, fraud_count)
        SELECT :d, {_DIMS}, sum(txn_count), sum(amount_minor), sum(fee_minor), sum(fraud_count)
          FROM transaction_rollups_hourly WHERE bucket >= :s AND bucket < :e GROUP BY {_DIMS}""",
    """INSERT INTO payout_rollups_hourly (bucket, merchant_id, currency, rail, status, payout_count, amount_minor,
                                         fee_minor)
        SELECT date_trunc('hour', created_at, 'UTC'), merchant_id, currency, coalesce(rail, ''), status, count(*),
               sum(amount_minor), sum(fee_minor)
          FROM payouts WHERE created_at >= :s AND created_at < :e GROUP BY 1, 2, 3, 4, 5""",
    """INSERT INTO payout_rollups_daily (day, merchant_id, currency, rail, status, payout_count, amount_minor, fee_minor)
        SELECT :d, merchant_id, currency, rail, status, sum(payout_count), sum(amount_minor), sum(fee_minor)
          FROM payout_rollups_hourly WHERE bucket >= :s AND bucket < :e GROUP BY 2, 3, 4, 5""",
]


@dataclass
class RebuildResult:
    days: int
    transactions: int


async def rebuild_rollups(engine: AsyncEngine, first: date, last: date,
                          progress: Callable[[date, int], None] | None = None) -> RebuildResult:
    """Recompute the rollups of UTC days first..last (inclusive)."""
    if last < first:
        raise ValueError("--to is before --from")
    day, done, counted = first, 0, 0
    while day <= last:
        start = datetime.combine(day, time(), tzinfo=timezone.utc)
        params = {"s": start, "e": start + timedelta(days=1), "d": day}
        async with engine.begin() as conn:
            for sql in _STEPS:
                await conn.execute(text(sql), params)
            n = (await conn.execute(text(
                "SELECT coalesce(sum(txn_count), 0) FROM transaction_rollups_daily WHERE day = :d"), params)).scalar_one()
        counted += int(n)
        done += 1
        if progress is not None:
            progress(day, int(n))
        day += timedelta(days=1)
    return RebuildResult(days=done, transactions=counted)
