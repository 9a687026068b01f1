"""The ExportWorkflow's contracts: its input and the answer of its `progress` query."""

from __future__ import annotations

from pydantic import BaseModel


class ExportWorkflowInput(BaseModel):
    job_id: str
    retention_seconds: float


class ExportProgress(BaseModel):
    status: str  # running | succeeded | failed | expired
    rows_written: int = 0
    rows_total: int | None = None
    bytes: int | None = None
    error: str | None = None
