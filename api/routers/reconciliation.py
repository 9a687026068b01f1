"""Reconciliation: provider-pair runs, the day's summary, discrepancies (list, export, resolve) and
bank statements matched against payouts."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import OptionalTemporal, Session, SettingsDep, TemporalDep, require
from api.schemas.common import problems
from api.schemas.reconciliation import (
    DiscrepancyOut,
    DiscrepancyPage,
    ResolveBody,
    RunBody,
    RunOut,
    RunStarted,
    ScheduleOut,
    StatementOut,
    SummaryOut,
)
from core.reconciliation import service
from core.platform.auth_tokens import Principal
from core.platform.errors import Forbidden, Unprocessable
from core.platform.roles import Permission

router = APIRouter(prefix="/reconciliation", tags=["reconciliation"])

ReconManage = Annotated[Principal, Depends(require(Permission.RECONCILIATION_MANAGE))]


def _reader(principal: Annotated[Principal, Depends(require(Permission.LEDGER_READ))]) -> Principal:
    """Finance, auditors and admins read reconciliation; it is platform data, never a merchant's."""
    if principal.is_merchant_user:
        raise Forbidden("reconciliation is platform information")
    return principal


ReconRead = Annotated[Principal, Depends(_reader)]


def _filters(run_id: str | None = None, date_: Annotated[date | None, Query(alias="date")] = None,
             category: Annotated[list[str] | None, Query()] = None,
             state: Annotated[str, Query(pattern="^(open|resolved|all)$")] = "open",
             kind: Annotated[str | None, Query(pattern="^(provider_pair|payouts_statement)$")] = None,
             match_key: str | None = None, min_abs_amount_diff: Annotated[int | None, Query(ge=0)] = None) -> list:
    return service.discrepancy_filters(run_id=run_id, day=date_, categories=category, state=state, kind=kind,
                                       match_key=match_key, min_abs_amount_diff=min_abs_amount_diff)


Filters = Annotated[list, Depends(_filters)]


@router.post("/run", response_model=RunStarted, status_code=202, responses=problems(401, 403, 422, 503))
async def start_run(body: RunBody, principal: ReconManage, session: Session, temporal: TemporalDep,
                    settings: SettingsDep):
    """Reconcile `left_source` against `right_source` over `date_from`..`date_to` (days in the
    reporting time zone). The same pair and dates again replaces that run's results; while it runs,
    the running one is returned. Watch it with `GET /reconciliation/runs/{run_id}`."""
    return await service.start_run(session, temporal, settings, left_source=body.left_source,
                                   right_source=body.right_source, date_from=body.date_from, date_to=body.date_to,
                                   requested_by=principal.sub, shards=body.shards)


@router.get("/runs/{run_id}", response_model=RunOut, responses=problems(401, 403, 404))
async def get_run(run_id: str, principal: ReconRead, session: Session,
                  temporal: OptionalTemporal):
    """A run: status, progress (row and live query), shards, and its summary (counts per category,
    match rate, carried-in discrepancies, alert)."""
    return await service.get_run(session, temporal, run_id)


@router.get("/summary", response_model=SummaryOut, responses=problems(401, 403, 422))
async def get_summary(principal: ReconRead, session: Session, date_: Annotated[date, Query(alias="date")]):
    """Every run covering `date` (provider pairs and bank statements), the day's totals per
    category, its match rate and how many discrepancies are still open."""
    return await service.summary_for_day(session, date_)


@router.get("/schedule", response_model=ScheduleOut, responses=problems(401, 403, 503))
async def get_schedule(principal: ReconRead, temporal: OptionalTemporal, settings: SettingsDep):
    """The daily reconciliation Schedule of the default pair, from Temporal: paused or not, and when
    its next runs start (each reconciles the day before, in the reporting time zone)."""
    return await service.schedule_info(temporal, settings)


@router.get("/discrepancies", response_model=DiscrepancyPage, responses=problems(401, 403, 422))
async def list_discrepancies(principal: ReconRead, session: Session, where: Filters,
                             limit: Annotated[int, Query(ge=1, le=500)] = 100, cursor: str | None = None):
    """Discrepancies newest first (open ones by default). Filters: `run_id`, `date`, `category`
    (repeatable), `state` (open/resolved/all), `kind`, `match_key`, `min_abs_amount_diff`.
    Keyset pagination: pass `next_cursor` back as `cursor`."""
    return await service.list_discrepancies(session, where=where, cursor=cursor, limit=limit)


@router.get("/discrepancies/export", responses={**problems(401, 403, 422), 200: {
    "content": {"text/csv": {}, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}},
    "description": "the discrepancies matching the filters, streamed"}})
