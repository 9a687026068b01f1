"""Chaos (issue 17 item 7): payouts in flight through the real API, real worker processes, a real
Temporal dev server, PostgreSQL, Redis and the sandbox bank, each its own process
(tests/chaos_harness.py). In turn, SIGKILL and restart: the worker, the Temporal server,
PostgreSQL, Redis and the API (the worker and the API three times each; the merchants' clients
retry the same Idempotency-Keys); then the
bank accepts payments and answers 503, and returns payments while the API is down (its webhook
tries all fail).

The tests of this module run in order on one stack: each scenario adds its payouts and its fault;
`test_afterwards` waits for the dust to settle and checks, payout by payout:
- every payout is terminal (settled, returned, failed, rejected, cancelled) or legitimately waiting;
- payops agrees with the bank's record (the bank's report `GET /v1/payments?since=`, and
  `payops ledger check --against-bank`, which reports 0 disagreements);
- the ledger check passes; one payout per Idempotency-Key; no reference paid twice by the bank;
- the API answered no 500 (503 with Retry-After is the right answer to an outage).
It prints the table: component × payouts, terminal, bank agreement, 5xx.

A scenario whose fix is not in this tree is skipped by a guard that detects the fix, so the test
turns itself on once the fix is merged.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.chaos_harness import REPO, ApiClient, ChaosStack

pytestmark = pytest.mark.slow

PAYOUTS_PER_PHASE = 8
TERMINAL = {"settled", "returned", "failed", "rejected", "cancelled"}
# nothing in this run has a reason to wait (24/7 rail, no cutoff, no dlq-worthy fault)
LEGITIMATELY_WAITING: set[str] = set()
GOOD_IBAN = "DE89370400440532013000"
OUTAGE_S = 2.0  # how long a killed component stays down, at least (until a client saw it down)


# --- guards: is the fix a scenario needs in this tree? -------------------------------------------


def _forced() -> bool:
    """PAYOPS_CHAOS_FORCE=1 runs every scenario, fix or not (to see it fail on the old code)."""
    return os.environ.get("PAYOPS_CHAOS_FORCE") == "1"


def _source(path: str) -> str:
    try:
        return (REPO / path).read_text()
    except OSError:
        return ""


def has_unknown_outcome_inquiry() -> bool:
    """w17unknown: an ambiguous bank answer is resolved by a status inquiry (never a failover)."""
    return _forced() or "unknown-outcome-v1" in _source("workflows/payout.py")


def has_return_polling() -> bool:
    """w17unknown: after `settled` the return watch also polls the bank's status."""
    return _forced() or "return-poll-v1" in _source("workflows/payout.py")


def has_outage_503() -> bool:
    """w17outage: a dependency outage (PostgreSQL, Redis, Temporal) answers 503, never a 500."""
    return _forced() or (REPO / "api" / "outages.py").is_file()


# --- the shared run ---------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    keys: list[str] = field(default_factory=list)
    payout_ids: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    in_flight_at_fault: int | None = None
    affects: list[str] = field(default_factory=list)  # earlier payouts a fault acted on (no new ones)
    connection_errors: int = 0
    note: str = ""

    def rows(self) -> list[str]:
        return self.payout_ids or self.affects


@dataclass
class Chaos:
    stack: ChaosStack
    merchant_id: str
    headers: dict[str, str]
    phases: dict[str, Phase] = field(default_factory=dict)
    returned_refs: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)

    def phase(self, name: str) -> Phase:
        return self.phases.setdefault(name, Phase(name))

    def all_payout_ids(self) -> list[str]:
        return [p for ph in self.phases.values() for p in ph.payout_ids]


