"""JWT bearer tokens: verification (issuer, audience, expiry) and dev-token minting."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache

import jwt

from core.platform.errors import Unauthorized
from core.platform.roles import MERCHANT_ROLES, Role, permissions_of
from core.platform.settings import Settings


@dataclass(frozen=True)
class Principal:
    """Who is calling: subject, roles and (for merchant users) the merchant they belong to."""

    sub: str
    roles: frozenset[Role]
    merchant_id: str | None = None
    claims: dict = field(default_factory=dict, compare=False)

    @property
    def is_merchant_user(self) -> bool:
        return bool(self.roles) and self.roles <= MERCHANT_ROLES

    @property
    def permissions(self):
        return permissions_of(self.roles)


def mint_dev_token(
    settings: Settings,
    *,
    role: str | list[str],
    sub: str | None = None,
    merchant_id: str | None = None,
    ttl_seconds: int | None = None,
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
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


@lru_cache(maxsize=4)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True)


def verify_token(settings: Settings, token: str) -> Principal:
    try:
        if settings.jwt_algorithm == "HS256":
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
            algorithms=[settings.jwt_algorithm],
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
    if roles & MERCHANT_ROLES and not merchant_id:
        raise Unauthorized("merchant roles need a merchant_id claim")
    return Principal(sub=str(claims["sub"]), roles=roles, merchant_id=merchant_id, claims=claims)
