"""JWT bearer tokens: verification (issuer, audience, expiry) and dev-token minting."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache

import jwt

from core.platform.errors import Unauthorized
from core.platform.roles import AGENT_ROLES, MERCHANT_ROLES, PLATFORM_ROLES, Role, permissions_of
from core.platform.settings import DEV_JWT_SECRET, Settings

# The `kid` of the tokens payops signs itself for an ops "view as" session (see mint_view_as_token)
VIEW_AS_KID = "payops-view-as"
VIEW_AS_ROLE = Role.MERCHANT_VIEWER


@dataclass(frozen=True)
class Principal:
    """Who is calling: subject, roles and (for merchant users) the merchant they belong to, (for
    agents) the agent they are."""

    sub: str
    roles: frozenset[Role]
    merchant_id: str | None = None
    claims: dict = field(default_factory=dict, compare=False)
    agent_id: str | None = None

    @property
    def is_merchant_user(self) -> bool:
        return bool(self.roles) and self.roles <= MERCHANT_ROLES

    @property
    def is_agent_user(self) -> bool:
        """Only agent roles: sees its own agent's data and nothing else."""
        return bool(self.roles) and self.roles <= AGENT_ROLES

    @property
    def is_platform_user(self) -> bool:
        return bool(self.roles & PLATFORM_ROLES)

    @property
    def permissions(self):
        return permissions_of(self.roles)

    @property
    def view_as_by(self) -> str | None:
        """The ops user behind a "view as" session (the real actor), else None."""
        by = self.claims.get("view_as_by")
        return str(by) if by else None


def mint_dev_token(
    settings: Settings,
    *,
    role: str | list[str],
    sub: str | None = None,
    merchant_id: str | None = None,
    ttl_seconds: int | None = None,
    agent_id: str | None = None,
) -> str:
    roles = [role] if isinstance(role, str) else list(role)
    for r in roles:
        Role(r)  # ValueError on an unknown role
    if settings.jwt_algorithm != "HS256":
        raise RuntimeError("dev tokens are HS256; this deployment verifies RS256 tokens from its IdP")
    now = int(time.time())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": sub or f"dev-{roles[0]}",
        "iat": now,
        "exp": now + (ttl_seconds or settings.jwt_default_ttl_seconds),
        "jti": uuid.uuid4().hex,
        "roles": roles,
    }
    if merchant_id:
        claims["merchant_id"] = merchant_id
    if agent_id:
        claims["agent_id"] = agent_id
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


def view_as_key(settings: Settings) -> str:
    """The key of view-as tokens: PAYOPS_JWT_SECRET (HS256), whatever the IdP's algorithm; refused
    in production while it is still the dev secret (anyone could then mint one)."""
    if settings.env == "prod" and settings.jwt_secret == DEV_JWT_SECRET:
        raise Unauthorized("view-as sessions need PAYOPS_JWT_SECRET set to a real secret")
    return settings.jwt_secret


def mint_view_as_token(settings: Settings, *, actor: str, merchant_id: str, session_id: str,
                       ttl_seconds: int) -> tuple[str, int]:
    """A short-lived token for an ops user's read-only "view as" session of a merchant: its
    principal is a merchant_viewer of that merchant (no write permission, whatever the viewer's
    roles), and carries the real actor in `view_as_by` and the audited session in `view_as_session`.
    Returns the token and its expiry (unix seconds)."""
    now = int(time.time())
    exp = now + ttl_seconds
    claims = {
        "iss": settings.jwt_issuer, "aud": settings.jwt_audience, "sub": actor, "iat": now, "exp": exp,
        "jti": uuid.uuid4().hex, "roles": [VIEW_AS_ROLE.value], "merchant_id": merchant_id,
        "view_as_by": actor, "view_as_session": session_id,
    }
    token = jwt.encode(claims, view_as_key(settings), algorithm="HS256", headers={"kid": VIEW_AS_KID})
    return token, exp


def _is_view_as(token: str) -> bool:
    try:
        return jwt.get_unverified_header(token).get("kid") == VIEW_AS_KID
    except jwt.InvalidTokenError:
        return False


@lru_cache(maxsize=4)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True)


def verify_token(settings: Settings, token: str) -> Principal:
    view_as = _is_view_as(token)
    algorithm = "HS256" if view_as else settings.jwt_algorithm
    try:
        if view_as:
            key = view_as_key(settings)
        elif settings.jwt_algorithm == "HS256":
            key = settings.jwt_secret
        elif settings.jwt_jwks_url:
            key = _jwks_client(settings.jwt_jwks_url).get_signing_key_from_jwt(token).key
        elif settings.jwt_public_key:
            key = settings.jwt_public_key
        else:
            raise Unauthorized("RS256 configured without PAYOPS_JWT_PUBLIC_KEY or PAYOPS_JWT_JWKS_URL")
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iss", "aud", "sub"]},
            leeway=5,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    raw_roles = claims.get("roles") or []
    if isinstance(raw_roles, str):
        raw_roles = [raw_roles]
    roles = frozenset(Role(r) for r in raw_roles if r in Role._value2member_map_)
    if not roles:
        raise Unauthorized("token carries no payops role")
    merchant_id = claims.get("merchant_id")
    if view_as:
        if roles != {VIEW_AS_ROLE} or not claims.get("view_as_by") or not merchant_id:
            raise Unauthorized("invalid token: a view-as token is a merchant_viewer of one merchant")
    elif claims.get("view_as_by"):
        raise Unauthorized("invalid token: view_as_by only in payops's own view-as tokens")
    if roles & MERCHANT_ROLES and not merchant_id:
        raise Unauthorized("merchant roles need a merchant_id claim")
    agent_id = claims.get("agent_id")
    if roles & AGENT_ROLES and not agent_id:
        raise Unauthorized("the agent role needs an agent_id claim")
    if roles & AGENT_ROLES and not roles <= AGENT_ROLES:
        raise Unauthorized("the agent role cannot be combined with other roles")
    return Principal(sub=str(claims["sub"]), roles=roles, merchant_id=merchant_id, claims=claims,
                     agent_id=str(agent_id) if agent_id else None)
