"""Exports of transactions, payouts and reconciliation discrepancies as CSV or XLSX, streamed with
bounded memory whatever the row count.

Rows come from a server-side cursor on a connection of the export's own (not the request's
session: a streamed body outlives the handler), `batch_rows` at a time. CSV is written and sent
batch by batch. XLSX cannot be sent before it is complete (it is a zip), so it is built with
openpyxl's write-only mode — rows go straight to a temporary file, never held in memory — in a
thread, then the file is streamed and deleted.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from core.platform.tables import payouts, reconciliation_results, reconciliation_runs, transactions
from core.transactions.queries import TransactionFilters, list_statement

Format = Literal["csv", "xlsx"]
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# what an export streams: built here from a list's filters, passed on by the API and the activity
ExportQuery = Select

TRANSACTION_COLUMNS = ["id", "source", "source_id", "client_operation_id", "merchant_id", "project", "amount_minor",
                       "currency", "fee_minor", "status", "original_status", "payer_email", "payer_name", "utr",
                       "occurred_at", "updated_at"]
PAYOUT_COLUMNS = ["id", "merchant_id", "amount_minor", "currency", "fee_minor", "method", "priority", "rail",
                  "connector", "status", "failure_code", "bank_payment_id", "created_at", "submitted_at",
                  "settled_at", "updated_at"]
DISCREPANCY_COLUMNS = ["id", "run_id", "kind", "category", "match_key", "left_id", "right_id", "amount_diff_minor",
                       "resolution", "resolved_by", "resolved_at", "created_at"]


def transactions_export(filters: TransactionFilters) -> tuple[list[str], Select]:
    cols = [transactions.c[name] for name in TRANSACTION_COLUMNS]
    return TRANSACTION_COLUMNS, list_statement(filters, sort="-occurred_at", columns=cols)


def payouts_export(*, merchant_id: str | None, status: str | None, currency: str | None,
                   created_from: datetime | None, created_to: datetime | None) -> tuple[list[str], Select]:
    p = payouts.c
    conds = []
    if merchant_id is not None:
        conds.append(p.merchant_id == merchant_id)
    if status is not None:
        conds.append(p.status == status)
    if currency is not None:
        conds.append(p.currency == currency)
    if created_from is not None:
        conds.append(p.created_at >= created_from)
    if created_to is not None:
        conds.append(p.created_at < created_to)
    stmt = select(*(p[c] for c in PAYOUT_COLUMNS)).where(*conds).order_by(p.created_at.desc(), p.id.desc())
    return PAYOUT_COLUMNS, stmt


def discrepancies_export(*, run_id: str | None, category: str | None,
                         created_from: datetime | None, created_to: datetime | None) -> tuple[list[str], Select]:
    r = reconciliation_results.c
    conds = [r.category != "matched"]
    if run_id is not None:
        conds.append(r.run_id == run_id)
    if category is not None:
        conds.append(r.category == category)
    if created_from is not None:
        conds.append(r.created_at >= created_from)
    if created_to is not None:
        conds.append(r.created_at < created_to)
    cols = [reconciliation_runs.c.kind if c == "kind" else r[c] for c in DISCREPANCY_COLUMNS]
    stmt = (select(*cols).join(reconciliation_runs, reconciliation_runs.c.id == r.run_id)
            .where(*conds).order_by(r.id))
    return DISCREPANCY_COLUMNS, stmt


class TransactionExportFilters(BaseModel):
    """The transactions list's filters (api/routers/transactions.py), as an export job stores them."""

    model_config = ConfigDict(extra="forbid")
    merchant_id: str | None = Field(None, max_length=64)
    source: str | None = Field(None, max_length=32)
    project: str | None = Field(None, max_length=64)
    status: Literal["success", "failed", "pending", "refunded"] | None = None
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    occurred_from: datetime | None = Field(None, description="inclusive")
    occurred_to: datetime | None = Field(None, description="exclusive")
    amount_minor_min: int | None = Field(None, ge=0)
    amount_minor_max: int | None = Field(None, ge=0)
    q: str | None = Field(None, max_length=320)


class PayoutExportFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    merchant_id: str | None = Field(None, max_length=64)
    status: str | None = Field(None, max_length=24)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    created_from: datetime | None = Field(None, description="inclusive")
    created_to: datetime | None = Field(None, description="exclusive")


class DiscrepancyExportFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_id: str | None = Field(None, max_length=128)
    category: str | None = Field(None, max_length=32)
    created_from: datetime | None = Field(None, description="inclusive")
    created_to: datetime | None = Field(None, description="exclusive")


