"""Bank webhooks: HMAC signature checks, dedupe by event id, delivery to the payout workflow as a
signal (seen in the workflow's history; no worker needed)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone

import pytest
from temporalio.api.enums.v1 import EventType

from connectors.registry import ConnectorRegistry
from connectors.sandbox_bank import SandboxBankConnector
from connectors.signing import SIGNATURE_HEADER, sign
from core.names import payout_workflow_id
from core.payout_models import PayoutWorkflowInput

URL = "/api/v1/webhooks/banks/sandbox"


@pytest.fixture
def webhook_client(app, client, settings):
    app.state.connectors = ConnectorRegistry(
        [SandboxBankConnector(name="sandbox", base_url="http://127.0.0.1:9", webhook_secret=settings.bank_webhook_secret)]
    )
    return client


def notification(reference: str, event_id: str | None = None, type_: str = "payment.settled") -> bytes:
    return json.dumps(
        {
            "event_id": event_id or f"evt_{uuid.uuid4().hex}",
            "type": type_,
            "reference": reference,
            "payment_id": "bp_123",
            "status": "settled",
            "amount_minor": 1000,
            "currency": "EUR",
            "occurred_at": datetime.now(timezone.utc).isoformat(),
        }
    ).encode()


def signed(secret: str, body: bytes, at: float | None = None) -> dict:
    return {SIGNATURE_HEADER: sign(secret, body, int(at or time.time())), "content-type": "application/json"}


@pytest.fixture
async def payout_workflow(temporal_client, settings):
    """A PayoutWorkflow with no worker: it waits, and its history records what it is sent."""
    payout_id = f"po_{uuid.uuid4().hex}"
    handle = await temporal_client.start_workflow(
        "PayoutWorkflow",
        PayoutWorkflowInput(
            payout_id=payout_id, merchant_id="mer_x", amount_minor=1000, fee_minor=20, currency="EUR",
            method="sepa", priority="standard", created_at=datetime.now(timezone.utc),
        ),
        id=payout_workflow_id(payout_id),
        task_queue=settings.temporal_task_queue,
    )
    yield payout_id, handle
    await handle.terminate("test over")


async def signals(handle) -> list:
    history = await handle.fetch_history()
    return [
        e.workflow_execution_signaled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]


class TestBankWebhook:
    async def test_unsigned_is_401(self, webhook_client, payout_workflow):
        r = await webhook_client.post(URL, content=notification(payout_workflow[0]))
        assert r.status_code == 401 and r.json()["type"] == "unauthorized"

    async def test_bad_signature_is_401(self, webhook_client, settings, payout_workflow):
        body = notification(payout_workflow[0])
        r = await webhook_client.post(URL, content=body, headers=signed("not-the-secret", body))
        assert r.status_code == 401
        tampered = body.replace(b"1000", b"9000")
        r = await webhook_client.post(URL, content=tampered, headers=signed(settings.bank_webhook_secret, body))
        assert r.status_code == 401
        assert await signals(payout_workflow[1]) == []

    async def test_stale_signature_is_401(self, webhook_client, settings, payout_workflow):
        body = notification(payout_workflow[0])
        r = await webhook_client.post(URL, content=body, headers=signed(settings.bank_webhook_secret, body, time.time() - 3600))
        assert r.status_code == 401 and "stale" in r.json()["detail"]

    async def test_unknown_connector_is_404(self, webhook_client, settings):
        body = notification("po_x")
        r = await webhook_client.post(
            "/api/v1/webhooks/banks/nobank", content=body, headers=signed(settings.bank_webhook_secret, body)
        )
        assert r.status_code == 404

    async def test_signed_garbage_is_400(self, webhook_client, settings):
        body = b'{"hello": "bank"}'
        r = await webhook_client.post(URL, content=body, headers=signed(settings.bank_webhook_secret, body))
        assert r.status_code == 400 and r.json()["type"] == "invalid_webhook_payload"

    async def test_unknown_payout_is_404_and_a_later_retry_is_not_a_duplicate(
        self, webhook_client, settings, temporal_client
    ):
        payout_id = f"po_{uuid.uuid4().hex}"
        body = notification(payout_id, event_id=f"evt_{uuid.uuid4().hex}")
        headers = signed(settings.bank_webhook_secret, body)
        r = await webhook_client.post(URL, content=body, headers=headers)
        assert r.status_code == 404
        handle = await temporal_client.start_workflow(
            "PayoutWorkflow", PayoutWorkflowInput(
                payout_id=payout_id, merchant_id="mer_x", amount_minor=1000, fee_minor=20, currency="EUR",
                method="sepa", priority="standard", created_at=datetime.now(timezone.utc),
            ),
            id=payout_workflow_id(payout_id), task_queue=settings.temporal_task_queue,
        )
        try:
            r = await webhook_client.post(URL, content=body, headers=headers)
            assert r.status_code == 200 and r.json() == {"status": "accepted"}
            assert len(await signals(handle)) == 1
        finally:
            await handle.terminate("test over")

    async def test_good_notification_is_signalled_once(self, webhook_client, settings, payout_workflow):
        payout_id, handle = payout_workflow
        body = notification(payout_id, event_id=f"evt_{uuid.uuid4().hex}")
        headers = signed(settings.bank_webhook_secret, body)
        r = await webhook_client.post(URL, content=body, headers=headers)
        assert r.status_code == 200 and r.json() == {"status": "accepted"}
        again = await webhook_client.post(URL, content=body, headers=signed(settings.bank_webhook_secret, body))
        assert again.status_code == 200 and again.json() == {"status": "duplicate"}

        [signal] = await signals(handle)
        assert signal.signal_name == "bank_notification"
        # the payload is encrypted by the codec; decode it through the client's converter
        [payload] = await handle._client.data_converter.decode(signal.input.payloads)
        assert payload["event_id"] == json.loads(body)["event_id"]
        assert payload["type"] == "payment.settled" and payload["bank_payment_id"] == "bp_123"



class TestWebhookSettlesAPayout:
    async def test_the_banks_notification_settles_a_payout_created_through_the_api(
        self, client, worker, token_for, settings
    ):
        """End to end: create through the API; the worker submits to the sandbox bank; the bank's
        signed settlement webhook (through the registry the app builds from settings) settles it."""
        import asyncio

        ops = token_for("ops_admin")
        merchant = (await client.post(
            "/api/v1/merchants", json={"name": "Acme", "default_currency": "EUR", "country": "FR"}, headers=ops
        )).json()["id"]
        r = await client.post(
            f"/api/v1/merchants/{merchant}/funding", json={"amount": "500.00", "currency": "EUR"},
            headers={**ops, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201
        me = token_for("merchant_admin", merchant_id=merchant)
        created = await client.post(
            "/api/v1/payouts",
            json={"amount": "25.00", "currency": "EUR", "method": "sepa", "priority": "instant",
                  "beneficiary": {"name": "Jane", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"}},
            headers={**me, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert created.status_code == 201, created.text
        pid = created.json()["id"]

        async def status_becomes(wanted: str) -> dict:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while True:
                body = (await client.get(f"/api/v1/payouts/{pid}", headers=me)).json()
                if body["status"] == wanted:
                    return body
                assert loop.time() < deadline, body
                await asyncio.sleep(0.1)

        submitted = await status_becomes("submitted")
        body = json.dumps({
            "event_id": f"evt_{uuid.uuid4().hex}", "type": "payment.settled", "reference": pid,
            "payment_id": submitted["workflow"]["bank_payment_id"], "status": "settled",
            "amount_minor": 2500, "currency": "EUR", "occurred_at": datetime.now(timezone.utc).isoformat(),
        }).encode()
        r = await client.post(URL, content=body, headers=signed(settings.bank_webhook_secret, body))
        assert r.status_code == 200 and r.json() == {"status": "accepted"}
        await status_becomes("settled")
