"""Merchant webhook signatures.

`Payops-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>[,v1=...]`

One `v1=` per live signing secret: during a rotation's overlap the old and the new secret both
sign, so a receiver configured with either one verifies. docs/webhooks.md shows receivers how
to verify in a few lines; `verify` here is the same check (the CLI listener uses it): core/platform/signatures.py.
"""

from __future__ import annotations

import secrets as _secrets

from core.platform.signatures import DEFAULT_TOLERANCE_SECONDS, SignatureError, sign, verify

__all__ = ["DEFAULT_TOLERANCE_SECONDS", "SECRET_PREFIX", "SignatureError", "new_secret", "sign", "verify"]

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + _secrets.token_urlsafe(32)