Kind = Literal["transactions", "payouts", "discrepancies"]
FILTER_MODELS: dict[str, type[BaseModel]] = {"transactions": TransactionExportFilters,
                                             "payouts": PayoutExportFilters,
                                             "discrepancies": DiscrepancyExportFilters}


def export_statement(kind: str, filters: BaseModel | dict[str, Any]) -> tuple[list[str], Select]:
    """Header and query of an export of `kind`: the same builders the streamed endpoints use."""
    f = FILTER_MODELS[kind].model_validate(filters if isinstance(filters, dict) else filters.model_dump())
    if isinstance(f, TransactionExportFilters):
        return transactions_export(TransactionFilters(**f.model_dump()))
    if isinstance(f, PayoutExportFilters):
        return payouts_export(**f.model_dump())
    return discrepancies_export(**f.model_dump())


async def estimate_rows(engine: AsyncEngine, stmt: Select) -> int:
    """The planner's row estimate (no scan): what an export will roughly write."""
    sql, args = _compile(stmt)
    async with engine.connect() as sa_conn:
        raw = await sa_conn.get_raw_connection()
        plan = await raw.driver_connection.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    doc = json.loads(plan) if isinstance(plan, (str, bytes)) else plan  # the engine may decode json itself
    return int(doc[0]["Plan"]["Plan Rows"])


def _compile(stmt: Select) -> tuple[str, list[Any]]:
    """The statement as asyncpg SQL ($n placeholders) and its parameters, in order."""
    compiled = stmt.compile(dialect=postgresql.asyncpg.dialect(paramstyle="numeric_dollar"))
    params = compiled.construct_params()
    order = compiled.positiontup or []
    return str(compiled), [params[name] for name in order]


async def stream_rows(engine: AsyncEngine, stmt: Select, batch_rows: int) -> AsyncIterator[list[tuple]]:
    sql, args = _compile(stmt)
    async with engine.connect() as sa_conn:
        raw = await sa_conn.get_raw_connection()
        conn = raw.driver_connection
        async with conn.transaction(readonly=True):
            cursor = await conn.cursor(sql, *args)
            while True:
                batch = await cursor.fetch(batch_rows)
                if not batch:
                    return
                yield [tuple(rec) for rec in batch]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula is quoted (CSV injection)."""
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_START) else value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


OnBatch = Callable[[int], Awaitable[None]]


async def csv_stream(engine: AsyncEngine, header: list[str], stmt: Select, batch_rows: int,
                     on_batch: OnBatch | None = None) -> AsyncIterator[bytes]:
    """`on_batch(rows)` runs after each batch is encoded (export jobs count and report progress)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    async for batch in stream_rows(engine, stmt, batch_rows):
        writer.writerows([[_cell(v) for v in row] for row in batch])
        if on_batch is not None:
            await on_batch(len(batch))
        yield buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode()


async def build_xlsx(engine: AsyncEngine, header: list[str], stmt: Select, batch_rows: int, sheet: str,
                     *, path: str | None = None, on_batch: OnBatch | None = None) -> str:
    """Write the workbook to `path` (default: a temporary file the caller deletes); returns its path."""
    from openpyxl import Workbook  # why: heavy; loaded by XLSX exports only

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet)
    ws.append(header)

    def write(batch: list[tuple]) -> None:
        for row in batch:
            ws.append([_xlsx_cell(v) for v in row])

    async for batch in stream_rows(engine, stmt, batch_rows):
        await asyncio.to_thread(write, batch)
        if on_batch is not None:
            await on_batch(len(batch))
    if path is None:
        fd, path = tempfile.mkstemp(prefix="payops-export-", suffix=".xlsx")
        os.close(fd)
    try:
        await asyncio.to_thread(wb.save, path)
    except BaseException:
        os.unlink(path)
        raise
    return path


def _xlsx_cell(value: Any) -> Any:
    if isinstance(value, datetime):  # Excel has no time zones: UTC
        return value if value.tzinfo is None else value.astimezone(timezone.utc).replace(tzinfo=None)
    return _cell(value)


async def file_stream(path: str, chunk: int = 1 << 16, *, delete: bool = True) -> AsyncIterator[bytes]:
    try:
        with open(path, "rb") as fh:
            while data := await asyncio.to_thread(fh.read, chunk):
                yield data
    finally:
        if delete:
            os.unlink(path)
