"""Inputs and results of the SyncWorkflow, its activities and its query (pydantic, so fields can
be added without breaking running workflows). Imported by workflow code: no side effects."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

SOURCES: tuple[str, ...] = ("vima", "payshack")
SyncMode = Literal["incremental", "backfill"]

# ApplicationError types a SyncWorkflow branches on (non-retryable: retrying cannot help)
ERR_AUTH_FAILED = "sync_auth_failed"
ERR_BAD_REQUEST = "sync_bad_request"
ERR_NOT_CONFIGURED = "sync_source_not_configured"


class SyncTotals(BaseModel):
    pages: int = 0
    rows_fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0

    def add(self, other: "SyncTotals") -> "SyncTotals":
        return SyncTotals(**{k: getattr(self, k) + getattr(other, k) for k in SyncTotals.model_fields})


class SyncWorkflowInput(BaseModel):
    source: str
    mode: SyncMode = "incremental"
    date_from: str | None = None  # ISO date/datetime (backfill)
    date_to: str | None = None
    requested_by: str | None = None
    # carried across continue-as-new
    run_id: str | None = None
    cursor: dict[str, Any] | None = None
    totals: SyncTotals | None = None
    expected_total: int | None = None
    generation: int = 0
    # tuning (None = the worker's settings)
    pages_per_activity: int | None = None
    activities_per_run: int | None = None


class SyncWorkflowResult(BaseModel):
    run_id: str
    source: str
    mode: SyncMode
    status: Literal["success", "error"]
    totals: SyncTotals
    error: str | None = None
    error_type: str | None = None


class SyncProgress(BaseModel):
    run_id: str | None
    source: str
    mode: SyncMode
    status: Literal["starting", "running", "success", "error"]
    totals: SyncTotals = Field(default_factory=SyncTotals)
    expected_total: int | None = None
    cursor: dict[str, Any] | None = None
    generation: int = 0
    error: str | None = None


class StartRunInput(BaseModel):
    run_id: str
    source: str
    mode: SyncMode
    workflow_id: str | None = None
    date_from: str | None = None
    date_to: str | None = None


class StartRunResult(BaseModel):
    cursor: dict[str, Any]


class FetchPagesInput(BaseModel):
    run_id: str
    source: str
    mode: SyncMode
    cursor: dict[str, Any]
    date_from: str | None = None
    date_to: str | None = None
    max_pages: int | None = None


class FetchPagesResult(BaseModel):
    cursor: dict[str, Any]
    totals: SyncTotals
    caught_up: bool
    expected_total: int | None = None


class FinishRunInput(BaseModel):
    run_id: str
    source: str
    mode: SyncMode
    status: Literal["success", "error"]
    error: str | None = None
    totals: SyncTotals | None = None


class FinishRunResult(BaseModel):
    recorded: bool = True
    # what the run stored, from the database: includes the work of activity attempts that
    # failed after storing pages, which the workflow never saw a result for
    totals: SyncTotals | None = None
