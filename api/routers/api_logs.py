"""The API request log: every authenticated request, searchable and paged. A merchant user sees
only its own merchant's requests; platform roles see all (or one merchant's with `merchant_id`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Session, merchant_scope
from api.routers.dashboard import DashboardRead
from api.schemas.api_logs import ApiLogPage
from api.schemas.common import problems
from core.api_logs import service as api_log_service

router = APIRouter(prefix="/api-logs", tags=["api logs"])


@router.get("", response_model=ApiLogPage, responses=problems(401, 403, 422))
async def list_api_logs(
    principal: DashboardRead, session: Session,
    method: Annotated[str | None, Query(pattern="^(GET|POST|PUT|PATCH|DELETE|get|post|put|patch|delete)$")] = None,
    status: Annotated[int | None, Query(ge=100, le=599)] = None,
    route: Annotated[str | None, Query(max_length=255, description="a route template, e.g. /api/v1/payouts")] = None,
    principal_sub: Annotated[str | None, Query(alias="principal", max_length=128,
                                               description="the caller's token subject")] = None,
    from_: Annotated[datetime | None, Query(alias="from", description="inclusive")] = None,
    to: Annotated[datetime | None, Query(description="exclusive")] = None,
    merchant_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
):
    """Requests, newest first, keyset-paginated. Rows hold no bodies and no headers besides the
    idempotency key and request id; they are kept PAYOPS_API_LOG_RETENTION_DAYS days."""
    return await api_log_service.list_api_logs(
        session, merchant_id=merchant_scope(principal, merchant_id), method=method, status=status, route=route,
        principal=principal_sub, at_from=from_, at_to=to, limit=limit, cursor=cursor)
