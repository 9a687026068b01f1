"""Foundation: readiness of every dependency, problem-details errors, auth, the health workflow,
and the encrypting payload codec — against real PostgreSQL, Redis and Temporal."""

from __future__ import annotations

import uuid

import pytest
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from prometheus_client.parser import text_string_to_metric_families

from api.deps import require
from core.platform.auth_tokens import mint_dev_token
from core.platform.names import health_workflow_id
from core.platform.roles import Permission
from workflows.health import HealthCheckInput, HealthCheckWorkflow


async def test_health_is_live(client):
    r = await client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_ready_reports_each_dependency_up(client):
    r = await client.get("/ready")
    body = r.json()
    assert r.status_code == 200, body
    assert {k: v["status"] for k, v in body["checks"].items()} == {
        "postgres": "up",
        "redis": "up",
        "temporal": "up",
    }


async def test_ready_reports_a_dead_dependency(settings, temporal_client):
    from api.app import create_app
    import httpx

    broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    app = create_app(broken, temporal_client=temporal_client)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            r = await c.get("/ready")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["redis"]["status"] == "down" and checks["postgres"]["status"] == "up"


async def test_metrics_are_prometheus_text(client):
    await client.get("/health")
    await client.get("/api/v1/payouts/po_nope")  # 401: no token
    await client.get("/api/v1/no/such/route")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert "payouts_created_total" in r.text
    counted = {(s.labels["method"], s.labels["route"], s.labels["status"])
               for family in text_string_to_metric_families(r.text) if family.name == "http_requests"
               for s in family.samples if s.name == "http_requests_total"}
    # routes by the template the API documents (prefix included), never by the raw path
    assert {("GET", "/health", "200"), ("GET", "/api/v1/payouts/{payout_id}", "401"),
            ("GET", "unmatched", "404")} <= counted
    assert not any("po_nope" in route or route == "/payouts/{payout_id}" for _, route, _ in counted)


async def test_unknown_route_is_a_404_problem(client):
    r = await client.get("/api/v1/nope")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 404 and r.json()["type"] == "not_found"


async def test_a_dropped_database_connection_is_a_503_problem_then_heals(client, settings, token_for):
    """The API does not ping pooled connections on checkout: a request meeting one the database
    dropped answers a retryable 503 problem (never a 500), and the next request works."""
    import asyncpg

    headers = token_for("ops_admin")
    assert (await client.get("/api/v1/payouts", headers=headers)).status_code == 200  # a pooled connection
    admin = await asyncpg.connect(settings.database_url)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
    finally:
        await admin.close()
    assert killed >= 1
    r = await client.get("/api/v1/payouts", headers=headers)
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "database_unavailable" and r.headers["retry-after"] == "1"
    assert (await client.get("/api/v1/payouts", headers=headers)).status_code == 200


# A probe router to exercise the auth and validation plumbing every endpoint shares.
class ProbeBody(BaseModel):
    amount: str = Field(pattern=r"^[0-9]+(\.[0-9]+)?$")
    count: int


probe = APIRouter(prefix="/probe")


@probe.post("/payouts-write")
async def _probe(body: ProbeBody, principal=Depends(require(Permission.PAYOUTS_WRITE))):
    return {"sub": principal.sub, "merchant_id": principal.merchant_id}


@pytest.fixture
async def probe_client(app, client):
    app.include_router(probe)
    return client


class TestAuthAndProblems:
    async def test_no_token_is_401(self, probe_client):
        r = await probe_client.post("/probe/payouts-write", json={"amount": "1", "count": 1})
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["type"] == "unauthorized"

    async def test_garbage_and_expired_and_foreign_tokens_are_401(self, probe_client, settings):
        expired = mint_dev_token(settings, role="ops_admin", ttl_seconds=-60)
        foreign = mint_dev_token(settings.model_copy(update={"jwt_secret": "x" * 40}), role="ops_admin")
        wrong_aud = mint_dev_token(settings.model_copy(update={"jwt_audience": "other"}), role="ops_admin")
        for tok in ("garbage", expired, foreign, wrong_aud):
            r = await probe_client.post(
                "/probe/payouts-write", json={"amount": "1", "count": 1},
                headers={"Authorization": f"Bearer {tok}"},
            )
            assert r.status_code == 401, (tok, r.text)
            assert r.json()["type"] == "unauthorized"

    async def test_wrong_role_is_403(self, probe_client, token_for):
        r = await probe_client.post(
            "/probe/payouts-write", json={"amount": "1", "count": 1}, headers=token_for("auditor")
        )
        assert r.status_code == 403 and r.json()["type"] == "forbidden"

    async def test_right_role_passes(self, probe_client, token_for):
        r = await probe_client.post(
            "/probe/payouts-write", json={"amount": "1", "count": 1},
            headers=token_for("merchant_admin", merchant_id="mer_a"),
        )
        assert r.status_code == 200 and r.json()["merchant_id"] == "mer_a"

    async def test_malformed_json_is_422_problem(self, probe_client, token_for):
        r = await probe_client.post(
            "/probe/payouts-write", content=b"{not json", headers={
                **token_for("ops_admin"), "content-type": "application/json"},
        )
        assert r.status_code == 422
        assert r.json()["type"] == "validation_error"
        assert "Traceback" not in r.text

    async def test_invalid_field_is_422_naming_the_field(self, probe_client, token_for):
        r = await probe_client.post(
            "/probe/payouts-write", json={"amount": "1.2.3", "count": "many"}, headers=token_for("ops_admin")
        )
        assert r.status_code == 422
        body = r.json()
        locs = {tuple(e["loc"]) for e in body["errors"]}
        assert ("body", "amount") in locs and ("body", "count") in locs


async def test_health_workflow_runs_end_to_end(temporal_client, worker, settings):
    result = await temporal_client.execute_workflow(
        HealthCheckWorkflow.run,
        HealthCheckInput(requested_by="test"),
        id=health_workflow_id(uuid.uuid4().hex),
        task_queue=settings.temporal_task_queue,
    )
    assert result.ok and result.report.postgres_ok and result.report.redis_ok


async def test_payloads_are_encrypted_in_temporal_history(temporal_client, worker, settings):
    """What the Temporal server stores is ciphertext; only our codec reads it back."""
    from temporalio.client import Client

    secret = f"DE89370400440532013000-{uuid.uuid4().hex}"
    wf_id = health_workflow_id(uuid.uuid4().hex)
    await temporal_client.execute_workflow(
        HealthCheckWorkflow.run, HealthCheckInput(requested_by=secret),
        id=wf_id, task_queue=settings.temporal_task_queue,
    )
    # A client without our codec sees the raw history the server keeps.
    raw = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    history = await raw.get_workflow_handle(wf_id).fetch_history()
    blob = history.to_json()
    assert secret not in blob
    assert "binary/encrypted" in blob or "YmluYXJ5L2VuY3J5cHRlZA" in blob
