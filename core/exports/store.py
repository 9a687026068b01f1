"""The export_jobs rows an ExportWorkflow's activities read and update (the API's side, creating
and reading a job under its tenant, is core/exports/jobs.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def get_job_row(engine: AsyncEngine, job_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM export_jobs WHERE id = :id"), {"id": job_id})).mappings().first()
    return None if row is None else dict(row)


async def _update(engine: AsyncEngine, job_id: str, sql: str, **params: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f"UPDATE export_jobs SET {sql} WHERE id = :id"), {"id": job_id, **params})


async def mark_running(engine: AsyncEngine, job_id: str, *, rows_total: int) -> None:
    """An attempt starts writing: from the first row again, with the planner's estimate."""
    await _update(engine, job_id, "status = 'running', started_at = coalesce(started_at, now()), "
                                  "rows_total = :total, rows_written = 0, error = NULL", total=rows_total)


async def set_rows_written(engine: AsyncEngine, job_id: str, rows_written: int) -> None:
    await _update(engine, job_id, "rows_written = :n", n=rows_written)


async def mark_succeeded(engine: AsyncEngine, job_id: str, *, rows_written: int, size: int, path: str,
                         keep_seconds: float) -> None:
    await _update(
        engine, job_id,
        "status = 'succeeded', rows_written = :n, rows_total = :n, bytes = :size, file_path = :path, "
        "finished_at = now(), expires_at = now() + make_interval(secs => :keep)",
        n=rows_written, size=size, path=path, keep=keep_seconds)


async def mark_expired(engine: AsyncEngine, job_id: str) -> None:
    await _update(engine, job_id, "status = 'expired'")


async def mark_failed(engine: AsyncEngine, job_id: str, error: str) -> None:
    await _update(engine, job_id, "status = 'failed', error = :err, finished_at = now()", err=error)
