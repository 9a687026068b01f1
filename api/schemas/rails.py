"""Rails API models: SLA/fee rules, calendar days, batches, connector health."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field


class RailRuleOut(BaseModel):
    rail: str
    description: str | None
    methods: list[str]
    currencies: list[str]
    countries: list[str] = Field(description="ISO 3166 alpha-2 codes the rail reaches; empty = any")
    timezone: str
    cutoff_time: str | None = Field(description="HH:MM in `timezone`; null for a 24/7 rail")
    settlement_business_days: int | None
    settlement_seconds: int | None
    batch: bool
    calendar: str
    fee_fixed_minor: int
    fee_bps: int
    enabled: bool
    updated_by: str | None = None
    updated_at: datetime | None = None
    next_cutoff_at: datetime | None = None


class RailRuleUpdate(BaseModel):
    """Only the fields given change; the result must still be a valid rule."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    methods: list[str] | None = None
    currencies: list[str] | None = None
    countries: list[str] | None = None
    timezone: str | None = None
    cutoff_time: str | None = Field(default=None, pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    settlement_business_days: int | None = Field(default=None, ge=0, le=10)
    settlement_seconds: int | None = Field(default=None, ge=1)
    batch: bool | None = None
    calendar: str | None = None
    fee_fixed_minor: int | None = Field(default=None, ge=0)
    fee_bps: int | None = Field(default=None, ge=0, le=10_000)
    enabled: bool | None = None


class CalendarDayOut(BaseModel):
    day: date
    is_holiday: bool
    name: str | None
    source: str = "override"


class CalendarDayIn(BaseModel):
    is_holiday: bool = True
    name: str | None = Field(default=None, max_length=200)


class BatchLinks(BaseModel):
    self: str
    file: str | None


class BatchOut(BaseModel):
    id: str
    rail: str
    connector: str
    cutoff_at: datetime
    status: str
    file_format: str
    file_name: str | None
    file_sha256: str | None
    currency: str | None
    entry_count: int
    total_amount_minor: int
    control: dict = Field(description="control totals written in the file (counts, hash, sums)")
    bank_file_id: str | None
    accepted_count: int
    rejected_count: int
    error: str | None
    created_at: datetime
    submitted_at: datetime | None
    links: BatchLinks


class BatchEntryOut(BaseModel):
    payout_id: str
    sequence: int | None
    amount_minor: int
    currency: str
    outcome: str | None
    bank_payment_id: str | None
    error: str | None


class BatchDetail(BatchOut):
    entries: list[BatchEntryOut] = Field(description="the first 1000 entries, in file order")


class BatchPage(BaseModel):
    data: list[BatchOut]
    next_cursor: str | None = Field(default=None, description="pass as `cursor` for the next page")


class ConnectorHealthOut(BaseModel):
    connector: str
    rails: list[str]
    routable: bool
    state: str = Field(description="circuit breaker: closed (routable) or open (avoided by routing)")
    healthy: bool
    last_checked_at: datetime | None
    last_ok: bool | None
    last_latency_ms: float | None
    last_error: str | None
    consecutive_failures: int
    recent_requests: int
    recent_errors: int
    recent_error_rate: float | None
    opened_at: datetime | None
    open_reason: str | None
