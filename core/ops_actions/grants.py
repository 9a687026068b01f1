"""Ops grants: payops's signed proof of WHO gave an approval, rejection, payout retry or cancel.

A typed `actor` in a Temporal payload proves nothing: anyone with Temporal access can type any
name. A grant is a short-lived token signed (HMAC-SHA256) by payops, bound to one subject (an
ops action id or a payout id), one decision (approve, reject, retry, cancel), the verified
subject name (normalised) and its roles, and an expiry. payops issues one:

- itself, for every vote / retry / cancel that comes through the API (the JWT was verified), and
- on request, to an authenticated ops user (`POST /api/v1/ops/grants`, audited), who pastes it
  into the payload of an Update or Signal sent with Temporal's CLI or UI.

The workflows verify a grant inside a LOCAL ACTIVITY (`verify_ops_grant`): the keys stay in the
worker's settings (never in workflow input or history, which the codec server lets ops decode),
the check uses the workflow's time passed in as input, and its answer is recorded in the
history as a marker, so a replay, even after a key rotation, takes the same path.

Keys: `PAYOPS_OPS_GRANT_KEYS` ({"key id": "secret"}): every key verifies, the first signs, so a
key is rotated by putting the new one first and removing the old one once its grants expired.
Pure functions; no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel


GRANT_VERSION = 1
DECISIONS = ("approve", "reject", "retry", "cancel")
SCOPES = ("ops_action", "payout")


def normalize_subject(subject: str) -> str:
    """How subjects are compared: trimmed and case-folded (`PROBE-ALICE` is `probe-alice`)."""
    return " ".join(str(subject).split()).casefold()


class GrantError(ValueError):
    """A grant that does not verify; the message says why (safe to show and to audit)."""


class Grant(BaseModel):
    """What a verified grant says."""

    scope: str  # ops_action | payout
    subject_id: str  # the action id or payout id it is bound to
    decision: str
    actor: str  # the verified subject name (whitespace-trimmed; compare with normalize_subject)
    roles: list[str]
    expires_at: datetime
    issued_at: datetime
    via: str  # "api" (issued for an API call) | "grant" (issued to be sent through Temporal)
    key_id: str


class VerifyGrantInput(BaseModel):
    """Input of the `verify_ops_grant` local activity. `now` is the workflow's time."""

    token: str | None
    scope: str
    subject_id: str
    decision: str
    now: datetime
    claimed_actor: str | None = None


class GrantCheck(BaseModel):
    """Output of `verify_ops_grant`: either a verified grant, or why not."""

    ok: bool
    grant: Grant | None = None
    reason: str | None = None


def keyring(settings) -> dict[str, bytes]:
    """{key id: secret}, the signing key first."""
    configured = {k: v for k, v in (settings.ops_grant_keys or {}).items() if k and v}
    if configured:
        return {k: v.encode() for k, v in configured.items()}
    derived = hmac.new(settings.jwt_secret.encode(), b"payops-ops-grants", hashlib.sha256).digest()
    return {"derived": derived}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _epoch(dt: datetime) -> int:
    return int(dt.timestamp())


def sign_grant(
    keys: dict[str, bytes], *, scope: str, subject_id: str, decision: str, actor: str, roles: list[str],
    now: datetime, ttl_seconds: float, via: str = "grant",
) -> tuple[str, datetime]:
    """A signed token and its expiry."""
    if scope not in SCOPES:
        raise ValueError(f"unknown grant scope {scope!r}")
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}")
    key_id, key = next(iter(keys.items()))
    expires_at = now + timedelta(seconds=ttl_seconds)
    claims = {
        "v": GRANT_VERSION, "kid": key_id, "scope": scope, "id": subject_id, "decision": decision,
        "sub": " ".join(str(actor).split()), "roles": sorted(set(roles)), "iat": _epoch(now),
        "exp": _epoch(expires_at), "via": via,
    }
    body = _b64(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())
    mac = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}", datetime.fromtimestamp(claims["exp"], timezone.utc)


def issue(settings, *, scope: str, subject_id: str, decision: str, actor: str, roles: list[str],
          via: str, now: datetime | None = None, ttl_seconds: float | None = None) -> tuple[str, datetime]:
    """A grant signed with the configured keys, for a subject payops has verified itself (a JWT, an
    approved ops action). `via`: "api" | "ops_action" | "grant" (issued to be sent through Temporal)."""
    return sign_grant(keyring(settings), scope=scope, subject_id=subject_id, decision=decision, actor=actor,
                      roles=roles, now=now or datetime.now(timezone.utc),
                      ttl_seconds=settings.ops_grant_ttl_seconds if ttl_seconds is None else ttl_seconds, via=via)


def verify_grant(keys: dict[str, bytes], token: str | None, *, scope: str, subject_id: str, decision: str,
                 now: datetime) -> Grant:
    """The grant's claims, or GrantError saying why it is refused."""
    if not token or not isinstance(token, str):
        raise GrantError("no grant: a typed actor name is not a verified identity "
                         "(send it through the API, or with a grant from POST /api/v1/ops/grants)")
    try:
        body, mac = token.strip().split(".")
        claims = json.loads(_unb64(body))
        given = _unb64(mac)
    except (ValueError, TypeError):
        raise GrantError("the grant is malformed") from None
    if not isinstance(claims, dict) or claims.get("v") != GRANT_VERSION:
        raise GrantError("the grant is malformed or of an unknown version")
    key = keys.get(str(claims.get("kid")))
    if key is None:
        raise GrantError(f"the grant was signed with an unknown or retired key ({claims.get('kid')!r})")
    if not hmac.compare_digest(hmac.new(key, body.encode(), hashlib.sha256).digest(), given):
        raise GrantError("the grant's signature does not verify (tampered or forged)")
    if claims.get("scope") != scope or claims.get("id") != subject_id:
        raise GrantError(f"the grant is for {claims.get('scope')} {claims.get('id')}, not {scope} {subject_id}")
    if claims.get("decision") != decision:
        raise GrantError(f"the grant allows {claims.get('decision')!r}, not {decision!r}")
    try:
        exp = datetime.fromtimestamp(int(claims["exp"]), timezone.utc)
        iat = datetime.fromtimestamp(int(claims["iat"]), timezone.utc)
        actor, roles = " ".join(str(claims["sub"]).split()), [str(r) for r in claims["roles"]]
    except (KeyError, TypeError, ValueError):
        raise GrantError("the grant is malformed") from None
    if now >= exp:
        raise GrantError(f"the grant expired at {exp.isoformat()}")
    if not actor:
        raise GrantError("the grant names no subject")
    return Grant(scope=scope, subject_id=subject_id, decision=decision, actor=actor, roles=sorted(roles),
                 expires_at=exp, issued_at=iat, via=str(claims.get("via") or "grant"), key_id=str(claims["kid"]))


def check_grant(keys: dict[str, bytes], params: VerifyGrantInput) -> GrantCheck:
    try:
        grant = verify_grant(keys, params.token, scope=params.scope, subject_id=params.subject_id,
                             decision=params.decision, now=params.now)
    except GrantError as exc:
        return GrantCheck(ok=False, reason=str(exc))
    return GrantCheck(ok=True, grant=grant)
