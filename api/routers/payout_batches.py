"""Payout batches: the files batch rails send at their cutoffs (NACHA, pain.001), for ops.

Mounted before the payouts router so `/payouts/batches` is not read as a payout id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from api.deps import Session, require
from api.schemas.common import problems
from api.schemas.rails import BatchDetail, BatchPage
from core.rails import service as rail_service
from core.platform.auth_tokens import Principal
from core.platform.roles import Permission

router = APIRouter(prefix="/payouts/batches", tags=["payout batches"])

# Batches mix many merchants' payouts: platform roles that read the ledger (finance, treasury,
# ops admin, auditor) see them.
BatchRead = Annotated[Principal, Depends(require(Permission.LEDGER_READ))]


@router.get("", response_model=BatchPage, responses=problems(401, 403, 422))
async def list_batches(
    principal: BatchRead,
    session: Session,
    rail: str | None = None,
    status: str | None = None,
    limit: int = Query(default=50, ge=1, le=200),
    cursor: str | None = None,
):
    """Batches, newest cutoff first: rail, cutoff, status, entry count, totals, control totals."""
    data, next_cursor = await rail_service.list_batches(session, rail=rail, status=status, limit=limit,
                                                        cursor=cursor)
    return {"data": data, "next_cursor": next_cursor}


@router.get("/{batch_id}", response_model=BatchDetail, responses=problems(401, 403, 404))
async def get_batch(batch_id: str, principal: BatchRead, session: Session):
    """One batch with its entries (payout, amount, the bank's outcome per entry)."""
    return await rail_service.get_batch(session, batch_id)


@router.get(
    "/{batch_id}/file",
    responses={200: {"content": {"text/plain": {}, "application/xml": {}},
                     "description": "the file as sent to the bank"}, **problems(401, 403, 404)},
)
async def download_batch_file(batch_id: str, principal: BatchRead, session: Session):
    """The batch's file exactly as it was sent to the bank (NACHA text or pain.001 XML)."""
    name, content, media = await rail_service.batch_file(session, batch_id)
    return Response(content=content, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
