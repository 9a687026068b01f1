"""Set-based reconciliation SQL: every step is one statement over whole sets, never a loop of rows.

Provider pair (e.g. Vima ↔ PayShack on client_operation_id):

- A shard is the keys whose `hashtext(key) mod shards` is its number; shards run as parallel
  activities and each replaces only its own rows (`DELETE` + `INSERT` in one transaction), so a
  retried or re-run shard is harmless. Every shard reads the whole window (the hash filter is on
  the key): a day is one shard unless it is large (`reconciliation_rows_per_shard`).
- Both sides are read over the run's window widened by a grace period and folded into one row per
  key by a single hash aggregate (count, and the values of the only row when there is one). A key
  belongs to the run when its left row (else its right row) falls inside the window: a pair
  straddling midnight is reported once, on the left side's day, never as two "missing" halves.
- Categories: duplicate_key (several rows share the key on one side), missing_right / missing_left,
  amount_mismatch (other currency, or difference above the pair's tolerance), status_mismatch
  (statuses neither equal nor listed as equivalent for the pair), else matched.
- What is stored: a row per discrepancy; matched keys are counted (the shard's counts, the run's
  summary) but get no row. A day is ~1M keys, nearly all matched, and writing them was most of a
  run's cost. A transaction's own status is derived where it is read: a discrepancy of the run if
  there is one, else matched when the run covered it (core/transactions/queries.py).
- Probable matches pair the run's missing_left with its missing_right on the same amount and
  currency within a time window, scored with time proximity and payer agreement; they are
  reported beside the two missing rows, which stay open: nothing is matched silently.

Payouts ↔ bank statement: see the `STATEMENT_*` statements at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from core.alerts.store import upsert_alert_asyncpg

SHARD_DELETE = "DELETE FROM reconciliation_results WHERE run_id = $1 AND shard = $2"

# One row per key of the shard: its category and, for a discrepancy, what the two sides hold.
# `shard_statement()` writes the discrepancies and returns the count per category. (Streaming
# `COPY (SHARD_SELECT) TO STDOUT` from a second connection into `COPY ... FROM STDIN` was measured
# against an INSERT ... SELECT on 2 cores at 1M x 1M: the binary COPY out and in cost more CPU, ~15 %,
# than the per-row heap inserts they save, and the two backends plus the relay compete for the same cores.)
# $1 run_id, $2 shard, $3 shards, $4 left source, $5 right source, $6 window start, $7 window end,
# $8 the window's start less the grace, $9 tolerance (minor units), $10 tolerance (basis points of
# the left amount), $11 equivalent statuses as 'left>right' strings, $12 the window's end plus the grace
SHARD_COLUMNS = ["run_id", "shard", "category", "match_key", "left_id", "right_id", "amount_diff_minor", "details"]
SHARD_SELECT = """
WITH sides AS (
    -- the bounds widened by the grace come computed ($8, $12): `timestamptz - interval` is only
    -- stable, so it is not folded and was evaluated twice per row; OFFSET 0 keeps the subquery, so
    -- `is_left` is computed once per row, not once per aggregate FILTER below (12 string comparisons)
    SELECT client_operation_id AS k, source = $4 AS is_left, id, amount_minor, currency, status, occurred_at
    FROM transactions
    WHERE source IN ($4, $5) AND client_operation_id IS NOT NULL
      AND occurred_at >= $8::timestamptz AND occurred_at < $12::timestamptz
      AND ($3 = 1 OR (hashtext(client_operation_id) & 2147483647) % $3 = $2)
    OFFSET 0
), per_key AS (
    SELECT k,
           count(*) FILTER (WHERE is_left) AS nl, count(*) FILTER (WHERE NOT is_left) AS nr,
           min(id) FILTER (WHERE is_left) AS lid, min(id) FILTER (WHERE NOT is_left) AS rid,
           min(amount_minor) FILTER (WHERE is_left) AS lamt, min(amount_minor) FILTER (WHERE NOT is_left) AS ramt,
           min(currency COLLATE "C") FILTER (WHERE is_left) AS lcur, min(currency COLLATE "C") FILTER (WHERE NOT is_left) AS rcur,
           min(status COLLATE "C") FILTER (WHERE is_left) AS lst, min(status COLLATE "C") FILTER (WHERE NOT is_left) AS rst,
           min(occurred_at) FILTER (WHERE is_left) AS lat, min(occurred_at) FILTER (WHERE NOT is_left) AS rat
    FROM sides GROUP BY k
), categorized AS (
    SELECT *, CASE
        WHEN nl > 1 OR nr > 1 THEN 'duplicate_key'
        WHEN nr = 0 THEN 'missing_right'
        WHEN nl = 0 THEN 'missing_left'
        WHEN lcur <> rcur OR abs(ramt - lamt) > greatest($9::int8, lamt * $10::int8 / 10000) THEN 'amount_mismatch'
        WHEN lst <> rst AND NOT ((lst || '>' || rst) = ANY($11::text[])) THEN 'status_mismatch'
        ELSE 'matched' END AS category
    FROM per_key
    WHERE coalesce(lat, rat) >= $6::timestamptz AND coalesce(lat, rat) < $7::timestamptz
)
SELECT $1::varchar AS run_id, $2::int4 AS shard, category::varchar, k::varchar AS match_key, lid AS left_id,
       rid AS right_id,
       ramt - lamt AS amount_diff_minor,
       CASE WHEN category = 'matched' THEN '{}'::jsonb ELSE jsonb_strip_nulls(jsonb_build_object(
           'left_count', nl, 'right_count', nr,
           'left_amount_minor', lamt, 'right_amount_minor', ramt, 'left_currency', lcur, 'right_currency', rcur,
           'left_status', lst, 'right_status', rst, 'left_occurred_at', lat, 'right_occurred_at', rat)) END AS details
