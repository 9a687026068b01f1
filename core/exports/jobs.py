"""Export jobs: very large exports run as an ExportWorkflow that writes a file, served for
download until it expires. Scoped like the streamed exports: a job is visible to the tenant that
requested it only (a merchant user's merchant, or the platform roles).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError

from core.platform.errors import Conflict, NotFound, PayopsError, ServiceUnavailable, typed
from core.exports.models import ExportProgress, ExportWorkflowInput
from core.platform.names import EXPORT_WORKFLOW, export_workflow_id
from core.platform.settings import Settings
from core.platform.tables import export_jobs

ExportNotReady = typed(Conflict, "export_not_ready", "Export not ready")


class ExportExpired(PayopsError):
    status, type, title = 410, "export_expired", "Export expired"


async def create_job(session: AsyncSession, client: Client, settings: Settings, *, requested_by: str,
                     tenant_merchant_id: str | None, kind: str, fmt: str, filters: BaseModel) -> dict[str, Any]:
    """Record the job, commit, then start its workflow."""
    job_id = f"exp_{uuid.uuid4().hex[:24]}"
    workflow_id = export_workflow_id(job_id)
    await session.execute(insert(export_jobs).values(
        id=job_id, requested_by=requested_by, tenant_merchant_id=tenant_merchant_id,
        merchant_id=getattr(filters, "merchant_id", None), kind=kind, format=fmt,
        filters=filters.model_dump(mode="json", exclude_none=True), status="queued", workflow_id=workflow_id))
    await session.commit()
    try:
        await client.start_workflow(
            EXPORT_WORKFLOW, ExportWorkflowInput(job_id=job_id, retention_seconds=settings.export_retention_hours * 3600),
            id=workflow_id, task_queue=settings.temporal_task_queue)
    except RPCError as exc:
        await session.execute(export_jobs.update().where(export_jobs.c.id == job_id).values(
            status="failed", error=f"not started: {exc.message}"))
        await session.commit()
        raise ServiceUnavailable(f"Temporal: {exc.message}") from exc
    return await get_job(session, job_id, tenant_merchant_id)


async def get_job(session: AsyncSession, job_id: str, tenant_merchant_id: str | None) -> dict[str, Any]:
    """The job if the caller's tenant requested it; anyone else gets 404 (its existence is not told)."""
    tenant = (export_jobs.c.tenant_merchant_id.is_(None) if tenant_merchant_id is None
              else export_jobs.c.tenant_merchant_id == tenant_merchant_id)
    row = (await session.execute(select(export_jobs).where(export_jobs.c.id == job_id, tenant))).mappings().first()
    if row is None:
        raise NotFound(f"no export job {job_id}")
    return dict(row)


async def live_progress(client: Client, job: dict[str, Any]) -> dict[str, Any]:
    """A running job's row count from its workflow's `progress` query (fresher than the row)."""
    if job["status"] not in ("queued", "running"):
        return job
    try:
        p = await asyncio.wait_for(client.get_workflow_handle(job["workflow_id"]).query(
            "progress", result_type=ExportProgress), timeout=2.0)
    except Exception:  # noqa: BLE001 — a query that fails or is slow: the row is the fallback
        return job
    if p.status == "running" and p.rows_written > (job["rows_written"] or 0):
        return {**job, "status": "running", "rows_written": p.rows_written,
                "rows_total": p.rows_total if p.rows_total is not None else job["rows_total"]}
    return job


def expired(job: dict[str, Any], now: datetime | None = None) -> bool:
    now = now or datetime.now(timezone.utc)
    return job["status"] == "expired" or (job["expires_at"] is not None and job["expires_at"] <= now)


def job_out(job: dict[str, Any], base_path: str) -> dict[str, Any]:
    status = "expired" if job["status"] == "succeeded" and expired(job) else job["status"]
    written, total = job["rows_written"] or 0, job["rows_total"]
    if status in ("succeeded", "expired"):
        percent: float | None = 100.0
    elif status == "queued":
        percent = 0.0
    elif total:
        percent = round(min(99.9, 100.0 * written / total), 1)
    else:
        percent = None
    return {
        "id": job["id"], "kind": job["kind"], "format": job["format"], "status": status,
        "merchant_id": job["merchant_id"], "filters": job["filters"], "requested_by": job["requested_by"],
        "rows_total": total, "rows_written": written, "percent": percent, "bytes": job["bytes"],
        "error": job["error"], "created_at": job["created_at"], "started_at": job["started_at"],
        "finished_at": job["finished_at"], "expires_at": job["expires_at"],
        "download_url": f"{base_path}/{job['id']}/download" if status == "succeeded" else None,
    }


def open_download(job: dict[str, Any]) -> AsyncIterator[bytes]:
    """The finished file, opened now (so a concurrent expiry cannot cut the download short)."""
    if expired(job):
        raise ExportExpired(f"export job {job['id']} expired at {job['expires_at']}")
    if job["status"] != "succeeded":
        raise ExportNotReady(f"export job {job['id']} is {job['status']}")
    try:
        fh = open(job["file_path"], "rb")
    except (OSError, TypeError):
        raise ExportExpired(f"the file of export job {job['id']} is gone") from None

    async def chunks() -> AsyncIterator[bytes]:
        with fh:
            while data := await asyncio.to_thread(fh.read, 1 << 16):
                yield data

    return chunks()


def download_name(job: dict[str, Any]) -> str:
    return f"{job['kind']}-{job['id']}.{job['format']}"
