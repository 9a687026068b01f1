"""Bank webhook signatures: `Payops-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`.

The MAC covers f"{t}." + the raw body, so neither the body nor the timestamp can be changed, and
the timestamp bounds how long a captured webhook can be replayed. Several `v1=` entries are
accepted (a sender rotating its secret signs with both).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from connectors.base import WebhookSignatureError

SIGNATURE_HEADER = "Payops-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def _mac(secret: str | bytes, body: bytes, timestamp: int) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The header value for `body` signed at `timestamp` (unix seconds)."""
    return f"t={int(timestamp)},v1={_mac(secret, body, int(timestamp))}"


def verify(
    secret: str | bytes,
    header: str | None,
    body: bytes,
    now: float | None = None,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Check `header` against `body`; return the signed timestamp or raise `WebhookSignatureError`."""
    if not header or not header.strip():
        raise WebhookSignatureError("signature_missing", f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise WebhookSignatureError("signature_malformed", "signature parts must be key=value")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookSignatureError("signature_malformed", "t must be unix seconds") from None
        elif key == "v1":
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        raise WebhookSignatureError("signature_malformed", "signature needs t= and v1=")

    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise WebhookSignatureError("signature_stale", "signature timestamp is outside the tolerance")

    expected = _mac(secret, body, timestamp)
    # Compare against every candidate so timing does not reveal which one (if any) matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected.encode(), candidate.encode("ascii", "replace"))
    if not matched:
        raise WebhookSignatureError("signature_mismatch", "signature does not match the body")
    return timestamp
