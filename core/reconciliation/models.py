"""Inputs and results of the ReconciliationWorkflow, its activities and its query (pydantic, so
fields can be added without breaking running workflows). Imported by workflow code: no side effects."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

DEFAULT_LEFT_SOURCE = "vima"
DEFAULT_RIGHT_SOURCE = "payshack"
KIND_PROVIDER_PAIR = "provider_pair"
KIND_PAYOUTS_STATEMENT = "payouts_statement"

CATEGORIES: tuple[str, ...] = ("matched", "amount_mismatch", "status_mismatch", "missing_left", "missing_right",
                               "duplicate_key", "probable_match")
DISCREPANCY_CATEGORIES: tuple[str, ...] = tuple(c for c in CATEGORIES if c != "matched")

# ApplicationError types the workflow branches on (non-retryable)
ERR_BAD_RUN = "reconciliation_bad_request"

RunStatus = Literal["queued", "running", "success", "error"]


def pair_id(left_source: str, right_source: str) -> str:
    return f"{left_source}:{right_source}"


def provider_run_id(left_source: str, right_source: str, date_from: str, date_to: str) -> str:
    """One run per (pair, date range): running it again replaces its results."""
    return f"{left_source}-{right_source}-{date_from}" + ("" if date_to == date_from else f"-{date_to}")


class ReconciliationWorkflowInput(BaseModel):
    left_source: str = DEFAULT_LEFT_SOURCE
    right_source: str = DEFAULT_RIGHT_SOURCE
    date_from: str | None = None  # ISO date in the reporting time zone; None = yesterday there
    date_to: str | None = None  # inclusive; None = date_from
    requested_by: str | None = None
    shards: int | None = None  # None = from the day's size


class ReconciliationProgress(BaseModel):
    run_id: str | None = None
    status: RunStatus = "queued"
    date_from: str | None = None
    date_to: str | None = None
    shards_total: int = 0
    shards_done: int = 0
    rows_in_window: int = 0  # the planner's estimate (sizes the shards)
    counts: dict[str, int] = Field(default_factory=dict)
    error: str | None = None

    @property
    def fraction(self) -> float:
        return self.shards_done / self.shards_total if self.shards_total else 0.0


class ReconciliationWorkflowResult(BaseModel):
    run_id: str | None
    status: Literal["success", "error"]
    summary: dict = Field(default_factory=dict)
    error: str | None = None


class PrepareRunInput(BaseModel):
    left_source: str
    right_source: str
    date_from: str | None = None
    date_to: str | None = None
    requested_by: str | None = None
    workflow_id: str | None = None
    shards: int | None = None


class PreparedRun(BaseModel):
    run_id: str
    date_from: str
    date_to: str
    window_start: datetime
    window_end: datetime
    shards: int
    rows_in_window: int  # the planner's estimate (sizes the shards)


class ShardInput(BaseModel):
    run_id: str
    shard: int
    shards: int


class ShardResult(BaseModel):
    shard: int
    counts: dict[str, int]
    seconds: float


class FinalizeRunInput(BaseModel):
    run_id: str
    counts: dict[str, int]


class FinalizeRunResult(BaseModel):
    summary: dict
    alert_id: int | None = None


class FailRunInput(BaseModel):
    run_id: str
    error: str


class FailRunResult(BaseModel):
    recorded: bool = True
