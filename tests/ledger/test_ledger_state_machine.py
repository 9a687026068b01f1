"""A stateful Hypothesis test of the ledger on real PostgreSQL (issue 16, item 4).

Random interleavings of funding, hold, release (a cancelled payout's hold back to available),
reverse (an ops reversal: a negative adjustment), settle, return and expiry (the sweeper's
list_expired_holds + reverse_hold), plus replays of the same posting key, run through the public
functions of core/ledger/service.py, each in its own committed transaction, against a simple model. After
every step: each merchant's available and held balance in every currency equals the model's, no
available balance is negative, and check_ledger (balanced transactions, balances = entries, held
accounts = active holds, no negative merchant balance) is clean.

Every example has two fresh merchants, funded in a currency (any of the 24 payops knows) the first
time a rule uses it, and opens holds up front (initialize rules), so settle, return and expiry are reached in
every example; the test counts the rules that ran (and what they did) and asserts each was reached.
Hypothesis's engine is synchronous: it runs in a worker thread and hands every ledger call to the
test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text

from core.ledger import service as ledger
from core.platform.db import transaction
from core.platform.money import CURRENCY_EXPONENTS

pytestmark = pytest.mark.slow

CURRENCIES = sorted(CURRENCY_EXPONENTS)
MERCHANTS = (0, 1)  # this example's two merchants (fresh ids per example)
START_FUNDS = 5_000_000  # minor units, per merchant and currency
CONNECTORS = ("conn_x", "conn_y")
BASE_TIME = datetime(2031, 1, 1, tzinfo=UTC)
EXAMPLES = int(os.environ.get("PAYOPS_LEDGER_MACHINE_EXAMPLES", "40"))
STEPS = int(os.environ.get("PAYOPS_LEDGER_MACHINE_STEPS", "25"))

MACHINE_SETTINGS = settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
                            derandomize=True, suppress_health_check=list(HealthCheck))


@dataclass
class ModelHold:
    payout_id: str
    merchant: str
    currency: str
    amount: int
    fee: int
    expires_at: datetime
    status: str = "active"  # active | released (settled) | reversed
    returned: bool = False
    connector: str | None = None

    @property
    def total(self) -> int:
        return self.amount + self.fee


@dataclass(frozen=True)
class Funding:
    ref: str
    merchant: str
    currency: str
    amount: int
    transaction_id: int


amounts = st.one_of(st.integers(1, 1000), st.integers(1, 200_000), st.sampled_from([1, 99, 100, 101]))
fees = st.one_of(st.just(0), st.integers(1, 500))


def build_machine(run, sessionmaker, stats: Counter):
    """The machine class, bound to the test's event loop (`run`) and database."""

    async def in_tx(fn):
        async with transaction(sessionmaker) as s:
            return await fn(s)

    def call(fn):
        return run(in_tx(fn))

    class LedgerMachine(RuleBasedStateMachine):
        fundings = Bundle("fundings")
        holds = Bundle("holds")

        def __init__(self) -> None:
            super().__init__()
            # fresh merchants per example: the model starts from nothing whatever earlier examples
            # left in the database (the same draws replay the same way while Hypothesis shrinks)
            tag = uuid.uuid4().hex[:10]
            self.merchants = [f"m_sm_{tag}_{i}" for i in MERCHANTS]
            self.available: dict[tuple[str, str], int] = {}
            self.held: dict[tuple[str, str], int] = {}
            self.model_holds: dict[str, ModelHold] = {}
            self.clock = BASE_TIME
            stats["examples"] += 1

            async def add(s):
                for m in self.merchants:
                    await s.execute(text("INSERT INTO merchants (id, name, default_currency) VALUES (:m, :m, 'EUR')"),
                                    {"m": m})

            call(add)

        def _key(self, merchant: int, currency: str) -> tuple[str, str]:
            """The (merchant id, currency) pair, funded with START_FUNDS the first time it is used."""
            key = (self.merchants[merchant], currency)
            if key not in self.available:
                call(lambda s: ledger.fund_merchant(s, key[0], START_FUNDS, currency, f"fund_sm_{key[0]}_{currency}"))
                self.available[key], self.held[key] = START_FUNDS, 0
            return key

        async def _read_balances(self) -> dict[tuple[str, str], tuple[int, int]]:
            found = {}
            async with transaction(sessionmaker) as s:
                for m in self.merchants:
                    for b in await ledger.get_balances(s, m):
                        found[(m, b.currency)] = (b.available_minor, b.held_minor)
            return found

        def _note(self, what: str) -> None:
            stats[what] += 1
            event(what)

        # --- holds opened up front, so settle / return / expiry are reached ---------------------

        def _open(self, merchant: int, currency: str, amount: int, fee: int, expires_in: int) -> ModelHold:
            key = self._key(merchant, currency)
            merchant_id = key[0]
            payout_id = f"po_sm_{uuid.uuid4().hex[:16]}"
            expires_at = self.clock + timedelta(minutes=expires_in)

            async def go(s):
                await s.execute(text(
                    "INSERT INTO payouts (id, merchant_id, idempotency_key, amount_minor, currency, fee_minor, method, "
                    "priority, status, beneficiary_encrypted, beneficiary_masked) VALUES (:id, :m, :id, :a, :c, :f, "
                    "'sepa', 'standard', 'pending', :enc, CAST(:masked AS jsonb))"),
                    {"id": payout_id, "m": merchant_id, "a": amount, "c": currency, "f": fee, "enc": b"\x00",
                     "masked": json.dumps({})})
                return await ledger.place_hold(s, payout_id=payout_id, merchant_id=merchant_id, amount_minor=amount,
                                               fee_minor=fee, currency=currency, expires_at=expires_at)

            hold = call(go)
            assert (hold.status, hold.total_minor, hold.fee_minor) == ("active", amount + fee, fee)
            self.available[key] -= amount + fee
            self.held[key] += amount + fee
            model = ModelHold(payout_id, merchant_id, currency, amount, fee, expires_at)
            self.model_holds[payout_id] = model
            return model

        @initialize(target=holds, merchant=st.sampled_from(MERCHANTS), currencies=st.lists(
            st.sampled_from(CURRENCIES), min_size=2, max_size=4, unique=True), amount=amounts, fee=fees)
        def open_holds(self, merchant, currencies, amount, fee):
            self._note("initial holds")
            return multiple(*(self._open(merchant, c, amount, fee, 30 + 20 * i) for i, c in enumerate(currencies)))

        @initialize(target=holds, currency=st.sampled_from(CURRENCIES), amount=amounts)
        def open_short_hold(self, currency, amount):
            return self._open(MERCHANTS[1], currency, amount, 0, 1)  # expires at the first sweep

        @initialize(target=holds, currency=st.sampled_from(CURRENCIES), amount=amounts, fee=fees,
                    connector=st.sampled_from(CONNECTORS))
        def open_settled_hold(self, currency, amount, fee, connector):
            """A payout already executed, so a bank return can come at any step."""
            h = self._open(MERCHANTS[0], currency, amount, fee, 60)
            call(lambda s: ledger.settle_hold(s, payout_id=h.payout_id, connector=connector))
            h.status, h.connector = "released", connector
            self.held[(h.merchant, h.currency)] -= h.total
            return h

        # --- funding ------------------------------------------------------------------------

        @rule(target=fundings, merchant=st.sampled_from(MERCHANTS), currency=st.sampled_from(CURRENCIES),
              amount=amounts)
        def fund(self, merchant, currency, amount):
            key = self._key(merchant, currency)
            ref = f"fund_sm_{uuid.uuid4().hex}"
            result = call(lambda s: ledger.fund_merchant(s, key[0], amount, currency, ref))
            assert result.created
            self.available[key] += amount
            self._note("fund")
            return Funding(ref, key[0], currency, amount, result.transaction_id)

        @rule(funding=fundings, other_amount=st.booleans())
        def replay_funding(self, funding, other_amount):
            """The same posting key again: nothing posted; with other entries: a conflict."""
            amount = funding.amount + 1 if other_amount else funding.amount
            try:
                result = call(lambda s: ledger.fund_merchant(s, funding.merchant, amount, funding.currency,
                                                             funding.ref))
            except ledger.LedgerConflictError:
                assert other_amount
                self._note("replay funding: conflict")
                return
            assert not other_amount, "a replay with other entries was accepted"
            assert (result.created, result.transaction_id) == (False, funding.transaction_id)
            self._note("replay funding: no-op")

        # --- holds --------------------------------------------------------------------------

        @rule(target=holds, merchant=st.sampled_from(MERCHANTS), currency=st.sampled_from(CURRENCIES),
              amount=amounts, fee=fees, overdraw=st.booleans(), expires_in=st.integers(1, 120))
        def hold(self, merchant, currency, amount, fee, overdraw, expires_in):
            key = self._key(merchant, currency)
            if overdraw:  # one minor unit more than the model says is available
                amount = max(1, self.available[key] - fee + 1)
                payout_id = f"po_sm_{uuid.uuid4().hex[:16]}"
                try:
                    call(lambda s: ledger.place_hold(s, payout_id=payout_id, merchant_id=key[0],
                                                     amount_minor=amount, fee_minor=fee, currency=currency,
                                                     expires_at=None))
                except ledger.InsufficientFundsError as exc:
                    assert exc.available == self.available[key]
                    self._note("hold: insufficient funds")
                    return multiple()
                raise AssertionError(f"a hold of {amount}+{fee} passed with {self.available[key]} available")
            if amount + fee > self.available[key]:
                return multiple()
            self._note("hold")
            return self._open(merchant, currency, amount, fee, expires_in)

        @rule(h=holds, other_terms=st.booleans())
        def replay_hold(self, h, other_terms):
            amount = h.amount + (1 if other_terms else 0)
            try:
                got = call(lambda s: ledger.place_hold(s, payout_id=h.payout_id, merchant_id=h.merchant,
                                                       amount_minor=amount, fee_minor=h.fee, currency=h.currency,
                                                       expires_at=h.expires_at))
            except ledger.LedgerConflictError:
                assert other_terms
                self._note("replay hold: conflict")
                return
            assert not other_terms
            assert got.status == h.status and got.total_minor == h.total
            self._note("replay hold: no-op")

        def _reverse(self, h: ModelHold, reason: str) -> str:
            try:
                got = call(lambda s: ledger.reverse_hold(s, payout_id=h.payout_id, reason=reason))
            except ledger.HoldStateError:
                assert h.status == "released", f"reverse refused for a {h.status} hold"
                return "refused"
            assert h.status != "released", "a settled hold was reversed"
            assert got.status == "reversed"
            if h.status == "active":
                h.status = "reversed"
                self.available[(h.merchant, h.currency)] += h.total
                self.held[(h.merchant, h.currency)] -= h.total
                return "done"
            return "replay no-op"

        @rule(h=holds)
        def release(self, h):
            """The payout was cancelled or failed: its hold goes back to available."""
            self._note(f"release: {self._reverse(h, 'payout cancelled')}")

        @rule(h=holds, connector=st.sampled_from(CONNECTORS))
        def settle(self, h, connector):
            try:
                got = call(lambda s: ledger.settle_hold(s, payout_id=h.payout_id, connector=h.connector or connector))
            except ledger.HoldStateError:
                assert h.status == "reversed"
                self._note("settle: refused (reversed)")
                return
            assert h.status != "reversed" and got.status == "released"
            if h.status == "active":
                h.status, h.connector = "released", connector
                self.held[(h.merchant, h.currency)] -= h.total
                self._note("settle")
            else:
                self._note("settle: replay no-op")

        @rule(h=holds)
        def bank_return(self, h):
            connector = h.connector or CONNECTORS[0]
            try:
                result = call(lambda s: ledger.post_return(s, payout_id=h.payout_id, connector=connector,
                                                           return_code="AC04"))
            except ledger.HoldStateError:
                assert h.status != "released"
                self._note("return: refused (not settled)")
                return
            assert h.status == "released"
            assert result.created == (not h.returned)
            if not h.returned:
                h.returned = True
                self.available[(h.merchant, h.currency)] += h.amount  # the fee stays earned
                self._note("return")
            else:
                self._note("return: replay no-op")

        @rule(minutes=st.integers(0, 90))
        def expire(self, minutes):
            """The sweeper: every active hold past its expiry (and only those) is reversed."""
            self.clock += timedelta(minutes=minutes)
            expired = call(lambda s: ledger.list_expired_holds(s, now=self.clock, limit=10_000))
            ours = {h.payout_id for h in expired if h.payout_id in self.model_holds}
            due = {p for p, h in self.model_holds.items() if h.status == "active" and h.expires_at <= self.clock}
            assert ours == due
            for payout_id in sorted(due):
                assert self._reverse(self.model_holds[payout_id], "hold expired") == "done"
            self._note("expire: reversed some" if due else "expire: none due")

        # --- reverse: an ops reversal of funds (a negative adjustment), refused below zero -------

        @rule(merchant=st.sampled_from(MERCHANTS), currency=st.sampled_from(CURRENCIES), amount=amounts,
              overdraw=st.booleans())
        def reverse(self, merchant, currency, amount, overdraw):
            key = self._key(merchant, currency)
            if overdraw:
                amount = self.available[key] + 1
            ref = f"rev_sm_{uuid.uuid4().hex}"
            try:
                call(lambda s: ledger.adjust_balance(s, merchant_id=key[0], amount_minor=-amount,
                                                     currency=currency, ref=ref, reason="reversal", actor="sm"))
            except ledger.InsufficientFundsError:
                assert amount > self.available[key]
                self._note("reverse: insufficient funds")
                return
            assert amount <= self.available[key], "a reversal took available below zero"
            self.available[key] -= amount
            self._note("reverse")

        @rule(h=consumes(holds))
        def forget(self, h):
            """Drop a hold from the bundle (keeps later draws varied); its model state stays."""

        # --- invariants ---------------------------------------------------------------------

        @invariant()
        def balances_equal_the_model(self):
            found = run(self._read_balances())
            for key in set(found) | set(self.available):
                a, h = found.get(key, (0, 0))
                assert (a, h) == (self.available.get(key, 0), self.held.get(key, 0)), key
                assert a >= 0 and h >= 0, key

        @invariant()
        def the_ledger_check_is_clean(self):
            report = call(lambda s: ledger.check_ledger(s))
            # the whole ledger is checked; what an earlier (failing) example left is not this one's
            mine = [v for v in report.violations if "m_sm_" not in v or any(m in v for m in self.merchants)]
            assert not mine, mine

        def teardown(self):
            """Active holds are swept (reversed) so the next example starts from a clean sweep."""
            for h in self.model_holds.values():
                if h.status == "active":
                    self._reverse(h, "end of example")

    return LedgerMachine


async def run_machine(sessionmaker, machine_settings=MACHINE_SETTINGS) -> Counter:
    loop = asyncio.get_running_loop()
    stats: Counter = Counter()

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    machine = build_machine(run, sessionmaker, stats)
    await asyncio.to_thread(run_state_machine_as_test, machine, settings=machine_settings)
    return stats


async def test_the_ledger_agrees_with_its_model_under_random_interleavings(sessionmaker):
    stats = await run_machine(sessionmaker)
    print("\nledger state machine:", dict(sorted(stats.items())))
    for reached in ("fund", "replay funding: no-op", "replay funding: conflict", "hold", "hold: insufficient funds",
                    "replay hold: no-op", "replay hold: conflict", "release: done", "settle", "settle: replay no-op",
                    "settle: refused (reversed)", "return", "return: replay no-op", "return: refused (not settled)",
                    "expire: reversed some", "reverse", "reverse: insufficient funds"):
        assert stats[reached] > 0, (reached, dict(stats))
