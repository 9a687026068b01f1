"""Merchant webhooks end to end: payouts created through the API and driven by real
PayoutWorkflows, the dispatcher and delivery workflows on a real Temporal dev server, and a real
receiver over HTTP verifying every signature."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from core.webhooks.service import ensure_dispatcher
from sandbox.serving import serve_in_background
from tests.webhook_receiver import WebhookReceiver

OPS = "ops_admin"
SEPA = {"name": "Jane Doe", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"}
LIFE = ["payout.created", "payout.submitted", "payout.settled"]


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={
        "payout_settlement_poll_seconds": 0.3,
        "webhook_retry_initial_seconds": 0.05, "webhook_retry_max_interval_seconds": 0.2,
        "webhook_dispatch_poll_seconds": 0.5,
    })


@pytest.fixture
async def dispatcher(temporal_client, worker, settings):
    workflow_id = await ensure_dispatcher(temporal_client, settings)
    yield workflow_id
    await temporal_client.get_workflow_handle(workflow_id).terminate("test over")


@pytest.fixture
async def merchant(client, token_for) -> str:
    mid = f"mer_{uuid.uuid4().hex[:12]}"
    ops = token_for(OPS)
    r = await client.post("/api/v1/merchants", json={"id": mid, "name": "Acme", "default_currency": "EUR", "country": "FR"},
                          headers=ops)
    assert r.status_code == 201, r.text
    r = await client.post(f"/api/v1/merchants/{mid}/funding", json={"amount": "1000.00", "currency": "EUR"},
                          headers={**ops, "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    return mid


@pytest.fixture
def as_merchant(token_for, merchant):
    return token_for("merchant_admin", merchant_id=merchant)


async def serve(receiver: WebhookReceiver):
    return serve_in_background(receiver.app())


async def register(client, headers, url: str, **extra) -> dict:
    r = await client.post("/api/v1/webhook-endpoints", json={"url": url, **extra}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def pay_out(client, headers, amount: str = "10.00") -> str:
    r = await client.post(
        "/api/v1/payouts",
        json={"amount": amount, "currency": "EUR", "method": "sepa", "priority": "instant", "beneficiary": SEPA},
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def types_of(events: list[dict]) -> list[str]:
    return [e["type"] for e in sorted(events, key=lambda e: e["payout_version"])]


async def test_a_payouts_whole_life_arrives_as_signed_events(client, dispatcher, as_merchant):
    receiver = WebhookReceiver()
    async with serve_in_background(receiver.app()) as served:
        endpoint = await register(client, as_merchant, served.url + "/hooks")
        receiver.secret = endpoint["secret"]
        payout_id = await pay_out(client, as_merchant)
        await receiver.wait_for(lambda r: len(r.processed) == 3)

    assert all(r.verified and r.status == 200 for r in receiver.requests), receiver.requests
    events = list(receiver.processed.values())
    assert types_of(events) == LIFE
    versions = [e["payout_version"] for e in sorted(events, key=lambda e: e["payout_version"])]
    assert versions == sorted(set(versions)) and versions[0] == 1
    settled = next(e for e in events if e["type"] == "payout.settled")
    assert settled["data"]["id"] == payout_id and settled["data"]["status"] == "settled"
    assert settled["id"].startswith("evt_")
    # the event is the payout as the API returns it, and the merchant can read it back
    payout = (await client.get(f"/api/v1/payouts/{payout_id}", headers=as_merchant)).json()
    assert settled["data"] == {k: payout[k] for k in settled["data"]}
    stored = (await client.get(f"/api/v1/events/{settled['id']}", headers=as_merchant)).json()
    assert stored["data"] == settled["data"] and stored["payout_version"] == settled["payout_version"]
    assert [a["outcome"] for a in stored["attempts"]] == ["succeeded"]
    assert stored["attempts"][0]["status_code"] == 200 and stored["attempts"][0]["latency_ms"] is not None


async def test_a_receiver_failing_five_times_gets_every_event_once_per_success(client, dispatcher, as_merchant):
    receiver = WebhookReceiver(fail_first=5, fail_after_processing_types={"payout.submitted"})
    async with serve_in_background(receiver.app()) as served:
        endpoint = await register(client, as_merchant, served.url + "/hooks")
        receiver.secret = endpoint["secret"]
        await pay_out(client, as_merchant)
        await receiver.wait_for(lambda r: len(r.successes()) == 3)

    assert [r.status for r in receiver.requests[:5]] == [500] * 5
    assert types_of(list(receiver.processed.values())) == LIFE
    ok = Counter(r.event_id for r in receiver.successes())
    assert set(ok.values()) == {1}, ok  # exactly one success per event
    # the only duplicate processing is of the event the receiver processed and then failed,
    # and it came back with the same id and the same body
    processed_twice = [r for r in receiver.requests if r.verified and r.status in (200, 500)
                       and r.event["type"] == "payout.submitted" and receiver.requests.index(r) >= 5]
    assert [r.status for r in processed_twice] == [500, 200]
    assert processed_twice[0].event == processed_twice[1].event
    assert len(receiver.requests) == 5 + 3 + 1
    # every attempt is on record
    submitted_id = processed_twice[0].event_id
    detail = (await client.get(f"/api/v1/events/{submitted_id}", headers=as_merchant)).json()
    assert [a["outcome"] for a in detail["attempts"]][-2:] == ["failed", "succeeded"]
    assert detail["attempts"][-2]["status_code"] == 500 and '"ok":false' in detail["attempts"][-2]["response_excerpt"]


async def test_a_disabled_endpoint_receives_nothing_and_subscriptions_filter(client, dispatcher, as_merchant):
    everything, disabled, settled_only = WebhookReceiver(), WebhookReceiver(), WebhookReceiver()
    async with (
        serve_in_background(everything.app()) as a,
        serve_in_background(disabled.app()) as b,
        serve_in_background(settled_only.app()) as c,
    ):
        everything.secret = (await register(client, as_merchant, a.url + "/hooks"))["secret"]
        off = await register(client, as_merchant, b.url + "/hooks")
        r = await client.patch(f"/api/v1/webhook-endpoints/{off['id']}", json={"enabled": False}, headers=as_merchant)
        assert r.status_code == 200 and r.json()["enabled"] is False
        settled_only.secret = (await register(client, as_merchant, c.url + "/hooks",
                                              event_types=["payout.settled"]))["secret"]
        await pay_out(client, as_merchant)
        await everything.wait_for(lambda r: len(r.processed) == 3)
        await settled_only.wait_for(lambda r: len(r.processed) == 1)

        # a manual redelivery: the same event again, to one endpoint
        settled = next(e for e in everything.processed.values() if e["type"] == "payout.settled")
        r = await client.post(f"/api/v1/events/{settled['id']}/redeliver", json={"endpoint_id": off["id"]},
                              headers=as_merchant)
        assert r.status_code == 409  # not to a disabled endpoint
        r = await client.post(f"/api/v1/events/{settled['id']}/redeliver", headers=as_merchant)
        assert r.status_code == 202, r.text
        assert len(r.json()["deliveries"]) == 2  # both enabled endpoints subscribed to payout.settled
        await everything.wait_for(lambda r: len(r.successes()) == 4)

    assert disabled.requests == []
    assert [e["type"] for e in settled_only.processed.values()] == ["payout.settled"]
    again = everything.successes()[-1]
    assert again.event_id == settled["id"] and again.event == settled and again.attempt == 1