FROM categorized
"""


def shard_statement() -> str:
    """The shard's one statement: `SHARD_SELECT` read once by an aggregate that keeps each
    discrepancy as its own group and folds every matched key into one counted group; the
    discrepancies are inserted into `reconciliation_results`, the count per category returned
    (rows: category, n). Built at call time from SHARD_SELECT.

    Measured at 1M x 1M (2 shards, 2 cores) against the alternatives: materializing every key's row
    to read it twice (once to insert, once to count) cost ~10-20 % more; gathering the discrepancies
    into one array per category was ~7 % faster but holds them all in the backend's memory (a day
    whose other side never synced: 1M discrepancies, +1.1 GB), where this aggregate spills to disk
    past work_mem."""
    return (
        f"WITH shard_rows AS ({SHARD_SELECT}),\n"
        "grouped AS MATERIALIZED (\n"
        "    SELECT category, CASE WHEN category = 'matched' THEN NULL ELSE match_key END AS match_key,\n"
        "           count(*) AS n, min(left_id) AS left_id, min(right_id) AS right_id,\n"
        "           min(amount_diff_minor) AS amount_diff_minor,\n"
        "           (array_agg(details) FILTER (WHERE category <> 'matched'))[1] AS details\n"
        "    FROM shard_rows GROUP BY 1, 2\n"
        f"), inserted AS (\n    INSERT INTO reconciliation_results ({', '.join(SHARD_COLUMNS)})\n"
        "    SELECT $1, $2, category, match_key, left_id, right_id, amount_diff_minor, details\n"
        "    FROM grouped WHERE category <> 'matched'\n"
        ")\nSELECT category, sum(n)::int8 AS n FROM grouped GROUP BY category  -- the INSERT runs unread, to completion"
    )


# Rows without a key can only be missing on the other side (few; found through the
# (source, client_operation_id) index, which holds NULLs). Shard 0 does them.
# $1 run_id, $2 shard, $3 left source, $4 right source, $5 window start, $6 window end
SHARD_NO_KEY = """
WITH inserted AS (
    INSERT INTO reconciliation_results (run_id, shard, category, match_key, left_id, right_id, details)
    SELECT $1, $2, CASE WHEN source = $3 THEN 'missing_right' ELSE 'missing_left' END, NULL,
           CASE WHEN source = $3 THEN id END, CASE WHEN source = $4 THEN id END,
           jsonb_build_object('reason', 'no matching key',
               CASE WHEN source = $3 THEN 'left_amount_minor' ELSE 'right_amount_minor' END, amount_minor,
               CASE WHEN source = $3 THEN 'left_currency' ELSE 'right_currency' END, currency,
               CASE WHEN source = $3 THEN 'left_status' ELSE 'right_status' END, status,
               CASE WHEN source = $3 THEN 'left_occurred_at' ELSE 'right_occurred_at' END, occurred_at)
    FROM transactions
    WHERE source IN ($3, $4) AND client_operation_id IS NULL
      AND occurred_at >= $5::timestamptz AND occurred_at < $6::timestamptz
    RETURNING category
)
SELECT category, count(*) AS n FROM inserted GROUP BY category
"""

# Every row behind a duplicated key, on both sides, into the result's details (few rows: index).
# $1 run_id, $2 shard, $3 left source, $4 right source, $5 window start, $6 window end, $7 grace seconds
SHARD_DUPLICATE_DETAILS = """
-- the CTEs are MATERIALIZED, computed once whatever the plan: the rows were just written, the table's
-- statistics may say it is empty, and a nested loop then re-ran the grouping per duplicate (3.5 s at 1M)
WITH dup AS MATERIALIZED (
    SELECT id, match_key FROM reconciliation_results
    WHERE run_id = $1 AND shard = $2 AND category = 'duplicate_key' AND match_key IS NOT NULL
), rows AS (
    SELECT dup.id AS result_id, t.source = $3 AS is_left,
           jsonb_build_object('id', t.id, 'source_id', t.source_id, 'amount_minor', t.amount_minor,
                              'currency', t.currency, 'status', t.status, 'occurred_at', t.occurred_at) AS row
    FROM dup JOIN transactions t ON t.client_operation_id = dup.match_key AND t.source IN ($3, $4)
     AND t.occurred_at >= $5::timestamptz - make_interval(secs => $7)
     AND t.occurred_at < $6::timestamptz + make_interval(secs => $7)
), grouped AS MATERIALIZED (
    SELECT result_id,
           coalesce(jsonb_agg(row ORDER BY row->>'id') FILTER (WHERE is_left), '[]'::jsonb) AS left_rows,
           coalesce(jsonb_agg(row ORDER BY row->>'id') FILTER (WHERE NOT is_left), '[]'::jsonb) AS right_rows
    FROM rows GROUP BY result_id
)
UPDATE reconciliation_results r
SET details = r.details || jsonb_build_object('left_rows', g.left_rows, 'right_rows', g.right_rows)
FROM grouped g
-- the target through the discrepancy index too: the rows were just written, the table's statistics
-- may say it is empty, and a plan scanning every result row per group would run for minutes
WHERE r.run_id = $1 AND r.category = 'duplicate_key' AND r.id = g.result_id
"""

# Probable matches among the run's own missing rows. $1 run_id, $2 window seconds, $3 min confidence,
# $4 window start, $5 window end, $6 grace seconds. Score: 0.4 for the same amount and currency,
# up to 0.3 for closeness in time, 0.3 when the payer agrees (e-mail or payer id; 0.15 name only).
PROBABLE_MATCHES = """
WITH missing AS (
    SELECT r.id AS result_id, r.category, coalesce(r.left_id, r.right_id) AS tid
    FROM reconciliation_results r
    WHERE r.run_id = $1 AND r.category IN ('missing_left', 'missing_right') AND r.carried_from_id IS NULL
), rows AS (
    SELECT m.result_id, m.category, t.id, t.amount_minor, t.currency, t.occurred_at,
           lower(t.payer_email) AS email, t.payer_id, lower(t.payer_name) AS name
    FROM missing m CROSS JOIN LATERAL (  -- by primary key, row by row, even with nestloop off: OFFSET 0
        SELECT * FROM transactions t WHERE t.id = m.tid  -- keeps the subquery from being flattened into a
           AND t.occurred_at >= $4::timestamptz - make_interval(secs => $6)  -- hash join over the whole
           AND t.occurred_at < $5::timestamptz + make_interval(secs => $6) OFFSET 0) t  -- window (0.8 s at 1M)
), scored AS (
    -- run with enable_nestloop off (`finalize_run`): the results were just written in this transaction,
    -- so the estimates are guesses, and a nested loop over thousands of missing rows a side costs seconds
    SELECT l.result_id AS left_result, r.result_id AS right_result, l.id AS left_id, r.id AS right_id,
           l.amount_minor, abs(extract(epoch FROM r.occurred_at - l.occurred_at)) AS seconds_apart,
           (l.email IS NOT NULL AND l.email = r.email) OR (l.payer_id IS NOT NULL AND l.payer_id = r.payer_id) AS payer_same,
           (l.name IS NOT NULL AND l.name = r.name) AS name_same
    FROM rows l JOIN rows r ON r.amount_minor = l.amount_minor AND r.currency = l.currency
    WHERE l.category = 'missing_right' AND r.category = 'missing_left'
      AND abs(extract(epoch FROM r.occurred_at - l.occurred_at)) <= $2
), confidence AS (
    SELECT *, round((0.4 + 0.3 * (1 - seconds_apart / greatest($2, 1))
                    + CASE WHEN payer_same THEN 0.3 WHEN name_same THEN 0.15 ELSE 0 END)::numeric, 3) AS score
    FROM scored
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY left_result ORDER BY score DESC, right_id) AS by_left,
              row_number() OVER (PARTITION BY right_result ORDER BY score DESC, left_id) AS by_right
    FROM confidence WHERE score >= $3
), inserted AS (
    INSERT INTO reconciliation_results (run_id, shard, category, match_key, left_id, right_id, amount_diff_minor,
                                        confidence, details)
    SELECT $1, -1, 'probable_match', NULL, left_id, right_id, 0, score,
           jsonb_build_object('left_result_id', left_result, 'right_result_id', right_result,
                              'seconds_apart', seconds_apart, 'payer_same', payer_same, 'name_same', name_same,
                              'amount_minor', amount_minor)
    FROM ranked WHERE by_left = 1 AND by_right = 1
    RETURNING 1
)
SELECT count(*) FROM inserted
"""

# Unresolved discrepancies of earlier runs of the pair move into this run (the copy links back; the
# original is closed as carried_forward), so the open list is always the latest run's.
# $1 run_id, $2 kind, $3 left source, $4 right source, $5 date_from
CARRY_FORWARD = """
WITH open AS (
    SELECT r.* FROM reconciliation_results r JOIN reconciliation_runs run ON run.id = r.run_id
    WHERE run.kind = $2 AND run.left_source = $3 AND run.right_source = $4 AND run.date_to < $5::date
      AND r.run_id <> $1 AND r.resolution IS NULL AND r.category NOT IN ('matched', 'probable_match')
    FOR UPDATE OF r
), copied AS (
    INSERT INTO reconciliation_results (run_id, shard, category, match_key, left_id, right_id, amount_diff_minor,
                                        confidence, carried_from_id, details, note)
    SELECT $1, -2, category, match_key, left_id, right_id, amount_diff_minor, confidence, id,
           details || jsonb_build_object('carried_from_run', run_id, 'first_run', coalesce(details->>'first_run', run_id)), note
    FROM open
    RETURNING carried_from_id
), closed AS (
    UPDATE reconciliation_results r SET resolution = 'carried_forward', resolved_by = 'system', resolved_at = now(),
        note = coalesce(r.note || E'\\n', '') || 'carried into run ' || $1
    FROM open WHERE r.id = open.id
    RETURNING 1
)
SELECT (SELECT count(*) FROM copied) AS carried
"""

# A carried discrepancy whose key now reconciles (late data, corrected record) closes itself.
# $1 run_id, $2 left source, $3 right source, $4 tolerance minor, $5 tolerance bps, $6 equivalents
RECHECK_CARRIED = """
WITH carried AS (
    SELECT id, match_key FROM reconciliation_results  -- carried rows are open discrepancies: their partial index
    WHERE run_id = $1 AND carried_from_id IS NOT NULL AND resolution IS NULL AND category <> 'matched'
      AND match_key IS NOT NULL
), now_rows AS (
    SELECT c.id, count(*) FILTER (WHERE t.source = $2) AS nl, count(*) FILTER (WHERE t.source = $3) AS nr,
           min(t.amount_minor) FILTER (WHERE t.source = $2) AS lamt, min(t.amount_minor) FILTER (WHERE t.source = $3) AS ramt,
           min(t.currency) FILTER (WHERE t.source = $2) AS lcur, min(t.currency) FILTER (WHERE t.source = $3) AS rcur,
           min(t.status) FILTER (WHERE t.source = $2) AS lst, min(t.status) FILTER (WHERE t.source = $3) AS rst,
           min(t.id) FILTER (WHERE t.source = $2) AS lid, min(t.id) FILTER (WHERE t.source = $3) AS rid
    FROM carried c JOIN transactions t ON t.source IN ($2, $3) AND t.client_operation_id = c.match_key
    GROUP BY c.id
), agreeing AS (
    SELECT * FROM now_rows
    WHERE nl = 1 AND nr = 1 AND lcur = rcur AND abs(ramt - lamt) <= greatest($4::int8, lamt * $5::int8 / 10000)
      AND (lst = rst OR (lst || '>' || rst) = ANY($6::text[]))
)
UPDATE reconciliation_results r
SET resolution = 'auto_matched', resolved_by = 'system', resolved_at = now(), left_id = a.lid, right_id = a.rid,
    note = coalesce(r.note || E'\\n', '') || 'matched on re-check: the key now reconciles'
