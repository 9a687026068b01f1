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
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.exports import files as exports
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
        async with self._engine.connect() as conn:
            row = (await conn.execute(text("SELECT * FROM export_jobs WHERE id = :id"), {"id": job_id})).mappings().first()
        if row is None:
            raise ApplicationError(f"no export job {job_id}", type="export_job_missing", non_retryable=True)
        return dict(row)

    async def _update(self, job_id: str, sql: str, **params) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(text(f"UPDATE export_jobs SET {sql} WHERE id = :id"), {"id": job_id, **params})

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
        await self._update(job["id"], "status = 'running', started_at = coalesce(started_at, now()), "
                                      "rows_total = :total, rows_written = 0, error = NULL", total=estimate)

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
        await self._update(
            job["id"],
            "status = 'succeeded', rows_written = :n, rows_total = :n, bytes = :size, file_path = :path, "
            "finished_at = now(), expires_at = now() + make_interval(secs => :keep)",
            n=written, size=size, path=str(final), keep=params.retention_seconds)
        return ExportFileResult(rows_written=written, bytes=size, path=str(final))

    async def _report(self, job_id: str, written: int, estimate: int) -> None:
        """Progress on the job row and to the workflow's query; best effort, never fails the export."""
        try:
            await self._update(job_id, "rows_written = :n", n=written)
            await activity.client().get_workflow_handle(export_workflow_id(job_id)).signal(
                PROGRESS_SIGNAL, ExportProgressSignal(rows_written=written, rows_total=estimate))
        except Exception as exc:  # noqa: BLE001 — progress is informative only
            log.warning("export %s: progress not reported: %s", job_id, exc)

    @activity.defn(name="expire_export_file")
    async def expire_export_file(self, params: ExportJobIdInput) -> None:
        job = await self._job(params.job_id)
        if job["file_path"]:
            Path(job["file_path"]).unlink(missing_ok=True)
        await self._update(job["id"], "status = 'expired'")

    @activity.defn(name="fail_export_job")
    async def fail_export_job(self, params: ExportFailInput) -> None:
        for stale in part_files(self._settings.export_path, params.job_id):
            stale.unlink(missing_ok=True)
        await self._update(params.job_id, "status = 'failed', error = :err, finished_at = now()",
                           err=params.error[:2000])
