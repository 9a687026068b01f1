"""The sandbox bank over real HTTP on loopback: its protocol, its test accounts, its fault modes.

These tests talk raw HTTP (httpx) so they check the bank itself; tests/connectors/test_connectors.py checks
payops's connector against it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime
import sys
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.bank import (
    ACCOUNT_CLOSED,
    ALWAYS_UNAVAILABLE,
    HANGS,
    INVALID_ACCOUNT,
    RETURNED_R01,
    TEST_ACCOUNTS,
    BankConfig,
    account_tail,
    running_bank,
    sign_webhook,
)
from sandbox.serving import serve_in_background
from tests.polling import wait_until

SECRET = "test-bank-secret"


def payment(reference: str, account: str = "000123456789", **overrides) -> dict:
    body = {
        "reference": reference,
        "amount_minor": 12_345,
        "currency": "USD",
        "rail": "ach",
        "beneficiary": {"routing_number": "021000021", "account_number": account, "name": "Ada Lovelace"},
        "description": "payout",
    }
    body.update(overrides)
    return body


async def submit(client: httpx.AsyncClient, body: dict, key: str | None = "__reference__") -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": body["reference"] if key == "__reference__" else key}
    return await client.post("/v1/payments", json=body, headers=headers)


async def add_fault(client: httpx.AsyncClient, mode: str, count: int = 1) -> None:
    resp = await client.post("/_sandbox/faults", json={"mode": mode, "count": count})
    assert resp.status_code == 200, resp.text


async def status_of(client: httpx.AsyncClient, reference: str) -> dict:
    resp = await client.get(f"/v1/payments/{reference}")
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
async def shared_bank():
    async with running_bank(BankConfig(settle_delay=0.05)) as b:
        yield b


@pytest.fixture
async def bank(shared_bank):
    """The module's bank, emptied for this test (starting a server per test costs ~0.2 s)."""
    await shared_bank.reset()
    return shared_bank


@pytest.fixture
async def slow_bank():
    """A bank that never settles on its own during a test: settlement is driven by /_sandbox."""
    async with running_bank(BankConfig(settle_delay=60)) as b:
        yield b


@pytest.fixture
async def client(bank):
    async with httpx.AsyncClient(base_url=bank.url, timeout=5) as c:
        yield c


@pytest.fixture
async def webhook_receiver():
    """A merchant-side endpoint that records webhooks; `fail_next` makes it answer 500 first."""
    received: list[tuple[dict, bytes]] = []
    control = {"fail_next": 0}

    async def receive(request: Request):
        body = await request.body()
        if control["fail_next"] > 0:
            control["fail_next"] -= 1
            return JSONResponse({"error": "down"}, status_code=500)
        received.append((dict(request.headers), body))
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/webhooks", receive, methods=["POST"])])
    async with serve_in_background(app) as served:
        yield served.url + "/webhooks", received, control


# --- protocol --------------------------------------------------------------------------------


async def test_health(client):
    resp = await client.get("/health")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


async def test_first_submit_accepts_and_replay_returns_same_payment(bank, client):
    first = await submit(client, payment("po_1"))
    assert first.status_code == 201
    body = first.json()
    assert body["payment_id"].startswith("bnk_") and body["status"] == "accepted" and body["reference"] == "po_1"

    again = await submit(client, payment("po_1"))
    assert again.status_code == 200
    assert again.json() == body
    row = bank.payment("po_1")
    assert row["accepted_count"] == 1 and row["submissions"] == 2


async def test_same_reference_different_body_is_conflict(bank, client):
    assert (await submit(client, payment("po_c"))).status_code == 201
    resp = await submit(client, payment("po_c", amount_minor=99))
    assert resp.status_code == 409 and resp.json()["error"] == "reference_conflict"
    assert bank.payment("po_c")["accepted_count"] == 1
    assert (await status_of(client, "po_c"))["amount_minor"] == 12_345


async def test_fifty_concurrent_submits_of_one_reference_accept_once(bank, client):
    responses = await asyncio.gather(*(submit(client, payment("po_many")) for _ in range(50)))
    assert sorted(r.status_code for r in responses) == [200] * 49 + [201]
    assert len({r.json()["payment_id"] for r in responses}) == 1
    row = bank.payment("po_many")
    assert row["accepted_count"] == 1 and row["submissions"] == 50


