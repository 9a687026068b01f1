"""The unified transactions list (filters, search, keyset pagination, sort) and detail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, and_, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from core.platform import pagination
from core.platform.errors import NotFound
from core.platform.tables import reconciliation_results, reconciliation_runs, transactions

Sort = Literal["-occurred_at", "occurred_at", "-amount_minor", "amount_minor"]

LIST_COLUMNS = [
    transactions.c.id, transactions.c.source, transactions.c.source_id, transactions.c.client_operation_id,
    transactions.c.merchant_id, transactions.c.project, transactions.c.amount_minor, transactions.c.currency,
    transactions.c.fee_minor, transactions.c.status, transactions.c.original_status, transactions.c.payer_email,
    transactions.c.payer_name, transactions.c.utr, transactions.c.occurred_at, transactions.c.updated_at,
]


@dataclass
class TransactionFilters:
    merchant_id: str | None = None
    source: str | None = None
    project: str | None = None
    status: str | None = None
    currency: str | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None
    amount_minor_min: int | None = None
    amount_minor_max: int | None = None
    q: str | None = None  # exact id / source id / client operation id / UTR / payer email

    def conditions(self) -> list[Any]:
        t = transactions.c
        out: list[Any] = []
        for name in ("merchant_id", "source", "project", "status", "currency"):
            value = getattr(self, name)
            if value is not None:
                out.append(getattr(t, name) == value)
        if self.occurred_from is not None:
            out.append(t.occurred_at >= self.occurred_from)
        if self.occurred_to is not None:
            out.append(t.occurred_at < self.occurred_to)
        if self.amount_minor_min is not None:
            out.append(t.amount_minor >= self.amount_minor_min)
        if self.amount_minor_max is not None:
            out.append(t.amount_minor <= self.amount_minor_max)
        if self.q:
            q = self.q.strip()
            alternatives = [t.source_id == q, t.client_operation_id == q, t.utr == q]
            if "@" in q:
                alternatives = [func.lower(t.payer_email) == q.lower()]
            elif q.isdigit() and len(q) < 19:
                alternatives.append(t.id == int(q))
            out.append(or_(*alternatives))
        return out


def _sort_column(sort: Sort):
    return transactions.c.amount_minor if sort.endswith("amount_minor") else transactions.c.occurred_at


def encode_cursor(sort: Sort, row: dict[str, Any]) -> str:
    value = row["amount_minor"] if sort.endswith("amount_minor") else row["occurred_at"].isoformat()
    return pagination.encode_cursor({"s": sort, "v": value, "id": row["id"]})


def decode_cursor(sort: Sort, cursor: str) -> tuple[Any, int]:
    def parse(data: dict) -> tuple[Any, int]:
        if data["s"] != sort:
            raise ValueError("sort changed")
        value = int(data["v"]) if sort.endswith("amount_minor") else datetime.fromisoformat(data["v"])
        return value, int(data["id"])

    return pagination.decode_cursor(cursor, parse, message="invalid cursor (it belongs to another sort, or was altered)")


def list_statement(filters: TransactionFilters, *, sort: Sort = "-occurred_at", cursor: str | None = None,
                   limit: int | None = None, columns: list[Any] | None = None) -> Select:
    col = _sort_column(sort)
    desc = sort.startswith("-")
    stmt = select(*(columns or LIST_COLUMNS)).where(*filters.conditions())
    if cursor:
        value, last_id = decode_cursor(sort, cursor)
        key = tuple_(col, transactions.c.id)
        stmt = stmt.where(key < tuple_(value, last_id) if desc else key > tuple_(value, last_id))
    order = [col.desc(), transactions.c.id.desc()] if desc else [col.asc(), transactions.c.id.asc()]
    stmt = stmt.order_by(*order)
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt


async def list_transactions(session: AsyncSession, filters: TransactionFilters, *, sort: Sort,
                            cursor: str | None, limit: int) -> dict[str, Any]:
    rows = [dict(r) for r in (await session.execute(
        list_statement(filters, sort=sort, cursor=cursor, limit=limit + 1))).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": rows, "next_cursor": encode_cursor(sort, rows[-1]) if more and rows else None}


async def get_transaction(session: AsyncSession, transaction_id: int, *, merchant_id: str | None) -> dict[str, Any]:
    """The transaction with its raw provider payload and its reconciliation results, if any."""
    stmt = select(transactions).where(transactions.c.id == transaction_id)
    if merchant_id is not None:
        stmt = stmt.where(transactions.c.merchant_id == merchant_id)
    row = (await session.execute(stmt)).mappings().first()
    if row is None:
        raise NotFound(f"transaction {transaction_id} not found")
    out = dict(row)
    out.pop("data_hash", None)
    r, run = reconciliation_results.c, reconciliation_runs.c
    cols = (r.id, r.run_id, r.category, r.match_key, r.left_id, r.right_id, r.amount_diff_minor, r.resolution,
            r.resolved_at, r.created_at, run.kind, run.left_source, run.right_source)
    mine = or_(r.left_id == transaction_id, r.right_id == transaction_id)
    # discrepancies through their partial b-trees; a stored matched row (bank-statement runs, and
    # provider-pair runs written before they stored discrepancies only; not indexed by left/right id,
    # see migration 0008) within the runs whose window could hold this transaction (BRIN on run_id);
    # then the provider-pair runs' matches, derived (`_matched_by_runs`)
    runs = (await session.execute(
        select(run.id, run.kind, run.status, run.left_source, run.right_source, run.window_start, run.window_end,
               run.params, run.started_at, run.finished_at).where(
            or_(run.left_source == row["source"], run.right_source == row["source"]),
            or_(run.window_start.is_(None),
                and_(run.window_start <= row["occurred_at"] + timedelta(days=1),
                     run.window_end > row["occurred_at"] - timedelta(days=1))))
    )).mappings().all()
    candidate_runs = [x["id"] for x in runs]
    results = []
    for where in (and_(r.category != "matched", mine),
                  and_(r.category == "matched", r.run_id.in_(candidate_runs), mine) if candidate_runs else None):
        if where is not None:
            results += (await session.execute(
                select(*cols).join(reconciliation_runs, reconciliation_runs.c.id == r.run_id).where(where)
                .order_by(r.created_at.desc(), r.id.desc()).limit(20))).mappings().all()
    results = [dict(x) for x in results]
    stored_runs = {x["run_id"] for x in results}
    results += await _matched_by_runs(session, row, [x for x in runs if x["id"] not in stored_runs])
    results = sorted(results, key=lambda x: (x["created_at"], x["id"] or 0), reverse=True)[:20]
    out["reconciliation"] = {
        "status": results[0]["category"] if results else "unreconciled",
        "results": results,
    }
    return out


async def _matched_by_runs(session: AsyncSession, txn: Any, runs: list[Any]) -> list[dict[str, Any]]:
    """Which of `runs` (the transaction's candidate runs without a stored result for it) matched it,
    as result entries. A provider-pair run stores a row per discrepancy only
    (core/reconciliation/store.py), so a match is derived: the run finished, the transaction's key falls
    in the run's window (its left row's time), each side holds exactly one row for the key, neither
    row changed since the run started, and the run reported no discrepancy for either row. Such an
    entry has no result id (`id` is null)."""
    key = txn["client_operation_id"]
    if key is None:
        return []  # a keyless row is always a stored discrepancy (missing on the other side)
    out = []
    for r in runs:
        if r["kind"] != "provider_pair" or r["status"] != "success" or r["window_start"] is None:
            continue
        grace = timedelta(seconds=float(((r["params"] or {}).get("rules") or {}).get("grace_seconds", 0)))
        t = transactions.c
        rows = (await session.execute(
            select(t.id, t.source, t.amount_minor, t.occurred_at, t.updated_at)
            .where(t.source.in_((r["left_source"], r["right_source"])), t.client_operation_id == key,
                   t.occurred_at >= r["window_start"] - grace, t.occurred_at < r["window_end"] + grace)
        )).mappings().all()
        left = [x for x in rows if x["source"] == r["left_source"]]
        right = [x for x in rows if x["source"] == r["right_source"]]
        if len(left) != 1 or len(right) != 1 or txn["id"] not in (left[0]["id"], right[0]["id"]):
            continue
        if not r["window_start"] <= left[0]["occurred_at"] < r["window_end"]:
            continue  # the key belongs to the run of its left row's day
        if r["started_at"] is None or any(x["updated_at"] > r["started_at"] for x in (left[0], right[0])):
            continue  # not the rows the run compared
        res = reconciliation_results.c
        reported = await session.scalar(
            select(func.count()).select_from(reconciliation_results)
            .where(res.run_id == r["id"], res.category != "matched",
                   or_(res.left_id == left[0]["id"], res.right_id == right[0]["id"])))
        if reported:
            continue
        out.append({
            "id": None, "run_id": r["id"], "category": "matched", "match_key": key,
            "left_id": left[0]["id"], "right_id": right[0]["id"],
            "amount_diff_minor": right[0]["amount_minor"] - left[0]["amount_minor"],
            "resolution": None, "resolved_at": None, "created_at": r["finished_at"],
            "kind": r["kind"], "left_source": r["left_source"], "right_source": r["right_source"],
        })
    return out