FROM agreeing a WHERE r.run_id = $1 AND r.category <> 'matched' AND r.id = a.id
RETURNING r.id
"""

# A re-run replaced the rows: finance's latest word on each discrepancy is applied again.
REAPPLY_RESOLUTIONS = """
WITH latest AS (
    SELECT DISTINCT ON (category, match_key, CASE WHEN match_key IS NULL THEN left_id END,
                        CASE WHEN match_key IS NULL THEN right_id END)
           category, match_key, left_id, right_id, action, resolution, note, actor, created_at
    FROM reconciliation_resolutions WHERE run_id = $1
    ORDER BY category, match_key, CASE WHEN match_key IS NULL THEN left_id END,
             CASE WHEN match_key IS NULL THEN right_id END, id DESC
)
UPDATE reconciliation_results r
SET resolution = CASE WHEN l.action = 'resolve' THEN l.resolution ELSE r.resolution END,
    resolved_by = CASE WHEN l.action = 'resolve' THEN l.actor ELSE r.resolved_by END,
    resolved_at = CASE WHEN l.action = 'resolve' THEN l.created_at ELSE r.resolved_at END,
    note = l.note
FROM latest l
WHERE r.run_id = $1 AND r.category = l.category
  AND (r.match_key = l.match_key  -- keyed: the same discrepancy even if a row was re-synced
       OR (r.match_key IS NULL AND l.match_key IS NULL AND r.left_id IS NOT DISTINCT FROM l.left_id
           AND r.right_id IS NOT DISTINCT FROM l.right_id))
  AND r.resolution IS NULL
