"""Domain errors. Services raise these; the API turns them into RFC 9457 problem details.

Each carries an HTTP status and a stable `type` that clients can branch on.
"""

from __future__ import annotations

from typing import Any


class PayopsError(Exception):
    status: int = 400
    type: str = "bad_request"
    title: str = "Bad request"

    def __init__(self, detail: str | None = None, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra or {}


class NotFound(PayopsError):
    status, type, title = 404, "not_found", "Not found"


class Conflict(PayopsError):
    status, type, title = 409, "conflict", "Conflict"


class Unprocessable(PayopsError):
    status, type, title = 422, "validation_error", "Invalid request"


class Unauthorized(PayopsError):
    status, type, title = 401, "unauthorized", "Authentication required"


class Forbidden(PayopsError):
    status, type, title = 403, "forbidden", "Forbidden"


class ServiceUnavailable(PayopsError):
    status, type, title = 503, "service_unavailable", "Service unavailable"


def typed(base: type[PayopsError], type_: str, title: str | None = None) -> type[PayopsError]:
    """A subclass of `base` with its own stable `type` (e.g. idempotency_key_reused)."""
    name = "".join(part.title() for part in type_.split("_")) + "Error"
    return type(name, (base,), {"type": type_, "title": title or base.title})


IdempotencyKeyMissing = typed(PayopsError, "idempotency_key_missing", "Idempotency-Key header required")
IdempotencyKeyReused = typed(Unprocessable, "idempotency_key_reused", "Idempotency-Key reused")
IdempotencyKeyInUse = typed(Conflict, "idempotency_key_in_use", "Idempotency-Key in use")
MerchantFrozen = typed(Conflict, "merchant_frozen", "Merchant is frozen")
InvalidState = typed(Conflict, "invalid_state", "Not allowed in the current state")
