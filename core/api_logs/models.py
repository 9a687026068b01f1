"""An API request log row, as the API records it and the list returns it."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict


class ApiLogEntry(TypedDict):
    at: datetime
    merchant_id: str | None
    principal: str
    method: str
    route: str  # the route template (/api/v1/payouts/{payout_id}), never the raw path
    status: int
    latency_ms: float
    idempotency_key: str | None
    request_id: str
    client_ip: str | None


API_LOG_FIELDS = tuple(ApiLogEntry.__annotations__)