RETURNING r.id
"""

OPEN_DISCREPANCIES = """
SELECT count(*) FROM reconciliation_results WHERE run_id = $1 AND resolution IS NULL AND category <> 'matched'
"""

# Before a run's results are replaced: what it had carried forward is open again in its former run.
UNCARRY = """
UPDATE reconciliation_results r SET resolution = NULL, resolved_by = NULL, resolved_at = NULL
FROM reconciliation_results c
WHERE c.run_id = $1 AND c.category <> 'matched' AND c.carried_from_id IS NOT NULL AND r.id = c.carried_from_id
  AND r.resolution = 'carried_forward' AND r.category <> 'matched'
"""

# The planner's estimate of the window's rows (sizes the shards; shown as progress): EXPLAIN costs
# nothing, where counting 2M rows cost ~0.3 s of a ~2.5 s run. Fed to `EXPLAIN (FORMAT JSON)`.
WINDOW_ROWS = """
SELECT 1 FROM transactions
WHERE source IN ($1, $2) AND occurred_at >= $3::timestamptz AND occurred_at < $4::timestamptz
"""


async def estimate_window_rows(conn: asyncpg.Connection, left_source: str, right_source: str,
                               start: datetime, end: datetime) -> int:
    plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {WINDOW_ROWS}", left_source, right_source, start, end)
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


@dataclass(frozen=True)
class PairRules:
    left_source: str
    right_source: str
    amount_tolerance_minor: int = 0
    amount_tolerance_bps: int = 0
    status_equivalents: tuple[tuple[str, str], ...] = ()
    probable_window_seconds: int = 900
    probable_min_confidence: float = 0.6

    @property
    def equivalents(self) -> list[str]:
        return [f"{left}>{right}" for left, right in self.status_equivalents]


async def match_shard(conn: asyncpg.Connection, *, run_id: str, shard: int, shards: int, rules: PairRules,
                      window_start: datetime, window_end: datetime, grace_seconds: int, replace: bool = True,
                      work_mem: str = "256MB") -> dict[str, int]:
    """Write one shard's discrepancies (replacing what the shard wrote before when `replace`);
    returns its count per category, matched included. Call inside a transaction on `conn` (the
    DELETE and the INSERT commit together, or neither does). `work_mem` (digits and a unit, checked
    by the caller) keeps the hash aggregates in memory."""
    if replace:
        await conn.execute(SHARD_DELETE, run_id, shard)
    await conn.execute(f"SET LOCAL work_mem = '{work_mem}'")
    await conn.execute("SET LOCAL enable_sort = off")  # a sort-based aggregate is several times slower
    # a cached generic plan cannot drop the shard filter for one shard nor see the window's size
    await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
    rows = await conn.fetch(
        shard_statement(),
        run_id, shard, shards, rules.left_source, rules.right_source, window_start, window_end,
        window_start - timedelta(seconds=grace_seconds),
        rules.amount_tolerance_minor, rules.amount_tolerance_bps, rules.equivalents,
        window_end + timedelta(seconds=grace_seconds),
    )
    counts = {r["category"]: int(r["n"]) for r in rows}
    if shard == 0:
        for r in await conn.fetch(SHARD_NO_KEY, run_id, shard, rules.left_source, rules.right_source,
                                  window_start, window_end):
            counts[r["category"]] = counts.get(r["category"], 0) + int(r["n"])
    if counts.get("duplicate_key"):
        await conn.execute(SHARD_DUPLICATE_DETAILS, run_id, shard, rules.left_source, rules.right_source,
                           window_start, window_end, float(grace_seconds))
    return counts


async def finalize_run(conn: asyncpg.Connection, *, run_id: str, kind: str, date_from: Any, rules: PairRules,
                       window_start: datetime, window_end: datetime, grace_seconds: int) -> dict[str, Any]:
    """Run-wide steps after all shards: probable matches, carry-forward, re-check, resolutions."""
    # rows of earlier attempts (probable matches, carried discrepancies: never 'matched', so the
    # discrepancy index finds them without reading the run's matched rows)
    await conn.execute("DELETE FROM reconciliation_results WHERE run_id = $1 AND category <> 'matched' AND shard < 0",
                       run_id)
    await conn.execute("SET LOCAL enable_nestloop = off")
    probable = await conn.fetchval(
        PROBABLE_MATCHES, run_id, float(rules.probable_window_seconds), rules.probable_min_confidence,
        window_start, window_end, float(grace_seconds),
    )
    await conn.execute("SET LOCAL enable_nestloop = on")
    carried = await conn.fetchval(CARRY_FORWARD, run_id, kind, rules.left_source, rules.right_source, date_from)
    rechecked = await conn.fetch(RECHECK_CARRIED, run_id, rules.left_source, rules.right_source,
                                 rules.amount_tolerance_minor, rules.amount_tolerance_bps, rules.equivalents)
    reapplied = await conn.fetch(REAPPLY_RESOLUTIONS, run_id)
    return {"probable_match": int(probable), "carried": int(carried), "auto_matched": len(rechecked),
            "resolutions_reapplied": len(reapplied)}


async def raise_alert(conn: asyncpg.Connection, *, rule: str, severity: str, dedupe_key: str, message: str,
                      data: dict[str, Any]) -> int:
    """Alert on a low match rate; one open alert per (pair, day range), seen again = occurrences + 1."""
    return await upsert_alert_asyncpg(conn, rule=rule, severity=severity, dedupe_key=dedupe_key, message=message,
                                      data=data, refresh=("message", "data"))


# --- the run's row and its pair (the ReconciliationWorkflow's activities) -------------------------


async def get_pair(conn: asyncpg.Connection, left_source: str, right_source: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM reconciliation_pairs WHERE left_source = $1 AND right_source = $2",
                               left_source, right_source)


async def lock_run_started(conn: asyncpg.Connection, run_id: str) -> bool | None:
    """Whether the run already started shards (its row locked); None when there is no such run."""
    return await conn.fetchval("SELECT shards_total > 0 FROM reconciliation_runs WHERE id = $1 FOR UPDATE", run_id)


async def clear_run_results(conn: asyncpg.Connection, run_id: str) -> None:
    """A re-run replaces everything the run wrote (resolutions are re-applied from their log)."""
    await conn.execute(UNCARRY, run_id)
    await conn.execute("DELETE FROM reconciliation_results WHERE run_id = $1", run_id)


async def start_run(conn: asyncpg.Connection, *, run_id: str, kind: str, left_source: str, right_source: str,
                    date_from: Any, date_to: Any, requested_by: str | None, pair_id: Any, workflow_id: str | None,
                    timezone: str, window_start: datetime, window_end: datetime, params_json: str,
                    shards: int) -> None:
    """Record the run as running (a run of the same id starts over: progress, summary, shards done)."""
    await conn.execute(
        """
        INSERT INTO reconciliation_runs (id, kind, left_source, right_source, date_from, date_to, status, progress,
            requested_by, pair_id, workflow_id, timezone, window_start, window_end, params, shards_total,
            shards_done, started_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, 'running', 0, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, '{}', now(), now())
        ON CONFLICT (id) DO UPDATE SET status = 'running', progress = 0, summary = '{}'::jsonb, error = NULL,
            requested_by = coalesce(EXCLUDED.requested_by, reconciliation_runs.requested_by),
            workflow_id = EXCLUDED.workflow_id, timezone = EXCLUDED.timezone,
            window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end, params = EXCLUDED.params,
            shards_total = EXCLUDED.shards_total, shards_done = '{}', started_at = now(), finished_at = NULL,
            updated_at = now()
        """,
        run_id, kind, left_source, right_source, date_from, date_to, requested_by,
        pair_id, workflow_id, timezone, window_start, window_end, params_json, shards,
    )


async def run_window(conn: asyncpg.Connection, run_id: str) -> asyncpg.Record | None:
    """(window_start, window_end, params) of the run; None when there is no such run."""
    return await conn.fetchrow("SELECT window_start, window_end, params FROM reconciliation_runs WHERE id = $1",
                               run_id)


async def relax_commit(conn: asyncpg.Connection) -> None:
    """For the rest of the transaction: a shard's rows are a recomputable result, no need to wait
    for the WAL flush."""
    await conn.execute("SET LOCAL synchronous_commit = off")


async def mark_shard_done(conn: asyncpg.Connection, run_id: str, shard: int) -> None:
    """Add the shard to the run's shards done; progress up to 95 % (finalizing is the rest)."""
    await conn.execute(
        """
        UPDATE reconciliation_runs SET
            shards_done = ARRAY(SELECT DISTINCT unnest(shards_done || $2::int) ORDER BY 1),
            progress = least(0.95, cardinality(ARRAY(SELECT DISTINCT unnest(shards_done || $2::int)))::numeric
                       / greatest(shards_total, 1) * 0.95),
            updated_at = now()
        WHERE id = $1
        """,
        run_id, shard,
    )


