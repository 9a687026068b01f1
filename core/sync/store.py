"""Set-based writes of synced provider data: upserts into the partitioned `transactions`,
quarantine, run history and sync state. Raw SQL on the asyncpg connection: unnest() arrays make
one statement per step whatever the batch size, which is what keeps ingest at thousands of rows/s.

Dedupe is global on (source, source_id) through `transaction_keys` (the partitioned table can
only enforce uniqueness per partition). A changed record (new data_hash) is updated in place;
if its occurred_at moved, the row moves partition: deleted and re-inserted under the same id.

Never back in time: a record older than the stored one (the provider's version, else its
updated time) is skipped, so a page delivered late cannot undo newer data. Never stalled by one
record: `store_page` writes the page in a savepoint and, if the database refuses it, writes the
records one by one, quarantining only those refused, with the database's reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import asyncpg
from redis.asyncio import Redis

from core.transactions.normalize import NormalizedTransaction, Rejected, rejected_from

log = logging.getLogger("payops.sync.store")

TRANSACTION_UPDATES_CHANNEL = "payops:updates:transactions"
SYNC_UPDATES_CHANNEL = "payops:updates:sync"

# (column, postgres array type) in the order the unnest() arrays are passed
_COLUMNS: list[tuple[str, str]] = [
    ("source_id", "text"),
    ("client_operation_id", "text"),
    ("merchant_id", "text"),
    ("project", "text"),
    ("amount_minor", "int8"),
    ("currency", "text"),
    ("fee_minor", "int8"),
    ("status", "text"),
    ("original_status", "text"),
    ("payer_email", "text"),
    ("payer_name", "text"),
    ("payer_id", "text"),
    ("payer_country", "text"),
    ("utr", "text"),
    ("occurred_at", "timestamptz"),
    ("source_updated_at", "timestamptz"),
    ("source_version", "int8"),
    ("raw_json", "text"),
    ("data_hash", "text"),
]
_NAMES = [c for c, _ in _COLUMNS]


def _value_expr(name: str) -> str:
    return "r.raw_json::jsonb" if name == "raw_json" else f"r.{name}"


def _target(name: str) -> str:
    return "raw" if name == "raw_json" else name


_UNNEST = ", ".join(f"${i + 3}::{t}[]" for i, (_, t) in enumerate(_COLUMNS))
_INSERT_SQL = f"""
INSERT INTO transactions (id, source, {", ".join(_target(n) for n in _NAMES)})
SELECT r.id, $1, {", ".join(_value_expr(n) for n in _NAMES)}
FROM unnest($2::int8[], {_UNNEST}) AS r(id, {", ".join(_NAMES)})
"""
_KEYS_SQL = """
INSERT INTO transaction_keys (source, source_id, transaction_id, occurred_at)
SELECT $1, k.source_id, k.id, k.occurred_at FROM unnest($2::text[], $3::int8[], $4::timestamptz[])
    AS k(source_id, id, occurred_at)
"""
_UPDATE_SQL = f"""
UPDATE transactions t SET {", ".join(f"{_target(n)} = {_value_expr(n)}" for n in _NAMES if n not in ("source_id", "occurred_at"))},
    updated_at = now()
FROM unnest($2::int8[], {_UNNEST}) AS r(id, {", ".join(_NAMES)})
WHERE t.id = r.id AND t.occurred_at = r.occurred_at AND t.source = $1
"""
_EXISTING_SQL = """
SELECT k.source_id, k.transaction_id, k.occurred_at, t.data_hash, t.source_version, t.source_updated_at
FROM transaction_keys k
JOIN transactions t ON t.id = k.transaction_id AND t.occurred_at = k.occurred_at
WHERE k.source = $1 AND k.source_id = ANY($2::text[])
"""


@dataclass
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    moved: int = 0  # updated rows whose occurred_at changed (a subset of `updated`)
    unchanged: int = 0
    stale: int = 0  # older than the stored version, skipped (a subset of `unchanged`)
    # inserted / updated per merchant (None: a provider account mapped to no merchant), for the
    # live messages, which each carry their merchant's id
    by_merchant: dict[str | None, dict[str, int]] = field(default_factory=dict)

    def count_merchant(self, merchant_id: str | None, outcome: str, n: int = 1) -> None:
        per = self.by_merchant.setdefault(merchant_id, {"inserted": 0, "updated": 0})
        per[outcome] += n


def is_older(row: NormalizedTransaction, stored_version: int | None, stored_updated_at: datetime | None) -> bool:
    """Is `row` an older provider version than the stored one? The provider's version (update
    cursor) decides when both have one, else the provider's updated time; unknown is not older."""
    if row.source_version is not None and stored_version is not None:
        return row.source_version < stored_version
    if row.source_updated_at is not None and stored_updated_at is not None:
        return row.source_updated_at < stored_updated_at
    return False


