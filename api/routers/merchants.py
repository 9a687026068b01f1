"""Merchants (ops): create, read, fund."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import Authenticated, MerchantsManage, Session, SettingsDep
from api.routers.payouts import IdempotencyKey
from api.schemas.common import problems
from api.schemas.merchants import FundingCreate, FundingOut, MerchantCreate, MerchantOut
from core.merchants import service as merchant_service
from core.platform.errors import NotFound
from core.platform.money import parse_amount

router = APIRouter(prefix="/merchants", tags=["merchants"])


@router.post("", response_model=MerchantOut, status_code=201, responses=problems(401, 403, 409, 422))
async def create_merchant(body: MerchantCreate, principal: MerchantsManage, session: Session):
    """Onboard a merchant. `id` defaults to `mer_` + a random hex id; an existing id is a 409."""
    return await merchant_service.create_merchant(
        session,
        merchant_id=body.id,
        name=body.name,
        default_currency=body.default_currency,
        country=body.country,
        metadata=body.metadata,
    )


@router.get("/{merchant_id}", response_model=MerchantOut, responses=problems(401, 404))
async def get_merchant(merchant_id: str, principal: Authenticated, session: Session):
    """A merchant, with whether it is frozen. Merchant users can read only their own."""
    if not principal.is_platform_user and principal.merchant_id != merchant_id:
        raise NotFound(f"merchant {merchant_id} not found")
    return await merchant_service.get_merchant(session, merchant_id)


@router.post(
    "/{merchant_id}/funding",
    response_model=FundingOut,
    status_code=201,
    responses={200: {"model": FundingOut, "description": "a replay: the original funding"}, **problems(400, 401, 403, 404, 409, 422)},
)
async def fund_merchant(
    merchant_id: str,
    body: FundingCreate,
    principal: MerchantsManage,
    key: IdempotencyKey,
    response: Response,
    session: Session,
    settings: SettingsDep,
):
    """Credit the merchant's available balance (a top-up treasury received). Requires
    `Idempotency-Key`: a replay returns the original answer (200) and never credits twice."""
    status, payload = await merchant_service.fund_merchant(
        session,
        settings,
        merchant_id=merchant_id,
        idempotency_key=key,
        amount_minor=parse_amount(body.amount, body.currency),
        currency=body.currency,
        request=body.model_dump(mode="json"),
    )
    response.status_code = status
    return payload
