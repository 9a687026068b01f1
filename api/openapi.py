"""OpenAPI post-processing: documents what the API really answers, everywhere.

FastAPI documents a 422 `HTTPValidationError` in `application/json` and only the errors a route
lists. Every error really leaves as an `application/problem+json` Problem (api/problems.py,
api/request_guard.py), so for every operation under /api/v1 this hook documents:
- 422 on every operation (malformed JSON included; the request guard checks every path and
  query); 401/403 on secured operations; 503 (database unavailable);
- every error status with the Problem schema in `application/problem+json` only;
- the bearer-or-`token` security of `/sse/updates`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PROBLEM = {"$ref": "#/components/schemas/Problem"}
PROBLEM_CONTENT = {"application/problem+json": {"schema": PROBLEM}}
DESCRIPTIONS = {
    "400": "Malformed request (e.g. a body that is not JSON)",
    "401": "Unauthorized",
    "403": "Forbidden",
    "404": "Not found",
    "409": "Conflict",
    "413": "Payload too large",
    "422": "Invalid request",
    "503": "Service unavailable (a dependency is down; retry)",
}
METHODS = ("get", "put", "post", "delete", "patch")


def _problem_response(status: str, existing: dict[str, Any] | None) -> dict[str, Any]:
    return {"description": (existing or {}).get("description") or DESCRIPTIONS.get(status, "Error"),
            "content": PROBLEM_CONTENT, **({"headers": existing["headers"]} if existing and "headers" in existing else {})}


def complete_schema(schema: dict[str, Any]) -> dict[str, Any]:
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    if "Problem" not in schemas:  # every app here has routes documenting it; keep the hook standalone
        schemas["Problem"] = {"type": "object", "title": "Problem", "additionalProperties": True}
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            responses: dict[str, Any] = op.setdefault("responses", {})
            if path == "/api/v1/sse/updates" and not op.get("security"):
                op["security"] = [{"HTTPBearer": []}, {}]  # or the `token` query parameter
            if path.startswith("/api/v1"):
                wanted = {"422", "503"}
                if op.get("security") or path == "/api/v1/sse/updates":
                    wanted |= {"401", "403"}
                for status in wanted:
                    responses.setdefault(status, {})
            for status in list(responses):
                if status[:1] in ("4", "5"):
                    responses[status] = _problem_response(status, responses[status])
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return schema


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_schema(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes,
                servers=app.servers,
            ))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