def _arrays(rows: list[NormalizedTransaction]) -> list[list[Any]]:
    return [[getattr(r, name) for r in rows] for name in _NAMES]


async def ensure_partitions(conn: asyncpg.Connection, months: set[date]) -> None:
    """Monthly partitions for the batch's months. A month whose rows already sit in the default
    partition cannot get its own partition any more; those rows simply stay in the default."""
    for month in sorted(months):
        if await conn.fetchval("SELECT to_regclass($1)", f"transactions_{month:%Y_%m}") is not None:
            continue
        try:
            async with conn.transaction():  # a savepoint
                await conn.execute("SELECT ensure_transaction_partitions($1, 1)", month)
        except asyncpg.PostgresError as exc:
            log.info("no partition for %s (rows stay in the default partition): %s", month, exc)


async def upsert_transactions(conn: asyncpg.Connection, source: str, rows: list[NormalizedTransaction]) -> UpsertCounts:
    """Insert new records, update changed ones, skip identical ones. Call inside a transaction."""
    counts = UpsertCounts()
    if not rows:
        return counts
    latest: dict[str, NormalizedTransaction] = {}
    for row in rows:  # a record twice in one batch: the newer version wins, else the later one
        seen = latest.get(row.source_id)
        if seen is None or not is_older(row, seen.source_version, seen.source_updated_at):
            latest[row.source_id] = row
    rows = list(latest.values())
    # Writers of one source take turns, so two runs can never both insert the same new key.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('payops-sync:' || $1))", source)
    await ensure_partitions(conn, {r.occurred_at.date().replace(day=1) for r in rows})

    existing = {
        rec["source_id"]: rec
        for rec in await conn.fetch(_EXISTING_SQL, source, [r.source_id for r in rows])
    }
    new: list[NormalizedTransaction] = []
    same_place: list[tuple[int, NormalizedTransaction]] = []
    moved: list[tuple[int, datetime, NormalizedTransaction]] = []
    for row in rows:
        found = existing.get(row.source_id)
        if found is None:
            new.append(row)
        elif found["data_hash"] == row.data_hash:
            counts.unchanged += 1
        elif is_older(row, found["source_version"], found["source_updated_at"]):
            counts.unchanged += 1
            counts.stale += 1
        elif found["occurred_at"] == row.occurred_at:
            same_place.append((found["transaction_id"], row))
        else:
            moved.append((found["transaction_id"], found["occurred_at"], row))

    if new:
        ids = [rec[0] for rec in await conn.fetch(
            "SELECT nextval('transactions_id_seq') FROM generate_series(1, $1)", len(new))]
        await conn.execute(_KEYS_SQL, source, [r.source_id for r in new], ids, [r.occurred_at for r in new])
        await conn.execute(_INSERT_SQL, source, ids, *_arrays(new))
        counts.inserted = len(new)
        for r in new:
            counts.count_merchant(r.merchant_id, "inserted")
    if same_place:
        await conn.execute(_UPDATE_SQL, source, [i for i, _ in same_place], *_arrays([r for _, r in same_place]))
        counts.updated += len(same_place)
        for _, r in same_place:
            counts.count_merchant(r.merchant_id, "updated")
    if moved:
        ids = [i for i, _, _ in moved]
        await conn.execute(
            "DELETE FROM transactions t USING unnest($1::int8[], $2::timestamptz[]) AS o(id, occurred_at) "
            "WHERE t.id = o.id AND t.occurred_at = o.occurred_at",
            ids, [old for _, old, _ in moved],
        )
        await conn.execute(_INSERT_SQL, source, ids, *_arrays([r for _, _, r in moved]))
        await conn.execute(
            "UPDATE transaction_keys k SET occurred_at = m.occurred_at "
            "FROM unnest($2::text[], $3::timestamptz[]) AS m(source_id, occurred_at) "
            "WHERE k.source = $1 AND k.source_id = m.source_id",
            source, [r.source_id for _, _, r in moved], [r.occurred_at for _, _, r in moved],
        )
        counts.updated += len(moved)
        counts.moved = len(moved)
        for _, _, r in moved:
            counts.count_merchant(r.merchant_id, "updated")
    return counts


