"""payops's bank connector against the sandbox bank over real HTTP, plus signing and the registry.

The sandbox signs webhooks with its own code; `connectors.signing.verify` accepting them is the
honest check that both sides implement the same scheme.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors import signing
from connectors.base import (
    BankConnector,
    BankNotification,
    ConnectorError,
    PermanentConnectorError,
    SubmitRequest,
    TransientConnectorError,
    WebhookPayloadError,
    WebhookSignatureError,
)
from connectors.registry import ConnectorRegistry, UnknownConnectorError, build_registry
from connectors.sandbox_bank import SandboxBankConnector, parse_retry_after
from core.platform.settings import Settings
from sandbox.bank import (
    ACCOUNT_CLOSED,
    ALWAYS_UNAVAILABLE,
    HANGS,
    INVALID_ACCOUNT,
    RETURNED_R01,
    BankConfig,
    running_bank,
)
from sandbox.serving import bind_socket, serve_in_background
from tests.polling import wait_until

SECRET = "connector-test-secret"


def request(reference: str, account: str = "000123456789", **overrides) -> SubmitRequest:
    fields = {
        "reference": reference,
        "amount_minor": 50_000,
        "currency": "EUR",
        "rail": "sepa",
        "beneficiary": {"account_number": account, "bic": "DEUTDEFF", "name": "Grace Hopper"},
        "description": "invoice 42",
    }
    fields.update(overrides)
    return SubmitRequest(**fields)


async def add_fault(bank, mode: str, count: int = 1) -> None:
    async with httpx.AsyncClient(base_url=bank.url) as c:
        assert (await c.post("/_sandbox/faults", json={"mode": mode, "count": count})).status_code == 200


@pytest.fixture(scope="module")
async def shared_bank():
    async with running_bank(BankConfig(settle_delay=0.05)) as b:
        yield b


@pytest.fixture
async def bank(shared_bank):
    await shared_bank.reset()
    return shared_bank


@pytest.fixture
async def connector(bank):
    c = SandboxBankConnector(base_url=bank.url, webhook_secret=SECRET, timeout_seconds=5)
    yield c
    await c.aclose()


@pytest.fixture
async def impatient_connector(bank):
    """A connector whose timeout is far shorter than the bank's hang."""
    c = SandboxBankConnector(base_url=bank.url, webhook_secret=SECRET, timeout_seconds=0.3)
    yield c
    await c.aclose()


@pytest.fixture
async def webhook_receiver():
    received: list[tuple[dict, bytes]] = []

    async def receive(request: Request):
        received.append((dict(request.headers), await request.body()))
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/bank/webhooks", receive, methods=["POST"])])
    async with serve_in_background(app) as served:
        yield served.url + "/bank/webhooks", received


# --- signing ---------------------------------------------------------------------------------


BODY = b'{"event_id":"evt_1","type":"payment.settled"}'


