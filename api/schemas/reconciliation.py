"""Reconciliation requests and responses."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from core.reconciliation.service import RESOLUTIONS


class RunBody(BaseModel):
    date_from: date = Field(description="first day, in the reporting time zone (PAYOPS_RECONCILIATION_TIMEZONE)")
    date_to: date | None = Field(default=None, description="last day, inclusive (default: date_from)")
    left_source: str = "vima"
    right_source: str = "payshack"
    shards: int | None = Field(default=None, ge=1, le=64, description="default: from the day's size")


class RunStarted(BaseModel):
    run_id: str
    workflow_id: str
    workflow_run_id: str | None = None
    status: str


class RunOut(BaseModel):
    id: str
    kind: str
    left_source: str
    right_source: str
    date_from: date
    date_to: date
    status: str
    progress: float = Field(description="0..1, kept on the run row as shards finish")
    shards_total: int = 0
    shards_done: int = 0
    summary: dict[str, Any] = {}
    error: str | None = None
    requested_by: str | None = None
    timezone: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    live: dict[str, Any] | None = Field(default=None, description="the workflow's progress query while it runs")


class ScheduleOut(BaseModel):
    schedule_id: str
    exists: bool = Field(description="false: no daily schedule of the pair in Temporal (the worker creates it)")
    paused: bool = False
    note: str | None = None
    next_run_at: datetime | None = Field(default=None, description="when the next scheduled run starts (UTC); "
                                         "it reconciles the day before, in time_zone")
    next_runs: list[datetime] = []
    recent_runs: list[datetime] = []
    time_zone: str


class SummaryOut(BaseModel):
    date: date
    runs: list[RunOut]
    totals: dict[str, int]
    open_discrepancies: int
    match_rate: float | None = None


class DiscrepancyOut(BaseModel):
    id: int
    run_id: str
    kind: str
    left_source: str
    right_source: str
    date_from: date
    date_to: date
    category: str
    match_key: str | None = None
    left_id: int | None = None
    right_id: int | None = None
    amount_diff_minor: int | None = None
    confidence: float | None = None
    details: dict[str, Any] = {}
    resolution: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    note: str | None = None
    carried_from_id: int | None = None
    created_at: datetime


class DiscrepancyPage(BaseModel):
    items: list[DiscrepancyOut]
    next_cursor: str | None = Field(default=None, description="pass as `cursor` for the next page; null at the end")


class ResolveBody(BaseModel):
    action: Literal["resolve", "annotate", "reopen"] = "resolve"
    resolution: str | None = Field(default=None, description=f"for resolve: one of {', '.join(RESOLUTIONS)}")
    note: str | None = Field(default=None, max_length=4000, description="why (required to resolve or annotate)")


class StatementOut(BaseModel):
    statement: dict[str, Any]
    run: RunOut
    duplicate_upload: bool = False