# --- provider accounts: which merchant a synced transaction belongs to ----------------------


async def assign_merchants(conn: asyncpg.Connection, source: str, rows: list[NormalizedTransaction]) -> None:
    """Set each record's merchant from the `provider_accounts` mapping of (source, project); a
    record of an unmapped project keeps merchant_id NULL (visible to platform users only)."""
    if not rows:
        return
    mapping = {r["project"]: r["merchant_id"] for r in await conn.fetch(
        "SELECT project, merchant_id FROM provider_accounts WHERE source = $1", source)}
    for row in rows:
        row.merchant_id = mapping.get(row.project) if row.project is not None else None


async def list_provider_accounts(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(
        "SELECT source, project, merchant_id, created_by, created_at FROM provider_accounts ORDER BY source, project")]


async def put_provider_account(conn: asyncpg.Connection, *, source: str, project: str, merchant_id: str,
                               actor: str) -> tuple[dict[str, Any], int]:
    """Map (source, project) to a merchant and re-assign the transactions already synced from it.
    Returns the mapping and how many stored transactions changed merchant. Call in a transaction."""
    row = await conn.fetchrow(
        """
        INSERT INTO provider_accounts (source, project, merchant_id, created_by) VALUES ($1, $2, $3, $4)
        ON CONFLICT (source, project) DO UPDATE SET merchant_id = excluded.merchant_id,
            created_by = excluded.created_by, created_at = now()
        RETURNING source, project, merchant_id, created_by, created_at
        """,
        source, project, merchant_id, actor,
    )
    status = await conn.execute(
        "UPDATE transactions SET merchant_id = $3, updated_at = now() "
        "WHERE source = $1 AND project = $2 AND merchant_id IS DISTINCT FROM $3",
        source, project, merchant_id,
    )
    return dict(row), int(status.split()[-1])


async def delete_provider_account(conn: asyncpg.Connection, *, source: str, project: str) -> int:
    """Unmap: the account's stored transactions go back to merchant_id NULL. Returns how many."""
    await conn.execute("DELETE FROM provider_accounts WHERE source = $1 AND project = $2", source, project)
    status = await conn.execute(
        "UPDATE transactions SET merchant_id = NULL, updated_at = now() "
        "WHERE source = $1 AND project = $2 AND merchant_id IS NOT NULL", source, project)
    return int(status.split()[-1])


# What the database refuses because of one record's data (not a lost connection, a deadlock...)
_RECORD_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


async def store_page(conn: asyncpg.Connection, source: str, rows: list[NormalizedTransaction],
                     rejected: list[Rejected]) -> tuple[UpsertCounts, list[Rejected]]:
    """Upsert the page's records; a record the database refuses is added to the rejected ones
    (its reason is the database's) and the rest of the page lands. Call inside a transaction.
    Returns the counts and every rejected record, to quarantine."""
    rejected = list(rejected)
    await assign_merchants(conn, source, rows)
    try:
        async with conn.transaction():  # a savepoint: the whole page at once, the fast path
            return await upsert_transactions(conn, source, rows), rejected
    except _RECORD_ERRORS as exc:
        log.warning("sync %s: a page of %d records was refused (%s); storing them one by one",
                    source, len(rows), exc)
    counts = UpsertCounts()
    for row in rows:
        try:
            async with conn.transaction():
                one = await upsert_transactions(conn, source, [row])
        except _RECORD_ERRORS as exc:
            rejected.append(rejected_from(row, f"cannot be stored: {exc}"))
            continue
        for name in ("inserted", "updated", "moved", "unchanged", "stale"):
            setattr(counts, name, getattr(counts, name) + getattr(one, name))
        for merchant_id, per in one.by_merchant.items():
            for outcome, n in per.items():
                counts.count_merchant(merchant_id, outcome, n)
    return counts, rejected


async def quarantine(conn: asyncpg.Connection, rejected: list[Rejected], run_id: str | None) -> int:
    """Record invalid records with their reason; the same payload seen again counts once."""
    if not rejected:
        return 0
    inserted = await conn.fetch(
        """
        INSERT INTO sync_quarantine (source, source_id, reason, raw, data_hash, run_id)
        SELECT q.source, q.source_id, q.reason, q.raw::jsonb, q.data_hash, $6
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
            AS q(source, source_id, reason, raw, data_hash)
        ON CONFLICT (source, data_hash) DO NOTHING
        RETURNING id
        """,
        [r.source for r in rejected], [r.source_id for r in rejected], [r.reason for r in rejected],
        [r.raw_json for r in rejected], [r.data_hash for r in rejected], run_id,
    )
    return len(inserted)