async def export_discrepancies(request: Request, principal: ReconRead, where: Filters,
                               format: Annotated[str, Query(pattern="^(csv|xlsx)$")] = "csv"):
    """The same filters as the list, every matching row, as CSV or XLSX (streamed: read in keyset
    pages; XLSX written by openpyxl's write-only mode to a temporary file)."""
    sessionmaker = request.app.state.sessionmaker
    if format == "csv":
        return StreamingResponse(_csv_chunks(sessionmaker, where), media_type="text/csv",
                                 headers={"Content-Disposition": 'attachment; filename="discrepancies.csv"'})
    return StreamingResponse(
        _xlsx_chunks(sessionmaker, where),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": 'attachment; filename="discrepancies.xlsx"'},
    )


def _cell(value: Any) -> Any:
    if isinstance(value, dict):
        return json.dumps(value, default=str, sort_keys=True)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


async def _csv_chunks(sessionmaker, where: list):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(service.EXPORT_COLUMNS)
    async for batch in service.stream_discrepancies(sessionmaker, where):
        for row in batch:
            writer.writerow([_cell(row.get(c)) for c in service.EXPORT_COLUMNS])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


async def _xlsx_chunks(sessionmaker, where: list):
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("discrepancies")
    sheet.append(list(service.EXPORT_COLUMNS))
    async for batch in service.stream_discrepancies(sessionmaker, where):
        for row in batch:
            value = [_cell(row.get(c)) for c in service.EXPORT_COLUMNS]
            sheet.append([v.replace(tzinfo=None) if hasattr(v, "tzinfo") and v.tzinfo else v for v in value])
    with tempfile.TemporaryFile() as spool:
        workbook.save(spool)
        spool.seek(0)
        while chunk := spool.read(64 * 1024):
            yield chunk


@router.post("/discrepancies/{result_id}/resolve", response_model=DiscrepancyOut,
             responses=problems(401, 403, 404, 409, 422))
async def resolve_discrepancy(result_id: int, body: ResolveBody, principal: ReconManage, session: Session):
    """Resolve a discrepancy (a resolution and why), annotate it (a note), or reopen it. Who and
    when are recorded, every call is kept in the resolution log, and a re-run keeps them.
    Confirming a probable match (`confirmed_match`) also resolves the two missing rows it pairs."""
    return await service.resolve_discrepancy(session, result_id, actor=principal.sub, action=body.action,
                                             resolution=body.resolution, note=body.note)


_STATEMENT_BODY = {"requestBody": {"required": True, "description": "the statement file, as the bank sent it", "content": {
    "text/csv": {"schema": {"type": "string"}},
    "application/xml": {"schema": {"type": "string"}},
    "text/plain": {"schema": {"type": "string"}, "description": "SWIFT MT940"},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}}}


@router.post("/statements", response_model=StatementOut, status_code=201, responses=problems(401, 403, 413, 422),
             openapi_extra=_STATEMENT_BODY)
async def upload_statement(request: Request, principal: ReconManage, session: Session, settings: SettingsDep,
                           format: Annotated[str | None, Query(pattern="^(csv|camt053|mt940)$")] = None,
                           filename: Annotated[str | None, Query(max_length=255)] = None,
                           decimal_separator: Annotated[str | None, Query(
                               pattern="^[.,]$", description="a CSV statement's decimal separator; without it (or "
                               "its account's setting) a CSV amount with a comma is refused as ambiguous")] = None,
                           account: Annotated[str | None, Query(
                               max_length=64, description="the statement's account (a CSV file does not say it; "
                               "camt.053 and MT940 must agree)")] = None):
    """Upload a bank statement as the request body (`text/csv` separated by `,` or `;`, camt.053
    `application/xml`, or a SWIFT MT940 file, recognised by its leading `:20:`/`{1:` block; `format`
    overrides the guess). Every statement of the file is read (several camt.053 `<Stmt>`, several
    MT940 messages); its control totals and balances (camt.053 `TxsSummry`, `OPBD`/`CLBD`; MT940
    `:60F:`/`:62F:`) must agree with its entries, else 422 `statement_totals_mismatch`. A CSV amount
    with a comma needs `decimal_separator` (422 `statement_amount_ambiguous` otherwise).
    Debit lines are matched one to one to payouts: by end-to-end reference (the payout id, trimmed
    and case-insensitive; MT940's is the EREF in `:86:`, else the `:61:` customer reference), then
    by amount and date. A second line for the same payout is a `duplicate_key`; a line for a failed,
    cancelled or returned payout a `status_mismatch` (not reconciled). A reversal (camt.053
    `RvslInd`, MT940 `RD`/`RC`) is never a payment: one naming a payout is a `status_mismatch`
    ("the bank reversed this payout's debit") and the payout is not, or no longer, reconciled; the
    debit it reverses in the same statement is set aside with it. Matched payouts get
    `reconciled_at`. Unmatched lines, and settled payouts of the statement's period, currencies and
    account (its connectors) missing from it, are reported as discrepancies. A statement with no
    entries covers its closing balance's day; a CSV with no line says no day and is refused. The
    same file again returns the stored result."""
    content = await request.body()
    if not content:
        raise Unprocessable("empty statement")
    return await service.upload_statement(session, settings, content, fmt=format, filename=filename,
                                          uploaded_by=principal.sub, decimal_separator=decimal_separator,
                                          account=account)
