"""Exports as CSV or XLSX with the list endpoints' filters, streamed with bounded memory
(see core/exports/files.py), and export jobs for very large ones: an ExportWorkflow writes the file,
the job shows its progress and a download link until the file expires (core/exports/jobs.py).
Tenant-scoped like the lists. docs/exports.md says which to use when."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.routers.dashboard import CurrencyQ, DashboardRead
from api.routers.transactions import TransactionFiltersDep
from api.deps import Session, TemporalDep, merchant_scope
from api.schemas.common import problems
from core.exports import jobs as export_jobs
from core.exports import files as exports
from core.platform.auth_tokens import Principal
from core.platform.errors import Forbidden, Unprocessable, typed

ExportTooLarge = typed(Unprocessable, "export_too_large", "Export too large to stream")

router = APIRouter(prefix="/export", tags=["exports"])

FormatQ = Annotated[str, Query(pattern="^(csv|xlsx)$")]

_FILE_RESPONSES = {200: {"content": {"text/csv": {}, exports.XLSX_MEDIA_TYPE: {}},
                         "description": "the file, streamed"}}


async def _send(request: Request, fmt: str, name: str, header: list[str], stmt: exports.ExportQuery) -> StreamingResponse:
    engine = request.app.state.engine
    settings = request.app.state.settings
    batch = settings.export_batch_rows
    if settings.export_stream_max_rows:
        estimate = await exports.estimate_rows(engine, stmt)
        if estimate > settings.export_stream_max_rows:
            raise ExportTooLarge(
                f"about {estimate:,} rows: above {settings.export_stream_max_rows:,}, run it as an export job",
                extra={"estimated_rows": estimate, "jobs": "/api/v1/export/jobs"})
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    filename = f"{name}-{stamp}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if fmt == "csv":
        return StreamingResponse(exports.csv_stream(engine, header, stmt, batch), media_type="text/csv",
                                 headers=headers)
    path = await exports.build_xlsx(engine, header, stmt, batch, sheet=name)
    return StreamingResponse(exports.file_stream(path), media_type=exports.XLSX_MEDIA_TYPE, headers=headers)


@router.get("/transactions", responses={**_FILE_RESPONSES, **problems(401, 403, 422)})
async def export_transactions(request: Request, principal: DashboardRead, filters: TransactionFiltersDep,
                              format: FormatQ = "csv"):
    """Transactions matching the list's filters, newest first (no raw payloads)."""
    filters.merchant_id = merchant_scope(principal, filters.merchant_id)
    header, stmt = exports.transactions_export(filters)
    return await _send(request, format, "transactions", header, stmt)


@router.get("/payouts", responses={**_FILE_RESPONSES, **problems(401, 403, 422)})
async def export_payouts(
    request: Request, principal: DashboardRead, format: FormatQ = "csv", merchant_id: str | None = None,
    status: str | None = None, currency: CurrencyQ = None,
    created_from: Annotated[datetime | None, Query(description="inclusive")] = None,
    created_to: Annotated[datetime | None, Query(description="exclusive")] = None,
):
    """Payouts, newest first (beneficiary details are never exported)."""
    header, stmt = exports.payouts_export(merchant_id=merchant_scope(principal, merchant_id), status=status,
                                          currency=currency, created_from=created_from, created_to=created_to)
    return await _send(request, format, "payouts", header, stmt)


@router.get("/discrepancies", responses={**_FILE_RESPONSES, **problems(401, 403, 422)})
async def export_discrepancies(
    request: Request, principal: DashboardRead, format: FormatQ = "csv", run_id: str | None = None,
    category: str | None = None,
    created_from: Annotated[datetime | None, Query(description="inclusive")] = None,
    created_to: Annotated[datetime | None, Query(description="exclusive")] = None,
):
    """Reconciliation results other than `matched`. Platform roles only: results span merchants."""
    if principal.is_merchant_user:
        raise Forbidden("reconciliation discrepancies are for platform roles")
    header, stmt = exports.discrepancies_export(run_id=run_id, category=category, created_from=created_from,
                                                created_to=created_to)
    return await _send(request, format, "discrepancies", header, stmt)


