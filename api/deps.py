"""Request dependencies: settings, database session, Redis, Temporal client, the caller.

Auth dependencies are Annotated aliases, so each endpoint states its permission in its
signature (e.g. `principal: PayoutWrite`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.request_log import PRINCIPAL_STATE_KEY
from core.platform.auth_tokens import Principal, verify_token
from core.platform.errors import Forbidden, ServiceUnavailable, Unauthorized, typed
from core.platform.roles import Permission
from core.platform.settings import Settings
from core.portal import service as portal_service

ViewAsReadOnly = typed(Forbidden, "view_as_read_only", "A view-as session is read-only")

_bearer = HTTPBearer(auto_error=False, description="JWT from your identity provider (`payops token` in dev)")


# Dependencies are `async def` even when they don't await: FastAPI runs a plain `def` dependency
# in the thread pool, a hand-off that cost more than the work itself on every request.


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: commit on success, roll back on error."""
    sessionmaker = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def get_redis(request: Request) -> Redis:
    return request.app.state.redis


async def get_temporal(request: Request) -> Client:
    client = await request.app.state.temporal_holder.get()
    if client is None:
        raise ServiceUnavailable("Temporal is not reachable; try again shortly")
    return client


async def optional_temporal(request: Request) -> Client | None:
    """The Temporal client, or None while Temporal is unreachable, for endpoints that still
    answer then: a payout or ops action is accepted (its workflow starts later: a replay of the
    request, the sweeper, the first vote), a detail shows its stored row without live state."""
    return await request.app.state.temporal_holder.get()


OptionalTemporal = Annotated[Client | None, Depends(optional_temporal)]


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token")
    settings: Settings = request.app.state.settings
    if settings.jwt_jwks_url:  # the key set may have to be fetched over the network: off the loop
        principal = await run_in_threadpool(verify_token, settings, credentials.credentials)
    else:
        principal = verify_token(settings, credentials.credentials)  # a signature check: microseconds
    request.scope.setdefault("state", {})[PRINCIPAL_STATE_KEY] = principal  # for the request log
    if principal.view_as_by:
        await view_as_live(request.app, principal)
        if (request.method not in READ_METHODS and request.url.path not in READ_ONLY_POSTS
                and request.url.path != f"/api/v1/ops/view-as/{principal.claims.get('view_as_session')}/end"):
            raise ViewAsReadOnly("a view-as session is read-only: end it and act as yourself")
    return principal


async def view_as_live(app, principal: Principal) -> None:
    """A view-as token is refused once its session was ended early: one primary-key read per
    request made under such a token (ordinary tokens cost nothing more)."""
    if principal.view_as_by is None:
        return
    async with app.state.sessionmaker() as session:
        await portal_service.ensure_view_as_live(session, principal)


# A "view as" session (api/routers/portal.py) may only read: every other method is refused here,
# whatever the endpoint's permission, before the endpoint runs. GraphQL is read-only (no mutations);
# the one write it may make is ending itself (POST /api/v1/ops/view-as/{its session}/end).
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_ONLY_POSTS = frozenset({"/api/v1/graphql"})


def require(*permissions: Permission):
    async def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        missing = [p.value for p in permissions if p not in principal.permissions]
        if missing:
            raise Forbidden(f"your roles do not grant {', '.join(missing)}")
        return principal

    return dependency


def merchant_scope(principal: Principal, merchant_id: str | None) -> str | None:
    """The merchant a read is limited to: a merchant user only ever sees its own merchant."""
    if principal.is_agent_user:  # an agent sees no merchant's data (only its own agent, core/agents)
        raise Forbidden("an agent may only access its own agent's data")
    if principal.is_merchant_user:
        if merchant_id and merchant_id != principal.merchant_id:
            raise Forbidden("you may only access your own merchant's data")
        return principal.merchant_id
    return merchant_id


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
# scope="function": the commit runs before the response is sent. FastAPI >= 0.118 runs a yield
# dependency's exit code after the response by default: a client was told 201 before its
# transaction committed (a failing commit, e.g. a deferred constraint, was then lost silently, and
# a next request on another API worker could miss the row).
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
RedisDep = Annotated[Redis, Depends(get_redis)]
TemporalDep = Annotated[Client, Depends(get_temporal)]
Authenticated = Annotated[Principal, Depends(get_principal)]

P = Permission
PayoutRead = Annotated[Principal, Depends(require(P.PAYOUTS_READ))]
PayoutWrite = Annotated[Principal, Depends(require(P.PAYOUTS_WRITE))]
PayoutOperate = Annotated[Principal, Depends(require(P.PAYOUTS_OPERATE))]
MerchantsManage = Annotated[Principal, Depends(require(P.MERCHANTS_MANAGE))]
BalancesRead = Annotated[Principal, Depends(require(P.BALANCES_READ))]
AgentsRead = Annotated[Principal, Depends(require(P.AGENTS_READ))]
AgentsManage = Annotated[Principal, Depends(require(P.AGENTS_MANAGE))]
