"""Request guard: refuses inputs no handler should ever see, before any handler sees them.

- control characters (NUL included) in the path, the query string or any JSON string → 422;
- integers beyond int64 in the path, the query string or a JSON body → 422;
- a JSON body that is not JSON → 400 (a problem document);
- values PostgreSQL refuses as data (out-of-range numbers, impossible dates: SQLSTATE class 22)
  → 422 instead of 500;
and sets the security headers on every response.

A plain ASGI middleware (see api/app.py RequestCounter for why not `@app.middleware("http")`).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, unquote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.platform.bounds import INT64_MAX, INT64_MIN, MAX_YEAR, MIN_YEAR

PROBLEM_JSON = "application/problem+json"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab, LF, CR allowed in text bodies
_CONTROL_STRICT = re.compile(r"[\x00-\x1f\x7f]")  # none at all in paths and query strings
_INTEGER = re.compile(r"[+-]?\d+")
_DATE = re.compile(r"[+-]?(\d{4,})-\d{2}-\d{2}")
_MAX_BODY = 10 * 1024 * 1024
# free-text query parameters whose all-digit values are legitimate (a 22-digit UTR in `q`)
TEXT_QUERY_KEYS = frozenset({"q", "reference", "cursor", "token", "account", "filename", "merchant_id",
                             "source", "project", "utr", "payer_email"})

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
# the console and /docs load their own scripts and styles (Swagger UI from its CDN)
CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    b"connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
HSTS = b"max-age=31536000; includeSubDomains"


class GuardError(Exception):
    def __init__(self, status: int, type_: str, detail: str, loc: list[str]) -> None:
        self.status, self.type, self.detail, self.loc = status, type_, detail, loc


def _check_text(value: str, loc: list[str], pattern: re.Pattern[str] = _CONTROL) -> None:
    if pattern.search(value):
        raise GuardError(422, "validation_error", f"{'.'.join(loc)}: control characters are not allowed", loc)


def _check_int_text(value: str, loc: list[str]) -> None:
    if _INTEGER.fullmatch(value.strip()) and not INT64_MIN <= int(value) <= INT64_MAX:
        raise GuardError(422, "validation_error", f"{'.'.join(loc)}: integer out of range (64 bits)", loc)


def _check_date_text(value: str, loc: list[str]) -> None:
    """A date or date-time must stay within years 1-9999 also once moved to UTC (PostgreSQL and
    Python both refuse beyond): `0001-01-01T00:00:00+14:00` is year 0 in UTC."""
    m = _DATE.match(value.strip())
    if not m:
        return
    bad = not MIN_YEAR <= int(m.group(1)) <= MAX_YEAR
    if not bad and len(value.strip()) > 10:
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
            if parsed.tzinfo is not None:
                parsed.astimezone(timezone.utc)
        except OverflowError:
            bad = True
        except ValueError:
            return  # not a date-time after all: the handler's own validation answers
    if bad:
        raise GuardError(
            422, "validation_error", f"{'.'.join(loc)}: year out of range ({MIN_YEAR}-{MAX_YEAR}, in UTC)", loc
        )


def _walk(value: Any, loc: list[str]) -> None:
    if isinstance(value, str):
        _check_text(value, loc)
        _check_date_text(value, loc)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise GuardError(422, "validation_error", f"{'.'.join(loc)}: integer out of range (64 bits)", loc)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(str(k), [*loc, str(k)])
            _walk(v, [*loc, str(k)])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _walk(v, [*loc, str(i)])


def check_path_and_query(scope: Scope) -> None:
    raw_path = scope.get("raw_path") or scope["path"].encode()
    path = unquote(raw_path.decode("latin-1"), errors="replace")
    _check_text(path, ["path"], _CONTROL_STRICT)
    for seg in path.split("/"):
        _check_int_text(seg, ["path", seg])
    query = scope.get("query_string", b"").decode("latin-1")
    for key, value in parse_qsl(query, keep_blank_values=True):
        _check_text(key, ["query", key], _CONTROL_STRICT)
        _check_text(value, ["query", key], _CONTROL_STRICT)
        if key not in TEXT_QUERY_KEYS:
            _check_int_text(value, ["query", key])
        _check_date_text(value, ["query", key])


def check_json_body(body: bytes) -> None:
    if not body.strip():
        return
    try:
        # big integers must not become floats nor be limited by int-string conversion
        decoded = json.loads(body, parse_int=lambda s: int(s) if len(s) < 40 else INT64_MAX + 1)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GuardError(422, "validation_error", f"body: not valid JSON: {exc}", ["body"]) from None
    _walk(decoded, ["body"])


def _problem_messages(err: GuardError, path: str) -> list[Message]:
    body = {
        "type": err.type,
        "title": {422: "Invalid request", 413: "Payload too large"}.get(err.status, "Bad request"),
        "status": err.status,
        "detail": err.detail,
        "instance": path.encode("unicode_escape").decode("ascii"),
        "errors": [{"loc": err.loc, "msg": err.detail, "type": err.type}],
    }
    payload = json.dumps(body).encode()
    return [
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(payload)).encode())],
        },
        {"type": "http.response.body", "body": payload},
    ]


class RequestGuard:
    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        https = scope.get("scheme") == "https" or self.hsts

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() not in _SET]
                headers.extend(SECURITY_HEADERS)
                headers.append((b"content-security-policy", CSP))
                if https:
                    headers.append((b"strict-transport-security", HSTS))
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if path.startswith("/api/") and b"json" in ctype:
                    headers = [h for h in headers if h[0].lower() != b"cache-control"]
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            check_path_and_query(scope)
        except GuardError as err:
            for m in _problem_messages(err, path):
                await send_secured(m)
            return

        ctype = dict(scope.get("headers", [])).get(b"content-type", b"")
        if scope["method"] not in ("POST", "PUT", "PATCH") or b"json" not in ctype:
            await self.app(scope, receive, send_secured)
            return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > _MAX_BODY:
                err = GuardError(413, "payload_too_large", f"the JSON body exceeds {_MAX_BODY} bytes", ["body"])
                for m in _problem_messages(err, path):
                    await send_secured(m)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            check_json_body(body)
        except GuardError as err:
            for m in _problem_messages(err, path):
                await send_secured(m)
            return

        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_secured)


_SET = {b"x-content-type-options", b"x-frame-options", b"referrer-policy", b"content-security-policy",
        b"strict-transport-security"}


def install_request_guard(app: FastAPI, *, hsts: bool = False) -> None:
    app.add_middleware(RequestGuard, hsts=hsts)

    @app.exception_handler(DataError)
    async def _data_error(request: Request, exc: DataError) -> JSONResponse:
        # SQLSTATE class 22: a value PostgreSQL cannot store (numeric out of range, year 0 or
        # beyond its calendar, a string too long): the client's input, not a server fault
        detail = str(getattr(exc, "orig", exc)).splitlines()[0][:300]
        body = {"type": "validation_error", "title": "Invalid request", "status": 422,
                "detail": f"a value is out of range: {detail}", "instance": request.url.path}
        return JSONResponse(body, status_code=422, media_type=PROBLEM_JSON)
