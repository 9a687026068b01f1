"""Merchant webhook signatures.

`Payops-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>[,v1=...]`

One `v1=` per live signing secret: during a rotation's overlap the old and the new secret both
sign, so a receiver configured with either one verifies. docs/webhooks.md shows receivers how
to verify in a few lines; `verify` here is the same check (the CLI listener uses it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets
import time
from collections.abc import Iterable

DEFAULT_TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"


class SignatureError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def new_secret() -> str:
    return SECRET_PREFIX + _secrets.token_urlsafe(32)


def _mac(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secrets: Iterable[str], body: bytes, timestamp: int) -> str:
    """The header value for `body` signed at `timestamp` with every secret in `secrets`."""
    parts = [f"t={int(timestamp)}"] + [f"v1={_mac(s, body, int(timestamp))}" for s in secrets]
    if len(parts) < 2:
        raise ValueError("at least one secret is needed to sign")
    return ",".join(parts)


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check `header` for `body`; return the signed timestamp or raise `SignatureError`."""
    if not header:
        raise SignatureError("signature_missing", "no Payops-Signature header")
    timestamp, candidates = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value.strip())
    if timestamp is None or not candidates:
        raise SignatureError("signature_malformed", "the header needs t= and at least one v1=")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureError("signature_stale", "the signature's timestamp is outside the tolerance")
    expected = _mac(secret, body, timestamp)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("signature_mismatch", "no v1 signature matches the body")
    return timestamp
