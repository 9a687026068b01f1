"""The merchant portal's API: the activity feed, ops "view as" sessions, and the provider-account
→ merchant mapping that gives synced transactions their merchant (docs/merchant_portal.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from api.deps import Authenticated, Session, SettingsDep, merchant_scope, require
from api.routers.dashboard import DashboardRead
from api.routers.sync import SyncManage
from api.schemas.common import problems
from api.schemas.portal import (
    ActivityPage,
    ProviderAccount,
    ProviderAccountList,
    ProviderAccountPut,
    ViewAsGranted,
    ViewAsSession,
    ViewAsSessionList,
    ViewAsStart,
)
from core.merchants.service import get_merchant
from core.platform.auth_tokens import Principal
from core.platform.db import driver_connection
from core.platform.roles import Permission
from core.portal import service as portal_service
from core.sync import store as sync_store

router = APIRouter(tags=["merchant portal"])

ViewAs = Annotated[Principal, Depends(require(Permission.VIEW_AS))]
Source = Literal["vima", "payshack"]


@router.get("/activity", response_model=ActivityPage, responses=problems(401, 403, 422))
async def activity_feed(
    principal: DashboardRead, session: Session,
    merchant_id: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=portal_service.MAX_LIMIT)] = 50,
    kinds: Annotated[list[str] | None, Query(description="payment, payout, settlement, webhook, ops (repeat or "
                                                         "comma-separate); all by default")] = None,
):
    """What happened to a merchant, newest first: payments, payout status changes, settlements,
    webhook deliveries (delivered, failing, disabled) and ops actions on it (including view-as
    sessions). A merchant user gets its own merchant's (naming another is 403); a platform user
    every merchant's, or one with `merchant_id`."""
    return await portal_service.activity(session, merchant_id=merchant_scope(principal, merchant_id), kinds=kinds,
                                         cursor=cursor, limit=limit)


@router.post("/ops/view-as", response_model=ViewAsGranted, status_code=201, responses=problems(401, 403, 404, 422))
async def start_view_as(body: ViewAsStart, principal: ViewAs, session: Session, settings: SettingsDep):
    """Open a read-only "view as" session of a merchant's portal (permission `portal:view_as`:
    ops_admin, finance_ops, treasury_ops, risk_ops, auditor). The token answered is a
    merchant_viewer of that merchant for PAYOPS_VIEW_AS_TTL_SECONDS: every write under it is 403
    `view_as_read_only`, every request is in the API request log under your subject, and the
    session itself is recorded (with your reason) in the merchant's activity feed."""
    return await portal_service.start_view_as(session, settings, principal, merchant_id=body.merchant_id,
                                              reason=body.reason)


@router.post("/ops/view-as/{session_id}/end", response_model=ViewAsSession, responses=problems(401, 403, 404))
async def end_view_as(session_id: str, principal: Authenticated, session: Session):
    """End a view-as session before it expires. Allowed under the session's own token (the
    portal's "Exit view as"), to the ops user who opened it, and to an ops_admin. From then on its
    token answers 401 `view_as_ended` on every request, live updates included (a live connection
    already open stays until it closes or the token expires). Ending it again answers the session as
    it is; the end is in the merchant's activity feed as `view_as.ended`."""
    return await portal_service.end_view_as(session, principal, session_id)


@router.get("/ops/view-as", response_model=ViewAsSessionList, responses=problems(401, 403))
async def list_view_as(principal: ViewAs, session: Session, merchant_id: str | None = None):
    """The audit of view-as sessions, newest first (the last 100)."""
    return {"data": await portal_service.view_as_sessions(session, merchant_id)}


@router.get("/provider-accounts", response_model=ProviderAccountList, responses=problems(401, 403))
async def list_provider_accounts(principal: SyncManage, session: Session):
    """Which merchant each synced provider account (source + project) belongs to."""
    conn = await driver_connection(session)
    return {"data": await sync_store.list_provider_accounts(conn)}


@router.put("/provider-accounts/{source}/{project}", response_model=ProviderAccount,
            responses=problems(401, 403, 404, 422))
async def put_provider_account(source: Source, project: str, body: ProviderAccountPut, principal: SyncManage,
                               session: Session):
    """Map a provider account to a merchant: the sync gives its transactions that merchant_id from
    now on, and the transactions already stored from it are re-assigned now (`reassigned`)."""
    await get_merchant(session, body.merchant_id)  # 404 for an unknown merchant
    conn = await driver_connection(session)
    row, reassigned = await sync_store.put_provider_account(conn, source=source, project=project,
                                                            merchant_id=body.merchant_id, actor=principal.sub)
    return {**row, "reassigned": reassigned}


@router.delete("/provider-accounts/{source}/{project}", status_code=204, responses=problems(401, 403))
async def delete_provider_account(source: Source, project: str, principal: SyncManage, session: Session):
    """Unmap: the account's transactions go back to no merchant (platform users only see them)."""
    conn = await driver_connection(session)
    await sync_store.delete_provider_account(conn, source=source, project=project)
    return Response(status_code=204)
