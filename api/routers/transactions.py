"""The unified transactions from providers: a filtered, searchable, keyset-paginated list, and
one transaction with its raw payload and reconciliation status. Tenant-scoped."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.routers.dashboard import CurrencyQ, DashboardRead
from api.deps import Session, merchant_scope
from api.schemas.common import problems
from api.schemas.dashboard import TransactionDetail, TransactionPage
from core.transactions import queries as tq

router = APIRouter(prefix="/transactions", tags=["transactions"])

StatusQ = Annotated[str | None, Query(pattern="^(success|failed|pending|refunded)$")]


def transaction_filters(
    merchant_id: str | None = None, source: str | None = None, project: str | None = None,
    status: StatusQ = None, currency: CurrencyQ = None,
    occurred_from: Annotated[datetime | None, Query(description="inclusive")] = None,
    occurred_to: Annotated[datetime | None, Query(description="exclusive")] = None,
    amount_minor_min: Annotated[int | None, Query(ge=0)] = None,
    amount_minor_max: Annotated[int | None, Query(ge=0)] = None,
    q: Annotated[str | None, Query(max_length=320, description="exact transaction id, provider id, client "
                                                               "operation id, UTR or payer email")] = None,
) -> tq.TransactionFilters:
    return tq.TransactionFilters(merchant_id, source, project, status, currency, occurred_from, occurred_to,
                                 amount_minor_min, amount_minor_max, q)


TransactionFiltersDep = Annotated[tq.TransactionFilters, Depends(transaction_filters)]


@router.get("", response_model=TransactionPage, responses=problems(401, 403, 422))
async def list_transactions(
    principal: DashboardRead, session: Session, filters: TransactionFiltersDep,
    sort: Annotated[str, Query(pattern="^-?(occurred_at|amount_minor)$")] = "-occurred_at",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
):
    """Transactions, newest first by default; `sort` by occurred_at or amount_minor (prefix `-`
    for descending). Merchant users see only their own."""
    filters.merchant_id = merchant_scope(principal, filters.merchant_id)
    page = await tq.list_transactions(session, filters, sort=sort, cursor=cursor, limit=limit)  # type: ignore[arg-type]
    return {"data": page["items"], "next_cursor": page["next_cursor"]}


@router.get("/{transaction_id}", response_model=TransactionDetail, responses=problems(401, 403, 404))
async def get_transaction(transaction_id: int, principal: DashboardRead, session: Session):
    """One transaction with its raw provider payload and its reconciliation status: the category
    of the latest reconciliation result that references it, or `unreconciled`. A provider-pair run
    stores its discrepancies only; its match of this transaction is listed with `id` null."""
    return await tq.get_transaction(session, transaction_id, merchant_id=merchant_scope(principal, None))
