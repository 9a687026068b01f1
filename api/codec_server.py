"""payops's codec server: Temporal's remote codec protocol over payops's own payload codec.

The Temporal Web UI and CLI (`--codec-endpoint`, `--codec-auth`) send
`POST <endpoint>/encode` and `POST <endpoint>/decode` with a JSON `{"payloads": [...]}` body (the
protobuf JSON form of `temporal.api.common.v1.Payloads`) and an `X-Namespace` header; they get the
same shape back. Mounted in the API at `/codec` (api/app.py).

Who may use it: a payops bearer JWT (`Authorization: Bearer ...`) with at least one platform
(ops) role; a merchant user gets 403, no token 401. Payloads are encrypted precisely so that
nobody else reads beneficiaries and amounts out of Temporal, so nothing is anonymous here, in dev
either.

The Temporal UI started by `payops up` cannot attach a header of ours (it only forwards its own
OIDC access token), so in dev, and only there, the token may also sit in the endpoint's path:
`/codec/t/<JWT>/decode`. `payops up` configures the UI with such an endpoint, carrying a
token minted for the UI (`mint_ui_token`): audience `payops-codec`, so the API refuses it and it
opens nothing but this codec, and only the path form accepts that audience. The same signature
and role rules apply; in prod that form answers 404 and the production UI passes its users' access tokens instead
(`TEMPORAL_CODEC_PASS_ACCESS_TOKEN=true`, see docker-compose.yml).

CORS: the Temporal UI's origin (`PAYOPS_TEMPORAL_UI_URL`, plus `PAYOPS_CODEC_CORS_ORIGINS`) may
send `Authorization`, `Content-Type` and `X-Namespace`; preflights are answered.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware
from temporalio.api.common.v1 import Payloads

from api.problems import install_problem_handlers
from core.platform.auth_tokens import Principal, verify_token
from core.platform.codec import EncryptionCodec
from core.platform.errors import Forbidden, NotFound, Unauthorized, Unprocessable
from core.platform.roles import PLATFORM_ROLES
from core.platform.settings import Settings
from core.platform.auth_tokens import mint_dev_token

log = logging.getLogger("payops.codec")

CODEC_PATH = "/codec"
CODEC_AUDIENCE = "payops-codec"  # tokens that open only the codec (the dev UI's), never the API
ALLOWED_HEADERS = ["Authorization", "Content-Type", "X-Namespace"]


def cors_origins(settings: Settings) -> list[str]:
    """The Temporal UI's origin (and its localhost / 127.0.0.1 twin) plus the configured extras."""
    origins: list[str] = []

    def add(url: str) -> None:
        parts = urlsplit(url.strip())
        if not parts.scheme or not parts.netloc:
            return
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in origins:
            origins.append(origin)

    if settings.temporal_ui_url:
        add(settings.temporal_ui_url)
        parts = urlsplit(settings.temporal_ui_url)
        twin = {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}.get(parts.hostname or "")
        if twin:
            add(f"{parts.scheme}://{twin}{f':{parts.port}' if parts.port else ''}")
    for url in settings.codec_cors_origins:
        add(url)
    return origins


def mint_ui_token(settings: Settings, ttl_seconds: int = 30 * 86400) -> str:
    """The dev Temporal UI's token: read-only role, codec audience (useless against the API)."""
    return mint_dev_token(_codec_audience(settings), role="auditor", sub="temporal-ui", ttl_seconds=ttl_seconds)


def _codec_audience(settings: Settings) -> Settings:
    return settings.model_copy(update={"jwt_audience": CODEC_AUDIENCE})


def ui_codec_endpoint(codec_url: str, token: str) -> str:
    """The endpoint `payops up` gives the dev Temporal UI (codec_url: e.g. the API's URL + /codec):
    the token travels in the path."""
    return f"{codec_url.rstrip('/')}/t/{token}"


def create_codec_app(settings: Settings) -> FastAPI:
    codec = EncryptionCodec.from_spec(settings.codec_keys)
    app = FastAPI(title="payops codec server", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    install_problem_handlers(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=cors_origins(settings),
        allow_methods=["POST", "OPTIONS"],
        allow_headers=ALLOWED_HEADERS,
        allow_credentials=True,
        max_age=600,
    )

    path_settings = _codec_audience(settings)

    async def principal_from(token: str | None, *, in_path: bool = False) -> Principal:
        if not token:
            raise Unauthorized("the codec server needs a payops bearer token (`--codec-auth 'Bearer <JWT>'`)")
        verify_with = path_settings if in_path else settings
        if settings.jwt_jwks_url:
            principal = await run_in_threadpool(verify_token, verify_with, token)
        else:
            principal = verify_token(verify_with, token)
        if principal.is_merchant_user or not (principal.roles & PLATFORM_ROLES):
            raise Forbidden("only ops roles may use the codec server")
        return principal

    def bearer(request: Request) -> str | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None

    async def run(request: Request, op: str, token: str | None, *, in_path: bool = False) -> JSONResponse:
        principal = await principal_from(token, in_path=in_path)
        raw = await request.body()
        payloads = Payloads()
        try:
            json_format.Parse(raw or b"{}", payloads)
        except (json_format.ParseError, DecodeError, UnicodeDecodeError) as exc:
            raise Unprocessable(f"the body is not a Payloads JSON document: {exc}") from None
        try:
            if op == "encode":
                out = await codec.encode(payloads.payloads)
            else:
                out = await codec.decode(payloads.payloads)
        except Exception as exc:  # noqa: BLE001 — a payload we cannot decrypt: say so, never a 500
            raise Unprocessable(f"cannot {op} these payloads: {type(exc).__name__}: {exc}") from None
        log.info(
            "codec %s of %d payload(s) for %s (namespace %s)",
            op, len(out), principal.sub, request.headers.get("x-namespace", "-"),
        )  # fmt: skip
        body = json_format.MessageToDict(Payloads(payloads=out))
        return JSONResponse({"payloads": body.get("payloads", [])})

    @app.post("/encode")
    async def encode(request: Request) -> JSONResponse:
        return await run(request, "encode", bearer(request))

    @app.post("/decode")
    async def decode(request: Request) -> JSONResponse:
        return await run(request, "decode", bearer(request))

    @app.post("/t/{token}/{op}")
    async def with_path_token(request: Request, token: str, op: str) -> JSONResponse:
        if settings.env != "dev" or op not in ("encode", "decode"):
            raise NotFound("no such codec endpoint")
        if header := bearer(request):  # a caller that sends the header is an ordinary one
            return await run(request, op, header)
        return await run(request, op, token, in_path=True)

    return app
