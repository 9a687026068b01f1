"""The API request log against real PostgreSQL, Redis and Temporal: what a request leaves behind
(and what it never does), who may read which rows, the in-memory buffer's bounds, and the
retention Schedule's workflow pruning old rows."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select, text

from api.deps import merchant_scope  # noqa: F401 — the scope rule the endpoint relies on
from core.api_logs import store
from core.api_logs.recorder import ApiLogRecorder
from core.platform.tables import api_request_log
from tests.factories import create_merchant

BENEFICIARY_NAME = "Ada Secretname"


def payout_body(merchant_id: str | None = None) -> dict:
    body = {"amount": "12.34", "currency": "EUR", "method": "sepa",
            "beneficiary": {"name": BENEFICIARY_NAME, "iban": "DE89 3704 0044 0532 0130 00", "bic": "COBADEFFXXX"}}
    if merchant_id:
        body["merchant_id"] = merchant_id
    return body


async def flush(app) -> None:
    await app.state.api_log.flush()


async def all_rows(sessionmaker) -> list[dict]:
    async with sessionmaker() as s:
        return [dict(r) for r in (await s.execute(select(api_request_log).order_by(api_request_log.c.id))).mappings()]


class TestWhatIsLogged:
    async def test_a_create_is_logged_with_its_route_template_and_no_body_or_authorization(
            self, app, client, token_for, sessionmaker):
        merchant = await create_merchant(sessionmaker)
        headers = token_for("merchant_admin", merchant_id=merchant, sub="alice@acme")
        idem = uuid.uuid4().hex
        created = await client.post("/api/v1/payouts", json=payout_body(),
                                    headers={**headers, "Idempotency-Key": idem, "X-Request-ID": "req-abc-123"})
        assert created.status_code == 201, created.text
        assert created.headers["x-request-id"] == "req-abc-123"
        payout_id = created.json()["id"]
        read = await client.get(f"/api/v1/payouts/{payout_id}", headers=headers)
        assert read.status_code == 200
        await flush(app)

        rows = [r for r in await all_rows(sessionmaker) if r["merchant_id"] == merchant]
        assert [(r["method"], r["route"], r["status"]) for r in rows] == [
            ("POST", "/api/v1/payouts", 201), ("GET", "/api/v1/payouts/{payout_id}", 200)]
        post, get = rows
        assert post["principal"] == "alice@acme" and post["idempotency_key"] == idem
        assert post["request_id"] == "req-abc-123" and get["request_id"] == read.headers["x-request-id"]
        assert post["client_ip"] and post["latency_ms"] > 0 and get["idempotency_key"] is None

        token = headers["Authorization"].split()[1]
        async with sessionmaker() as s:  # every column of every row, as text
            dumped = "\n".join((await s.execute(text("SELECT t::text FROM api_request_log t"))).scalars())
        for secret in (token, "Bearer", BENEFICIARY_NAME, "DE89", "12.34", payout_id):
            assert secret not in dumped

    async def test_an_unauthenticated_request_is_not_logged(self, app, client, sessionmaker):
        r = await client.get("/api/v1/payouts")
        assert r.status_code == 401
        await flush(app)
        assert await all_rows(sessionmaker) == []

    async def test_a_refused_request_is_logged_with_its_status(self, app, client, token_for, sessionmaker):
        merchant = await create_merchant(sessionmaker)
        r = await client.get("/api/v1/payouts/po_nope", headers=token_for("merchant_viewer", merchant_id=merchant))
        assert r.status_code == 404
        await flush(app)
        assert [(x["route"], x["status"]) for x in await all_rows(sessionmaker)] == [
            ("/api/v1/payouts/{payout_id}", 404)]


class TestListAndScoping:
    @pytest.fixture
    async def two_merchants(self, app, client, token_for, sessionmaker):
        a, b = await create_merchant(sessionmaker), await create_merchant(sessionmaker)
        for merchant in (a, a, b):
            r = await client.get("/api/v1/payouts", headers=token_for("merchant_admin", merchant_id=merchant))
            assert r.status_code == 200
        r = await client.get("/api/v1/balances", headers=token_for("merchant_admin", merchant_id=b),
                             params={"merchant_id": a})
        assert r.status_code == 403
        await flush(app)
        return a, b

    async def test_a_merchant_sees_only_its_own_requests(self, app, client, token_for, two_merchants):
        a, b = two_merchants
        r = await client.get("/api/v1/api-logs", headers=token_for("merchant_viewer", merchant_id=a))
        assert r.status_code == 200
        rows = r.json()["data"]
        assert rows and {x["merchant_id"] for x in rows} == {a}
        assert len([x for x in rows if x["route"] == "/api/v1/payouts"]) == 2

    async def test_a_merchant_naming_another_merchant_is_403(self, client, token_for, two_merchants):
        a, b = two_merchants
        r = await client.get("/api/v1/api-logs", params={"merchant_id": b},
                             headers=token_for("merchant_viewer", merchant_id=a))
        assert r.status_code == 403

    async def test_ops_see_every_merchant_and_filter(self, client, token_for, two_merchants):
        a, b = two_merchants
        ops = token_for("ops_admin")
        rows = (await client.get("/api/v1/api-logs", params={"limit": 200}, headers=ops)).json()["data"]
        assert {a, b} <= {x["merchant_id"] for x in rows}
        only_b = (await client.get("/api/v1/api-logs", params={"merchant_id": b}, headers=ops)).json()["data"]
        assert {(x["route"], x["status"]) for x in only_b} == {("/api/v1/payouts", 200), ("/api/v1/balances", 403)}
        refused = (await client.get("/api/v1/api-logs", params={"status": 403, "method": "GET"},
                                    headers=ops)).json()["data"]
        assert [(x["merchant_id"], x["route"]) for x in refused] == [(b, "/api/v1/balances")]
        in_future = (await client.get("/api/v1/api-logs", headers=ops, params={
            "from": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()})).json()["data"]
        assert in_future == []

    async def test_pages_follow_each_other_without_overlap(self, client, token_for, two_merchants):
        a, _ = two_merchants
        headers = token_for("ops_admin")
        seen, cursor = [], None
        while True:
            params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/api/v1/api-logs", params=params, headers=headers)).json()
            seen += [x["id"] for x in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) >= 4 and seen == sorted(seen, reverse=True)

    async def test_a_cursor_not_ours_is_422(self, client, token_for):
        r = await client.get("/api/v1/api-logs", params={"cursor": "not-a-cursor"}, headers=token_for("ops_admin"))
        assert r.status_code == 422


def _entry(at: datetime, merchant_id: str = "mer_x") -> dict:
    return {"at": at, "merchant_id": merchant_id, "principal": "p", "method": "GET", "route": "/api/v1/payouts",
            "status": 200, "latency_ms": 1.0, "idempotency_key": None, "request_id": uuid.uuid4().hex,
            "client_ip": "127.0.0.1"}


async def _count(sessionmaker) -> int:
    async with sessionmaker() as s:
        return await s.scalar(select(func.count()).select_from(api_request_log))


class TestRecorder:
    async def test_a_full_buffer_drops_and_counts_instead_of_blocking(self, sessionmaker):
        recorder = ApiLogRecorder(sessionmaker, max_buffered=2, batch_size=10, flush_interval_seconds=60)
        before = REGISTRY.get_sample_value("api_log_dropped_total") or 0.0
        now = datetime.now(timezone.utc)
        for _ in range(5):
            recorder.record(_entry(now))
        assert recorder.buffered == 2
        assert (REGISTRY.get_sample_value("api_log_dropped_total") or 0.0) - before == 3
        assert await recorder.flush() == 2 and await _count(sessionmaker) == 2

    async def test_stop_writes_what_is_buffered(self, sessionmaker):
        recorder = ApiLogRecorder(sessionmaker, max_buffered=1000, batch_size=7, flush_interval_seconds=3600)
        recorder.start()
        now = datetime.now(timezone.utc)
        for _ in range(20):
            recorder.record(_entry(now))
        await recorder.stop()
        assert await _count(sessionmaker) == 20 and recorder.buffered == 0


class TestRetention:
    async def test_the_retention_workflow_prunes_old_rows_and_keeps_new_ones(
            self, worker, temporal_client, settings, sessionmaker):
        from workflows.api_logs import ApiLogRetentionInput, ApiLogRetentionWorkflow  # why: needs the worker's queue

        now = datetime.now(timezone.utc)
        old = [_entry(now - timedelta(days=31, minutes=i)) for i in range(3)]
        new = [_entry(now - timedelta(days=29)), _entry(now)]
        async with sessionmaker.begin() as s:
            await store.insert_entries(s, old + new)
        result = await temporal_client.execute_workflow(
            ApiLogRetentionWorkflow.run, ApiLogRetentionInput(retention_days=30),
            id=f"api-log-retention-{uuid.uuid4().hex}", task_queue=settings.temporal_task_queue)
        assert result.deleted == 3
        kept = {r["request_id"] for r in await all_rows(sessionmaker)}
        assert kept == {e["request_id"] for e in new}

    def test_the_schedule_runs_the_workflow_with_the_configured_retention(self, settings):
        from workers.schedules import api_log_retention_schedule  # why: imports workflow modules

        schedule = api_log_retention_schedule(settings.model_copy(update={"api_log_retention_days": 7.0}))
        assert schedule.action.workflow == "ApiLogRetentionWorkflow"
        assert schedule.action.args[0].retention_days == 7.0