@pytest.mark.parametrize("key", [None, "something-else"])
async def test_idempotency_key_must_equal_reference(bank, client, key):
    resp = await submit(client, payment("po_k"), key=key)
    assert resp.status_code == 400 and resp.json()["error"] == "idempotency_key_mismatch"
    assert bank.payment("po_k") is None


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"amount_minor": 0}, "invalid_amount"),
        ({"amount_minor": -5}, "invalid_amount"),
        ({"amount_minor": "10.00"}, "invalid_amount"),
        ({"currency": "usd"}, "invalid_currency"),
        ({"currency": "DOLLARS"}, "invalid_currency"),
        ({"rail": "pigeon"}, "unsupported_rail"),
        ({"beneficiary": None}, "invalid_beneficiary"),
        ({"beneficiary": {"name": "no account"}}, "invalid_beneficiary"),
        ({"description": "x" * 141}, "invalid_description"),
    ],
)
async def test_invalid_bodies_are_422_with_json_error(bank, client, overrides, error):
    resp = await submit(client, payment("po_bad", **overrides))
    assert resp.status_code == 422
    assert resp.json()["error"] == error and resp.json()["message"]
    assert bank.payment("po_bad")["accepted_count"] == 0


async def test_malformed_json_and_unknown_routes_answer_json(client):
    resp = await client.post("/v1/payments", content=b"{not json", headers={"Idempotency-Key": "x"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_json"
    resp = await client.get("/v1/nothing-here")
    assert resp.status_code == 404 and resp.json()["error"] == "not_found"
    resp = await client.delete("/v1/payments")
    assert resp.status_code == 405 and resp.json()["error"] == "method_not_allowed"
    resp = await client.get("/v1/payments/po_unknown")
    assert resp.status_code == 404 and resp.json()["error"] == "payment_not_found"


async def test_payment_settles_after_the_delay(client):
    assert (await submit(client, payment("po_s"))).status_code == 201
    settled = await wait_until(
        lambda: _status_is(client, "po_s", "settled"), what="settlement"
    )
    assert settled["failure_code"] is None and settled["return_code"] is None


async def _status_is(client, reference, status):
    data = await status_of(client, reference)
    return data if data["status"] == status else None


# --- designated test accounts ----------------------------------------------------------------


def test_account_tail_uses_account_number_then_iban_then_phone():
    assert account_tail({"account_number": "12-34-0002", "iban": "DE00 0000 0000 0000 9999"}) == "0002"
    assert account_tail({"iban": "GB29 NWBK 6016 1331 9268 0010"}) == "0010"
    assert account_tail({"phone": "+221 77 000 0028", "operator": "orange"}) == "0028"
    assert set(TEST_ACCOUNTS) == {ACCOUNT_CLOSED, INVALID_ACCOUNT, RETURNED_R01, ALWAYS_UNAVAILABLE, HANGS}


@pytest.mark.parametrize(("tail", "error"), [(ACCOUNT_CLOSED, "account_closed"), (INVALID_ACCOUNT, "invalid_account")])
async def test_rejected_accounts_are_422_and_never_accepted(bank, client, tail, error):
    resp = await submit(client, payment(f"po_{tail}", account=f"98765{tail}"))
    assert resp.status_code == 422 and resp.json()["error"] == error
    row = bank.payment(f"po_{tail}")
    assert row["accepted_count"] == 0 and row["payment_id"] is None
    assert (await client.get(f"/v1/payments/po_{tail}")).status_code == 404


async def test_rejects_also_apply_to_iban_and_phone(client):
    iban = payment("po_iban", rail="sepa", currency="EUR", beneficiary={"iban": "DE89 3704 0044 0532 0100 02", "name": "X"})
    assert (await submit(client, iban)).json()["error"] == "account_closed"
    phone = payment("po_phone", rail="mobile_money", currency="XOF",
                    beneficiary={"phone": "+221770000010", "operator": "orange", "name": "Y"})
    assert (await submit(client, phone)).json()["error"] == "invalid_account"


async def test_unavailable_account_is_always_503(bank, client):
    for _ in range(3):
        resp = await submit(client, payment("po_503", account=f"1{ALWAYS_UNAVAILABLE}"))
        assert resp.status_code == 503 and resp.json()["error"] == "service_unavailable"
    row = bank.payment("po_503")
    assert row["accepted_count"] == 0 and row["submissions"] == 3


async def test_hanging_account_outlasts_a_client_timeout(bank):
    async with httpx.AsyncClient(base_url=bank.url, timeout=0.3) as short:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await submit(short, payment("po_hang", account=f"5{HANGS}"))
        assert time.monotonic() - started < 2
    assert bank.payment("po_hang")["accepted_count"] == 0


async def test_a_hanging_request_does_not_slow_shutdown():
    async with running_bank(BankConfig(settle_delay=0.05)) as b:
        c = httpx.AsyncClient(base_url=b.url, timeout=60)
        pending = asyncio.create_task(submit(c, payment("po_hang2", account=f"5{HANGS}")))
        await wait_until(lambda: b.payment("po_hang2"), what="request arrival")
        started = time.monotonic()
    assert time.monotonic() - started < 3
    resp = await asyncio.wait_for(pending, 5)
    assert resp.status_code == 503
    await c.aclose()


async def test_returned_account_settles_then_returns_r01(webhook_receiver):
    url, received, _ = webhook_receiver
    async with running_bank(BankConfig(settle_delay=0.05, webhook_url=url, webhook_secret=SECRET)) as b:
        async with httpx.AsyncClient(base_url=b.url, timeout=5) as c:
            assert (await submit(c, payment("po_r01", account=f"4{RETURNED_R01}"))).status_code == 201
            returned = await wait_until(lambda: _status_is(c, "po_r01", "returned"), what="return")
            assert returned["return_code"] == "R01"
            await wait_until(lambda: len(received) == 2, what="two webhooks")
    assert [json.loads(body)["type"] for _, body in received] == ["payment.settled", "payment.returned"]
    assert json.loads(received[1][1])["return_code"] == "R01"


# --- fault injection -------------------------------------------------------------------------


async def test_fault_5xx_answers_503_before_recording(bank, client):
    await add_fault(client, "5xx", count=2)
    assert (await submit(client, payment("po_f"))).status_code == 503
    assert (await submit(client, payment("po_f"))).status_code == 503
    assert bank.payment("po_f")["accepted_count"] == 0
    assert (await submit(client, payment("po_f"))).status_code == 201  # faults used up
    assert (await client.get("/_sandbox/faults")).json() == {"faults": []}


async def test_fault_429_carries_retry_after(bank, client):
    await add_fault(client, "429")
    resp = await submit(client, payment("po_429"))
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "1"
    assert bank.payment("po_429")["accepted_count"] == 0


async def test_fault_timeout_hangs_past_client_timeout(bank):
    async with httpx.AsyncClient(base_url=bank.url, timeout=0.3) as short:
        await add_fault(short, "timeout")
        with pytest.raises(httpx.ReadTimeout):
            await submit(short, payment("po_t"))
        assert (await submit(short, payment("po_t"))).status_code == 201
    assert bank.payment("po_t")["accepted_count"] == 1


async def test_fault_5xx_after_accept_records_then_a_retry_gets_the_same_payment(bank, client):
    await add_fault(client, "5xx_after_accept")
    assert (await submit(client, payment("po_aa"))).status_code == 503
    assert bank.payment("po_aa")["accepted_count"] == 1
    retry = await submit(client, payment("po_aa"))
    assert retry.status_code == 200
    assert retry.json()["payment_id"] == bank.payment("po_aa")["payment_id"]
    row = bank.payment("po_aa")
    assert row["accepted_count"] == 1 and row["submissions"] == 2


async def test_fault_reject_after_accept_fails_later(client):
    await add_fault(client, "reject_after_accept")
    assert (await submit(client, payment("po_ra"))).status_code == 201
    failed = await wait_until(lambda: _status_is(client, "po_ra", "failed"), what="failure")
    assert failed["failure_code"] == "rejected_by_beneficiary_bank"


async def test_faults_queue_in_order_and_bad_modes_are_refused(client):
    await add_fault(client, "429")
    await add_fault(client, "5xx")
    assert (await submit(client, payment("po_q"))).status_code == 429
    assert (await submit(client, payment("po_q"))).status_code == 503
    assert (await submit(client, payment("po_q"))).status_code == 201
    bad = await client.post("/_sandbox/faults", json={"mode": "gremlins", "count": 1})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_mode"
    bad = await client.post("/_sandbox/faults", json={"mode": "5xx", "count": 0})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_count"


async def test_reset_clears_payments_and_faults(bank, client):
    await submit(client, payment("po_x"))
    await add_fault(client, "5xx")
    assert (await client.post("/_sandbox/reset")).status_code == 200
    assert (await client.get("/_sandbox/payments")).json() == []
    assert (await submit(client, payment("po_x"))).status_code == 201


# --- settlement controls and webhooks -------------------------------------------------------


async def test_settle_and_return_now(slow_bank):
    async with httpx.AsyncClient(base_url=slow_bank.url, timeout=5) as c:
        await submit(c, payment("po_m"))
        early = await c.post("/_sandbox/return/po_m", json={"return_code": "R02"})
        assert early.status_code == 409 and early.json()["error"] == "invalid_state"
        settled = await c.post("/_sandbox/settle/po_m")
        assert settled.status_code == 200 and settled.json()["status"] == "settled"
        returned = await c.post("/_sandbox/return/po_m", json={"return_code": "R02"})
        assert returned.json()["status"] == "returned" and returned.json()["return_code"] == "R02"
        assert (await c.post("/_sandbox/settle/po_unknown")).status_code == 404
        listed = (await c.get("/_sandbox/payments")).json()
    assert [(r["reference"], r["status"], r["accepted_count"]) for r in listed] == [("po_m", "returned", 1)]


async def test_fail_now(slow_bank):
    async with httpx.AsyncClient(base_url=slow_bank.url, timeout=5) as c:
        await submit(c, payment("po_fn"))
        failed = await c.post("/_sandbox/fail/po_fn", json={"failure_code": "insufficient_funds"})
        assert failed.json()["status"] == "failed" and failed.json()["failure_code"] == "insufficient_funds"


async def test_webhook_is_signed_and_retried_until_delivered(webhook_receiver):
    url, received, control = webhook_receiver
    control["fail_next"] = 2
    config = BankConfig(settle_delay=0.05, webhook_url=url, webhook_secret=SECRET, webhook_initial_backoff=0.02)
    async with running_bank(config) as b:
        async with httpx.AsyncClient(base_url=b.url, timeout=5) as c:
            created = (await submit(c, payment("po_wh"))).json()
            await wait_until(lambda: received, what="webhook delivery")
            deliveries = (await c.get("/_sandbox/webhooks")).json()
    headers, body = received[0]
    event = json.loads(body)
    assert event["type"] == "payment.settled" and event["status"] == "settled"
    assert event["reference"] == "po_wh" and event["payment_id"] == created["payment_id"]
    assert event["amount_minor"] == 12_345 and event["currency"] == "USD" and event["event_id"].startswith("evt_")
    t = int(headers["payops-signature"].split(",")[0].removeprefix("t="))
    assert headers["payops-signature"] == sign_webhook(SECRET, body, t)
    assert abs(time.time() - t) < 60
    assert deliveries == [
        {"event_id": event["event_id"], "type": "payment.settled", "reference": "po_wh",
         "attempts": 3, "delivered": True, "last_status": 200, "last_error": None}
    ]


async def test_no_webhook_url_means_polling_only(bank, client):
    await submit(client, payment("po_poll"))
    await wait_until(lambda: _status_is(client, "po_poll", "settled"), what="settlement")
    assert bank.state.webhooks == []


async def test_shutdown_cancels_pending_settlements_and_deliveries():
    # The receiver URL refuses connections, so delivery keeps retrying when the bank stops.
    config = BankConfig(settle_delay=0.01, webhook_url="http://127.0.0.1:9/none", webhook_initial_backoff=5)
    started = None
    async with running_bank(config) as b:
        async with httpx.AsyncClient(base_url=b.url, timeout=5) as c:
            await submit(c, payment("po_sd1"))
            await wait_until(lambda: b.state.webhooks and b.state.webhooks[0].attempts >= 1, what="first attempt")
        state = b.state
        started = time.monotonic()
    assert time.monotonic() - started < 3
    assert not state.tasks


# --- the CLI ---------------------------------------------------------------------------------


async def test_cli_serves_the_bank():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox.bank", "--port", "0", "--settle-delay", "0.05", "--log-level", "warning",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert line.startswith("sandbox bank listening on http://127.0.0.1:")
        url = line.split(" on ", 1)[1].strip()

        async def healthy():
            try:
                async with httpx.AsyncClient(timeout=1) as c:
                    return (await c.get(url + "/health")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(healthy, timeout=10, interval=0.05, what="CLI bank health")
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) is not None


# --- a durable record (issue 17 item 4) -------------------------------------------------------


async def _start_cli_bank(store: str, port: int, settle_delay: float) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox.bank", "--port", str(port), "--settle-delay", str(settle_delay),
        "--store", store, "--log-level", "warning",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    assert line.startswith("sandbox bank listening on http://127.0.0.1:"), line
    return proc, line.split(" on ", 1)[1].strip()


async def test_the_payment_record_survives_a_restart_of_the_bank(tmp_path):
    """SIGKILL the bank process and start it again on the same store: every payment is still
    there with its status and return, reported by GET /v1/payments/{ref} and ?since=; a payment
    still in flight settles after the restart; a replay gets the same payment back."""
    from devstack.embedded import free_port

    store, port = str(tmp_path / "bank" / "payments.sqlite3"), free_port()
    since = "2000-01-01T00:00:00Z"
    proc, url = await _start_cli_bank(store, port, settle_delay=0.3)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as c:
            settled, returned, in_flight = payment("dur-settled"), payment("dur-returned", f"00012345{RETURNED_R01}"), payment("dur-flight")
            first = {}
            for body in (settled, returned):
                r = await submit(c, body)
                assert r.status_code == 201, r.text
                first[body["reference"]] = r.json()["payment_id"]
            await wait_until(lambda: _has_status(c, "dur-settled", "settled"), timeout=10, interval=0.05, what="settled")
            await wait_until(lambda: _has_status(c, "dur-returned", "returned"), timeout=10, interval=0.05, what="returned")
            r = await submit(c, in_flight)
            assert r.status_code == 201, r.text
            first["dur-flight"] = r.json()["payment_id"]
            assert (await status_of(c, "dur-flight"))["status"] == "accepted"
    finally:
        proc.kill()  # SIGKILL: no clean shutdown
        await proc.wait()

    proc, url = await _start_cli_bank(store, port, settle_delay=0.3)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as c:
            assert (await status_of(c, "dur-settled"))["status"] == "settled"
            back = await status_of(c, "dur-returned")
            assert back["status"] == "returned" and back["return_code"] == "R01"
            await wait_until(lambda: _has_status(c, "dur-flight", "settled"), timeout=10, interval=0.05,
                             what="the in-flight payment settles after the restart")
            report = (await c.get("/v1/payments", params={"since": since})).json()["payments"]
            assert {p["reference"]: p["status"] for p in report} == {
                "dur-settled": "settled", "dur-returned": "returned", "dur-flight": "settled"}
            assert {p["reference"]: p["payment_id"] for p in report} == first
            replay = await submit(c, settled)
            assert replay.status_code == 200 and replay.json()["payment_id"] == first["dur-settled"]
            conflict = await submit(c, {**settled, "amount_minor": 1})
            assert conflict.status_code == 409
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def _has_status(c: httpx.AsyncClient, reference: str, status: str) -> bool:
    return (await status_of(c, reference))["status"] == status


async def test_payment_files_survive_a_restart_of_the_bank(tmp_path):
    """A NACHA file accepted before a SIGKILL is still known after the restart: GET by its id
    gives the same report, sending it again replays that report (200) and pays nobody twice,
    and a different file under the same id is still a 409."""
    from core.rails.nacha import AchEntry, AchOriginator, build_nacha
    from devstack.embedded import free_port

    entries = [AchEntry(payout_id=f"po_file_{i:026d}", routing_number="021000021", account_number=f"12345678{i}",
                        account_type="checking", name=f"Payee {i}", amount_minor=1_000 + i) for i in range(3)]
    content, _ = build_nacha(entries, originator=AchOriginator(), created=datetime(2026, 12, 1, 17),
                             effective=date(2026, 12, 2))
    different, _ = build_nacha(entries[:2], originator=AchOriginator(), created=datetime(2026, 12, 1, 17),
                               effective=date(2026, 12, 2))
    store, port = str(tmp_path / "bank" / "payments.sqlite3"), free_port()
    proc, url = await _start_cli_bank(store, port, settle_delay=30)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as c:
            first = await c.post("/v1/files/nacha", content=content, headers={"Idempotency-Key": "file-durable"})
            assert first.status_code == 201, first.text
    finally:
        proc.kill()
        await proc.wait()

    proc, url = await _start_cli_bank(store, port, settle_delay=30)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as c:
            asked = await c.get("/v1/files/file-durable")
            assert asked.status_code == 200 and asked.json() == first.json()
            again = await c.post("/v1/files/nacha", content=content, headers={"Idempotency-Key": "file-durable"})
            assert again.status_code == 200 and again.json() == first.json()
            other = await c.post("/v1/files/nacha", content=different, headers={"Idempotency-Key": "file-durable"})
            assert other.status_code == 409 and other.json()["error"] == "file_id_conflict"
            for e in first.json()["entries"]:
                assert (await status_of(c, e["reference"]))["payment_id"] == e["payment_id"]
            stats = (await c.get("/_sandbox/files")).json()
            assert [f["file_id"] for f in stats] == ["file-durable"]
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
