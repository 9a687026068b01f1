"""The API request log's representation."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ApiLogOut(BaseModel):
    id: int
    at: datetime = Field(description="when the request arrived")
    merchant_id: str | None = Field(description="the caller's merchant; null for platform (ops) users")
    principal: str = Field(description="the token's subject")
    method: str
    route: str = Field(description="the route template, e.g. /api/v1/payouts/{payout_id}")
    status: int
    latency_ms: float
    idempotency_key: str | None
    request_id: str = Field(description="the X-Request-ID the response carried")
    client_ip: str | None


class ApiLogPage(BaseModel):
    data: list[ApiLogOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")
