"""Payout schedule request and response models (/api/v1/payout-schedules)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.payouts.schedule_spec import MAX_PREVIEW, ScheduleSpecIn, check_time_zone

Mode = Literal["all_or_nothing", "partial"]
_ITEMS_DOC = ("the payouts each fire makes, each as POST /payouts takes it (amount, currency, method, "
              "priority, beneficiary, description, metadata), without `reference`: a fire makes it "
              "`<schedule id>-<fire time>-<line>`")
_ITEM_EXAMPLE = [{"amount": "1250.00", "currency": "EUR", "method": "sepa", "priority": "standard",
                  "beneficiary": {"name": "Jane Doe", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"}}]


class _TimeZone(BaseModel):
    @field_validator("time_zone", check_fields=False)
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_time_zone(value)


class PayoutScheduleCreate(_TimeZone):
    model_config = ConfigDict(extra="forbid")

    merchant_id: str | None = Field(default=None, max_length=64,
                                    description="platform roles only (the schedule is then the platform's)")
    name: str = Field(min_length=1, max_length=200, examples=["Weekly settlement"])
    spec: ScheduleSpecIn
    time_zone: str = Field(default="UTC", max_length=64, description="IANA time zone of the spec",
                           examples=["Europe/Paris"])
    mode: Mode = "all_or_nothing"
    items: list[dict[str, Any]] = Field(min_length=1, max_length=1000, description=_ITEMS_DOC,
                                        json_schema_extra={"examples": [_ITEM_EXAMPLE]})
    enabled: bool = True


class PayoutScheduleUpdate(_TimeZone):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    spec: ScheduleSpecIn | None = None
    time_zone: str | None = Field(default=None, max_length=64)
    mode: Mode | None = None
    items: list[dict[str, Any]] | None = Field(default=None, min_length=1, max_length=1000, description=_ITEMS_DOC)
    enabled: bool | None = Field(default=None, description="false pauses the schedule, true resumes it")


class PreviewRequest(_TimeZone):
    model_config = ConfigDict(extra="forbid")

    spec: ScheduleSpecIn
    time_zone: str = Field(default="UTC", max_length=64)
    count: int = Field(default=5, ge=1, le=MAX_PREVIEW)


class FireTime(BaseModel):
    at: str = Field(description="local time in the schedule's time zone, ISO 8601 with offset")
    at_utc: str


class Preview(BaseModel):
    cron: str = Field(description="the spec as the 5-field cron expression the Temporal Schedule runs")
    time_zone: str
    next: list[FireTime]


class SchedulePreview(Preview):
    enabled: bool = Field(description="false: the schedule is paused and these times will not fire until resumed")


class ScheduleRun(BaseModel):
    fire_time: str
    outcome: Literal["created", "refused", "skipped"]
    bulk_payout_id: str | None
    batch_status: str | None
    detail: str | None


class PayoutScheduleOut(BaseModel):
    id: str
    merchant_id: str
    owner: Literal["merchant", "platform"]
    name: str
    spec: dict[str, Any]
    description: str = Field(description="the spec in words, e.g. 'weekly on Mon, Fri at 09:00'")
    cron: str
    time_zone: str
    mode: Mode
    items: list[dict[str, Any]] = Field(description="the template; each beneficiary masked (type, name, last4, "
                                                    "bank ids): account numbers are kept encrypted")
    enabled: bool
    status: Literal["active", "paused"]
    temporal_schedule_id: str = Field(description="the Temporal Schedule's id (Temporal UI → Schedules)")
    created_by: str
    created_at: str
    updated_at: str
    recent_runs: list[ScheduleRun] = Field(description="the last fires (GET one schedule only), newest first")


class PayoutSchedulePage(BaseModel):
    data: list[PayoutScheduleOut]
