"""HMAC-SHA256 webhook signatures, the one signer and verifier of both directions: the bank's
notifications to payops (connectors/signing.py) and payops's events to merchants
(core/webhooks/signing.py).

`Payops-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}." + body)>[,v1=...]`

The MAC covers the timestamp and the raw body, so neither can be changed, and the timestamp
bounds how long a captured delivery can be replayed. Several `v1=` entries are accepted (a
sender rotating its secret signs with both); every one is compared, in constant time, so timing
tells nothing about which one matched.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

SIGNATURE_HEADER = "Payops-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def mac(secret: str | bytes, body: bytes, timestamp: int) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secrets: Iterable[str | bytes], body: bytes, timestamp: int) -> str:
    """The header value for `body` signed at `timestamp` with every secret in `secrets`."""
    parts = [f"t={int(timestamp)}"] + [f"v1={mac(s, body, int(timestamp))}" for s in secrets]
    if len(parts) < 2:
        raise ValueError("at least one secret is needed to sign")
    return ",".join(parts)


def verify(
    secret: str | bytes,
    header: str | None,
    body: bytes,
    *,
    now: float | None = None,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Check `header` against `body`; return the signed timestamp or raise `SignatureError`
    (code signature_missing, signature_malformed, signature_stale or signature_mismatch)."""
    if not header or not header.strip():
        raise SignatureError("signature_missing", f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("signature_malformed", "signature parts must be key=value")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("signature_malformed", "t must be unix seconds") from None
        elif key == "v1":
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        raise SignatureError("signature_malformed", "the header needs t= and at least one v1=")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureError("signature_stale", "the signature's timestamp is outside the tolerance")
    expected = mac(secret, body, timestamp).encode()
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate.encode("ascii", "replace"))
    if not matched:
        raise SignatureError("signature_mismatch", "no v1 signature matches the body")
    return timestamp
