"""System health as one merchant sees it: its webhook deliveries, its own API requests, payops's
uptime from the `/ready` history, and the rails its payouts used; over 24 h and 7 d."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Session, merchant_scope
from api.routers.dashboard import DashboardRead
from api.schemas.common import problems
from api.schemas.merchant_health import MerchantHealth
from core.health import service as health_service
from core.platform.errors import Unprocessable

router = APIRouter(prefix="/health", tags=["merchant health"])


@router.get("/merchant", response_model=MerchantHealth, responses=problems(401, 403, 422))
async def merchant_health(principal: DashboardRead, session: Session, merchant_id: str | None = None):
    """A merchant user gets its own merchant's figures (naming another is 403); a platform user
    names the merchant with `merchant_id` (422 without it)."""
    scoped = merchant_scope(principal, merchant_id)
    if scoped is None:
        raise Unprocessable("merchant_id is required for a platform user")
    return await health_service.merchant_health(session, scoped)
