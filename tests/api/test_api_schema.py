"""schemathesis over the app's own OpenAPI, against the real app served by uvicorn on real
PostgreSQL, Redis and Temporal (issue 16 item 4): every operation is exercised with a bounded,
derandomized (fixed seed) set of generated requests, authenticated as ops; no 5xx, and every
response's status, content type and body conform to the schema."""

from __future__ import annotations

import asyncio
import time

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = 8  # per operation, positive and negative cases: 76 operations, about 600 requests
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SKIP = {"/api/v1/sse/updates", "/api/v1/ws/updates"}  # endless streams: covered by test_dashboard_live


def run_schemathesis(spec: dict, base_url: str, headers: dict) -> dict:
    schema = schemathesis.openapi.from_dict(spec)
    stats = {"operations": 0, "requests": 0, "failures": [], "skipped": [], "statuses": {}}
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path in SKIP:
            stats["skipped"].append(f"{op.method.upper()} {op.path}")
            continue
        stats["operations"] += 1
        strategy = op.as_strategy(GenerationMode.POSITIVE) | op.as_strategy(GenerationMode.NEGATIVE)

        @hsettings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                   suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def exercise(case) -> None:
            try:
                response = case.call(base_url=base_url, headers=headers, timeout=20)
            except Exception as exc:  # noqa: BLE001 — a dropped connection (after a 500) is a failure too
                stats["failures"].append(f"{case.method} {case.formatted_path}: {type(exc).__name__}: {exc}"[:300])
                return
            stats["requests"] += 1
            stats["statuses"][response.status_code] = stats["statuses"].get(response.status_code, 0) + 1
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except Exception as exc:  # noqa: BLE001 — collect them all, report at the end
                stats["failures"].append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                         f"{str(exc).splitlines()[0][:300]}")

        exercise()
    return stats


async def test_schemathesis_over_the_openapi(app, served, token_for):
    spec = app.openapi()
    started = time.monotonic()
    stats = await asyncio.to_thread(run_schemathesis, spec, served, token_for("ops_admin"))
    elapsed = time.monotonic() - started
    print(f"schemathesis: {stats['operations']} operations, {stats['requests']} requests, "
          f"{len(stats['failures'])} failures, {elapsed:.1f} s; statuses {sorted(stats['statuses'].items())}; "
          f"skipped {stats['skipped']}")
    assert stats["operations"] >= 70
    assert stats["requests"] >= stats["operations"]
    assert not stats["failures"], "\n".join(stats["failures"][:40])
