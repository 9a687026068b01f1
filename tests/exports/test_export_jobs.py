"""Export jobs: an ExportWorkflow writes the file (same rows as the streamed endpoints), shows
progress, serves the download to the requesting tenant only, and removes the file on expiry."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text

from tests.dashboards.test_dashboard_api import data  # noqa: F401 — the shared dashboard data fixture

from core.exports.models import ExportProgress

JOBS = "/api/v1/export/jobs"


@pytest.fixture
def settings(settings, tmp_path):
    return settings.model_copy(update={"export_dir": tmp_path / "exports"})


async def wait_for_status(client, job_id: str, headers: dict, statuses: set[str], timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get(f"{JOBS}/{job_id}", headers=headers)
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job still {job['status']}: {job}"
        await asyncio.sleep(0.1)


async def run_job(client, headers: dict, body: dict) -> dict:
    r = await client.post(JOBS, json=body, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json()["status"] in ("queued", "running")
    return await wait_for_status(client, r.json()["id"], headers, {"succeeded", "failed"})


class TestExportJobs:
    async def test_csv_job_has_the_streamed_rows(self, client, token_for, data, worker, settings,  # noqa: F811
                                                 temporal_client):
        merchant = token_for("merchant_admin", merchant_id="m_a")
        job = await run_job(client, merchant, {"kind": "transactions", "format": "csv",
                                               "filters": {"currency": "USD"}})
        assert job["status"] == "succeeded" and job["percent"] == 100.0
        assert job["merchant_id"] == "m_a" and job["download_url"] == f"{JOBS}/{job['id']}/download"
        got = await client.get(job["download_url"], headers=merchant)
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
        assert f'filename="transactions-{job["id"]}.csv"' in got.headers["content-disposition"]
        streamed = await client.get("/api/v1/export/transactions", params={"format": "csv", "currency": "USD"},
                                    headers=merchant)
        assert got.content == streamed.content
        rows = list(csv.DictReader(io.StringIO(got.text)))
        async with data() as session:
            n = (await session.execute(text(
                "SELECT count(*) FROM transactions WHERE merchant_id = 'm_a' AND currency = 'USD'"))).scalar_one()
        assert len(rows) == n == job["rows_written"] == job["rows_total"] > 0
        assert {x["merchant_id"] for x in rows} == {"m_a"}
        assert job["bytes"] == len(got.content)
        assert os.listdir(settings.export_path) == [f"{job['id']}.csv"]  # no temporary part left behind
        progress = await temporal_client.get_workflow_handle(f"export-{job['id']}").query(
            "progress", result_type=ExportProgress)  # the workflow waits out the retention now
        assert (progress.status, progress.rows_written, progress.bytes) == ("succeeded", n, job["bytes"])

    async def test_xlsx_job_of_payouts_and_discrepancies(self, client, token_for, data, worker):  # noqa: F811
        from openpyxl import load_workbook

        ops = token_for("finance_ops")
        job = await run_job(client, ops, {"kind": "transactions", "format": "xlsx", "filters": {"status": "failed"}})
        got = await client.get(job["download_url"], headers=ops)
        assert got.headers["content-type"].startswith("application/vnd.openxmlformats")
        ws = load_workbook(io.BytesIO(got.content), read_only=True).active
        async with data() as session:
            n = (await session.execute(text("SELECT count(*) FROM transactions WHERE status = 'failed'"))).scalar_one()
            bad = (await session.execute(text(
                "SELECT count(*) FROM reconciliation_results WHERE category <> 'matched'"))).scalar_one()
        assert sum(1 for _ in ws.iter_rows()) == n + 1 and job["rows_written"] == n > 0

        job = await run_job(client, ops, {"kind": "discrepancies", "format": "csv"})
        got = await client.get(job["download_url"], headers=ops)
        assert len(list(csv.DictReader(io.StringIO(got.text)))) == bad == job["rows_written"] > 0

        job = await run_job(client, ops, {"kind": "payouts"})  # csv by default; no payouts in this data
        got = await client.get(job["download_url"], headers=ops)
        assert got.text.splitlines()[0].startswith("id,merchant_id,amount_minor") and job["rows_written"] == 0

    async def test_only_the_requesting_tenant_sees_the_job(self, client, token_for, data, worker):  # noqa: F811
        a = token_for("merchant_admin", merchant_id="m_a")
        job = await run_job(client, a, {"kind": "transactions"})
        for other in (token_for("merchant_admin", merchant_id="m_b"), token_for("ops_admin")):
            assert (await client.get(f"{JOBS}/{job['id']}", headers=other)).status_code == 404
            r = await client.get(f"{JOBS}/{job['id']}/download", headers=other)
            assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        # a merchant user cannot widen its scope, nor export discrepancies
        r = await client.post(JOBS, json={"kind": "transactions", "filters": {"merchant_id": "m_b"}}, headers=a)
        assert r.status_code == 403
        assert (await client.post(JOBS, json={"kind": "discrepancies"}, headers=a)).status_code == 403
        assert (await client.get(f"{JOBS}/{job['id']}")).status_code == 401

    async def test_bad_input_is_a_422_problem(self, client, token_for):
        ops = token_for("ops_admin")
        for body in ({"kind": "ledger"}, {"kind": "transactions", "format": "pdf"},
                     {"kind": "transactions", "filters": {"currency": "usd"}},
                     {"kind": "transactions", "filters": {"no_such_filter": 1}},
                     {"kind": "payouts", "filters": {"created_from": "yesterday"}}, {}):
            r = await client.post(JOBS, json=body, headers=ops)
            assert r.status_code == 422, (body, r.text)
            assert r.headers["content-type"] == "application/problem+json"

    async def test_download_before_the_file_is_written_is_409(self, client, token_for, data, sessionmaker):  # noqa: F811
        ops = token_for("ops_admin")  # no worker on this test's task queue: the job stays queued
        r = await client.post(JOBS, json={"kind": "transactions"}, headers=ops)
        assert r.status_code == 202 and r.json()["status"] == "queued" and r.json()["download_url"] is None
        d = await client.get(f"{JOBS}/{r.json()['id']}/download", headers=ops)
        assert d.status_code == 409 and d.json()["type"] == "export_not_ready"

    async def test_streamed_export_above_the_limit_points_at_jobs(self, app, client, token_for, data):  # noqa: F811
        app.state.settings = app.state.settings.model_copy(update={"export_stream_max_rows": 5})
        r = await client.get("/api/v1/export/transactions", headers=token_for("ops_admin"))
        assert r.status_code == 422 and r.json()["type"] == "export_too_large"
        assert r.json()["jobs"] == JOBS and r.json()["estimated_rows"] > 5


async def test_expired_file_is_removed_and_its_download_is_410(skipping_env, worker_deps, settings, token_for,
                                                               data):  # noqa: F811
    """Retention 24 h on the time-skipping server: the timer fires when the test waits for the result."""
    from api.app import create_app
    from workers.main import build_worker

    app = create_app(settings, temporal_client=skipping_env.client)
    ops = token_for("ops_admin")
    async with app.router.lifespan_context(app), \
            build_worker(skipping_env.client, worker_deps, task_queue=settings.temporal_task_queue):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://payops.test") as client:
            job = await run_job(client, ops, {"kind": "transactions", "format": "csv"})
            path = settings.export_path / f"{job['id']}.csv"
            assert job["status"] == "succeeded" and path.exists()
            assert (await client.get(job["download_url"], headers=ops)).status_code == 200

            await skipping_env.sleep(timedelta(hours=24, minutes=1))  # skips the retention: the timer fires
            after = await wait_for_status(client, job["id"], ops, {"expired"})
            assert after["download_url"] is None and not path.exists()
            result = await skipping_env.client.get_workflow_handle(f"export-{job['id']}",
                                                                   result_type=ExportProgress).result()
            assert result.status == "expired" and result.rows_written == job["rows_written"]
            r = await client.get(f"{JOBS}/{job['id']}/download", headers=ops)
            assert r.status_code == 410 and r.json()["type"] == "export_expired"
