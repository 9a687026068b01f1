"""Recommendations: explainable suggestions with an estimated monthly impact, a confidence and a
suggested ops action. A merchant user sees only its own merchant's; applying creates the ops
action (its approvals and audit as for any action)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import OptionalTemporal, RedisDep, Session, SettingsDep, merchant_scope
from api.routers.dashboard import DashboardRead
from api.routers.ops_actions import OpsCreate
from api.schemas.common import problems
from api.schemas.recommendations import RecommendationOut, RecommendationPage
from core.recommendations import service

router = APIRouter(prefix="/recommendations", tags=["recommendations"])


@router.get("", response_model=RecommendationPage, responses=problems(401, 403, 422))
async def list_recommendations(
    principal: DashboardRead, session: Session,
    kind: Annotated[str | None, Query(pattern="^(cheaper_route|float_runway|failing_connector|batch_instead_of_standard)$")] = None,
    status: Annotated[str | None, Query(pattern="^(pending|applied|dismissed|expired)$")] = None,
    merchant_id: str | None = None,
    sort: Annotated[str, Query(pattern="^(newest|impact)$",
                               description="newest first (paged), or largest impact first (one page)")] = "newest",
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: str | None = None,
):
    """Recommendations, newest first (or by impact). A pending one past its expiry reads as
    expired. Recomputation refreshes a pending recommendation instead of adding a second."""
    return await service.list_recommendations(
        session, merchant_id=merchant_scope(principal, merchant_id), kind=kind, status=status, sort=sort,
        limit=limit, cursor=cursor)


@router.get("/{rec_id}", response_model=RecommendationOut, responses=problems(401, 403, 404))
async def get_recommendation(rec_id: str, principal: DashboardRead, session: Session):
    """One recommendation with its evidence, arithmetic and suggested action."""
    return await service.get_recommendation(session, rec_id, merchant_id=merchant_scope(principal, None))


@router.post("/{rec_id}/apply", response_model=RecommendationOut, responses=problems(401, 403, 404, 409, 422))
async def apply_recommendation(
    rec_id: str, principal: OpsCreate, session: Session, temporal: OptionalTemporal, settings: SettingsDep,
    redis: RedisDep,
):
    """Create the suggested ops action (it then needs its approvals like any other) and link it
    (`action_id`). Applying again returns the same recommendation and action: never a second one.
    409 `recommendation_not_applicable` for an informational one, `recommendation_not_pending`
    once dismissed or expired, `conflicting_action` while another action on the target is open."""
    return await service.apply(session, temporal, settings, redis, rec_id, actor=principal.sub,
                               merchant_id=merchant_scope(principal, None))


@router.post("/{rec_id}/dismiss", response_model=RecommendationOut, responses=problems(401, 403, 404, 409))
async def dismiss_recommendation(rec_id: str, principal: OpsCreate, session: Session):
    """Dismiss it: the same suggestion is not raised again while this one's lifetime lasts.
    409 `recommendation_not_pending` once applied or expired."""
    return await service.dismiss(session, rec_id, actor=principal.sub, merchant_id=merchant_scope(principal, None))
