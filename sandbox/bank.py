"""The sandbox bank: an honest simulator of an outside bank's payments API.

It shares no code with payops's product packages (core/, connectors/, api/, ...): it parses and
validates requests and signs its webhooks with its own code, so a test that passes against it
proves the product side speaks the bank's protocol, not that it agrees with itself.

API
---
``POST /v1/payments``            submit a payment; ``Idempotency-Key`` must equal ``reference``.
                                 201 first acceptance, 200 replay of the same body,
                                 409 ``reference_conflict`` for the same reference with another body,
                                 422 ``{"error", "message"}`` for a body the bank refuses.
``GET  /v1/payments/{reference}`` the payment (accepted|settled|failed|returned), 404 if unknown.
``POST /v1/payments/{reference}/recall`` stop an accepted payment (it fails, ``recalled``);
                                 409 ``not_recallable`` once it settled or failed, 404 if unknown.
``GET  /v1/payments?since=&rail=&limit=&cursor=`` the bank's report: payments accepted at or after
                                 ``since`` (ISO 8601), oldest first, optionally of some rails
                                 (``rail=ach,sepa``); ``{"payments": [...], "next_cursor"}``, pages of
                                 ``limit`` (default 500, at most 1000).
``GET  /health``                 ``{"status": "ok"}``.
``GET  /v1/rails/{rail}/health``  200, or 503 while the rail's scheme is down (``POST /_sandbox/outages``).
``POST /v1/files/nacha``          an ACH file (NACHA); ``POST /v1/files/pain001`` a SEPA pain.001.001.09
                                 file. ``Idempotency-Key`` is the file id. Validated with independent
                                 parsers (sandbox/bank_files.py): 422 ``file_rejected`` with ``errors``
                                 for a malformed file, else 201 with a per-entry acceptance report
                                 (entries keyed by the payment reference: NACHA 05 addenda / EndToEndId).
``GET  /v1/files/{file_id}``      the file's acceptance report (the same as its POST's), 404 if the bank
                                 never received a file with this id.
``POST /mobile-money/v1_0/transfer`` a mobile-money disbursement shaped like the operators' APIs
                                 (``X-Reference-Id`` UUID, 202); ``GET .../transfer/{X-Reference-Id}``.

Test controls (``/_sandbox``): ``GET payments`` (acceptance counters, to prove exactly-once),
``GET webhooks`` (delivery log), ``POST faults`` ``{"mode", "count"}``, ``GET faults``, ``POST reset``,
``POST settle/{reference}``, ``POST fail/{reference}`` ``{"failure_code"}``,
``POST return/{reference}`` ``{"return_code", "notify"}`` (``"notify": false``: no webhook).

Settlement: ``settle_delay`` seconds after acceptance the payment settles and a
``payment.settled`` webhook goes to ``webhook_url`` (none when it is unset: polling only),
signed ``Payops-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "{t}.{raw body}")>``
and retried with doubling backoff on non-2xx answers and connection errors.

Designated test beneficiaries (keyed on the last 4 digits of ``account_number``, else ``iban``,
else ``phone``):

======  =========================================================================================
digits  behaviour
======  =========================================================================================
0002    rejected: 422 ``{"error": "account_closed"}``, nothing recorded as accepted
0010    rejected: 422 ``{"error": "invalid_account"}``, nothing recorded as accepted
0028    accepted, settles, then after another ``settle_delay`` a ``payment.returned`` (``R01``)
0036    always 503 ``{"error": "service_unavailable"}`` (transient), nothing accepted
0044    the request hangs ``hang_seconds`` (30 s), longer than any sane client timeout, then 503
======  =========================================================================================

Any other account is accepted and settles.

Fault modes for ``POST /_sandbox/faults`` (each applies to the next ``count`` payment POSTs, except
``inquiry_5xx``, which applies to the next ``count`` ``GET /v1/payments/{reference}``, and the
``file_*`` modes, which apply to file POSTs or ``GET /v1/files/{file_id}``):

=====================  ==================================================================
mode                   behaviour
=====================  ==================================================================
timeout                hang ``hang_seconds`` then 503, nothing recorded
5xx                    503 before anything is recorded
429                    429 with ``Retry-After: 1``, nothing recorded
5xx_after_accept       the payment is accepted and recorded, then the answer is a 503
                       (a client retry must get the same payment back, not a second one)
reject_after_accept    201 accepted, then after ``settle_delay`` the payment fails
                       (``payment.failed``, failure_code ``rejected_by_beneficiary_bank``)
accept_then_5xx        the same as ``5xx_after_accept``
reference_conflict     a POST of a reference the bank already has answers 409
                       ``reference_conflict`` instead of replaying the acceptance (a bank that
                       refuses resubmissions); a new reference is accepted as usual
return_without_webhook accepted, settles, then after another ``settle_delay`` is returned
                       (``R01``) with no ``payment.returned`` webhook: only an inquiry sees it
inquiry_5xx            ``GET /v1/payments/{reference}`` answers 503 (the status inquiry fails)
file_accept_then_5xx   (next file POST) the file is taken and its payments recorded, then the
                       answer is a 503
file_replay_conflict   (next file POST) a file id the bank already has answers 409
                       ``file_id_conflict`` instead of replaying its acceptance report
file_inquiry_5xx       (next ``GET /v1/files/{file_id}``) 503
=====================  ==================================================================

Run it: ``python -m sandbox.bank --port 8081 --webhook-url URL --webhook-secret S --settle-delay 2``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.serving import serve_forever, serve_in_background
from sandbox.bank_files import read_nacha, read_pain001
from sandbox.bank_store import BankStore, load_into

# --- designated test accounts ----------------------------------------------------------------

ACCOUNT_CLOSED = "0002"
INVALID_ACCOUNT = "0010"
RETURNED_R01 = "0028"
ALWAYS_UNAVAILABLE = "0036"
HANGS = "0044"

TEST_ACCOUNTS: dict[str, str] = {
    ACCOUNT_CLOSED: "422 account_closed (permanent reject, nothing accepted)",
    INVALID_ACCOUNT: "422 invalid_account (permanent reject, nothing accepted)",
    RETURNED_R01: "accepted, settles, then payment.returned with return_code R01",
    ALWAYS_UNAVAILABLE: "always 503 service_unavailable (transient, nothing accepted)",
    HANGS: "hangs hang_seconds (30 s) then 503",
}

FAULT_MODES = ("timeout", "5xx", "429", "5xx_after_accept", "reject_after_accept", "accept_then_5xx",
               "reference_conflict", "return_without_webhook", "inquiry_5xx",
               "file_accept_then_5xx", "file_replay_conflict", "file_inquiry_5xx")
INQUIRY_FAULTS = frozenset({"inquiry_5xx"})  # apply to GET /v1/payments/{reference}
FILE_FAULTS = frozenset({"file_accept_then_5xx", "file_replay_conflict"})  # apply to file POSTs
FILE_INQUIRY_FAULTS = frozenset({"file_inquiry_5xx"})  # apply to GET /v1/files/{file_id}
# the others apply to payment POSTs
RAILS = frozenset({"ach", "sepa", "sepa_instant", "wire", "faster_payments", "mobile_money"})
ACCOUNT_FIELDS = ("account_number", "iban", "phone")
SIGNATURE_HEADER = "Payops-Signature"
REJECTED_BY_BENEFICIARY_BANK = "rejected_by_beneficiary_bank"

# The payops dev default, so `python -m sandbox.bank` talks to a dev stack with no flags.
DEFAULT_WEBHOOK_SECRET = "payops-dev-bank-webhook-secret"

_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass
class BankConfig:
    webhook_url: str | None = None
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    settle_delay: float = 2.0
    hang_seconds: float = 30.0
    webhook_attempts: int = 5
    webhook_initial_backoff: float = 0.2
    webhook_timeout: float = 5.0
    # Deliveries in flight at once. A batch file settles thousands of payments together: posting
    # every webhook at once queued thousands of requests on one connection pool, whose request
    # assignment is quadratic in the queue (85% of the batch bench's CPU at 2,000 payouts).
    webhook_concurrency: int = 32
    # A SQLite file keeping the payment record across restarts (sandbox/bank_store.py); None = memory only.
    store_path: str | None = None


# --- state -------------------------------------------------------------------------------------


def _utcnow_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Payment:
    reference: str
    payment_id: str
    amount_minor: int
    currency: str
    rail: str
    beneficiary: dict[str, Any]
    description: str | None
    fingerprint: str
    accepted_at: str
    planned_outcome: str  # "settle" | "settle_then_return" | "settle_then_return_silently" | "fail"
    status: str = "accepted"
    failure_code: str | None = None
    return_code: str | None = None
    settled_at: str | None = None
    accepted_count: int = 1

    def public(self) -> dict[str, Any]:
        return {
            "payment_id": self.payment_id,
            "reference": self.reference,
            "status": self.status,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "rail": self.rail,
            "accepted_at": self.accepted_at,
            "settled_at": self.settled_at,
            "failure_code": self.failure_code,
            "return_code": self.return_code,
        }


@dataclass
class WebhookDelivery:
    event_id: str
    type: str
    reference: str
    attempts: int = 0
    delivered: bool = False
    last_status: int | None = None
    last_error: str | None = None

    def public(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class BankState:
    """The bank's in-memory ledger. One event loop serves it; `lock` makes check-and-accept atomic."""

    config: BankConfig
    payments: dict[str, Payment] = field(default_factory=dict)
    submissions: dict[str, int] = field(default_factory=dict)
    faults: list[list[Any]] = field(default_factory=list)  # [[mode, remaining], ...] in order
    webhooks: list[WebhookDelivery] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task] = field(default_factory=set)
    http: httpx.AsyncClient | None = None
    webhook_slots: asyncio.Semaphore | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # file id -> acceptance report
    outages: set[str] = field(default_factory=set)  # rails whose scheme is down
    momo_transfers: dict[str, str] = field(default_factory=dict)  # X-Reference-Id -> reference
    store: Any = None  # sandbox.bank_store.BankStore when the record is durable

    # -- test-facing views
    def payments_report(self) -> list[dict[str, Any]]:
        rows = []
        for reference, submissions in self.submissions.items():
            p = self.payments.get(reference)
            rows.append(
                {
                    "reference": reference,
                    "payment_id": p.payment_id if p else None,
                    "amount_minor": p.amount_minor if p else None,
                    "currency": p.currency if p else None,
                    "status": p.status if p else None,
                    "failure_code": p.failure_code if p else None,
                    "return_code": p.return_code if p else None,
                    "accepted_count": p.accepted_count if p else 0,
                    "submissions": submissions,
                }
            )
        return rows

    def payment_report(self, reference: str) -> dict[str, Any] | None:
        return next((r for r in self.payments_report() if r["reference"] == reference), None)

    # -- background work
    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def cancel_background(self) -> None:
        tasks = list(self.tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def reset(self) -> None:
        await self.cancel_background()
        async with self.lock:
            self.payments.clear()
            self.submissions.clear()
            self.faults.clear()
            self.webhooks.clear()
            self.files.clear()
            self.outages.clear()
            self.momo_transfers.clear()
            if self.store is not None:
                self.store.clear()

    def take_fault(self, inquiry: bool = False, kind: str | None = None) -> str | None:
        """The first pending fault for a payment POST (or, `inquiry`, a status GET; or `kind`
        "file" a file POST, "file_inquiry" a file GET), consumed."""
        modes = {"file": FILE_FAULTS, "file_inquiry": FILE_INQUIRY_FAULTS}.get(kind or "")
        others = INQUIRY_FAULTS | FILE_FAULTS | FILE_INQUIRY_FAULTS
        if modes is None:
            modes = INQUIRY_FAULTS if inquiry else frozenset(FAULT_MODES) - others
        head = next((f for f in self.faults if f[0] in modes), None)
        if head is None:
            return None
        head[1] -= 1
        if head[1] <= 0:
            self.faults.remove(head)
        return head[0]


# --- responses --------------------------------------------------------------------------------


def _error(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


def _unavailable(message: str = "the bank is temporarily unavailable") -> JSONResponse:
    return _error(503, "service_unavailable", message)


def account_tail(beneficiary: dict[str, Any]) -> str | None:
    """The last 4 digits of the beneficiary's account identifier (account_number, iban, phone)."""
    for key in ACCOUNT_FIELDS:
        value = beneficiary.get(key)
        if isinstance(value, str) and value.strip():
            digits = re.sub(r"\D", "", value)
            return digits[-4:] if len(digits) >= 4 else digits
    return None


def validate_payment(body: dict[str, Any]) -> tuple[str, str] | None:
    """What a bank's front door checks. Returns (error, message) or None."""
    amount = body.get("amount_minor")
    if not isinstance(amount, int) or isinstance(amount, bool):
        return "invalid_amount", "amount_minor must be an integer number of minor units"
    if amount <= 0:
        return "invalid_amount", "amount_minor must be greater than zero"
    currency = body.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        return "invalid_currency", "currency must be a 3-letter ISO 4217 code"
    rail = body.get("rail")
    if rail not in RAILS:
        return "unsupported_rail", f"rail must be one of {sorted(RAILS)}"
    beneficiary = body.get("beneficiary")
    if not isinstance(beneficiary, dict) or not beneficiary:
        return "invalid_beneficiary", "beneficiary is required"
    if account_tail(beneficiary) is None:
        return "invalid_beneficiary", f"beneficiary needs one of {list(ACCOUNT_FIELDS)}"
    description = body.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 140):
        return "invalid_description", "description must be a string of at most 140 characters"
    return None


def _fingerprint(body: dict[str, Any]) -> str:
    material = {k: body.get(k) for k in ("reference", "amount_minor", "currency", "rail", "beneficiary", "description")}
    return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --- webhooks ---------------------------------------------------------------------------------


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def _event(kind: str, p: Payment) -> dict[str, Any]:
    return {
        "event_id": f"evt_{uuid.uuid4().hex}",
        "type": kind,
        "reference": p.reference,
        "payment_id": p.payment_id,
        "amount_minor": p.amount_minor,
        "currency": p.currency,
        "status": p.status,
        "failure_code": p.failure_code,
        "return_code": p.return_code,
        "occurred_at": _utcnow_iso(),
    }


class Bank:
    """The bank's behaviour over its state; the HTTP layer below only translates."""

    def __init__(self, config: BankConfig) -> None:
        self.config = config
        self.state = BankState(config)
        if config.store_path:
            self.state.store = BankStore(config.store_path)
            load_into(self.state, Payment)

    # -- durability (sandbox/bank_store.py): written before the bank answers, and on every change
    def _persist(self, p: Payment) -> None:
        if self.state.store is not None:
            momo = [r for r, ref in self.state.momo_transfers.items() if ref == p.reference] if p.rail == "mobile_money" else None
            self.state.store.save(p, self.state.submissions.get(p.reference, 1), momo)

    def _accepted(self, p: Payment) -> None:
        self._persist(p)
        self.state.spawn(self._lifecycle(p))

    def resume(self) -> None:
        """After a restart: carry on with the payments still in flight (in the app's lifespan)."""
        for p in self.state.payments.values():
            if p.status == "accepted":
                self.state.spawn(self._lifecycle(p))
            elif p.status == "settled" and p.planned_outcome == "settle_then_return":
                self.state.spawn(self._return_later(p))

    # -- lifecycle of an accepted payment
    def _emit(self, kind: str, p: Payment) -> None:
        if not self.config.webhook_url:
            return
        event = _event(kind, p)
        delivery = WebhookDelivery(event_id=event["event_id"], type=kind, reference=p.reference)
        self.state.webhooks.append(delivery)
        self.state.spawn(self._deliver(event, delivery))

    async def _deliver(self, event: dict[str, Any], delivery: WebhookDelivery) -> None:
        body = json.dumps(event, separators=(",", ":")).encode()
        backoff = self.config.webhook_initial_backoff
        client = self.state.http
        assert client is not None, "webhook client is created in the app lifespan"
        for attempt in range(1, self.config.webhook_attempts + 1):
            delivery.attempts = attempt
            if self.state.webhook_slots is None:
                self.state.webhook_slots = asyncio.Semaphore(self.config.webhook_concurrency)
            try:
                async with self.state.webhook_slots:
                    headers = {  # signed when sent, not when queued: the signature has a freshness window
                        "Content-Type": "application/json",
                        SIGNATURE_HEADER: sign_webhook(self.config.webhook_secret, body, int(time.time())),
                    }
                    resp = await client.post(self.config.webhook_url, content=body, headers=headers)
                delivery.last_status = resp.status_code
                delivery.last_error = None
                if 200 <= resp.status_code < 300:
                    delivery.delivered = True
                    return
            except httpx.HTTPError as exc:
                delivery.last_error = f"{type(exc).__name__}: {exc}"
            if attempt < self.config.webhook_attempts:
                await asyncio.sleep(backoff)
                backoff *= 2

    async def _lifecycle(self, p: Payment) -> None:
        await asyncio.sleep(self.config.settle_delay)
        await self.resolve(p)

    async def resolve(self, p: Payment) -> None:
        """Apply the payment's planned outcome now (no-op unless it is still accepted)."""
        if p.planned_outcome == "fail":
            await self.fail(p, REJECTED_BY_BENEFICIARY_BANK)
        else:
            await self.settle(p)

    async def settle(self, p: Payment) -> bool:
        async with self.state.lock:
            if p.status != "accepted":
                return False
            p.status = "settled"
            p.settled_at = _utcnow_iso()
            self._persist(p)
        self._emit("payment.settled", p)
        if p.planned_outcome in ("settle_then_return", "settle_then_return_silently"):
            self.state.spawn(self._return_later(p))
        return True

    async def fail(self, p: Payment, failure_code: str) -> bool:
        async with self.state.lock:
            if p.status != "accepted":
                return False
            p.status = "failed"
            p.failure_code = failure_code
            self._persist(p)
        self._emit("payment.failed", p)
        return True

    async def _return_later(self, p: Payment) -> None:
        await asyncio.sleep(self.config.settle_delay)
        await self.return_payment(p, "R01", notify=p.planned_outcome != "settle_then_return_silently")

    async def return_payment(self, p: Payment, return_code: str, *, notify: bool = True) -> bool:
        async with self.state.lock:
            if p.status != "settled":
                return False
            p.status = "returned"
            p.return_code = return_code
            self._persist(p)
        if notify:
            self._emit("payment.returned", p)
        return True

    async def hang(self, request: Request) -> None:
        """Keep the request open like a stuck bank, but end early on client disconnect or shutdown."""

        async def client_gone() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        waiters = [
            asyncio.ensure_future(asyncio.sleep(self.config.hang_seconds)),
            asyncio.ensure_future(self.state.stopping.wait()),
            asyncio.ensure_future(client_gone()),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    # -- the front door
    async def submit(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _error(400, "invalid_json", "the request body must be a JSON object")
        if not isinstance(body, dict):
            return _error(400, "invalid_json", "the request body must be a JSON object")
        reference = body.get("reference")
        if not isinstance(reference, str) or not reference.strip() or len(reference) > 128:
            return _error(422, "invalid_reference", "reference must be a non-empty string of at most 128 characters")
        if request.headers.get("idempotency-key") != reference:
            return _error(400, "idempotency_key_mismatch", "the Idempotency-Key header must equal the reference")

        async with self.state.lock:
            self.state.submissions[reference] = self.state.submissions.get(reference, 0) + 1
            fault = self.state.take_fault()

        if fault == "timeout":
            await self.hang(request)
            return _unavailable("the bank timed out")
        if fault == "5xx":
            return _unavailable()
        if fault == "429":
            return _error(429, "rate_limited", "too many requests", headers={"Retry-After": "1"})

        problem = validate_payment(body)
        if problem is not None:
            return _error(422, *problem)
        if body["rail"] in self.state.outages:
            return _unavailable(f"the {body['rail']} scheme is unavailable")

        tail = account_tail(body["beneficiary"])
        if tail == ACCOUNT_CLOSED:
            return _error(422, "account_closed", "the beneficiary account is closed")
        if tail == INVALID_ACCOUNT:
            return _error(422, "invalid_account", "the beneficiary account does not exist")
        if tail == ALWAYS_UNAVAILABLE:
            return _unavailable()
        if tail == HANGS:
            await self.hang(request)
            return _unavailable("the bank timed out")

        fingerprint = _fingerprint(body)
        created = False
        async with self.state.lock:
            payment = self.state.payments.get(reference)
            if payment is not None and (payment.fingerprint != fingerprint or fault == "reference_conflict"):
                return _error(409, "reference_conflict", "this reference was already used for a different payment")
            if payment is None:
                if fault == "reject_after_accept":
                    outcome = "fail"
                elif fault == "return_without_webhook":
                    outcome = "settle_then_return_silently"
                elif tail == RETURNED_R01:
                    outcome = "settle_then_return"
                else:
                    outcome = "settle"
                payment = Payment(
                    reference=reference,
                    payment_id=f"bnk_{uuid.uuid4().hex[:24]}",
                    amount_minor=body["amount_minor"],
                    currency=body["currency"],
                    rail=body["rail"],
                    beneficiary=body["beneficiary"],
                    description=body.get("description"),
                    fingerprint=fingerprint,
                    accepted_at=_utcnow_iso(),
                    planned_outcome=outcome,
                )
                self.state.payments[reference] = payment
                created = True
        if created:
            self._accepted(payment)
        if fault in ("5xx_after_accept", "accept_then_5xx"):
            return _unavailable()
        return JSONResponse(
            {
                "payment_id": payment.payment_id,
                "reference": payment.reference,
                "status": "accepted",
                "accepted_at": payment.accepted_at,
            },
            status_code=201 if created else 200,
        )


    # -- payment files (NACHA, pain.001) and the mobile-money API
    async def accept_file(self, request: Request, kind: str) -> Response:
        file_id = request.headers.get("idempotency-key") or ""
        if not file_id.strip() or len(file_id) > 128:
            return _error(400, "idempotency_key_missing", "Idempotency-Key (the file id) is required")
        content = await request.body()
        digest = hashlib.sha256(content).hexdigest()
        async with self.state.lock:
            fault = self.state.take_fault(kind="file")
        earlier = self.state.files.get(file_id)
        if earlier is not None:
            if fault == "file_replay_conflict":  # a bank that refuses a file id it has seen
                return _error(409, "file_id_conflict", "a file with this id was already received")
            if earlier["sha256"] != digest:
                return _error(409, "file_id_conflict", "this file id was already used for a different file")
            return JSONResponse(earlier["report"], status_code=200)
        rail = "ach" if kind == "nacha" else "sepa"
        if rail in self.state.outages:
            return _unavailable(f"the {rail} scheme is unavailable")
        entries, errors = read_nacha(content) if kind == "nacha" else read_pain001(content)
        if errors:
            return JSONResponse({"error": "file_rejected", "message": f"{kind} file rejected: {errors[0]}",
                                 "errors": errors}, status_code=422)
        results, spawned = [], []
        async with self.state.lock:
            for e in entries:
                tail = account_tail(e.beneficiary)
                if tail in (ACCOUNT_CLOSED, INVALID_ACCOUNT):
                    code = "account_closed" if tail == ACCOUNT_CLOSED else "invalid_account"
                    results.append({"reference": e.reference, "status": "rejected", "error": code})
                    continue
                material = {"reference": e.reference, "amount_minor": e.amount_minor, "currency": e.currency,
                            "rail": rail, "beneficiary": e.beneficiary, "description": None}
                fingerprint = _fingerprint(material)
                payment = self.state.payments.get(e.reference)
                if payment is not None and payment.fingerprint != fingerprint:
                    results.append({"reference": e.reference, "status": "rejected", "error": "reference_conflict"})
                    continue
                self.state.submissions[e.reference] = self.state.submissions.get(e.reference, 0) + 1
                if payment is None:
                    payment = Payment(
                        reference=e.reference, payment_id=f"bnk_{uuid.uuid4().hex[:24]}",
                        amount_minor=e.amount_minor, currency=e.currency, rail=rail, beneficiary=e.beneficiary,
                        description=None, fingerprint=fingerprint, accepted_at=_utcnow_iso(),
                        planned_outcome="settle_then_return" if tail == RETURNED_R01 else "settle",
                    )
                    self.state.payments[e.reference] = payment
                    spawned.append(payment)
                results.append({"reference": e.reference, "status": "accepted", "payment_id": payment.payment_id})
            report = {
                "file_id": file_id, "format": kind, "status": "accepted", "received_at": _utcnow_iso(),
                "entry_count": len(entries), "total_minor": sum(e.amount_minor for e in entries),
                "accepted_count": sum(r["status"] == "accepted" for r in results),
                "rejected_count": sum(r["status"] == "rejected" for r in results),
                "entries": results,
            }
            self.state.files[file_id] = {"sha256": digest, "report": report, "content": content}
        for payment in spawned:
            self._accepted(payment)
        if self.state.store is not None:  # after its payments (sandbox/bank_store.py: save_file)
            self.state.store.save_file(file_id, digest, report, content)
        if fault == "file_accept_then_5xx":  # taken and recorded, but the answer is lost
            return _unavailable()
        return JSONResponse(report, status_code=201)

    async def momo_transfer(self, request: Request) -> Response:
        """POST /mobile-money/v1_0/transfer, shaped like the big operators' disbursement APIs:
        X-Reference-Id (a UUID) names the transfer, 202 with no body; poll GET .../transfer/{id}."""
        ref_id = request.headers.get("x-reference-id") or ""
        try:
            uuid.UUID(ref_id)
        except ValueError:
            return _error(400, "invalid_reference_id", "X-Reference-Id must be a UUID")
        try:
            body = json.loads(await request.body())
            currency = str(body["currency"])
            amount = momo_minor_units(body["amount"], currency)
            payee = body["payee"]
            msisdn = str(payee["partyId"])
            external_id = str(body["externalId"])
        except MomoAmountError as exc:
            return _error(400, "INVALID_AMOUNT", str(exc))
        except (ValueError, KeyError, TypeError):
            return _error(400, "invalid_body", "amount, currency, externalId and payee.partyId are required")
        if payee.get("partyIdType") != "MSISDN" or not re.fullmatch(r"[1-9][0-9]{6,14}", msisdn):
            return _error(400, "invalid_payee", "payee must be an MSISDN in international form without +")
        if "mobile_money" in self.state.outages:
            return _unavailable("the mobile money operator is unavailable")
        material = {"reference": external_id, "amount_minor": amount, "currency": currency,
                    "rail": "mobile_money", "beneficiary": {"phone": "+" + msisdn}, "description": body.get("payerMessage")}
        async with self.state.lock:
            self.state.submissions[external_id] = self.state.submissions.get(external_id, 0) + 1
            known = self.state.momo_transfers.get(ref_id)
            if known is not None and known != external_id:
                return _error(409, "reference_conflict", "this X-Reference-Id names another transfer")
            payment = self.state.payments.get(external_id)
            if payment is not None and payment.fingerprint != _fingerprint(material):
                return _error(409, "reference_conflict", "this externalId was already used for a different transfer")
            created = payment is None
            if created:
                tail = msisdn[-4:]
                if tail in (ACCOUNT_CLOSED, INVALID_ACCOUNT):
                    return _error(400, "PAYEE_NOT_FOUND", "the payee is not a registered wallet")
                payment = Payment(
                    reference=external_id, payment_id=f"mm_{uuid.uuid4().hex[:20]}", amount_minor=amount,
                    currency=currency, rail="mobile_money", beneficiary=material["beneficiary"],
                    description=body.get("payerMessage"), fingerprint=_fingerprint(material),
                    accepted_at=_utcnow_iso(), planned_outcome="settle",
                )
                self.state.payments[external_id] = payment
            self.state.momo_transfers[ref_id] = external_id
        if created:
            self._accepted(payment)
        return Response(status_code=202)

    def momo_status(self, ref_id: str) -> Response:
        reference = self.state.momo_transfers.get(ref_id)
        p = self.state.payments.get(reference) if reference else None
        if p is None:
            return _error(404, "RESOURCE_NOT_FOUND", "no transfer with this X-Reference-Id")
        status = {"accepted": "PENDING", "settled": "SUCCESSFUL", "failed": "FAILED", "returned": "SUCCESSFUL"}[p.status]
        return JSONResponse({
            "amount": momo_amount(p.amount_minor, p.currency), "currency": p.currency, "externalId": p.reference,
            "payee": {"partyIdType": "MSISDN", "partyId": str(p.beneficiary.get("phone", "")).lstrip("+")},
            "status": status, "financialTransactionId": p.payment_id,
            "reason": p.failure_code,
        })


# --- mobile-money amounts ---------------------------------------------------------------------
# The operator's API takes and returns amounts as decimal strings in major units, with no more
# decimals than the currency has (its own table: the simulator does not trust payops's).
MOMO_CURRENCY_DECIMALS = {"XOF": 0, "XAF": 0, "GHS": 2, "KES": 2, "UGX": 0, "RWF": 0, "ZMW": 2, "NGN": 2}


class MomoAmountError(ValueError):
    pass


def momo_minor_units(amount: Any, currency: str) -> int:
    """"12.50" GHS -> 1250; "1500" XOF -> 1500. Refuses an unknown currency, a non-string, a
    sign, an exponent, and more decimals than the currency has."""
    decimals = MOMO_CURRENCY_DECIMALS.get(currency)
    if decimals is None:
        raise MomoAmountError(f"currency {currency!r} is not supported by this operator")
    if not isinstance(amount, str) or not re.fullmatch(r"(0|[1-9][0-9]{0,17})(\.[0-9]+)?", amount):
        raise MomoAmountError(f"amount must be a decimal string in {currency}, got {amount!r}")
    whole, _, fraction = amount.partition(".")
    if len(fraction) > decimals:
        raise MomoAmountError(f"{currency} has {decimals} decimals; amount {amount!r} has {len(fraction)}")
    minor = int(whole) * 10**decimals + int((fraction or "0").ljust(decimals, "0") or "0")
    if minor <= 0:
        raise MomoAmountError("amount must be greater than zero")
    return minor


def momo_amount(amount_minor: int, currency: str) -> str:
    decimals = MOMO_CURRENCY_DECIMALS.get(currency, 0)
    if not decimals:
        return str(amount_minor)
    whole, frac = divmod(amount_minor, 10**decimals)
    return f"{whole}.{frac:0{decimals}d}"


# --- HTTP -------------------------------------------------------------------------------------


def _bank(request: Request) -> Bank:
    return request.app.state.bank


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    return data


async def create_payment(request: Request) -> Response:
    return await _bank(request).submit(request)


async def get_payment(request: Request) -> Response:
    state = _bank(request).state
    async with state.lock:
        fault = state.take_fault(inquiry=True)
    if fault == "inquiry_5xx":
        return _unavailable()
    p = state.payments.get(request.path_params["reference"])
    if p is None:
        return _error(404, "payment_not_found", "no payment with this reference")
    return JSONResponse(p.public())


async def recall_payment(request: Request) -> Response:
    """A recall: an accepted payment is stopped before it settles (it fails, `recalled`)."""
    bank = _bank(request)
    p = bank.state.payments.get(request.path_params["reference"])
    if p is None:
        return _error(404, "payment_not_found", "no payment with this reference")
    if not await bank.fail(p, "recalled"):
        return _error(409, "not_recallable", f"the payment is {p.status}")
    return JSONResponse(p.public())


async def list_bank_payments(request: Request) -> Response:
    """The bank's payment report (what a statement or report API gives a client): payments accepted
    at or after `since`, ordered by (accepted_at, reference); the cursor is the last row's pair."""
    q = request.query_params
    try:
        since = datetime.fromisoformat(q["since"].replace("Z", "+00:00")) if q.get("since") else None
        limit = int(q.get("limit") or 500)
    except ValueError:
        return _error(422, "invalid_query", "since must be ISO 8601 and limit an integer")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    if not 1 <= limit <= 1000:
        return _error(422, "invalid_query", "limit must be between 1 and 1000")
    rails = {r for r in (q.get("rail") or "").split(",") if r}
    after = tuple(q["cursor"].split("|", 1)) if q.get("cursor") else None

    def accepted(p: Payment) -> datetime:
        return datetime.fromisoformat(p.accepted_at.replace("Z", "+00:00"))

    rows = sorted(
        (p for p in list(_bank(request).state.payments.values())
         if (since is None or accepted(p) >= since) and (not rails or p.rail in rails)),
        key=lambda p: (accepted(p), p.reference),
    )
    if after is not None and len(after) == 2:
        mark = (datetime.fromisoformat(after[0].replace("Z", "+00:00")), after[1])
        rows = [p for p in rows if (accepted(p), p.reference) > mark]
    page = rows[:limit]
    next_cursor = f"{page[-1].accepted_at}|{page[-1].reference}" if len(rows) > limit else None
    return JSONResponse({"payments": [p.public() for p in page], "next_cursor": next_cursor})


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def rail_health(request: Request) -> Response:
    rail = request.path_params["rail"]
    if rail not in RAILS:
        return _error(404, "unknown_rail", f"rail must be one of {sorted(RAILS)}")
    if rail in _bank(request).state.outages:
        return _error(503, "rail_unavailable", f"the {rail} scheme is unavailable")
    return JSONResponse({"status": "ok", "rail": rail})


async def submit_nacha(request: Request) -> Response:
    return await _bank(request).accept_file(request, "nacha")


async def submit_pain001(request: Request) -> Response:
    return await _bank(request).accept_file(request, "pain001")


async def get_file(request: Request) -> Response:
    state = _bank(request).state
    async with state.lock:
        fault = state.take_fault(kind="file_inquiry")
    if fault == "file_inquiry_5xx":
        return _unavailable()
    f = state.files.get(request.path_params["file_id"])
    if f is None:
        return _error(404, "file_not_found", "no file with this id")
    return JSONResponse(f["report"])


async def list_files(request: Request) -> Response:
    return JSONResponse([{k: v for k, v in f["report"].items() if k != "entries"}
                         for f in _bank(request).state.files.values()])


async def momo_transfer(request: Request) -> Response:
    return await _bank(request).momo_transfer(request)


async def momo_status(request: Request) -> Response:
    return _bank(request).momo_status(request.path_params["ref_id"])


async def set_outage(request: Request) -> Response:
    try:
        data = await _json_body(request)
    except ValueError:
        return _error(400, "invalid_json", "the request body must be a JSON object")
    rail, down = data.get("rail"), data.get("down", True)
    if rail not in RAILS:
        return _error(422, "unknown_rail", f"rail must be one of {sorted(RAILS)}")
    outages = _bank(request).state.outages
    outages.add(rail) if down else outages.discard(rail)
    return JSONResponse({"outages": sorted(outages)})


async def list_payments(request: Request) -> Response:
    return JSONResponse(_bank(request).state.payments_report())


async def list_webhooks(request: Request) -> Response:
    return JSONResponse([d.public() for d in _bank(request).state.webhooks])


async def set_faults(request: Request) -> Response:
    try:
        data = await _json_body(request)
    except ValueError:
        return _error(400, "invalid_json", "the request body must be a JSON object")
    mode, count = data.get("mode"), data.get("count", 1)
    if mode not in FAULT_MODES:
        return _error(422, "invalid_mode", f"mode must be one of {list(FAULT_MODES)}")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        return _error(422, "invalid_count", "count must be a positive integer")
    state = _bank(request).state
    async with state.lock:
        state.faults.append([mode, count])
        pending = [{"mode": m, "remaining": n} for m, n in state.faults]
    return JSONResponse({"faults": pending})


async def get_faults(request: Request) -> Response:
    return JSONResponse({"faults": [{"mode": m, "remaining": n} for m, n in _bank(request).state.faults]})


async def reset(request: Request) -> Response:
    await _bank(request).state.reset()
    return JSONResponse({"status": "reset"})


def _payment_or_404(request: Request) -> Payment | Response:
    p = _bank(request).state.payments.get(request.path_params["reference"])
    return p if p is not None else _error(404, "payment_not_found", "no payment with this reference")


async def settle_now(request: Request) -> Response:
    p = _payment_or_404(request)
    if isinstance(p, Response):
        return p
    bank = _bank(request)
    if p.status != "accepted":
        return _error(409, "invalid_state", f"payment is {p.status}, not accepted")
    await bank.resolve(p)
    return JSONResponse(p.public())


async def fail_now(request: Request) -> Response:
    p = _payment_or_404(request)
    if isinstance(p, Response):
        return p
    try:
        data = await _json_body(request)
    except ValueError:
        return _error(400, "invalid_json", "the request body must be a JSON object")
    code = data.get("failure_code") or REJECTED_BY_BENEFICIARY_BANK
    if not await _bank(request).fail(p, str(code)):
        return _error(409, "invalid_state", f"payment is {p.status}, not accepted")
    return JSONResponse(p.public())


async def return_now(request: Request) -> Response:
    p = _payment_or_404(request)
    if isinstance(p, Response):
        return p
    try:
        data = await _json_body(request)
    except ValueError:
        return _error(400, "invalid_json", "the request body must be a JSON object")
    code = data.get("return_code") or "R01"
    notify = data.get("notify", True) is not False  # {"notify": false}: a return with no webhook
    if not await _bank(request).return_payment(p, str(code), notify=notify):
        return _error(409, "invalid_state", f"payment is {p.status}, only a settled payment can be returned")
    return JSONResponse(p.public())


async def _http_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, error, str(exc.detail))
    return _error(500, "internal_error", "the bank hit an internal error")


def create_bank_app(config: BankConfig | None = None) -> Starlette:
    bank = Bank(config or BankConfig())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        bank.state.http = httpx.AsyncClient(timeout=bank.config.webhook_timeout)
        bank.resume()
        try:
            yield
        finally:
            bank.state.stopping.set()
            await bank.state.cancel_background()
            await bank.state.http.aclose()
            if bank.state.store is not None:
                bank.state.store.close()

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/v1/rails/{rail}/health", rail_health, methods=["GET"]),
            Route("/v1/files/nacha", submit_nacha, methods=["POST"]),
            Route("/v1/files/pain001", submit_pain001, methods=["POST"]),
            Route("/v1/files/{file_id:path}", get_file, methods=["GET"]),
            Route("/mobile-money/v1_0/transfer", momo_transfer, methods=["POST"]),
            Route("/mobile-money/v1_0/transfer/{ref_id}", momo_status, methods=["GET"]),
            Route("/_sandbox/files", list_files, methods=["GET"]),
            Route("/_sandbox/outages", set_outage, methods=["POST"]),
            Route("/v1/payments", create_payment, methods=["POST"]),
            Route("/v1/payments", list_bank_payments, methods=["GET"]),
            Route("/v1/payments/{reference:path}/recall", recall_payment, methods=["POST"]),
            Route("/v1/payments/{reference:path}", get_payment, methods=["GET"]),
            Route("/_sandbox/payments", list_payments, methods=["GET"]),
            Route("/_sandbox/webhooks", list_webhooks, methods=["GET"]),
            Route("/_sandbox/faults", set_faults, methods=["POST"]),
            Route("/_sandbox/faults", get_faults, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/settle/{reference:path}", settle_now, methods=["POST"]),
            Route("/_sandbox/fail/{reference:path}", fail_now, methods=["POST"]),
            Route("/_sandbox/return/{reference:path}", return_now, methods=["POST"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _http_error},
        lifespan=lifespan,
    )
    app.state.bank = bank
    return app


# --- running it -------------------------------------------------------------------------------


@dataclass
class RunningBank:
    url: str
    app: Starlette
    bank: Bank

    @property
    def state(self) -> BankState:
        return self.bank.state

    async def reset(self) -> None:
        await self.state.reset()

    def payment(self, reference: str) -> dict[str, Any] | None:
        """The /_sandbox/payments row for one reference (None if no POST ever arrived for it)."""
        return self.state.payment_report(reference)


@contextlib.asynccontextmanager
async def running_bank(
    config: BankConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningBank]:
    """Serve a sandbox bank in this event loop on a free loopback port until the block exits."""
    app = create_bank_app(config)
    bank: Bank = app.state.bank
    # Release hanging requests first, so a stuck "bank" never slows shutdown.
    async with serve_in_background(app, host=host, port=port, before_shutdown=bank.state.stopping.set) as served:
        yield RunningBank(url=served.url, app=app, bank=bank)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.bank", description="Run the sandbox bank.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--webhook-url", default=None, help="where settlement webhooks go; unset = polling only")
    parser.add_argument("--webhook-secret", default=DEFAULT_WEBHOOK_SECRET)
    parser.add_argument("--settle-delay", type=float, default=2.0, help="seconds from acceptance to settlement")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="how long 'hanging' requests hang")
    parser.add_argument("--store", default=None, help="SQLite file keeping the payment record across restarts")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    config = BankConfig(
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        settle_delay=args.settle_delay,
        hang_seconds=args.hang_seconds,
        store_path=args.store,
    )
    app = create_bank_app(config)
    serve_forever(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        on_stop=app.state.bank.state.stopping.set,  # release hanging requests at once
        announce=lambda url: print(f"sandbox bank listening on {url}", flush=True),
    )


if __name__ == "__main__":
    main()
