"""Bank webhooks: HMAC signature checks, dedupe by event id, delivery to the payout workflow as a
signal (seen in the workflow's history; no worker needed)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timezone

import pytest
from temporalio.api.enums.v1 import EventType

from connectors.registry import ConnectorRegistry
from connectors.sandbox_bank import SandboxBankConnector
from connectors.signing import SIGNATURE_HEADER, sign
from core.platform.names import payout_workflow_id
from core.payouts.models import PayoutWorkflowInput

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


async def stored(sessionmaker, reference: str) -> list[dict]:
    from sqlalchemy import select

    from core.platform.tables import bank_notifications

    async with sessionmaker() as session:
        rows = await session.execute(
            select(bank_notifications).where(bank_notifications.c.reference == reference).order_by(bank_notifications.c.id))
        return [dict(r) for r in rows.mappings()]


async def alert_of(sessionmaker, alert_id: int) -> dict:
    from sqlalchemy import select

    from core.platform.tables import alerts

    async with sessionmaker() as session:
        return dict((await session.execute(select(alerts).where(alerts.c.id == alert_id))).mappings().one())


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

    async def test_unknown_payout_is_accepted_stored_and_alerted(self, webhook_client, settings, sessionmaker):
        """Never 404-and-dropped: a notification for a reference payops does not know is stored,
        reconciled as `unknown_payout`, and raises an alert."""
        payout_id = f"po_{uuid.uuid4().hex}"
        body = notification(payout_id, event_id=f"evt_{uuid.uuid4().hex}")
        r = await webhook_client.post(URL, content=body, headers=signed(settings.bank_webhook_secret, body))
        assert r.status_code == 200 and r.json() == {"status": "accepted", "outcome": "unknown_payout"}
        [row] = await stored(sessionmaker, payout_id)
        assert row["delivered_at"] is not None and row["discrepancy"] == "unknown_payout"
        alert = await alert_of(sessionmaker, row["alert_id"])
        assert alert["rule"] == "bank_notification_unknown_payout" and alert["status"] == "open"

    async def test_good_notification_is_signalled_once(self, webhook_client, settings, payout_workflow):
        payout_id, handle = payout_workflow
        body = notification(payout_id, event_id=f"evt_{uuid.uuid4().hex}")
        headers = signed(settings.bank_webhook_secret, body)
        r = await webhook_client.post(URL, content=body, headers=headers)
        assert r.status_code == 200 and r.json() == {"status": "accepted", "outcome": "signalled"}
        again = await webhook_client.post(URL, content=body, headers=signed(settings.bank_webhook_secret, body))
        assert again.status_code == 200 and again.json() == {"status": "duplicate", "outcome": "signalled"}

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
        assert r.status_code == 200 and r.json() == {"status": "accepted", "outcome": "signalled"}
        await status_becomes("settled")


# --- issue 16: per-connector secrets; issue 17: durable intake, any state, repair ----------------

import contextlib  # noqa: E402

import httpx  # noqa: E402

from core.ledger import service as ledger  # noqa: E402
from tests.factories import create_merchant, create_payout_row, sepa_beneficiary  # noqa: E402


@contextlib.asynccontextmanager
async def api(settings, temporal_client):
    """The app built from `settings` (its connector registry and secrets included)."""
    from api.app import create_app

    application = create_app(settings, temporal_client=temporal_client)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://payops.test") as c:
            yield c


class TestPerConnectorSecrets:
    async def test_rotation_accepts_every_listed_secret_and_another_connectors_secret_is_refused(
        self, settings, temporal_client, payout_workflow
    ):
        s = settings.model_copy(update={"bank_webhook_secrets": {"sandbox": ["new", "old"], "bank_sepa": ["sepa-only"]}})
        async with api(s, temporal_client) as c:
            for secret in ("new", "old"):
                body = notification(payout_workflow[0])
                r = await c.post(URL, content=body, headers=signed(secret, body))
                assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
            body = notification(payout_workflow[0])
            # the default secret is no longer accepted once the connector lists its own
            assert (await c.post(URL, content=body, headers=signed(settings.bank_webhook_secret, body))).status_code == 401
            # a delivery signed for the sandbox connector, replayed to bank_sepa's URL: refused
            r = await c.post("/api/v1/webhooks/banks/bank_sepa", content=body, headers=signed("new", body))
            assert r.status_code == 401 and "signature_mismatch" in r.json()["detail"]
            # and bank_sepa's own secret does not open the sandbox URL
            r = await c.post(URL, content=body, headers=signed("sepa-only", body))
            assert r.status_code == 401
        assert len(await signals(payout_workflow[1])) == 2

    async def test_unconfigured_connectors_do_not_share_the_default_secret(self, settings):
        assert settings.bank_webhook_secrets_for("sandbox") == [settings.bank_webhook_secret]
        derived = {name: settings.bank_webhook_secrets_for(name)[0] for name in ("bank_sepa", "bank_ach", "bank_wire")}
        assert len(set(derived.values())) == 3 and settings.bank_webhook_secret not in derived.values()

    async def test_a_delivery_is_deduplicated_whichever_url_it_arrives_at(
        self, settings, temporal_client, payout_workflow
    ):
        # two connectors configured with one secret (one bank, two URLs): the event id still counts once
        s = settings.model_copy(update={"bank_webhook_secrets": {"sandbox": ["shared"], "bank_sepa": ["shared"]}})
        body = notification(payout_workflow[0], event_id=f"evt_{uuid.uuid4().hex}")
        async with api(s, temporal_client) as c:
            first = await c.post(URL, content=body, headers=signed("shared", body))
            again = await c.post("/api/v1/webhooks/banks/bank_sepa", content=body, headers=signed("shared", body))
        assert first.json()["status"] == "accepted" and again.json()["status"] == "duplicate"
        assert len(await signals(payout_workflow[1])) == 1


class TestDurableIntake:
    async def test_intake_does_not_need_redis(self, settings, temporal_client, payout_workflow):
        s = settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"})  # nothing listens there
        body = notification(payout_workflow[0])
        async with api(s, temporal_client) as c:
            r = await c.post(URL, content=body, headers=signed(settings.bank_webhook_secret, body))
        assert r.status_code == 200 and r.json() == {"status": "accepted", "outcome": "signalled"}
        assert len(await signals(payout_workflow[1])) == 1

    async def test_no_database_is_503_with_retry_after_so_the_bank_retries(self, settings, temporal_client, payout_workflow):
        s = settings.model_copy(update={"database_url": "postgresql://payops@127.0.0.1:9/payops"})
        body = notification(payout_workflow[0])
        async with api(s, temporal_client) as c:
            r = await c.post(URL, content=body, headers=signed(settings.bank_webhook_secret, body))
        assert r.status_code == 503 and r.headers["retry-after"]
        assert r.headers["content-type"].startswith("application/problem+json")
        assert await signals(payout_workflow[1]) == []  # not delivered without being durable

    async def test_temporal_down_is_stored_then_the_sweeper_workflow_delivers(
        self, settings, temporal_client, payout_workflow, sessionmaker, worker
    ):
        from workflows.maintenance import BankNotificationSweepInput, BankNotificationSweepWorkflow

        s = settings.model_copy(update={"temporal_address": "127.0.0.1:9"})  # no Temporal there
        body = notification(payout_workflow[0])
        async with api(s, None) as c:
            r = await c.post(URL, content=body, headers=signed(settings.bank_webhook_secret, body))
        assert r.status_code == 200 and r.json() == {"status": "accepted", "outcome": None}
        [row] = await stored(sessionmaker, payout_workflow[0])
        assert row["delivered_at"] is None and "Temporal" in row["last_error"]
        assert await signals(payout_workflow[1]) == []

        result = await temporal_client.execute_workflow(
            BankNotificationSweepWorkflow.run, BankNotificationSweepInput(older_than_seconds=0),
            id=f"sweep-{uuid.uuid4().hex}", task_queue=settings.temporal_task_queue,
        )
        assert result.delivered == 1
        [row] = await stored(sessionmaker, payout_workflow[0])
        assert row["delivered_at"] is not None and row["outcome"] == "signalled"
        # accepted by Temporal; it is written to the history when the workflow's task in flight
        # ends (a lean payout retries its hold for a missing row for a few seconds in that task)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not await signals(payout_workflow[1]) and loop.time() < deadline:
            await asyncio.sleep(0.2)
        assert len(await signals(payout_workflow[1])) == 1

    async def test_the_sweeper_is_on_a_schedule(self, settings):
        from workers.schedules import bank_notification_sweep_schedule

        schedule = bank_notification_sweep_schedule(settings)
        assert schedule.action.workflow == "BankNotificationSweepWorkflow"
        assert schedule.spec.intervals[0].every.total_seconds() == settings.bank_notification_redeliver_every_seconds


class TestContradictionAndRepair:
    async def test_settled_webhook_for_a_payout_payops_failed_alerts_and_repair_makes_payops_agree(
        self, temporal_client, worker, settings, sessionmaker, client, token_for
    ):
        """The issue's case: payops failed a payout (and refunded the merchant) that the bank paid.
        The bank's settlement webhook is accepted, a critical alert raised, and the repair endpoint
        debits the merchant, marks the payout settled and resolves the alert."""
        from workflows.payout import PayoutWorkflow

        funds = 1_000_000
        merchant = await create_merchant(sessionmaker, funded_minor=funds)
        params = await create_payout_row(sessionmaker, settings, merchant_id=merchant,
                                         beneficiary=sepa_beneficiary("0002"))
        result = await temporal_client.execute_workflow(
            PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id), task_queue=settings.temporal_task_queue)
        assert result.status == "failed"

        body = json.dumps({
            "event_id": f"evt_{uuid.uuid4().hex}", "type": "payment.settled", "reference": params.payout_id,
            "payment_id": "bnk_1", "status": "settled", "amount_minor": params.amount_minor, "currency": "EUR",
            "occurred_at": datetime.now(timezone.utc).isoformat(),
        }).encode()
        r = await client.post(URL, content=body, headers=signed(settings.bank_webhook_secret, body))
        assert r.status_code == 200 and r.json() == {"status": "accepted", "outcome": "contradiction"}
        [row] = await stored(sessionmaker, params.payout_id)
        assert row["discrepancy"] == "paid_at_bank_failed_here" and row["payout_status"] == "failed"
        alert = await alert_of(sessionmaker, row["alert_id"])
        assert alert["severity"] == "critical" and alert["status"] == "open"
        assert alert["data"]["repair"]["endpoint"] == f"POST /api/v1/bank-notifications/{row['id']}/repair"

        ops = token_for("finance_ops")
        listed = await client.get("/api/v1/bank-notifications?open_discrepancies=true", headers=ops)
        assert [n["id"] for n in listed.json()["data"]] == [row["id"]]
        assert (await client.post(f"/api/v1/bank-notifications/{row['id']}/repair", json={"reason": "bank paid"},
                                  headers=token_for("merchant_admin", merchant_id=merchant))).status_code == 403

        async with sessionmaker() as session:
            [before] = await ledger.get_balances(session, merchant)
        assert before.available_minor == funds  # refunded by the failure
        r = await client.post(f"/api/v1/bank-notifications/{row['id']}/repair", json={"reason": "bank paid"}, headers=ops)
        assert r.status_code == 200, r.text
        assert r.json()["repair"]["to_status"] == "settled"
        again = await client.post(f"/api/v1/bank-notifications/{row['id']}/repair", json={"reason": "x"}, headers=ops)
        assert again.status_code == 200 and again.json()["repaired_at"] == r.json()["repaired_at"]

        async with sessionmaker() as session:
            [after] = await ledger.get_balances(session, merchant)
            report = await ledger.check_ledger(session)
        assert after.available_minor == funds - params.amount_minor - params.fee_minor
        assert report.ok, report.violations
        payout = (await client.get(f"/api/v1/payouts/{params.payout_id}", headers=ops)).json()
        assert payout["status"] == "settled"
        assert (await alert_of(sessionmaker, row["alert_id"]))["status"] == "resolved"
        assert (await client.get("/api/v1/bank-notifications?open_discrepancies=true", headers=ops)).json()["data"] == []

    async def test_a_notification_agreeing_with_an_ended_payout_is_recorded_consistent(
        self, temporal_client, worker, settings, sessionmaker, client
    ):
        from workflows.payout import PayoutWorkflow

        merchant = await create_merchant(sessionmaker, funded_minor=1_000_000)
        params = await create_payout_row(sessionmaker, settings, merchant_id=merchant,
                                         beneficiary=sepa_beneficiary("0002"))
        await temporal_client.execute_workflow(
            PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id), task_queue=settings.temporal_task_queue)
        body = notification(params.payout_id, type_="payment.failed")
        r = await client.post(URL, content=body, headers=signed(settings.bank_webhook_secret, body))
        assert r.json() == {"status": "accepted", "outcome": "consistent"}
        [row] = await stored(sessionmaker, params.payout_id)
        assert row["alert_id"] is None and row["discrepancy"] is None

    @pytest.mark.parametrize(("kind", "status", "expected"), [
        ("payment.settled", "settled", ("consistent", None)),
        ("payment.settled", "returned", ("consistent", None)),
        ("payment.settled", "failed", ("contradiction", "paid_at_bank_failed_here")),
        ("payment.settled", "cancelled", ("contradiction", "paid_at_bank_failed_here")),
        ("payment.returned", "settled", ("contradiction", "returned_at_bank_settled_here")),
        ("payment.returned", "returned", ("consistent", None)),
        ("payment.failed", "settled", ("contradiction", "failed_at_bank_settled_here")),
        ("payment.failed", "failed", ("consistent", None)),
    ])
    def test_classification(self, kind, status, expected):
        from core.payouts.bank_notifications import classify

        assert classify(kind, status) == expected


async def test_single_statement_writes_send_no_begin_or_commit(sessionmaker):
    """record/_mark run in AUTOCOMMIT (core/payouts/bank_notifications.py _autocommit): each
    statement commits by itself, without the BEGIN and COMMIT round trips of a transaction."""
    from sqlalchemy import select as sa_select

    from core.payouts.bank_notifications import _autocommit

    async with _autocommit(sessionmaker) as session:
        assert (await session.execute(sa_select(1))).scalar_one() == 1
        raw = (await (await session.connection()).get_raw_connection()).driver_connection
        assert not raw.is_in_transaction()
    async with sessionmaker() as session:  # the pool's next user is back to transactions
        await session.execute(sa_select(1))
        raw = (await (await session.connection()).get_raw_connection()).driver_connection
        assert raw.is_in_transaction()
