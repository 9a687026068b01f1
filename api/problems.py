"""Every error leaves the API as RFC 9457 problem details JSON — never a stack trace."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.outages import Outage, classify
from core.platform.errors import PayopsError

log = logging.getLogger("payops.api")

PROBLEM_JSON = "application/problem+json"


def problem(status: int, type_: str, title: str, detail: str, instance: str, **extra: Any) -> JSONResponse:
    body = {"type": type_, "title": title, "status": status, "detail": detail, "instance": instance}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _status_type(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(PayopsError)
    async def _domain(request: Request, exc: PayopsError) -> JSONResponse:
        headers = exc.extra.pop("headers", None) if exc.extra else None
        resp = problem(exc.status, exc.type, exc.title, exc.detail, request.url.path, **exc.extra)
        if exc.status == 401:
            resp.headers["WWW-Authenticate"] = "Bearer"
        if headers:
            resp.headers.update(headers)
        if exc.status == 503 and "retry-after" not in resp.headers:
            resp.headers["Retry-After"] = "5"
        return resp

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            errors.append({"loc": loc, "msg": err.get("msg", ""), "type": err.get("type", "")})
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"][1:] or first["loc"])
        return problem(
            422,
            "validation_error",
            "Invalid request",
            f"{where}: {first['msg']}" if where else first["msg"],
            request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        resp = problem(
            exc.status_code, _status_type(exc.status_code), HTTPStatus(exc.status_code).phrase,
            detail, request.url.path,
        )
        if exc.headers:
            resp.headers.update(exc.headers)
        return resp

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        # A pooled connection the database dropped (a restart, a failover, an idle timeout) is
        # not tested on checkout (no pre-ping: three round trips on every request); the request
        # that meets it fails here, SQLAlchemy discards the pool, and the retry gets fresh ones.
        # Nothing was committed, so retrying (with the same Idempotency-Key) is safe.
        if exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError)):
            log.warning("database connection lost on %s %s: %s", request.method, request.url.path, exc.orig)
            resp = problem(
                503, "database_unavailable", "Service Unavailable",
                "the database connection was lost; nothing was changed, retry the request", request.url.path,
                dependency="postgres",
            )
            resp.headers["Retry-After"] = "1"
            return resp
        return await _unhandled(request, exc)

    def _outage(request: Request, outage: Outage) -> JSONResponse:
        log.warning("%s unavailable on %s %s: %s", outage.dependency, request.method, request.url.path, outage.reason)
        resp = problem(
            503, outage.problem_type, "Service Unavailable", outage.detail, request.url.path,
            dependency=outage.dependency,
        )
        resp.headers["Retry-After"] = str(outage.retry_after)
        return resp

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        # PostgreSQL, Redis or Temporal down (api/outages.py): 503 + Retry-After, not a 500.
        outage = classify(exc)
        if outage is not None:
            return _outage(request, outage)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500, "internal_error", "Internal server error",
            "an unexpected error occurred; it has been logged", request.url.path,
        )