# --- runs and state ------------------------------------------------------------------------


async def start_run(conn: asyncpg.Connection, *, run_id: str, source: str, mode: str, workflow_id: str | None,
                    params: dict[str, Any]) -> dict[str, Any]:
    """Record the run (idempotent on run_id) and mark the source running; returns its cursors."""
    await conn.execute(
        "INSERT INTO sync_runs (id, source, mode, workflow_id, params) VALUES ($1, $2, $3, $4, $5::jsonb) "
        "ON CONFLICT (id) DO NOTHING",
        run_id, source, mode, workflow_id, json.dumps(params),
    )
    row = await conn.fetchrow(
        """
        INSERT INTO sync_state (source, status, last_run_at, updated_at) VALUES ($1, 'running', now(), now())
        ON CONFLICT (source) DO UPDATE SET status = 'running', last_run_at = now(), updated_at = now()
        RETURNING cursors
        """,
        source,
    )
    return json.loads(row["cursors"]) if isinstance(row["cursors"], str) else dict(row["cursors"])


async def record_batch(
    conn: asyncpg.Connection, *, run_id: str, source: str, cursor: dict[str, Any], fetched: int,
    counts: UpsertCounts, quarantined: int, state_cursors: dict[str, Any] | None, expected_total: int | None,
) -> None:
    """Advance the run's counters and cursor, and the source's totals, with the batch's data."""
    await conn.execute(
        """
        UPDATE sync_runs SET pages = pages + 1, rows_fetched = rows_fetched + $2,
            rows_inserted = rows_inserted + $3, rows_updated = rows_updated + $4,
            rows_unchanged = rows_unchanged + $5, rows_quarantined = rows_quarantined + $6,
            cursor = $7::jsonb, expected_total = coalesce($8, expected_total), updated_at = now()
        WHERE id = $1
        """,
        run_id, fetched, counts.inserted, counts.updated, counts.unchanged, quarantined, json.dumps(cursor),
        expected_total,
    )
    await conn.execute(
        """
        UPDATE sync_state SET records_synced = records_synced + $2, records_quarantined = records_quarantined + $3,
            -- numeric cursors only move forward, even if two runs of one source overlap
            cursors = CASE WHEN $4::jsonb IS NULL THEN cursors ELSE cursors || (
                SELECT jsonb_object_agg(n.key, CASE
                    WHEN jsonb_typeof(n.value) = 'number' AND jsonb_typeof(cursors -> n.key) = 'number'
                    THEN to_jsonb(greatest(n.value::text::numeric, (cursors ->> n.key)::numeric))
                    ELSE n.value END)
                FROM jsonb_each($4::jsonb) AS n) END,
            updated_at = now()
        WHERE source = $1
        """,
        source, counts.inserted + counts.updated, quarantined,
        json.dumps(state_cursors) if state_cursors is not None else None,
    )


async def stored_cursor(conn: asyncpg.Connection, run_id: str) -> Any:
    """The run's stored provider cursor, as the driver returns it (jsonb: text or a mapping), or None."""
    return await conn.fetchval("SELECT cursor FROM sync_runs WHERE id = $1", run_id)


async def finish_run(conn: asyncpg.Connection, *, run_id: str, source: str, status: str,
                     error: str | None) -> dict[str, Any] | None:
    """Close the run and the source's state; returns the run's stored counters."""
    run = await conn.fetchrow(
        "UPDATE sync_runs SET status = $2, error = $3, finished_at = now(), updated_at = now() WHERE id = $1 "
        "RETURNING pages, rows_fetched, rows_inserted, rows_updated, rows_unchanged, rows_quarantined",
        run_id, status, error,
    )
    await conn.execute(
        """
        UPDATE sync_state SET status = CASE WHEN $2 = 'success' THEN 'idle' ELSE 'error' END, error = $3,
            last_success_at = CASE WHEN $2 = 'success' THEN now() ELSE last_success_at END, updated_at = now()
        WHERE source = $1
        """,
        source, status, error,
    )
    return dict(run) if run else None


async def publish(redis: Redis | None, channel: str, message: dict[str, Any]) -> None:
    """Best effort: a live view missing one message must never fail a sync."""
    if redis is None:
        return
    try:
        await redis.publish(channel, json.dumps(message, default=str))
    except Exception as exc:  # noqa: BLE001
        log.warning("could not publish to %s: %s", channel, exc)
