"""Webhook endpoints and events over the API (no worker), the SSRF guard, secrets at rest, and
one delivery attempt run alone in an ActivityEnvironment."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from activities.webhooks import WebhookActivities
from core.platform.crypto import FieldCipher
from core.platform.tables import webhook_attempts, webhook_endpoints
from core.webhooks.models import DeliveryAttemptInput
from core.webhooks.service import cipher_for, live_secrets
from core.webhooks.targets import WebhookTargetRefused, check_webhook_url
from sandbox.serving import serve_in_background
from tests.webhook_receiver import WebhookReceiver

OPS = "ops_admin"
SEPA = {"name": "Jane Doe", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"}
URL = "http://127.0.0.1:9/hooks"  # loopback: allowed in dev


async def new_merchant(client, token_for) -> str:
    mid = f"mer_{uuid.uuid4().hex[:12]}"
    r = await client.post("/api/v1/merchants", json={"id": mid, "name": "Acme", "default_currency": "EUR",
                                                      "country": "FR"}, headers=token_for(OPS))
    assert r.status_code == 201, r.text
    return mid


@pytest.fixture
async def merchant(client, token_for) -> str:
    return await new_merchant(client, token_for)


@pytest.fixture
def as_merchant(token_for, merchant):
    return token_for("merchant_admin", merchant_id=merchant)


async def register(client, headers, **body):
    return await client.post("/api/v1/webhook-endpoints", json={"url": URL, **body}, headers=headers)


class TestCreateEndpoint:
    async def test_no_token_is_401(self, client):
        assert (await register(client, {})).status_code == 401

    async def test_a_viewer_is_403(self, client, token_for, merchant):
        r = await register(client, token_for("merchant_viewer", merchant_id=merchant))
        assert r.status_code == 403

    async def test_a_merchant_cannot_register_for_another(self, client, token_for, as_merchant):
        other = await new_merchant(client, token_for)
        assert (await register(client, as_merchant, merchant_id=other)).status_code == 403

    async def test_platform_roles_name_an_existing_merchant(self, client, token_for):
        assert (await register(client, token_for(OPS))).status_code == 422
        assert (await register(client, token_for(OPS), merchant_id="mer_nope")).status_code == 404

    async def test_unknown_event_type_and_private_target_are_422(self, client, as_merchant):
        assert (await register(client, as_merchant, event_types=["payout.exploded"])).status_code == 422
        r = await client.post("/api/v1/webhook-endpoints", json={"url": "http://10.1.2.3/hooks"}, headers=as_merchant)
        assert r.status_code == 422 and r.json()["type"] == "webhook_target_refused"

    async def test_valid_shows_the_secret_once_and_stores_it_encrypted(self, client, as_merchant, sessionmaker, settings):
        r = await register(client, as_merchant, event_types=["payout.settled", "payout.failed"])
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["secret"].startswith("whsec_") and created["enabled"] is True
        assert created["event_types"] == ["payout.failed", "payout.settled"]
        listed = (await client.get("/api/v1/webhook-endpoints", headers=as_merchant)).json()["data"]
        assert [e["id"] for e in listed] == [created["id"]] and "secret" not in listed[0]
        async with sessionmaker() as session:
            blob = await session.scalar(select(webhook_endpoints.c.secrets_encrypted)
                                        .where(webhook_endpoints.c.id == created["id"]))
        assert created["secret"].encode() not in blob
        assert live_secrets(FieldCipher(settings.codec_keys).decrypt_json(blob), datetime.now(timezone.utc)) == [
            created["secret"]]

    async def test_omitted_event_types_mean_all(self, client, as_merchant):
        r = await register(client, as_merchant)
        assert len(r.json()["event_types"]) == 7


class TestReadChangeDelete:
    async def test_another_merchants_endpoint_is_404(self, client, token_for, as_merchant):
        endpoint = (await register(client, as_merchant)).json()
        other = token_for("merchant_admin", merchant_id=await new_merchant(client, token_for))
        for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/rotate-secret")):
            r = await client.request(method, f"/api/v1/webhook-endpoints/{endpoint['id']}{path}",
                                     json={} if method in ("PATCH", "POST") else None, headers=other)
            assert r.status_code == 404, (method, path, r.text)
        assert (await client.get("/api/v1/webhook-endpoints", headers=other)).json()["data"] == []

    async def test_patch_validates_and_reenabling_clears_the_failure_run(self, client, as_merchant, sessionmaker):
        endpoint = (await register(client, as_merchant)).json()
        path = f"/api/v1/webhook-endpoints/{endpoint['id']}"
        assert (await client.patch(path, json={"url": "https://192.168.1.10/x"}, headers=as_merchant)).status_code == 422
        async with sessionmaker() as session, session.begin():
            await session.execute(webhook_endpoints.update().where(webhook_endpoints.c.id == endpoint["id"]).values(
                enabled=False, disabled_reason="failing", failing_since=datetime.now(timezone.utc)))
        r = await client.patch(path, json={"enabled": True, "url": "http://127.0.0.1:8/new"}, headers=as_merchant)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["enabled"] and body["failing_since"] is None and body["disabled_reason"] is None
        assert body["url"] == "http://127.0.0.1:8/new"

    async def test_delete_then_404(self, client, as_merchant):
        endpoint = (await register(client, as_merchant)).json()
        path = f"/api/v1/webhook-endpoints/{endpoint['id']}"
        assert (await client.delete(path, headers=as_merchant)).status_code == 204
        assert (await client.get(path, headers=as_merchant)).status_code == 404
        assert (await client.get("/api/v1/webhook-endpoints", headers=as_merchant)).json()["data"] == []

    async def test_rotation_overlaps_then_revokes(self, client, as_merchant, sessionmaker, settings):
        endpoint = (await register(client, as_merchant)).json()
        path = f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret"
        rotated = (await client.post(path, json={"overlap_seconds": 3600}, headers=as_merchant)).json()
        assert rotated["secret"] != endpoint["secret"] and rotated["previous_secret_expires_at"] is not None

        async def signing() -> list[str]:
            async with sessionmaker() as session:
                blob = await session.scalar(select(webhook_endpoints.c.secrets_encrypted)
                                            .where(webhook_endpoints.c.id == endpoint["id"]))
            return live_secrets(cipher_for(settings.codec_keys).decrypt_json(blob), datetime.now(timezone.utc))

        assert await signing() == [rotated["secret"], endpoint["secret"]]
        again = (await client.post(path, json={"overlap_seconds": 0}, headers=as_merchant)).json()
        assert await signing() == [again["secret"]] and again["previous_secret_expires_at"] is None


class TestEvents:
    async def pay_out(self, client, headers):
        r = await client.post(
            "/api/v1/payouts", json={"amount": "1.00", "currency": "EUR", "method": "sepa", "beneficiary": SEPA},
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        return r.json()

    async def test_creation_emits_payout_created_listed_newest_first_with_keyset_pages(
        self, client, token_for, as_merchant
    ):
        payouts = [await self.pay_out(client, as_merchant) for _ in range(3)]
        first = (await client.get("/api/v1/events?limit=2", headers=as_merchant)).json()
        second = (await client.get(f"/api/v1/events?limit=2&cursor={first['next_cursor']}", headers=as_merchant)).json()
        events = first["data"] + second["data"]
        assert second["next_cursor"] is None
        assert [e["data"]["id"] for e in events] == [p["id"] for p in reversed(payouts)]
        assert {e["type"] for e in events} == {"payout.created"} and {e["payout_version"] for e in events} == {1}
        assert events[0]["data"] == payouts[-1]  # the payout exactly as the API returned it
        filtered = (await client.get("/api/v1/events?type=payout.settled", headers=as_merchant)).json()
        assert filtered["data"] == []
        assert (await client.get("/api/v1/events?type=nope", headers=as_merchant)).status_code == 422

        other = token_for("merchant_admin", merchant_id=await new_merchant(client, token_for))
        assert (await client.get("/api/v1/events", headers=other)).json()["data"] == []
        assert (await client.get(f"/api/v1/events/{events[0]['id']}", headers=other)).status_code == 404
        assert (await client.get(f"/api/v1/events/{events[0]['id']}", headers=as_merchant)).status_code == 200
        assert (await client.get("/api/v1/events", headers={})).status_code == 401

    async def test_redelivery_needs_an_enabled_subscribed_endpoint(self, client, as_merchant):
        await self.pay_out(client, as_merchant)
        event = (await client.get("/api/v1/events", headers=as_merchant)).json()["data"][0]
        r = await client.post(f"/api/v1/events/{event['id']}/redeliver", headers=as_merchant)
        assert r.status_code == 409 and r.json()["type"] == "invalid_state"
        r = await client.post("/api/v1/events/evt_nope/redeliver", headers=as_merchant)
        assert r.status_code == 404


# --- the SSRF guard -------------------------------------------------------------------------------


@pytest.fixture
def dev(base_settings):
    return base_settings.model_copy(update={"env": "dev"})


@pytest.fixture
def prod(base_settings):
    return base_settings.model_copy(update={"env": "prod"})


@pytest.mark.parametrize("url", [
    "http://10.0.0.5/h", "http://172.16.3.4/h", "http://172.31.255.1/h", "http://192.168.1.1/h",
    "http://169.254.10.10/h", "http://169.254.169.254/latest/meta-data", "http://100.64.0.1/h",
    "http://0.0.0.0/h", "http://[fe80::1]/h", "http://[fd00::1]/h", "http://[::ffff:10.0.0.1]/h",
    "http://224.0.0.1/h", "ftp://93.184.216.34/h", "http://user:pw@93.184.216.34/h", "http:///nohost",
])
async def test_private_and_odd_targets_are_refused(dev, url):
    with pytest.raises(WebhookTargetRefused):
        await check_webhook_url(url, dev)


async def test_loopback_is_for_dev_and_prod_wants_https(dev, prod):
    await check_webhook_url("http://127.0.0.1:4242/h", dev)
    await check_webhook_url("http://localhost:4242/h", dev)
    await check_webhook_url("https://93.184.216.34/h", prod)
    for url in ("http://93.184.216.34/h", "https://127.0.0.1/h", "https://[::1]/h", "https://localhost/h"):
        with pytest.raises(WebhookTargetRefused):
            await check_webhook_url(url, prod)


async def test_hostnames_resolving_to_private_addresses_are_refused(dev, monkeypatch):
    import asyncio

    loop = asyncio.get_running_loop()

    async def fake_getaddrinfo(host, port, **kw):
        addr = {"internal.example.com": "10.20.30.40", "rebind.example.com": "169.254.169.254",
                "public.example.com": "93.184.216.34"}[host]
        return [(2, 1, 6, "", (addr, port))]

    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    await check_webhook_url("https://public.example.com/h", dev)
    for host in ("internal.example.com", "rebind.example.com"):
        with pytest.raises(WebhookTargetRefused):
            await check_webhook_url(f"https://{host}/h", dev)


async def test_allowing_private_targets_never_allows_metadata(dev):
    allowed = dev.model_copy(update={"webhook_allow_private_targets": True})
    await check_webhook_url("http://10.0.0.5/h", allowed)
    await check_webhook_url("http://192.168.1.1/h", allowed)
    for url in ("http://169.254.169.254/", "http://[fd00:ec2::254]/"):
        with pytest.raises(WebhookTargetRefused):
            await check_webhook_url(url, allowed)
    assert ipaddress.ip_address("169.254.169.254")


async def test_the_guard_runs_again_before_each_delivery(client, as_merchant, sessionmaker, settings):
    """An endpoint registered in dev on loopback is refused by a prod worker: nothing is sent,
    and the refusal is recorded as the attempt."""
    receiver = WebhookReceiver()
    async with serve_in_background(receiver.app()) as served:
        r = await client.post("/api/v1/webhook-endpoints", json={"url": served.url + "/hooks"}, headers=as_merchant)
        endpoint = r.json()
        receiver.secret = endpoint["secret"]
        await TestEvents().pay_out(client, as_merchant)
        event = (await client.get("/api/v1/events", headers=as_merchant)).json()["data"][0]
        cipher = FieldCipher(settings.codec_keys)
        attempt = DeliveryAttemptInput(event_id=event["id"], endpoint_id=endpoint["id"], workflow_id="wf-test",
                                       attempt=1, now=datetime.now(timezone.utc), disable_after_seconds=3600)

        prod_worker = WebhookActivities(sessionmaker, cipher, settings.model_copy(update={"env": "prod"}))
        refused = await ActivityEnvironment().run(prod_worker.attempt_webhook_delivery, attempt)
        assert refused.outcome == "refused" and receiver.requests == []

        dev_worker = WebhookActivities(sessionmaker, cipher, settings)
        attempt.attempt = 2
        sent = await ActivityEnvironment().run(dev_worker.attempt_webhook_delivery, attempt)
        assert sent.outcome == "succeeded" and sent.status_code == 200
        assert [r.verified for r in receiver.requests] == [True]
    async with sessionmaker() as session:
        rows = (await session.execute(select(webhook_attempts.c.outcome, webhook_attempts.c.error)
                                      .order_by(webhook_attempts.c.attempt))).all()
    assert rows[0].outcome == "refused" and "https" in rows[0].error
    assert rows[1].outcome == "succeeded"
