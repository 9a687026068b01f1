"""Bank webhook signatures: `Payops-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`.

The MAC covers f"{t}." + the raw body, so neither the body nor the timestamp can be changed, and
the timestamp bounds how long a captured webhook can be replayed. Several `v1=` entries are
accepted (a sender rotating its secret signs with both). The check itself is core/platform/signatures.py.
"""

from __future__ import annotations

from connectors.base import WebhookSignatureError
from core.platform import signatures
from core.platform.signatures import DEFAULT_TOLERANCE_SECONDS, SIGNATURE_HEADER

__all__ = ["DEFAULT_TOLERANCE_SECONDS", "SIGNATURE_HEADER", "sign", "verify"]


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The header value for `body` signed at `timestamp` (unix seconds)."""
    return signatures.sign([secret], body, timestamp)


def verify(
    secret: str | bytes,
    header: str | None,
    body: bytes,
    now: float | None = None,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Check `header` against `body`; return the signed timestamp or raise `WebhookSignatureError`."""
    try:
        return signatures.verify(secret, header, body, now=now, tolerance_seconds=tolerance_seconds)
    except signatures.SignatureError as exc:
        raise WebhookSignatureError(exc.code, str(exc)) from None
