"""Exports as CSV or XLSX with the list endpoints' filters, streamed with bounded memory
(see core/exports.py). Tenant-scoped like the lists."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Select

from api.routers.dashboard import CurrencyQ, DashboardRead
from api.routers.transactions import TransactionFiltersDep
from api.deps import merchant_scope
from api.schemas.common import problems
from core import exports
from core.errors import Forbidden

router = APIRouter(prefix="/export", tags=["exports"])

FormatQ = Annotated[str, Query(pattern="^(csv|xlsx)$")]

_FILE_RESPONSES = {200: {"content": {"text/csv": {}, exports.XLSX_MEDIA_TYPE: {}},
                         "description": "the file, streamed"}}


async def _send(request: Request, fmt: str, name: str, header: list[str], stmt: Select) -> StreamingResponse:
    engine = request.app.state.engine
    batch = request.app.state.settings.export_batch_rows
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
