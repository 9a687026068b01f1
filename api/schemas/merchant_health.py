"""The merchant health view's representation (docs/merchant_health.md)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class WebhookHealth(BaseModel):
    attempts: int = Field(description="delivery attempts in the window")
    succeeded: int
    success_rate: float | None = Field(description="succeeded / attempts, 0..1; null without attempts")
    latency_p50_ms: float | None
    latency_p95_ms: float | None


class ApiHealth(BaseModel):
    requests: int = Field(description="this merchant's own authenticated requests in the window")
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    error_rate_5xx: float | None = Field(description="share of requests answered 5xx, 0..1")
    error_rate_4xx: float | None = Field(description="share of requests answered 4xx, 0..1")


class ComponentUptime(BaseModel):
    component: str = Field(description="a `/ready` check: postgres, redis, temporal")
    probes: int
    up: int
    uptime_pct: float = Field(description="up / probes × 100")


class RailHealth(BaseModel):
    rail: str
    connector: str | None
    payouts: int = Field(description="this merchant's payouts created in the window on this rail and connector")
    settled: int
    finished: int = Field(description="settled, returned or failed")
    success_rate: float | None = Field(description="settled / finished, 0..1; null before any finished")


class HealthWindow(BaseModel):
    since: datetime = Field(description="inclusive")
    until: datetime = Field(description="exclusive")
    webhooks: WebhookHealth
    api: ApiHealth
    uptime: list[ComponentUptime]
    rails: list[RailHealth]


class MerchantHealth(BaseModel):
    merchant_id: str
    windows: dict[str, HealthWindow] = Field(description="keyed `24h` and `7d`")
