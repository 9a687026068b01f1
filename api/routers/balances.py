"""Merchant balances from the ledger."""

from __future__ import annotations

from fastapi import APIRouter, Query

from api.deps import BalancesRead, Session, merchant_scope
from api.schemas.common import BalanceOut, problems
from core.merchants import service as merchant_service
from core.platform.errors import Unprocessable

router = APIRouter(prefix="/balances", tags=["balances"])


@router.get("", response_model=list[BalanceOut], responses=problems(401, 403, 404, 422))
async def get_balances(
    principal: BalancesRead,
    session: Session,
    merchant_id: str | None = Query(default=None, description="required for platform roles"),
):
    """Available and held balances per currency. Merchant users see their own merchant's;
    platform roles name the merchant with `merchant_id`."""
    scope = merchant_scope(principal, merchant_id)
    if scope is None:
        raise Unprocessable("merchant_id is required for platform roles")
    return await merchant_service.get_balances(session, scope)
