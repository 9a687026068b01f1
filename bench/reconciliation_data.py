"""Bench data for reconciliation, made inside PostgreSQL with generate_series (no Python loops).

One reporting day, `n` keys. Left (vima) has keys 1..n. Right (payshack) has the same keys except
every 200th (missing_right), plus n/200 keys of its own (missing_left) so both sides hold n rows;
every 50th key differs in amount by 100 minor units (amount_mismatch), every 70th has another
status (status_mismatch; when not already an amount mismatch), keys 7, 1007, 2007, ... are on the
right twice (duplicate_key). Times spread over the day, the right side a few seconds after the left.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

LOAD_LEFT = """
INSERT INTO transactions (id, source, source_id, client_operation_id, amount_minor, currency, status,
                          payer_email, occurred_at, raw, data_hash)
SELECT nextval('transactions_id_seq'), 'vima', 'v' || i, 'op-' || i, 1000 + (i * 7919) % 100000, 'INR', 'success',
       'payer' || (i % 50000) || '@example.com', $1::timestamptz + make_interval(secs => (i - 1) * 86399.0 / $2),
       '{}'::jsonb, 'bench'
FROM generate_series(1::int8, $2::int8) AS i
"""

LOAD_RIGHT = """
INSERT INTO transactions (id, source, source_id, client_operation_id, amount_minor, currency, status,
                          payer_email, occurred_at, raw, data_hash)
SELECT nextval('transactions_id_seq'), 'payshack', 'p' || i || '-' || copy, 'op-' || i,
       1000 + (i * 7919) % 100000 + CASE WHEN i % 50 = 0 THEN 100 ELSE 0 END, 'INR',
       CASE WHEN i % 70 = 0 THEN 'failed' ELSE 'success' END,
       'payer' || (i % 50000) || '@example.com',
       $1::timestamptz + make_interval(secs => (i - 1) * 86399.0 / $2 + 3),
       '{}'::jsonb, 'bench'
FROM generate_series(1::int8, $2::int8) AS i, generate_series(1, 2) AS copy
WHERE i % 200 <> 0 AND (copy = 1 OR i % 1000 = 7)
UNION ALL
SELECT nextval('transactions_id_seq'), 'payshack', 'px' || j, 'extra-' || j, 500 + j, 'INR', 'success', NULL,
       $1::timestamptz + make_interval(secs => (j - 1) * 86399.0 / ($2 / 200) + 1), '{}'::jsonb, 'bench'
FROM generate_series(1::int8, $2::int8 / 200) AS j
"""


def expected_counts(n: int) -> dict[str, int]:
    """The known truth of the generated day."""
    keys = range(1, n + 1)
    counts = {"matched": 0, "amount_mismatch": 0, "status_mismatch": 0, "missing_right": 0, "duplicate_key": 0}
    for i in keys:
        if i % 200 == 0:
            counts["missing_right"] += 1
        elif i % 1000 == 7:
            counts["duplicate_key"] += 1
        elif i % 50 == 0:
            counts["amount_mismatch"] += 1
        elif i % 70 == 0:
            counts["status_mismatch"] += 1
        else:
            counts["matched"] += 1
    counts["missing_left"] = n // 200
    return counts


async def load_day(conn: asyncpg.Connection, window_start: datetime, n: int) -> None:
    await conn.execute("SELECT ensure_transaction_partitions($1::date, 2)", window_start.date().replace(day=1))
    await conn.execute(LOAD_LEFT, window_start, n)
    await conn.execute(LOAD_RIGHT, window_start, n)
    await conn.execute("ANALYZE transactions")
