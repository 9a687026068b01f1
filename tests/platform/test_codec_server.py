"""The codec server (api/codec_server.py) over real HTTP: Temporal's remote codec protocol, who may
use it, and CORS for the Temporal UI."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from temporalio.api.common.v1 import Payload

from api.codec_server import CODEC_AUDIENCE, create_codec_app, mint_ui_token, ui_codec_endpoint
from core.platform.auth_tokens import mint_dev_token
from core.platform.codec import ENCODING, EncryptionCodec
from core.platform.settings import Settings

UI_ORIGIN = "http://127.0.0.1:8233"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def plain_payload(value: object) -> dict:
    """A payload as the Temporal CLI sends it to /encode: protobuf JSON, bytes in base64."""
    return {"metadata": {"encoding": b64(b"json/plain")}, "data": b64(json.dumps(value).encode())}


@pytest.fixture
def codec_settings(base_settings: Settings) -> Settings:
    return base_settings.model_copy(update={"temporal_ui_url": UI_ORIGIN, "codec_cors_origins": ["https://ui.example.com"]})


@pytest.fixture
async def codec_url(codec_settings):
    from sandbox.serving import serve_in_background

    async with serve_in_background(create_codec_app(codec_settings)) as running:
        yield running.url


@pytest.fixture
def bearer(codec_settings):
    def make(role: str | list[str], merchant_id: str | None = None) -> dict:
        token = mint_dev_token(codec_settings, role=role, merchant_id=merchant_id, sub="codec-test")
        return {"Authorization": f"Bearer {token}", "X-Namespace": "default"}

    return make


async def test_encode_then_decode_round_trip(codec_url, bearer, codec_settings):
    value = {"reason": "bank says fixed", "amount_minor": 1050}
    async with httpx.AsyncClient(base_url=codec_url) as http:
        enc = await http.post("/encode", json={"payloads": [plain_payload(value)]}, headers=bearer("risk_ops"))
        assert enc.status_code == 200, enc.text
        [encrypted] = enc.json()["payloads"]
        assert base64.b64decode(encrypted["metadata"]["encoding"]) == ENCODING
        assert b"bank says fixed" not in base64.b64decode(encrypted["data"])

        # what the workers' codec made of it is what payops itself decrypts
        pb = Payload(metadata={k: base64.b64decode(v) for k, v in encrypted["metadata"].items()},
                     data=base64.b64decode(encrypted["data"]))
        [clear] = await EncryptionCodec.from_spec(codec_settings.codec_keys).decode([pb])
        assert json.loads(clear.data) == value

        dec = await http.post("/decode", json={"payloads": [encrypted]}, headers=bearer("auditor"))
        assert dec.status_code == 200, dec.text
        [decoded] = dec.json()["payloads"]
        assert base64.b64decode(decoded["metadata"]["encoding"]) == b"json/plain"
        assert json.loads(base64.b64decode(decoded["data"])) == value


async def test_decode_of_what_a_worker_encrypted(codec_url, bearer, codec_settings):
    [pb] = await EncryptionCodec.from_spec(codec_settings.codec_keys).encode(
        [Payload(metadata={"encoding": b"json/plain"}, data=b'{"status":"dlq"}')]
    )
    body = {"payloads": [{"metadata": {k: b64(v) for k, v in pb.metadata.items()}, "data": b64(pb.data)}]}
    async with httpx.AsyncClient(base_url=codec_url) as http:
        r = await http.post("/decode", json=body, headers=bearer("ops_admin"))
    assert r.status_code == 200, r.text
    assert base64.b64decode(r.json()["payloads"][0]["data"]) == b'{"status":"dlq"}'


async def test_anonymous_is_401_merchant_is_403(codec_url, bearer):
    body = {"payloads": [plain_payload({"x": 1})]}
    async with httpx.AsyncClient(base_url=codec_url) as http:
        for path in ("/encode", "/decode"):
            anon = await http.post(path, json=body, headers={"X-Namespace": "default"})
            assert anon.status_code == 401, anon.text
            assert anon.headers["content-type"].startswith("application/problem+json")
            bad = await http.post(path, json=body, headers={"Authorization": "Bearer not-a-jwt"})
            assert bad.status_code == 401, bad.text
            merchant = await http.post(path, json=body, headers=bearer("merchant_admin", merchant_id="mer_1"))
            assert merchant.status_code == 403, merchant.text
            assert merchant.json()["type"] == "forbidden"


async def test_bad_input_is_a_problem_not_a_500(codec_url, bearer):
    async with httpx.AsyncClient(base_url=codec_url) as http:
        r = await http.post("/decode", content=b"{not json", headers=bearer("ops_admin"))
        assert r.status_code == 422 and r.json()["type"] == "validation_error"
        forged = {"metadata": {"encoding": b64(ENCODING), "encryption-key-id": b64(b"dev")}, "data": b64(b"0" * 40)}
        r = await http.post("/decode", json={"payloads": [forged]}, headers=bearer("ops_admin"))
        assert r.status_code == 422 and "InvalidTag" in r.json()["detail"]


async def test_cors_preflight_for_the_temporal_ui(codec_url):
    async with httpx.AsyncClient(base_url=codec_url) as http:
        for origin in (UI_ORIGIN, "http://localhost:8233", "https://ui.example.com"):
            r = await http.options("/decode", headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
            })  # fmt: skip
            assert r.status_code == 200, (origin, r.text)
            assert r.headers["access-control-allow-origin"] == origin
            allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
            assert {"authorization", "content-type", "x-namespace"} <= allowed
            assert "POST" in r.headers["access-control-allow-methods"]
        other = await http.options("/decode", headers={
            "Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"})  # fmt: skip
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


async def test_ui_endpoint_with_the_token_in_its_path_is_dev_only(codec_settings, bearer):
    """The dev Temporal UI cannot send our header: its endpoint carries the token (dev only)."""
    from sandbox.serving import serve_in_background

    token = mint_ui_token(codec_settings)
    api_token = mint_dev_token(codec_settings, role="ops_admin")  # the API's audience: not in a URL
    merchant = mint_dev_token(codec_settings.model_copy(update={"jwt_audience": CODEC_AUDIENCE}),
                              role="merchant_viewer", merchant_id="mer_1")
    body = {"payloads": [plain_payload({"x": 1})]}
    async with serve_in_background(create_codec_app(codec_settings)) as running:
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{ui_codec_endpoint(running.url, token)}/decode", json=body,
                                headers={"Origin": UI_ORIGIN, "X-Namespace": "default"})
            assert r.status_code == 200, r.text
            assert r.headers["access-control-allow-origin"] == UI_ORIGIN
            r = await http.post(f"{ui_codec_endpoint(running.url, merchant)}/decode", json=body)
            assert r.status_code == 403
            r = await http.post(f"{ui_codec_endpoint(running.url, 'garbage')}/decode", json=body)
            assert r.status_code == 401
            r = await http.post(f"{ui_codec_endpoint(running.url, api_token)}/decode", json=body)
            assert r.status_code == 401 and "audience" in r.json()["detail"].lower()
            r = await http.post(f"{running.url}/decode", json=body, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401  # the UI's token only works in the UI's endpoint
    prod = codec_settings.model_copy(update={"env": "prod"})
    async with serve_in_background(create_codec_app(prod)) as running:
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{ui_codec_endpoint(running.url, token)}/decode", json=body)
            assert r.status_code == 404
            r = await http.post(f"{running.url}/decode", json=body, headers=bearer("ops_admin"))
            assert r.status_code == 200


def test_the_api_serves_it_at_codec(base_settings):
    from api.app import create_app

    app = create_app(base_settings)
    assert any(getattr(route, "path", None) == "/codec" for route in app.routes)


async def test_the_ui_token_opens_nothing_in_the_api(client, settings):
    """The dev UI's token sits in a URL the UI shows to anyone: it must not be an API token."""
    r = await client.get("/api/v1/payouts", headers={"Authorization": f"Bearer {mint_ui_token(settings)}"})
    assert r.status_code == 401, r.text
