"""Export jobs: write a very large export to a file with bounded memory, report progress, and
remove the file when it expires.

The file is written by the same streaming writers as the streamed endpoints (core/exports/files.py),
to a temporary name next to its final one, then renamed atomically: a retried attempt (a worker
crash, a lost heartbeat) starts over from the first row into its own temporary file, and a
reader never sees half a file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.exports import files as exports
from core.exports import store
from core.platform.names import export_workflow_id
from core.platform.settings import Settings

log = logging.getLogger("payops.exports")

PROGRESS_EVERY_SECONDS = 2.0  # job row and workflow progress updates while writing
PROGRESS_SIGNAL = "export_progress"


class ExportFileInput(BaseModel):
    job_id: str
    retention_seconds: float


class ExportFileResult(BaseModel):
    rows_written: int
    bytes: int
    path: str


class ExportJobIdInput(BaseModel):
    job_id: str


class ExportFailInput(BaseModel):
    job_id: str
    error: str


class ExportProgressSignal(BaseModel):
    rows_written: int
    rows_total: int | None = None


def part_files(directory: Path, job_id: str) -> list[Path]:
    return list(directory.glob(f".{job_id}.*.part"))


class ExportActivities:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings

    async def _job(self, job_id: str) -> dict:
        job = await store.get_job_row(self._engine, job_id)
        if job is None:
            raise ApplicationError(f"no export job {job_id}", type="export_job_missing", non_retryable=True)
        return job

    @activity.defn(name="write_export_file")
    async def write_export_file(self, params: ExportFileInput) -> ExportFileResult:
        job = await self._job(params.job_id)
        if job["status"] == "succeeded" and job["file_path"] and os.path.exists(job["file_path"]):
            return ExportFileResult(rows_written=job["rows_written"], bytes=job["bytes"] or 0, path=job["file_path"])
        try:
            header, stmt = exports.export_statement(job["kind"], job["filters"])
        except (KeyError, ValidationError) as exc:
            raise ApplicationError(f"invalid export job: {exc}", type="invalid_export", non_retryable=True) from exc
        estimate = await exports.estimate_rows(self._engine, stmt)
        await store.mark_running(self._engine, job["id"], rows_total=estimate)

        directory = self._settings.export_path
        directory.mkdir(parents=True, exist_ok=True)
        for stale in part_files(directory, job["id"]):  # an earlier attempt's
            stale.unlink(missing_ok=True)
        fmt = job["format"]
        final = directory / f"{job['id']}.{fmt}"
        part = directory / f".{job['id']}.{fmt}.{activity.info().attempt}.part"

        written = 0
        last_report = time.monotonic()

        async def on_batch(rows: int) -> None:
            nonlocal written, last_report
            written += rows
            activity.heartbeat(written)
            if time.monotonic() - last_report >= PROGRESS_EVERY_SECONDS:
                last_report = time.monotonic()
                await self._report(job["id"], written, estimate)

        batch = self._settings.export_batch_rows
        try:
            if fmt == "csv":
                with open(part, "wb") as fh:
                    async for chunk in exports.csv_stream(self._engine, header, stmt, batch, on_batch=on_batch):
                        await asyncio.to_thread(fh.write, chunk)
            else:
                await exports.build_xlsx(self._engine, header, stmt, batch, sheet=job["kind"], path=str(part),
                                         on_batch=on_batch)
            os.replace(part, final)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        size = final.stat().st_size
        await store.mark_succeeded(self._engine, job["id"], rows_written=written, size=size, path=str(final),
                                   keep_seconds=params.retention_seconds)
        return ExportFileResult(rows_written=written, bytes=size, path=str(final))

    async def _report(self, job_id: str, written: int, estimate: int) -> None:
        """Progress on the job row and to the workflow's query; best effort, never fails the export."""
        try:
            await store.set_rows_written(self._engine, job_id, written)
            await activity.client().get_workflow_handle(export_workflow_id(job_id)).signal(
                PROGRESS_SIGNAL, ExportProgressSignal(rows_written=written, rows_total=estimate))
        except Exception as exc:  # noqa: BLE001 — progress is informative only
            log.warning("export %s: progress not reported: %s", job_id, exc)

    @activity.defn(name="expire_export_file")
    async def expire_export_file(self, params: ExportJobIdInput) -> None:
        job = await self._job(params.job_id)
        if job["file_path"]:
            Path(job["file_path"]).unlink(missing_ok=True)
        await store.mark_expired(self._engine, job["id"])

    @activity.defn(name="fail_export_job")
    async def fail_export_job(self, params: ExportFailInput) -> None:
        for stale in part_files(self._settings.export_path, params.job_id):
            stale.unlink(missing_ok=True)
        await store.mark_failed(self._engine, params.job_id, params.error[:2000])
