"""Dependency outages answer 503 (issue 17, item 3), never a 500.

The real API (create_app, its lifespan, its pools and clients) runs on its own PostgreSQL, Redis
and Temporal dev server, started here on fixed ports so they can be stopped and started again
(the session's shared services must keep running for the other tests). For each dependency in
turn the test stops it, calls every GET/POST operation of the OpenAPI document with an ops_admin
token, and checks that nothing answers 500 and that every 503 carries Retry-After and a problem
document; then it starts the dependency again and the operations that answered 2xx before do so
again. Printed: dependency × operations called / 503 / 500.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from devstack.embedded import EmbeddedPostgres, EmbeddedRedis, TemporalDevServer, free_port
from core.platform.names import SEARCH_ATTRIBUTES
from core.platform.settings import Settings

pytestmark = pytest.mark.slow

# Streams that never end on their own (live updates) are not request/response operations.
SKIP = {("GET", "/api/v1/sse/updates")}
# The readiness probe's 503 body is its per-dependency report (with Retry-After), not a problem.
REPORTS = {"/ready"}
REQUEST_TIMEOUT_S = 30.0
# Valid bodies for operations that start or signal workflows, so that with Temporal down the call
# gets as far as Temporal (an empty body stops at validation).
BODIES = {
    "/api/v1/reconciliation/run": {"date_from": "2026-01-01", "date_to": "2026-01-02"},
    "/api/v1/sync/trigger": {"source": "vima"},
    "/api/v1/sync/backfill": {"source": "payshack", "date_from": "2026-01-01", "date_to": "2026-01-02"},
}


@dataclass
class Services:
    pg: EmbeddedPostgres
    redis: EmbeddedRedis
    temporal: TemporalDevServer
    database_url: str


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    root = Path(tempfile.mkdtemp(prefix="payops-outages-"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root / "postgres", free_port(), fast=True)
    redis = EmbeddedRedis(root / "redis", free_port(), persist=False)
    temporal = TemporalDevServer(root / "temporal.db", free_port(), None, SEARCH_ATTRIBUTES)
    started: list = []
    try:
        for svc in (pg, redis, temporal):
            svc.start()
            started.append(svc)
        url = pg.ensure_database("payops")
        from core.platform.db import run_migrations

        run_migrations(url)
        yield Services(pg, redis, temporal, url)
    finally:
        for svc in reversed(started):
            svc.stop()
        shutil.rmtree(root, ignore_errors=True)


def _settings(services: Services, bank_url: str, *, temporal_address: str | None = None) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=Path(".payops-test"),
        database_url=services.database_url,
        redis_url=services.redis.url,
        temporal_address=temporal_address or services.temporal.address,
        temporal_task_queue=f"test-{uuid.uuid4().hex[:10]}",
        sandbox_bank_url=bank_url,
    )


async def _api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from api.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://payops.test", timeout=REQUEST_TIMEOUT_S) as c:
            c.app = app  # type: ignore[attr-defined]
            yield c


@dataclass
class Op:
    method: str
    path: str  # template
    url: str  # with parameters filled in
    body: dict | None


def _operations(openapi: dict, ids: dict[str, str]) -> list[Op]:
    ops = []
    for path, item in sorted(openapi["paths"].items()):
        for method in ("get", "post"):
            if method not in item or (method.upper(), path) in SKIP:
                continue
            url = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "nonexistent"), path)
            has_body = "requestBody" in item[method]
            ops.append(Op(method.upper(), path, url, BODIES.get(path, {}) if has_body else None))
    return ops


@dataclass
class Tally:
    called: int = 0
    unavailable: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


async def _call_all(client: httpx.AsyncClient, ops: list[Op], headers: dict[str, str]) -> tuple[Tally, list[str]]:
    tally, problems_seen = Tally(), []
    for op in ops:
        h = {**headers, "Idempotency-Key": uuid.uuid4().hex}
        try:
            resp = await client.request(op.method, op.url, headers=h, json=op.body)
        except httpx.TimeoutException:
            problems_seen.append(f"{op.method} {op.path}: no answer within {REQUEST_TIMEOUT_S}s")
            continue
        tally.called += 1
        tally.statuses[f"{op.method} {op.path}"] = resp.status_code
        if resp.status_code >= 500 and resp.status_code != 503:
            tally.errors += 1
            problems_seen.append(f"{op.method} {op.path}: {resp.status_code} {resp.text[:200]}")
        if resp.status_code == 503:
            tally.unavailable += 1
            if not resp.headers.get("retry-after", "").isdigit():
                problems_seen.append(f"{op.method} {op.path}: 503 without Retry-After")
            is_problem = resp.headers.get("content-type") == "application/problem+json" and resp.json().get("status") == 503
            if not is_problem and op.path not in REPORTS:
                problems_seen.append(f"{op.method} {op.path}: 503 is not a problem document: {resp.text[:200]}")
    return tally, problems_seen


async def _seed(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    """A funded merchant: fills {merchant_id}, and makes POST /payouts a valid creation."""
    merchant_id = f"mer_{uuid.uuid4().hex[:8]}"
    r = await client.post("/api/v1/merchants", headers=headers,
                          json={"id": merchant_id, "name": "Outage Test", "default_currency": "EUR", "country": "FR"})
    assert r.status_code == 201, r.text
    r = await client.post(f"/api/v1/merchants/{merchant_id}/funding", headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                          json={"amount": "100000.00", "currency": "EUR", "reference": "outage test"})
    assert r.status_code in (200, 201), r.text
    BODIES["/api/v1/payouts"] = {
        "merchant_id": merchant_id, "amount": "12.34", "currency": "EUR", "method": "sepa",
        "beneficiary": {"name": "Ada Lovelace", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"},
    }
    return {"merchant_id": merchant_id}


async def _pg_accepting(services: Services) -> bool:
    try:
        conn = await asyncpg.connect(services.pg.url, timeout=2)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def test_every_endpoint_answers_503_not_500_while_a_dependency_is_down(services: Services, bank, token_for) -> None:
    settings = _settings(services, bank.url)
    from core.platform.auth_tokens import mint_dev_token

    headers = {"Authorization": f"Bearer {mint_dev_token(settings, role='ops_admin', sub='outage-test')}"}
    table: list[tuple[str, Tally]] = []
    failures: list[str] = []
    started = time.monotonic()

    async for client in _api(settings):
        ops = _operations(client.app.openapi(), await _seed(client, headers))  # type: ignore[attr-defined]
        baseline, problems_seen = await _call_all(client, ops, headers)
        assert not problems_seen, "with every dependency up:\n" + "\n".join(problems_seen)
        table.append(("(all up)", baseline))
        ok_before = {k for k, v in baseline.statuses.items() if v < 300}
        assert len(ok_before) > 20, baseline.statuses  # the calls reach the handlers

        for name, svc in (("postgres", services.pg), ("redis", services.redis), ("temporal", services.temporal)):
            await asyncio.to_thread(svc.stop)
            tally, problems_seen = await _call_all(client, ops, headers)
            table.append((f"{name} down", tally))
            failures += [f"[{name} down] {p}" for p in problems_seen]
            await asyncio.to_thread(svc.start)
            if name == "postgres":
                from tests.polling import wait_until

                await wait_until(lambda: _pg_accepting(services), timeout=30, interval=0.2, what="postgres back")
            # back: what answered 2xx before does so again (a stale pooled connection may cost one 503)
            again, problems_seen = await _call_all(client, ops, headers)
            again2, _ = await _call_all(client, ops, headers)
            failures += [f"[{name} back] {p}" for p in problems_seen]
            table.append((f"{name} back", again2))
            not_ok = sorted(k for k in ok_before if again2.statuses.get(k, 599) >= 300)
            if not_ok:
                failures.append(f"[{name} back] no longer 2xx: {[(k, again2.statuses.get(k)) for k in not_ok]}")

    # Temporal unreachable from the start (the API starts before Temporal; its client stays None)
    dead = f"127.0.0.1:{free_port()}"
    async for client in _api(_settings(services, bank.url, temporal_address=dead)):
        tally, problems_seen = await _call_all(client, ops, headers)
        table.append(("temporal unreachable", tally))
        failures += [f"[temporal unreachable] {p}" for p in problems_seen]

    print(f"\n{'dependency':<22} {'called':>6} {'503':>5} {'500':>5}   ({time.monotonic() - started:.1f}s)")
    for name, t in table:
        print(f"{name:<22} {t.called:>6} {t.unavailable:>5} {t.errors:>5}")
    assert not failures, "\n".join(failures)
    by_name = dict(table)
    for name in ("postgres down", "redis down", "temporal down", "temporal unreachable"):
        assert by_name[name].errors == 0
    assert by_name["postgres down"].unavailable > 20  # nearly everything reads the database
    assert by_name["temporal down"].unavailable > 0
    # a payout is still accepted without Temporal: its workflow starts when Temporal is back
    assert by_name["(all up)"].statuses["POST /api/v1/payouts"] == 201
    assert by_name["temporal down"].statuses["POST /api/v1/payouts"] == 201
    assert by_name["temporal unreachable"].statuses["POST /api/v1/payouts"] == 201
    # Redis is optional for every operation (caches, live hub, rate data): only readiness reports it
    assert by_name["redis down"].unavailable == 1, by_name["redis down"].statuses