@pytest.fixture(scope="module")
async def chaos():
    root = Path(tempfile.mkdtemp(prefix="payops-chaos-"))
    root.chmod(0o755)
    stack = ChaosStack(root)
    try:
        await stack.call(stack.start_all)
        merchant_id = await _funded_merchant(stack)
        from core.platform.auth_tokens import mint_dev_token
        from core.platform.settings import Settings

        token = mint_dev_token(Settings(_env_file=None), role="merchant_admin", merchant_id=merchant_id)
        yield Chaos(stack, merchant_id, {"Authorization": f"Bearer {token}"})
    finally:
        stack.close()
        if os.environ.get("PAYOPS_CHAOS_KEEP"):  # keep the logs to look at
            print(f"\nchaos stack kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


async def _funded_merchant(stack: ChaosStack) -> str:
    from sqlalchemy import insert

    from core.ledger import service as ledger
    from core.platform.db import create_engine, create_sessionmaker
    from core.platform.tables import merchants

    engine = create_engine(stack.database_url, pool_size=1, max_overflow=0)
    try:
        merchant_id = f"mer_chaos_{uuid.uuid4().hex[:8]}"
        async with create_sessionmaker(engine)() as session, session.begin():
            await session.execute(insert(merchants).values(id=merchant_id, name="Chaos Merchant", default_currency="EUR"))
            await ledger.fund_merchant(session, merchant_id, 100_000_000, "EUR", f"funding:{merchant_id}:seed")
        return merchant_id
    finally:
        await engine.dispose()


def _body(n: int) -> dict:
    return {
        "amount": f"{10 + n}.{n % 100:02d}",
        "currency": "EUR",
        "method": "sepa",
        "priority": "instant",  # SEPA Instant: 24/7, nothing waits for a cutoff
        "beneficiary": {"name": f"Beneficiary {n}", "iban": GOOD_IBAN, "bic": "COBADEFFXXX"},
        "description": f"chaos payout {n}",
    }


_counter = iter(range(1, 10_000))


async def _create(chaos: Chaos, phase: Phase, client: ApiClient) -> str:
    key = f"chaos-{phase.name}-{uuid.uuid4().hex[:10]}"
    phase.keys.append(key)
    resp = await client.request("POST", "/api/v1/payouts", key=key, json=_body(next(_counter)), deadline_s=150)
    assert resp.status_code in (200, 201), resp.text
    payout_id = resp.json()["id"]
    phase.payout_ids.append(payout_id)
    return payout_id


async def _bank_get(chaos: Chaos, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=chaos.stack.bank_url, timeout=10) as http:
        return await http.get(path)


async def _bank_post(chaos: Chaos, path: str, json: dict | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=chaos.stack.bank_url, timeout=10) as http:
        return await http.post(path, json=json or {})


async def _bank_accepted(chaos: Chaos, refs: list[str]) -> int:
    rows = (await _bank_get(chaos, "/_sandbox/payments")).json()
    wanted = set(refs)
    return sum(1 for r in rows if r["reference"] in wanted and r["accepted_count"] >= 1)


async def _bank_status(chaos: Chaos) -> dict[str, dict]:
    rows = (await _bank_get(chaos, "/_sandbox/payments")).json()
    return {r["reference"]: r for r in rows}


async def _wait(condition, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = await condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(interval)


async def _kill_phase(chaos: Chaos, component: str, *, during_creation: bool, label: str | None = None) -> None:
    """PAYOUTS_PER_PHASE payouts through the API; SIGKILL `component` while they are in flight
    (mid-creation, or once the bank has some of them and not all have settled), keep it down
    for at least OUTAGE_S and until a client saw it down, start it again. `label` names the
    phase in the table (a component killed several times has a phase per kill)."""
    phase = chaos.phase(label or component)
    client = ApiClient(chaos.stack.api_url, chaos.headers, phase.statuses)
    try:
        creating = [asyncio.create_task(_create(chaos, phase, client)) for _ in range(PAYOUTS_PER_PHASE)]
        if during_creation:
            await _wait(lambda: _async(len(phase.payout_ids) >= 2), 60, f"{component}: first payouts created")
        else:
            await asyncio.gather(*creating)
            await _wait(lambda: _bank_accepted(chaos, phase.payout_ids), 60, f"{component}: bank has a payout")
        settled_before = await _settled_at_bank(chaos, phase.payout_ids)
        phase.in_flight_at_fault = PAYOUTS_PER_PHASE - settled_before
        errors_before = client.connection_errors + _errors(phase)
        await chaos.stack.call(chaos.stack.kill, component)
        down_at = time.monotonic()
        # a client request during the outage (a read: the creation tasks may all be done)
        probe = asyncio.create_task(client.request("GET", "/api/v1/payouts?limit=1", deadline_s=120))
        # the API's own death is seen by its clients (connection refused), whatever else happens
        must_see = component == "api"
        await _wait(
            lambda: _async(
                time.monotonic() - down_at >= OUTAGE_S
                and (not must_see or client.connection_errors + _errors(phase) > errors_before)
            ),
            30, f"{component}: the outage to last {OUTAGE_S}s" + (" and a client to see it" if must_see else ""),
        )
        phase.note = f"down {time.monotonic() - down_at:.1f}s"
        await chaos.stack.call(chaos.stack.restart, component)
        await asyncio.gather(*creating, probe)
    finally:
        phase.connection_errors += client.connection_errors
        await client.aclose()
    assert len(phase.payout_ids) == PAYOUTS_PER_PHASE


def _errors(phase: Phase) -> int:
    return sum(n for s, n in phase.statuses.items() if s >= 500)


async def _async(value):
    return value


async def _settled_at_bank(chaos: Chaos, refs: list[str]) -> int:
    rows = await _bank_status(chaos)
    return sum(1 for r in refs if rows.get(r, {}).get("status") == "settled")


# --- scenarios (in order, on one stack) ---------------------------------------------------------


# The worker and the API are killed three times each, as the tester did; each kill has its own
# payouts in flight (its own row in the table).
KILLS = 3


@pytest.mark.parametrize("kill", range(1, KILLS + 1))
async def test_worker_killed(chaos: Chaos, kill: int) -> None:
    await _kill_phase(chaos, "worker", during_creation=False, label=f"worker {kill}/{KILLS}")


async def test_temporal_killed(chaos: Chaos) -> None:
    await _kill_phase(chaos, "temporal", during_creation=True)


async def test_postgres_killed(chaos: Chaos) -> None:
    if not has_outage_503():
        pytest.skip("needs w17outage's 503 for dependency outages (the API answers 500 while PostgreSQL is down)")
    await _kill_phase(chaos, "postgres", during_creation=True)


async def test_redis_killed(chaos: Chaos) -> None:
    if not has_outage_503():
        pytest.skip("needs w17outage's 503 for dependency outages (bank webhooks answered 500 while Redis is down)")
    await _kill_phase(chaos, "redis", during_creation=True)


@pytest.mark.parametrize("kill", range(1, KILLS + 1))
async def test_api_killed_clients_retry_same_keys(chaos: Chaos, kill: int) -> None:
    await _kill_phase(chaos, "api", during_creation=True, label=f"api {kill}/{KILLS}")


async def test_bank_accepts_then_answers_5xx(chaos: Chaos) -> None:
    if not has_unknown_outcome_inquiry():
        pytest.skip("needs w17unknown's unknown-outcome inquiry (accept-then-5xx fails over, 409, and refunds)")
    phase = chaos.phase("bank accept-then-5xx")
    client = ApiClient(chaos.stack.api_url, chaos.headers, phase.statuses)
    try:
        # The case: the bank accepts the payment and answers 503, and a resubmission of the
        # reference is answered 409 reference_conflict (a bank that refuses resubmissions).
        # Nothing after this phase POSTs a payment, so faults left unused harm nothing.
        faults = [("accept_then_5xx", PAYOUTS_PER_PHASE), ("reference_conflict", PAYOUTS_PER_PHASE)]
        for mode, count in faults:
            r = await _bank_post(chaos, "/_sandbox/faults", {"mode": mode, "count": count})
            if r.status_code == 422 and _forced():  # an older sandbox bank: its nearest fault
                r = await _bank_post(chaos, "/_sandbox/faults", {"mode": "5xx_after_accept", "count": count})
            assert r.status_code == 200, r.text
        await asyncio.gather(*(_create(chaos, phase, client) for _ in range(PAYOUTS_PER_PHASE)))
        await _wait(lambda: _bank_accepted_all(chaos, phase.payout_ids), 90, "the bank to hold every payout")
        phase.in_flight_at_fault = PAYOUTS_PER_PHASE
        await _wait(lambda: _terminal(chaos, phase.payout_ids), 120, "the accept-then-5xx payouts to be terminal")
    finally:
        phase.connection_errors += client.connection_errors
        await client.aclose()
    left = (await _bank_get(chaos, "/_sandbox/faults")).json()["faults"]
    phase.note = f"{2 * PAYOUTS_PER_PHASE - sum(f['remaining'] for f in left)} POSTs answered 503 after acceptance or 409"


async def _bank_accepted_all(chaos: Chaos, refs: list[str]) -> bool:
    return await _bank_accepted(chaos, refs) == len(refs)


async def _terminal(chaos: Chaos, ids: list[str]) -> bool:
    import asyncpg

    conn = await asyncpg.connect(chaos.stack.database_url)
    try:
        rows = await conn.fetch("SELECT status FROM payouts WHERE id = ANY($1::text[])", ids)
    finally:
        await conn.close()
    return len(rows) == len(ids) and all(r["status"] in TERMINAL for r in rows)


async def test_return_while_api_down(chaos: Chaos) -> None:
    if not has_return_polling():
        pytest.skip("needs w17unknown's return polling (a return whose webhooks all failed is never seen)")
    phase = chaos.phase("bank return, API down")
    ids = chaos.all_payout_ids()
    refs = await _wait(lambda: _settled_refs(chaos, ids, 3), 90, "3 payouts settled at the bank")
    await chaos.stack.call(chaos.stack.kill, "api")
    try:
        for ref in refs:
            r = await _bank_post(chaos, f"/_sandbox/return/{ref}", {"return_code": "R01"})
            assert r.status_code == 200, r.text
        # the bank's webhook tries for these returns all fail while the API is down
        await _wait(lambda: _returns_undeliverable(chaos, refs), 60, "the bank to give up its return webhooks")
    finally:
        await chaos.stack.call(chaos.stack.restart, "api")
    chaos.returned_refs = refs
    phase.affects = list(refs)  # earlier payouts, returned now
    phase.note = "returned at the bank, webhooks exhausted"


async def _settled_refs(chaos: Chaos, ids: list[str], n: int) -> list[str] | None:
    rows = await _bank_status(chaos)
    refs = [i for i in ids if rows.get(i, {}).get("status") == "settled"]
    return refs[:n] if len(refs) >= n else None


async def _returns_undeliverable(chaos: Chaos, refs: list[str]) -> bool:
    hooks = (await _bank_get(chaos, "/_sandbox/webhooks")).json()
    given_up = {
        h["reference"] for h in hooks
        if h["type"] == "payment.returned" and not h["delivered"] and h["attempts"] >= 5
    }
    return set(refs) <= given_up


# --- afterwards ---------------------------------------------------------------------------------


async def test_afterwards_payops_agrees_with_the_bank(chaos: Chaos) -> None:
    import asyncpg

    ids = chaos.all_payout_ids()
    assert ids, "no scenario ran"
    expected_returned = set(chaos.returned_refs)
    dsn = chaos.stack.database_url

    async def statuses() -> dict[str, str]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT id, status FROM payouts WHERE merchant_id = $1", chaos.merchant_id)
        finally:
            await conn.close()
        return {r["id"]: r["status"] for r in rows}

    async def settled_down() -> dict[str, str] | None:
        s = await statuses()
        done = all(s.get(i) in TERMINAL | LEGITIMATELY_WAITING for i in ids)
        done = done and all(s.get(r) == "returned" for r in expected_returned)
        return s if done else None

    waited = time.monotonic()
    try:
        final = await _wait(settled_down, 150, "every payout terminal (and the returns seen)", interval=0.5)
        not_settled_down = ""
    except AssertionError:  # still print the table, then fail
        final = await statuses()
        worker = chaos.stack.worker
        not_settled_down = (f"not terminal: {Counter(final.get(i) for i in ids)}; "
                            f"returns: {[final.get(r) for r in expected_returned]}; {worker}:\n"
                            f"{worker.log_tail(30) if worker else ''}")
    waited = time.monotonic() - waited

    bank = await _bank_status(chaos)
    report = (await _bank_get(chaos, "/v1/payments?since=2000-01-01T00:00:00Z&limit=1000")).json()["payments"]
    bank_report = {p["reference"]: p for p in report}

    # payout by payout: payops's status against the bank's record (report, and its own counters)
    disagreements: dict[str, list[str]] = {}
    for name, phase in chaos.phases.items():
        for pid in phase.rows():
            ours, theirs = final.get(pid), (bank_report.get(pid) or {}).get("status")
            agree = (
                (ours == "settled" and theirs == "settled")
                or (ours == "returned" and theirs == "returned")
                or (ours in ("failed", "rejected", "cancelled") and theirs in (None, "failed"))
            )
            if not agree:
                disagreements.setdefault(name, []).append(f"{pid}: payops {ours}, bank {theirs}")

    # one payout per Idempotency-Key; no reference paid twice
    conn = await asyncpg.connect(dsn)
    try:
        per_key = await conn.fetch(
            "SELECT idempotency_key, count(*) AS n FROM payouts WHERE merchant_id = $1 GROUP BY 1", chaos.merchant_id
        )
    finally:
        await conn.close()
    keys = {k for ph in chaos.phases.values() for k in ph.keys}
    dup_keys = [r["idempotency_key"] for r in per_key if r["n"] != 1]
    assert not dup_keys, dup_keys
    assert {r["idempotency_key"] for r in per_key} == keys
    assert len(set(ids)) == len(ids) == len(keys)
    paid_twice = [ref for ref, row in bank.items() if row["accepted_count"] > 1]
    # the bank's webhooks: the sandbox bank gives up after 5 tries in ~3 s, so a notification whose
    # tries all met an outage (connection refused, or 503 "retry later") is dropped by the bank and
    # polling catches up (checked above: every payout agrees). None may be dropped on a 4xx or 500.
    hooks = (await _bank_get(chaos, "/_sandbox/webhooks")).json()
    dropped_in_outage = [h for h in hooks if not h["delivered"] and h["last_status"] in (None, 503)]
    undelivered = [h for h in hooks if not h["delivered"] and h not in dropped_in_outage]
    hooks_500 = [h for h in hooks if (h["last_status"] or 0) >= 500 and h["last_status"] != 503]

    # `payops ledger check --against-bank`, as ops run it
    code, data, output = await asyncio.to_thread(chaos.stack.ledger_check_against_bank)

    # the table
    rows = []
    for name, phase in chaos.phases.items():
        five = sum(n for s, n in phase.statuses.items() if s >= 500)
        five_hundred = sum(n for s, n in phase.statuses.items() if s >= 500 and s != 503)
        terminal = sum(1 for p in phase.rows() if final.get(p) in TERMINAL)
        agree = len(phase.rows()) - len(disagreements.get(name, []))
        outcome = dict(Counter(final.get(p) for p in phase.rows()))
        rows.append((name, len(phase.rows()), terminal, agree, five, five_hundred, phase.connection_errors,
                     phase.in_flight_at_fault, outcome, phase.note))
    lines = [f"{'component':<24}{'payouts':>8}{'terminal':>9}{'bank agrees':>12}{'5xx':>5}{'500':>5}"
             f"{'conn err':>9}{'in flight':>10}  outcome; fault"]
    for name, n, terminal, agree, five, five_hundred, conn, inflight, outcome, note in rows:
        lines.append(f"{name:<24}{n:>8}{terminal:>9}{agree:>12}{five:>5}{five_hundred:>5}{conn:>9}"
                     f"{'' if inflight is None else inflight:>10}  {outcome}; {note}")
    bank_part = (data or {}).get("bank", {}) if isinstance(data, dict) else {}
    lines.append(f"ledger check --against-bank: exit {code}, status {bank_part.get('status')}, "
                 f"{len(bank_part.get('discrepancies', []) or [])} disagreements, "
                 f"{bank_part.get('payouts_checked')} payouts checked; bank webhooks {len(hooks)}, "
                 f"{len(dropped_in_outage)} given up during outages (refused or 503), {len(undelivered)} on another answer, "
                 f"{len(hooks_500)} last answered 5xx other than 503; restarts {chaos.stack.restarts}; "
                 f"{time.monotonic() - chaos.started_at:.0f}s since the stack was up, {waited:.0f}s waiting at the end")
    print("\n" + "\n".join(lines))
    if code != 0:
        print(output)

    assert not not_settled_down, not_settled_down
    assert not disagreements, disagreements
    assert not undelivered, undelivered
    assert not hooks_500, hooks_500
    assert not paid_twice, paid_twice
    assert all(bank[p]["accepted_count"] == 1 for p in ids if final[p] in ("settled", "returned"))
    statuses_500 = {name: {s: n for s, n in ph.statuses.items() if s >= 500 and s != 503}
                    for name, ph in chaos.phases.items()}
    assert not any(statuses_500.values()), f"the API answered 500: {statuses_500}"
    assert data is not None, output
    ledger_part = data["ledger"] if "ledger" in data else data
    assert ledger_part["ok"], ledger_part
    assert bank_part.get("status") == "ok" and not bank_part.get("discrepancies"), output
    assert code == 0, output