def test_sign_then_verify_round_trips():
    header = signing.sign(SECRET, BODY, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert signing.verify(SECRET, header, BODY, now=1_700_000_010, tolerance_seconds=300) == 1_700_000_000


@pytest.mark.parametrize(
    ("header", "body", "secret", "now", "code"),
    [
        (None, BODY, SECRET, 1_700_000_000, "signature_missing"),
        ("", BODY, SECRET, 1_700_000_000, "signature_missing"),
        ("garbage", BODY, SECRET, 1_700_000_000, "signature_malformed"),
        ("t=abc,v1=00", BODY, SECRET, 1_700_000_000, "signature_malformed"),
        ("t=1700000000", BODY, SECRET, 1_700_000_000, "signature_malformed"),
        ("v1=" + "0" * 64, BODY, SECRET, 1_700_000_000, "signature_malformed"),
        ("t=1700000000,v1=" + "0" * 64, BODY, SECRET, 1_700_000_000, "signature_mismatch"),
        ("t=1700000000,v1=not-hex-ü", BODY, SECRET, 1_700_000_000, "signature_mismatch"),
        ("SIGNED", BODY + b" ", SECRET, 1_700_000_000, "signature_mismatch"),  # tampered body
        ("SIGNED", BODY, "wrong-secret", 1_700_000_000, "signature_mismatch"),
        ("SIGNED", BODY, SECRET, 1_700_000_301, "signature_stale"),  # too old
        ("SIGNED", BODY, SECRET, 1_699_999_699, "signature_stale"),  # from the future
    ],
)
def test_verify_rejects(header, body, secret, now, code):
    if header == "SIGNED":
        header = signing.sign(SECRET, BODY, 1_700_000_000)
    with pytest.raises(WebhookSignatureError) as err:
        signing.verify(secret, header, body, now=now, tolerance_seconds=300)
    assert err.value.code == code and not err.value.retryable


def test_verify_accepts_any_of_several_signatures_and_a_retimestamped_replay_fails():
    good = signing.sign(SECRET, BODY, 1_700_000_000).split(",")[1]
    assert signing.verify(SECRET, f"t=1700000000,v1={'0' * 64},{good}", BODY, now=1_700_000_000)
    # Moving the timestamp forward to slip into the tolerance window breaks the MAC.
    with pytest.raises(WebhookSignatureError, match="signature_mismatch"):
        signing.verify(SECRET, f"t=1700009999,{good}", BODY, now=1_700_009_999)


# --- submit ----------------------------------------------------------------------------------


async def test_submit_then_replay_is_the_same_payment(bank, connector):
    first = await connector.submit(request("po_1"))
    assert first.payment_id.startswith("bnk_") and first.status == "accepted" and not first.replayed
    again = await connector.submit(request("po_1"))
    assert again.payment_id == first.payment_id and again.replayed
    assert again.accepted_at == first.accepted_at and first.accepted_at.tzinfo is not None
    assert bank.payment("po_1")["accepted_count"] == 1


async def test_fifty_concurrent_submits_pay_once(bank, connector):
    results = await asyncio.gather(*(connector.submit(request("po_many")) for _ in range(50)))
    assert len({r.payment_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    row = bank.payment("po_many")
    assert row["accepted_count"] == 1 and row["submissions"] == 50


async def test_reused_reference_with_another_body_is_permanent_conflict(bank, connector):
    await connector.submit(request("po_c"))
    with pytest.raises(PermanentConnectorError) as err:
        await connector.submit(request("po_c", amount_minor=1))
    assert err.value.code == "reference_conflict" and err.value.status_code == 409 and not err.value.retryable


@pytest.mark.parametrize(("tail", "code"), [(ACCOUNT_CLOSED, "account_closed"), (INVALID_ACCOUNT, "invalid_account")])
async def test_rejected_accounts_are_permanent(bank, connector, tail, code):
    with pytest.raises(PermanentConnectorError) as err:
        await connector.submit(request(f"po_{tail}", account=f"77{tail}"))
    assert err.value.code == code and not err.value.retryable
    assert bank.payment(f"po_{tail}")["accepted_count"] == 0


async def test_bank_side_validation_is_permanent(bank, connector):
    # The bank validates what our model lets through, e.g. a beneficiary without an account.
    with pytest.raises(PermanentConnectorError) as err:
        await connector.submit(request("po_v", beneficiary={"name": "nobody"}))
    assert err.value.code == "invalid_beneficiary" and err.value.status_code == 422


async def test_unavailable_account_is_transient(connector):
    with pytest.raises(TransientConnectorError) as err:
        await connector.submit(request("po_503", account=f"9{ALWAYS_UNAVAILABLE}"))
    assert err.value.code == "service_unavailable" and err.value.retryable and err.value.status_code == 503


async def test_hanging_account_is_a_transient_timeout(bank, impatient_connector):
    started = time.monotonic()
    with pytest.raises(TransientConnectorError) as err:
        await impatient_connector.submit(request("po_hang", account=f"9{HANGS}"))
    assert err.value.code == "timeout" and err.value.retryable
    assert time.monotonic() - started < 2


async def test_unsupported_rail_is_refused_before_calling_the_bank(bank, connector):
    with pytest.raises(PermanentConnectorError) as err:
        await connector.submit(request("po_rail", rail="pigeon_post"))
    assert err.value.code == "unsupported_rail"
    assert bank.payment("po_rail") is None


# --- faults as the connector sees them --------------------------------------------------------


async def test_fault_5xx_is_transient(bank, connector):
    await add_fault(bank, "5xx")
    with pytest.raises(TransientConnectorError) as err:
        await connector.submit(request("po_5xx"))
    assert err.value.code == "service_unavailable" and err.value.status_code == 503
    assert bank.payment("po_5xx")["accepted_count"] == 0


async def test_fault_429_is_transient_with_retry_after(bank, connector):
    await add_fault(bank, "429")
    with pytest.raises(TransientConnectorError) as err:
        await connector.submit(request("po_429"))
    assert err.value.code == "rate_limited" and err.value.retry_after == 1.0 and err.value.status_code == 429


async def test_fault_timeout_is_transient_then_retry_succeeds(bank, impatient_connector):
    await add_fault(bank, "timeout")
    with pytest.raises(TransientConnectorError) as err:
        await impatient_connector.submit(request("po_to"))
    assert err.value.code == "timeout"
    result = await impatient_connector.submit(request("po_to"))
    assert not result.replayed and bank.payment("po_to")["accepted_count"] == 1


async def test_fault_5xx_after_accept_then_retry_returns_the_same_payment(bank, connector):
    await add_fault(bank, "5xx_after_accept")
    with pytest.raises(TransientConnectorError):
        await connector.submit(request("po_aa"))
    recorded = bank.payment("po_aa")
    assert recorded["accepted_count"] == 1

    result = await connector.submit(request("po_aa"))
    assert result.payment_id == recorded["payment_id"] and result.replayed
    row = bank.payment("po_aa")
    assert row["accepted_count"] == 1 and row["submissions"] == 2


async def test_fault_reject_after_accept_shows_as_failed_status(bank, connector):
    await add_fault(bank, "reject_after_accept")
    accepted = await connector.submit(request("po_ra"))

    async def failed():
        status = await connector.poll_status("po_ra")
        return status if status.status == "failed" else None

    status = await wait_until(failed, what="failure")
    assert status.payment_id == accepted.payment_id and status.failure_code == "rejected_by_beneficiary_bank"


async def test_connection_refused_is_transient():
    sock = bind_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here now
    c = SandboxBankConnector(base_url=f"http://127.0.0.1:{port}", webhook_secret=SECRET, timeout_seconds=1)
    try:
        with pytest.raises(TransientConnectorError) as err:
            await c.submit(request("po_down"))
        assert err.value.code == "connection_error"
        health = await c.health()
        assert not health.healthy and health.connector == "sandbox" and "connection_error" in health.detail
    finally:
        await c.aclose()


def test_retry_after_parsing():
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    http_date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(http_date, now=now.timestamp()) == pytest.approx(30)


def test_connector_errors_survive_pickling():
    err = TransientConnectorError("rate_limited", "slow down", retry_after=1.0, status_code=429)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is TransientConnectorError
    assert (back.code, back.message, back.retryable, back.retry_after, back.status_code) == (
        "rate_limited", "slow down", True, 1.0, 429
    )
    assert isinstance(back, ConnectorError) and str(back) == "rate_limited: slow down"


# --- status and health ------------------------------------------------------------------------


async def test_poll_status_follows_settlement(bank, connector):
    accepted = await connector.submit(request("po_s"))

    async def settled():
        status = await connector.poll_status("po_s")
        return status if status.status == "settled" else None

    status = await wait_until(settled, what="settlement")
    assert status.payment_id == accepted.payment_id and status.reference == "po_s"
    with pytest.raises(PermanentConnectorError) as err:
        await connector.poll_status("po_never_sent")
    assert err.value.code == "payment_not_found"


async def test_health(connector):
    health = await connector.health()
    assert health.healthy and health.connector == "sandbox" and health.latency_ms >= 0


async def test_shared_http_client_is_not_closed_by_the_connector(bank):
    async with httpx.AsyncClient() as shared:
        c = SandboxBankConnector(base_url=bank.url, webhook_secret=SECRET, http_client=shared)
        assert (await c.health()).healthy
        await c.aclose()
        assert not shared.is_closed


# --- webhooks end to end ---------------------------------------------------------------------


async def test_settlement_webhook_verifies_and_parses(webhook_receiver):
    url, received = webhook_receiver
    async with running_bank(BankConfig(settle_delay=0.05, webhook_url=url, webhook_secret=SECRET)) as bank:
        connector = SandboxBankConnector(base_url=bank.url, webhook_secret=SECRET)
        try:
            accepted = await connector.submit(request("po_wh"))
            await wait_until(lambda: received, what="settlement webhook")
        finally:
            await connector.aclose()

    headers, body = received[0]
    assert signing.verify(SECRET, headers["payops-signature"], body, now=time.time(), tolerance_seconds=300)
    note = connector.parse_webhook(headers, body)
    assert isinstance(note, BankNotification)
    assert (note.type, note.status, note.reference, note.payment_id) == (
        "payment.settled", "settled", "po_wh", accepted.payment_id
    )
    assert (note.amount_minor, note.currency, note.failure_code, note.return_code) == (50_000, "EUR", None, None)
    assert note.occurred_at.tzinfo is not None and note.event_id

    # Header names are case-insensitive, as HTTP says.
    assert connector.parse_webhook({"Payops-Signature": headers["payops-signature"]}, body) == note

    tampered = body.replace(b'"settled"', b'"returned"')
    with pytest.raises(WebhookSignatureError, match="signature_mismatch"):
        connector.parse_webhook(headers, tampered)
    wrong_secret = SandboxBankConnector(base_url=url, webhook_secret="not-the-secret")
    with pytest.raises(WebhookSignatureError, match="signature_mismatch"):
        wrong_secret.parse_webhook(headers, body)
    await wrong_secret.aclose()
    signed_at = int(headers["payops-signature"].split(",")[0][2:])
    with pytest.raises(WebhookSignatureError, match="signature_stale"):
        connector.parse_webhook(headers, body, now=signed_at + 301)
    with pytest.raises(WebhookSignatureError, match="signature_missing"):
        connector.parse_webhook({}, body)


async def test_returned_account_webhooks_settled_then_returned(webhook_receiver):
    url, received = webhook_receiver
    async with running_bank(BankConfig(settle_delay=0.05, webhook_url=url, webhook_secret=SECRET)) as bank:
        connector = SandboxBankConnector(base_url=bank.url, webhook_secret=SECRET)
        try:
            await connector.submit(request("po_r01", account=f"12{RETURNED_R01}"))
            await wait_until(lambda: len(received) >= 2, what="settled and returned webhooks")
            notes = [connector.parse_webhook(h, b) for h, b in received]
            status = await connector.poll_status("po_r01")
        finally:
            await connector.aclose()
    assert [(n.type, n.status, n.return_code) for n in notes] == [
        ("payment.settled", "settled", None),
        ("payment.returned", "returned", "R01"),
    ]
    assert len({n.event_id for n in notes}) == 2
    assert status.status == "returned" and status.return_code == "R01"


def test_signed_but_unreadable_webhook_is_a_payload_error():
    connector = SandboxBankConnector(base_url="http://127.0.0.1:1", webhook_secret=SECRET)
    body = json.dumps({"event_id": "evt_x", "type": "payment.exploded"}).encode()
    header = signing.sign(SECRET, body, int(time.time()))
    with pytest.raises(WebhookPayloadError) as err:
        connector.parse_webhook({"Payops-Signature": header}, body)
    assert err.value.code == "invalid_payload"


# --- registry --------------------------------------------------------------------------------


async def test_build_registry_registers_the_sandbox_bank_when_configured():
    settings = Settings(sandbox_bank_url="http://127.0.0.1:8081", bank_webhook_secret="s3cret")
    registry = build_registry(settings)
    try:
        from connectors.rails import RAIL_CONNECTORS

        # the generic sandbox connector plus one per-rail connector against the same bank
        expected = sorted(["sandbox", *(name for name, _, _ in RAIL_CONNECTORS)])
        assert registry.names() == expected and "sandbox" in registry and len(registry) == len(expected)
        sandbox = registry.get("sandbox")
        assert isinstance(sandbox, SandboxBankConnector) and isinstance(sandbox, BankConnector)
        assert sandbox.base_url == "http://127.0.0.1:8081" and sandbox.webhook_secret == "s3cret"
        assert sandbox.webhook_tolerance_seconds == settings.bank_webhook_tolerance_seconds
        mobile = [c.name for c in registry.for_rail("mobile_money")]
        assert "sandbox" in mobile and all(c.serves("mobile_money") for c in registry.for_rail("mobile_money"))
        assert registry.for_rail("pigeon_post") == []
        with pytest.raises(UnknownConnectorError) as err:
            registry.get("acme_bank")
        assert isinstance(err.value, KeyError) and "acme_bank" in str(err.value)
        with pytest.raises(ValueError):
            registry.register(SandboxBankConnector(base_url="http://127.0.0.1:1"))
    finally:
        await registry.aclose()


def test_build_registry_is_empty_without_a_sandbox_url():
    assert build_registry(Settings(sandbox_bank_url=None)).names() == []
    assert ConnectorRegistry().names() == []