# --- export jobs ---------------------------------------------------------------------------------

JOBS_PATH = "/api/v1/export/jobs"


class TransactionExportJob(BaseModel):
    kind: Literal["transactions"]
    format: Literal["csv", "xlsx"] = "csv"
    filters: exports.TransactionExportFilters = Field(default_factory=exports.TransactionExportFilters)


class PayoutExportJob(BaseModel):
    kind: Literal["payouts"]
    format: Literal["csv", "xlsx"] = "csv"
    filters: exports.PayoutExportFilters = Field(default_factory=exports.PayoutExportFilters)


class DiscrepancyExportJob(BaseModel):
    kind: Literal["discrepancies"]
    format: Literal["csv", "xlsx"] = "csv"
    filters: exports.DiscrepancyExportFilters = Field(default_factory=exports.DiscrepancyExportFilters)


ExportJobCreate = Annotated[TransactionExportJob | PayoutExportJob | DiscrepancyExportJob,
                            Field(discriminator="kind")]


class ExportJobOut(BaseModel):
    id: str
    kind: str
    format: str
    status: str = Field(description="queued | running | succeeded | failed | expired")
    merchant_id: str | None
    filters: dict
    requested_by: str
    rows_total: int | None = Field(description="the planner's estimate while running; exact once succeeded")
    rows_written: int
    percent: float | None
    bytes: int | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    download_url: str | None = Field(description="set once succeeded, until the file expires")


def _tenant(principal: Principal) -> str | None:
    return principal.merchant_id if principal.is_merchant_user else None


@router.post("/jobs", status_code=202, response_model=ExportJobOut, responses=problems(401, 403, 422, 503))
async def create_export_job(request: Request, principal: DashboardRead, session: Session, temporal: TemporalDep,
                            body: Annotated[ExportJobCreate, Body()]):
    """Start an export of transactions, payouts or discrepancies (the streamed endpoints' filters)
    written to a file by a worker; poll the job for progress, then follow `download_url`."""
    filters = body.filters
    if body.kind == "discrepancies":
        if principal.is_merchant_user:
            raise Forbidden("reconciliation discrepancies are for platform roles")
    else:
        filters.merchant_id = merchant_scope(principal, filters.merchant_id)  # type: ignore[union-attr]
    job = await export_jobs.create_job(session, temporal, request.app.state.settings, requested_by=principal.sub,
                                       tenant_merchant_id=_tenant(principal), kind=body.kind, fmt=body.format,
                                       filters=filters)
    return export_jobs.job_out(job, JOBS_PATH)


@router.get("/jobs/{job_id}", response_model=ExportJobOut, responses=problems(401, 403, 404))
async def get_export_job(job_id: str, principal: DashboardRead, session: Session, temporal: TemporalDep):
    """Status and progress (rows written of the estimate, live from the workflow while it runs)."""
    job = await export_jobs.get_job(session, job_id, _tenant(principal))
    return export_jobs.job_out(await export_jobs.live_progress(temporal, job), JOBS_PATH)


@router.get("/jobs/{job_id}/download", responses={**_FILE_RESPONSES, **problems(401, 403, 404, 409, 410)})
async def download_export_job(job_id: str, principal: DashboardRead, session: Session):
    """The finished file. 409 while the job is not finished (or failed), 410 once it expired."""
    job = await export_jobs.get_job(session, job_id, _tenant(principal))
    body = export_jobs.open_download(job)
    media = "text/csv" if job["format"] == "csv" else exports.XLSX_MEDIA_TYPE
    return StreamingResponse(body, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="{export_jobs.download_name(job)}"',
        "Content-Length": str(job["bytes"])})
