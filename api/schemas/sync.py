"""Provider sync requests and responses."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from core.sync.models import SyncProgress

Source = Literal["vima", "payshack"]


class ScheduleOut(BaseModel):
    schedule_id: str
    paused: bool
    note: str | None = None
    interval_seconds: int | None = None
    next_run_at: datetime | None = None
    running_workflows: list[str] = []


class SyncRunOut(BaseModel):
    id: str
    source: str
    mode: str
    workflow_id: str | None = None
    status: str
    params: dict[str, Any] = {}
    cursor: dict[str, Any] | None = None
    pages: int
    rows_fetched: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_quarantined: int
    expected_total: int | None = None
    error: str | None = None
    started_at: datetime
    finished_at: datetime | None = None


class SourceStatus(BaseModel):
    source: str
    status: str = Field(description="idle | running | error | never_run")
    error: str | None = None
    cursors: dict[str, Any] = {}
    records_synced: int
    records_quarantined: int
    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    schedule: ScheduleOut | None = Field(default=None, description="null when the source has no schedule")
    recent_runs: list[SyncRunOut] = []


class TriggerBody(BaseModel):
    source: Source


class BackfillBody(BaseModel):
    source: Source
    date_from: str = Field(description="first day, ISO date", examples=["2026-01-01"])
    date_to: str = Field(description="last day (inclusive), ISO date", examples=["2026-01-31"])


class SyncStarted(BaseModel):
    source: str
    workflow_id: str
    run_id: str | None = None
    date_from: str | None = None
    date_to: str | None = None


class QuarantinedRecord(BaseModel):
    id: int
    source: str
    source_id: str | None = Field(default=None, description="the provider's id, when the record had one")
    reason: str = Field(description="why the record was not stored")
    raw: Any = Field(description="the record as received (NUL characters shown as \\u0000)")
    data_hash: str
    run_id: str | None = None
    created_at: datetime


class ScheduleNote(BaseModel):
    note: str | None = Field(default=None, max_length=500)


__all__ = ["BackfillBody", "QuarantinedRecord", "ScheduleNote", "ScheduleOut", "SourceStatus", "SyncProgress", "SyncRunOut",
           "SyncStarted", "TriggerBody"]