async def lock_run(conn: asyncpg.Connection, run_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM reconciliation_runs WHERE id = $1 FOR UPDATE", run_id)


async def open_discrepancies(conn: asyncpg.Connection, run_id: str) -> int:
    return await conn.fetchval(OPEN_DISCREPANCIES, run_id)


async def finish_run(conn: asyncpg.Connection, run_id: str, summary_json: str) -> None:
    await conn.execute(
        "UPDATE reconciliation_runs SET status = 'success', progress = 1, summary = $2::jsonb, finished_at = now(), "
        "updated_at = now() WHERE id = $1",
        run_id, summary_json,
    )


async def fail_run(conn: asyncpg.Connection, run_id: str, error: str) -> str | None:
    """Mark the run failed; its kind (None when there is no such run)."""
    return await conn.fetchval(
        "UPDATE reconciliation_runs SET status = 'error', error = $2, finished_at = now(), updated_at = now() "
        "WHERE id = $1 RETURNING kind", run_id, error,
    )


# --- payouts ↔ bank statement ---------------------------------------------------------------
# Left: the statement's debit lines; right: payouts (match_key = payout id). One statement per run.
# One to one: a line matches at most one payout and a payout at most one line (of any statement);
# the other lines naming an already matched payout are duplicate_key discrepancies.
# Only a payout the bank should have paid (submitted or settled) can be matched: a debit for a
# failed, cancelled, returned (or not yet submitted) payout is a status_mismatch, never reconciled.
STATEMENT_PAYABLE_STATUSES = ("submitted", "settled")

# Reversals first ($1 statement id, $2 run id): a line the bank booked as a reversal is never a
# payment. One naming a payout says the bank undid its debit: a status_mismatch on the payout, which
# is not (or no longer) reconciled; the debit it reverses in the same statement (same reference,
# amount and currency, the other direction) is set aside with it (matched_by 'reversed'), so it is
# neither matched nor reported as a debit without a payout. A reversal naming no payout (the return
# of an incoming credit) is left out of the matching altogether.
STATEMENT_REVERSALS = """
WITH reversed AS (
    SELECT l.id AS line_id, l.line_no, l.amount_minor, l.currency, l.direction, l.booking_date,
           p.id AS payout_id, p.status, p.reconciled_at,
           (SELECT o.id FROM bank_statement_lines o
            WHERE o.statement_id = $1::text AND NOT o.reversal AND o.direction <> l.direction
              AND o.payout_id IS NULL AND lower(btrim(o.end_to_end_id)) = p.id
              AND o.amount_minor = l.amount_minor AND o.currency = l.currency
            ORDER BY o.line_no LIMIT 1) AS original_id
    FROM bank_statement_lines l JOIN payouts p ON p.id = lower(btrim(l.end_to_end_id))
    WHERE l.statement_id = $1::text AND l.reversal
), set_aside AS (
    UPDATE bank_statement_lines o SET payout_id = r.payout_id, matched_by = 'reversed'
    FROM reversed r WHERE o.id IN (r.line_id, r.original_id)
    RETURNING o.id
), unreconciled AS (
    UPDATE payouts p SET reconciled_at = NULL FROM reversed r WHERE p.id = r.payout_id RETURNING p.id
)
INSERT INTO reconciliation_results (run_id, shard, category, match_key, left_id, amount_diff_minor, details)
SELECT $2::text, 0, 'status_mismatch', payout_id, line_id, 0,
       jsonb_strip_nulls(jsonb_build_object(
           'reversal', true, 'reason', 'the bank reversed this payout''s debit: it did not pay',
           'line_amount_minor', amount_minor, 'line_currency', currency, 'booking_date', booking_date,
           'payout_status', status, 'was_reconciled_at', reconciled_at,
           'reversed_line_no', (SELECT line_no FROM bank_statement_lines WHERE id = original_id)))
FROM reversed
"""

# $1 statement id, $2 run id, $3 payable statuses. By end-to-end reference = payout id (what payops
# sends as EndToEndId), read trimmed and case-folded (payout ids are lower case: `po_<hex>`).
STATEMENT_BY_REFERENCE = """
WITH hits AS (
    SELECT l.id AS line_id, l.line_no, p.id AS payout_id, l.amount_minor AS lamt, p.amount_minor AS pamt,
           l.currency AS lcur, p.currency AS pcur, p.reconciled_at, p.status,
           (SELECT o.statement_id FROM bank_statement_lines o  -- matched by a line of another statement
            WHERE o.payout_id = p.id AND o.statement_id <> $1::text AND o.matched_by IS DISTINCT FROM 'reversed'
            LIMIT 1) AS matched_in
    FROM bank_statement_lines l JOIN payouts p ON p.id = lower(btrim(l.end_to_end_id))
    WHERE l.statement_id = $1::text AND l.direction = 'debit' AND NOT l.reversal AND l.payout_id IS NULL
), ranked AS (
    -- the line that agrees (amount and currency) first, then the statement's order
    SELECT *, row_number() OVER (PARTITION BY payout_id ORDER BY (lamt = pamt AND lcur = pcur) DESC, line_no) AS nth
    FROM hits
), categorized AS (
    SELECT *, CASE WHEN nth > 1 OR matched_in IS NOT NULL THEN 'duplicate_key'
                   WHEN NOT (status = ANY($3::text[])) THEN 'status_mismatch'
                   WHEN lamt <> pamt OR lcur <> pcur THEN 'amount_mismatch'
                   ELSE 'matched' END AS category
    FROM ranked
), agreeing AS (
    UPDATE bank_statement_lines l SET payout_id = c.payout_id, matched_by = 'reference'
    FROM categorized c WHERE l.id = c.line_id AND c.category = 'matched'
    RETURNING l.id
), reconciled AS (
    UPDATE payouts p SET reconciled_at = coalesce(p.reconciled_at, now())
    FROM categorized c WHERE p.id = c.payout_id AND c.category = 'matched'
    RETURNING p.id
)
INSERT INTO reconciliation_results (run_id, shard, category, match_key, left_id, amount_diff_minor, details)
SELECT $2::text, 0, category, payout_id, line_id, pamt - lamt,
       jsonb_strip_nulls(jsonb_build_object(
           'matched_by', 'reference', 'line_amount_minor', lamt, 'payout_amount_minor', pamt,
           'line_currency', lcur, 'payout_currency', pcur, 'payout_status', status,
           'already_reconciled_at', reconciled_at, 'matched_in_statement', matched_in,
           'reason', CASE category WHEN 'duplicate_key' THEN 'the payout is already matched to another line'
                                   WHEN 'status_mismatch' THEN 'a debit for a payout that is ' || status END))
FROM categorized
"""

# Lines left after the reference pass, against unreconciled payable payouts of the same amount and
# currency settled (else submitted) within $3 days of the booking date that no line of the
# statement names: a unique pair both ways is a match; several candidates are probable matches for
# finance to pick (the payouts stay reported missing). $1 statement, $2 run, $3 days, $4 payable statuses
STATEMENT_BY_AMOUNT_DATE = """
WITH open_lines AS (
    SELECT l.* FROM bank_statement_lines l
    WHERE l.statement_id = $1::text AND l.direction = 'debit' AND NOT l.reversal AND l.payout_id IS NULL
      AND NOT EXISTS (SELECT 1 FROM reconciliation_results r WHERE r.run_id = $2::text AND r.left_id = l.id)
), candidates AS (
    SELECT l.id AS line_id, p.id AS payout_id, l.amount_minor,
           abs(l.booking_date - coalesce(p.settled_at, p.submitted_at, p.created_at)::date) AS days_apart,
           count(*) OVER (PARTITION BY l.id) AS per_line, count(*) OVER (PARTITION BY p.id) AS per_payout
    FROM open_lines l JOIN payouts p ON p.amount_minor = l.amount_minor AND p.currency = l.currency
    WHERE p.reconciled_at IS NULL AND p.status = ANY($4::text[])
      AND abs(l.booking_date - coalesce(p.settled_at, p.submitted_at, p.created_at)::date) <= $3
      AND NOT EXISTS (SELECT 1 FROM bank_statement_lines o WHERE o.payout_id = p.id)
      AND NOT EXISTS (SELECT 1 FROM reconciliation_results r WHERE r.run_id = $2::text AND r.match_key = p.id)
), unique_pairs AS (
    SELECT * FROM candidates WHERE per_line = 1 AND per_payout = 1
), marked AS (
    UPDATE bank_statement_lines l SET payout_id = u.payout_id, matched_by = 'amount_date'
    FROM unique_pairs u WHERE l.id = u.line_id RETURNING l.id
), reconciled AS (
    UPDATE payouts p SET reconciled_at = now() FROM unique_pairs u WHERE p.id = u.payout_id RETURNING p.id
)
INSERT INTO reconciliation_results (run_id, shard, category, match_key, left_id, amount_diff_minor, confidence, details)
SELECT $2::text, 0, CASE WHEN per_line = 1 AND per_payout = 1 THEN 'matched' ELSE 'probable_match' END, payout_id, line_id, 0,
       CASE WHEN per_line = 1 AND per_payout = 1 THEN NULL
            ELSE round((0.5 + 0.3 * (1 - days_apart::numeric / greatest($3, 1)) + 0.2 / per_line)::numeric, 3) END,
       jsonb_build_object('matched_by', 'amount_date', 'days_apart', days_apart, 'candidates_for_line', per_line,
                          'candidates_for_payout', per_payout, 'amount_minor', amount_minor)
FROM candidates
"""

# What is left: debit lines with no payout, and settled payouts the statement should have shown:
# those of its period, its currencies and (when its account is mapped to connectors) its account's
# connectors. A probable match hides neither side. $1 statement, $2 run, $3 period from, $4 period
# to, $5 currencies, $6 connectors (NULL: not limited by connector)
STATEMENT_UNMATCHED = """
WITH lines AS (
    INSERT INTO reconciliation_results (run_id, shard, category, match_key, left_id, details)
    SELECT $2::text, 0, 'missing_right', l.end_to_end_id, l.id,
           jsonb_strip_nulls(jsonb_build_object('line_amount_minor', l.amount_minor, 'line_currency', l.currency,
               'booking_date', l.booking_date, 'bank_reference', l.bank_reference, 'counterparty', l.counterparty,
               'description', l.description, 'probable', EXISTS (SELECT 1 FROM reconciliation_results r
                   WHERE r.run_id = $2::text AND r.left_id = l.id AND r.category = 'probable_match')))
    FROM bank_statement_lines l
    WHERE l.statement_id = $1::text AND l.direction = 'debit' AND NOT l.reversal AND l.payout_id IS NULL
      AND NOT EXISTS (SELECT 1 FROM reconciliation_results r WHERE r.run_id = $2::text AND r.left_id = l.id
                      AND r.category <> 'probable_match')
    RETURNING 1
), payouts_missing AS (
    INSERT INTO reconciliation_results (run_id, shard, category, match_key, details)
    SELECT $2::text, 0, 'missing_left', p.id,
           jsonb_build_object('payout_amount_minor', p.amount_minor, 'payout_currency', p.currency,
                              'payout_status', p.status, 'settled_at', p.settled_at, 'connector', p.connector,
                              'probable', EXISTS (SELECT 1 FROM reconciliation_results r WHERE r.run_id = $2::text
                                                  AND r.match_key = p.id AND r.category = 'probable_match'))
    FROM payouts p
    WHERE p.reconciled_at IS NULL AND p.status = 'settled'
      AND p.settled_at >= $3::date AND p.settled_at < $4::date + 1
      AND p.currency = ANY($5::text[])
      AND ($6::text[] IS NULL OR p.connector = ANY($6::text[]))
      AND NOT EXISTS (SELECT 1 FROM reconciliation_results r WHERE r.run_id = $2::text AND r.match_key = p.id
                      AND r.category <> 'probable_match')
    RETURNING 1
)
SELECT (SELECT count(*) FROM lines) AS lines_unmatched, (SELECT count(*) FROM payouts_missing) AS payouts_unmatched
"""

STATEMENT_COUNTS = """
SELECT category, count(*) AS n FROM reconciliation_results WHERE run_id = $1 GROUP BY category
"""
