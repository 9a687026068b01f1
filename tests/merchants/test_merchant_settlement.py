"""A merchant's profile and KYC, payout bank accounts, settlement panel and withdrawals, over the
API on real PostgreSQL (and, for the whole withdrawal and the ops actions, a real worker, Temporal
dev server and the sandbox bank)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from core.ledger import service as ledger
from core.merchants import bank_accounts, profile, settlement
from core.platform.errors import PayopsError
from core.platform.tables import merchant_audit, merchant_bank_accounts, merchant_kyc_history, payouts
from tests.factories import create_payout_row
from tests.polling import eventually

OPS = "ops_admin"
IBAN = "DE89370400440532013000"
SEPA = {"rail": "sepa", "currency": "EUR", "details": {"iban": IBAN, "bic": "COBADEFFXXX"}}
# another valid German IBAN (same bank): a changed account
IBAN_2 = "DE75512108001245126199"
SEPA_2 = {"rail": "sepa", "currency": "EUR", "details": {"iban": IBAN_2, "bic": "COBADEFFXXX"}}


def key() -> dict:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def new_merchant(client, token_for, name: str, country: str) -> str:
    """A EUR merchant created through the API by ops."""
    mid = f"mer_{uuid.uuid4().hex[:12]}"
    r = await client.post("/api/v1/merchants", json={"id": mid, "name": name, "default_currency": "EUR",
                                                     "country": country}, headers=token_for(OPS))
    assert r.status_code == 201, r.text
    return mid


@pytest.fixture
async def merchant(client, token_for) -> str:
    return await new_merchant(client, token_for, "Acme", "FR")


@pytest.fixture
async def other(client, token_for) -> str:
    return await new_merchant(client, token_for, "Other", "DE")


@pytest.fixture
def admin(token_for, merchant):
    return token_for("merchant_admin", merchant_id=merchant, sub="alice@acme")


@pytest.fixture
def viewer(token_for, merchant):
    return token_for("merchant_viewer", merchant_id=merchant, sub="victor@acme")


async def fund(client, token_for, merchant: str, amount: str = "1000.00") -> None:
    r = await client.post(f"/api/v1/merchants/{merchant}/funding", json={"amount": amount, "currency": "EUR"},
                          headers={**token_for(OPS), **key()})
    assert r.status_code == 201, r.text


async def verify_kyc_directly(sm, merchant: str) -> None:
    """KYC verified through the service an approved SET_KYC_STATUS runs (tests not about KYC)."""
    async with sm() as session, session.begin():
        await profile.set_kyc_status(session, merchant, to_status="verified", actor="test", reason="fixture",
                                     action_id=None)


async def register(client, headers, merchant: str, body: dict = SEPA):
    return await client.post(f"/api/v1/merchants/{merchant}/bank-accounts", json=body, headers=headers)


async def make_effective(sm, settings, merchant: str, account_id: str) -> None:
    """End an account's cool-off the way an approved APPROVE_BANK_ACCOUNT does (through the service)."""
    async with sm() as session, session.begin():
        await bank_accounts.review_account(session, merchant_id=merchant, account_id=account_id, approve=True,
                                           actor="test", reason="fixture")


async def withdraw(client, headers, merchant: str, account_id: str, amount_minor: int = 10_000, *, idem=None,
                   priority: str = "instant"):
    return await client.post(f"/api/v1/merchants/{merchant}/withdrawals",
                             json={"account_id": account_id, "amount_minor": amount_minor, "currency": "EUR",
                                   "priority": priority},
                             headers={**headers, **(idem or key())})


def problem(r, status: int, type_: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"].endswith(type_), body
    return body


# --- profile and KYC -------------------------------------------------------------------------


class TestProfile:
    async def test_401_and_another_merchant_is_404(self, client, token_for, merchant, other):
        assert (await client.get(f"/api/v1/merchants/{merchant}/profile")).status_code == 401
        r = await client.get(f"/api/v1/merchants/{merchant}/profile",
                             headers=token_for("merchant_admin", merchant_id=other))
        problem(r, 404, "not_found")

    async def test_defaults_and_a_merchant_admin_edit_is_audited(self, client, admin, merchant, sessionmaker):
        p = (await client.get(f"/api/v1/merchants/{merchant}/profile", headers=admin)).json()
        assert (p["company_name"], p["country"], p["account_type"], p["kyc_status"], p["kyc_history"]) == (
            "Acme", "FR", "business", "pending", [])
        r = await client.patch(f"/api/v1/merchants/{merchant}/profile",
                               json={"company_name": "Acme SAS", "account_type": "individual"}, headers=admin)
        assert r.status_code == 200, r.text
        assert (r.json()["company_name"], r.json()["account_type"], r.json()["country"]) == (
            "Acme SAS", "individual", "FR")
        async with sessionmaker() as s:
            audit = (await s.execute(select(merchant_audit).where(merchant_audit.c.merchant_id == merchant))
                     ).mappings().all()
        assert [(a["actor"], a["event"], a["data"]) for a in audit] == [("alice@acme", "profile_updated", {"changes": {
            "company_name": {"from": None, "to": "Acme SAS"},
            "account_type": {"from": "business", "to": "individual"}}})]

    async def test_viewer_403_and_kyc_is_not_a_profile_field(self, client, viewer, admin, merchant):
        r = await client.patch(f"/api/v1/merchants/{merchant}/profile", json={"company_name": "X"}, headers=viewer)
        problem(r, 403, "forbidden")
        r = await client.patch(f"/api/v1/merchants/{merchant}/profile", json={"kyc_status": "verified"},
                               headers=admin)
        assert r.status_code == 422
        assert (await client.get(f"/api/v1/merchants/{merchant}/profile", headers=admin)).json()[
            "kyc_status"] == "pending"


# --- bank accounts ---------------------------------------------------------------------------


class TestBankAccounts:
    async def test_registered_account_is_verified_masked_encrypted_cooling_off_and_audited(
            self, client, admin, merchant, sessionmaker, settings):
        before = datetime.now(timezone.utc)
        r = await register(client, admin, merchant)
        assert r.status_code == 201, r.text
        a = r.json()
        assert (a["status"], a["cooling_off"], a["usable"], a["replaces_id"]) == ("verified", True, False, None)
        effective = datetime.fromisoformat(a["effective_at"])
        hours = settings.bank_account_cool_off_hours
        assert before + timedelta(hours=hours) <= effective <= datetime.now(timezone.utc) + timedelta(hours=hours)
        assert a["details"] == {"type": "sepa", "name": "Acme", "last4": "3000", "bic": "COBADEFFXXX",
                                "country": "DE"}
        assert "iban_mod97_checksum" in a["checks"]
        assert IBAN not in r.text
        async with sessionmaker() as s:
            stored = (await s.execute(select(merchant_bank_accounts))).mappings().one()
            audit = (await s.execute(select(merchant_audit))).mappings().all()
        assert IBAN.encode() not in stored["details_encrypted"]
        assert [(x["event"], x["data"]["account_id"]) for x in audit] == [("bank_account_registered", a["id"])]
        listed = (await client.get(f"/api/v1/merchants/{merchant}/bank-accounts", headers=admin)).json()
        assert [x["id"] for x in listed] == [a["id"]]

    @pytest.mark.parametrize("body, field", [
        ({**SEPA, "details": {"iban": IBAN[:-1] + "1", "bic": "COBADEFFXXX"}}, "iban"),
        ({**SEPA, "details": {"iban": IBAN, "bic": "NOTABIC"}}, "bic"),
        ({"rail": "ach", "currency": "USD", "details": {"routing_number": "021000022", "account_number": "1234567"}},
         "routing_number"),
        ({"rail": "mobile_money", "currency": "XOF", "details": {"phone": "0771234567", "operator": "orange"}},
         "phone"),
        ({"rail": "sepa", "currency": "USD", "details": {"iban": IBAN, "bic": "COBADEFFXXX"}}, "USD"),
    ])
    async def test_a_failing_check_is_422_naming_it_and_stores_nothing(self, client, admin, merchant, sessionmaker,
                                                                       body, field):
        r = await register(client, admin, merchant, body)
        assert field in problem(r, 422, "bank_account_invalid")["detail"]
        async with sessionmaker() as s:
            assert (await s.execute(select(merchant_bank_accounts))).first() is None

    async def test_other_rails_register(self, client, admin, merchant):
        for body in ({"rail": "ach", "currency": "USD",
                      "details": {"routing_number": "021000021", "account_number": "000123456789"}},
                     {"rail": "mobile_money", "currency": "XOF",
                      "details": {"phone": "+221771234567", "operator": "orange"}},
                     {"rail": "faster_payments", "currency": "GBP",
                      "details": {"sort_code": "04-00-04", "account_number": "12345678"}}):
            r = await register(client, admin, merchant, body)
            assert r.status_code == 201, r.text

    async def test_viewer_403_ops_403_other_merchant_404(self, client, viewer, token_for, merchant, other):
        problem(await register(client, viewer, merchant), 403, "forbidden")
        problem(await register(client, token_for(OPS), merchant), 403, "forbidden")
        problem(await register(client, token_for("merchant_admin", merchant_id=other), merchant), 404, "not_found")


# --- settlement panel -----------------------------------------------------------------------


async def payout_in(sm, settings, merchant: str, status: str, amount: int) -> int:
    """A payout row in `status` with its active hold (amount + fee); returns what is held."""
    p = await create_payout_row(sm, settings, merchant_id=merchant, amount_minor=amount)
    async with sm() as session, session.begin():
        await ledger.place_hold(session, payout_id=p.payout_id, merchant_id=merchant, amount_minor=amount,
                                fee_minor=p.fee_minor, currency="EUR", expires_at=None)
        await session.execute(update(payouts).where(payouts.c.id == p.payout_id).values(status=status))
    return amount + p.fee_minor


class TestSettlementPanel:
    async def test_available_pending_in_flight_and_next_settlement_per_rail(
            self, client, admin, token_for, merchant, sessionmaker, settings):
        await fund(client, token_for, merchant, "1000.00")
        pending = await payout_in(sessionmaker, settings, merchant, "held", 10_000)
        pending += await payout_in(sessionmaker, settings, merchant, "routed", 2_500)
        in_flight = await payout_in(sessionmaker, settings, merchant, "submitted", 30_000)
        r = await client.get(f"/api/v1/merchants/{merchant}/settlement", headers=admin)
        assert r.status_code == 200, r.text
        panel = r.json()
        (eur,) = panel["currencies"]
        assert eur["currency"] == "EUR"
        assert eur["pending_minor"] == pending and eur["in_flight_minor"] == in_flight
        assert eur["held_minor"] == pending + in_flight
        assert eur["available_minor"] == 100_000 - pending - in_flight
        assert (eur["pending_payouts"], eur["in_flight_payouts"]) == (2, 1)
        rails = {x["rail"]: x for x in eur["rails"]}
        assert {"sepa", "sepa_instant", "wire"} <= set(rails)
        assert rails["sepa"]["next_cutoff_at"] is not None and rails["sepa_instant"]["continuous"] is True
        computed = datetime.fromisoformat(panel["computed_at"])
        for x in rails.values():
            assert datetime.fromisoformat(x["next_settlement_at"]) >= computed
            if x["next_cutoff_at"]:
                assert datetime.fromisoformat(x["next_cutoff_at"]) > computed
        # instants, not strings: a client comparing ISO strings is only right when every one is in UTC
        stamps = [panel["computed_at"], eur["next_settlement_at"]]
        stamps += [x[k] for x in rails.values() for k in ("next_cutoff_at", "next_settlement_at") if x[k]]
        assert all(datetime.fromisoformat(t).utcoffset() == timedelta(0) for t in stamps), stamps
        assert datetime.fromisoformat(eur["next_settlement_at"]) == min(
            datetime.fromisoformat(x["next_settlement_at"]) for x in eur["rails"])
        assert panel["kyc_status"] == "pending" and panel["can_withdraw"] is False

    async def test_the_next_settlement_is_the_earliest_instant_at_every_hour_of_the_week(
            self, client, admin, merchant, sessionmaker):
        """Rails settle in their own time zones (wire in New York, sepa in Frankfurt, instant rails
        now + seconds): swept over a week in 47-minute steps, past cutoffs, midnights in each zone
        and a weekend, the panel's next settlement is the earliest rail's, and every instant is UTC."""
        start = datetime(2026, 12, 4, 0, 3, tzinfo=timezone.utc)  # a Friday
        seen_offsets = set()
        async with sessionmaker() as session:
            for step in range(0, 8 * 24 * 60, 47):
                now = start + timedelta(minutes=step)
                panel = await settlement.settlement_panel(session, merchant, now=now)
                (eur,) = panel["currencies"]
                targets = [r["next_settlement_at"] for r in eur["rails"]]
                assert eur["next_settlement_at"] == min(targets), now
                for r in eur["rails"]:
                    for t in (r["next_settlement_at"], r["next_cutoff_at"]):
                        if t is not None:
                            seen_offsets.add(t.utcoffset())
                            assert t >= now, (now, r)
        assert seen_offsets == {timedelta(0)}
        r = await client.get(f"/api/v1/merchants/{merchant}/settlement", headers=admin)
        body = r.json()
        served = [body["computed_at"]] + [x[k] for c in body["currencies"] for x in c["rails"]
                                          for k in ("next_cutoff_at", "next_settlement_at") if x[k]]
        assert all(t.endswith("Z") for t in served), served

    async def test_scoping(self, client, token_for, merchant, other):
        r = await client.get(f"/api/v1/merchants/{merchant}/settlement",
                             headers=token_for("merchant_viewer", merchant_id=other))
        problem(r, 404, "not_found")
        assert (await client.get(f"/api/v1/merchants/{merchant}/settlement",
                                 headers=token_for("finance_ops"))).status_code == 200
        assert (await client.get(f"/api/v1/merchants/{merchant}/settlement",
                                 headers=token_for("approver"))).status_code == 403


# --- withdrawal refusals (no worker: nothing gets created) -----------------------------------


class TestWithdrawalRefusals:
    async def test_kyc_not_verified_is_refused_saying_why(self, client, admin, token_for, merchant, sessionmaker,
                                                          settings):
        await fund(client, token_for, merchant)
        account = (await register(client, admin, merchant)).json()
        await make_effective(sessionmaker, settings, merchant, account["id"])
        body = problem(await withdraw(client, admin, merchant, account["id"]), 409, "kyc_not_verified")
        assert body["kyc_status"] == "pending" and "pending" in body["detail"]
        async with sessionmaker() as s:
            assert (await s.execute(select(payouts))).first() is None

    async def test_account_in_cool_off_is_refused_with_effective_at(self, client, admin, token_for, merchant,
                                                                    sessionmaker):
        await fund(client, token_for, merchant)
        await verify_kyc_directly(sessionmaker, merchant)
        account = (await register(client, admin, merchant)).json()
        body = problem(await withdraw(client, admin, merchant, account["id"]), 409, "bank_account_cooling_off")
        assert body["effective_at"] == datetime.fromisoformat(account["effective_at"]).isoformat()

    async def test_a_changed_account_during_its_cool_off_is_refused_the_old_one_until_then(
            self, client, admin, token_for, merchant, sessionmaker, settings):
        await fund(client, token_for, merchant)
        await verify_kyc_directly(sessionmaker, merchant)
        long_ago = datetime.now(timezone.utc) - timedelta(hours=settings.bank_account_cool_off_hours + 1)
        async with sessionmaker() as session, session.begin():  # registered (and cooled off) before: a clock
            old = await bank_accounts.register_account(session, settings, merchant, actor="alice@acme",
                                                       now=long_ago, **SEPA)
        new = (await register(client, admin, merchant, SEPA_2)).json()
        assert new["replaces_id"] == old["id"] and new["cooling_off"] is True
        problem(await withdraw(client, admin, merchant, new["id"]), 409, "bank_account_cooling_off")
        assert (await withdraw(client, admin, merchant, old["id"], priority="standard")).status_code == 201
        # once the new account is in effect, the replaced one is refused (time moved by the clock argument)
        later = datetime.fromisoformat(new["effective_at"]) + timedelta(seconds=1)
        async with sessionmaker() as session:
            with pytest.raises(PayopsError) as exc:
                await settlement.withdraw(session, None, settings, merchant_id=merchant, actor="alice@acme",
                                          idempotency_key=uuid.uuid4().hex, account_id=old["id"],
                                          amount_minor=100, currency="EUR", now=later)
            assert exc.value.type == "bank_account_superseded"
            assert (await bank_accounts.get_account(session, merchant, new["id"], later))["usable"] is True

    async def test_viewer_ops_403_and_another_merchants_account_404(self, client, viewer, token_for, merchant,
                                                                   other, sessionmaker):
        theirs = (await register(client, token_for("merchant_admin", merchant_id=other), other)).json()
        problem(await withdraw(client, viewer, merchant, theirs["id"]), 403, "forbidden")
        problem(await withdraw(client, token_for(OPS), merchant, theirs["id"]), 403, "forbidden")
        admin = token_for("merchant_admin", merchant_id=merchant)
        await verify_kyc_directly(sessionmaker, merchant)
        problem(await withdraw(client, admin, merchant, theirs["id"]), 404, "not_found")
        problem(await withdraw(client, admin, other, theirs["id"]), 404, "not_found")

    async def test_insufficient_funds_and_wrong_currency(self, client, admin, token_for, merchant, sessionmaker,
                                                         settings):
        await fund(client, token_for, merchant, "10.00")
        await verify_kyc_directly(sessionmaker, merchant)
        account = (await register(client, admin, merchant)).json()
        await make_effective(sessionmaker, settings, merchant, account["id"])
        body = problem(await withdraw(client, admin, merchant, account["id"], 1_000), 409, "insufficient_funds")
        assert body["available_minor"] == 1_000 and body["fee_minor"] > 0
        r = await client.post(f"/api/v1/merchants/{merchant}/withdrawals",
                              json={"account_id": account["id"], "amount_minor": 100, "currency": "USD"},
                              headers={**admin, **key()})
        problem(r, 422, "currency_mismatch")
        r = await client.post(f"/api/v1/merchants/{merchant}/withdrawals",
                              json={"account_id": account["id"], "amount_minor": 100, "currency": "EUR"},
                              headers=admin)
        assert r.status_code == 400  # no Idempotency-Key

    @pytest.mark.parametrize("amount", [True, "1000", " 1000 ", 1000.0, 1.5, 0, -5, 2**63, None])
    async def test_an_amount_that_is_not_a_positive_json_integer_is_422_and_makes_nothing(
            self, client, admin, token_for, merchant, sessionmaker, settings, amount):
        await fund(client, token_for, merchant, "10.00")
        await verify_kyc_directly(sessionmaker, merchant)
        account = (await register(client, admin, merchant)).json()
        await make_effective(sessionmaker, settings, merchant, account["id"])
        r = await client.post(f"/api/v1/merchants/{merchant}/withdrawals",
                              json={"account_id": account["id"], "amount_minor": amount, "currency": "EUR"},
                              headers={**admin, **key()})
        assert r.status_code == 422, (amount, r.text)
        async with sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(payouts)) == 0


# --- with a worker: ops actions and the whole withdrawal -------------------------------------


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"payout_settlement_poll_seconds": 0.5})


async def ops_action(client, token_for, type_: str, params: dict) -> str:
    r = await client.post("/api/v1/ops/actions", json={"type": type_, "params": params},
                          headers=token_for("risk_ops", sub="rita@ops"))
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def approve_twice(client, token_for, action_id: str) -> None:
    for who in ("ann@ops", "bob@ops"):
        r = await client.post(f"/api/v1/ops/actions/{action_id}/approve", json={"comment": "checked"},
                              headers=token_for("approver", sub=who))
        assert r.status_code == 200, r.text


async def executed(client, token_for, action_id: str) -> dict:
    async def check():
        a = (await client.get(f"/api/v1/ops/actions/{action_id}", headers=token_for(OPS))).json()
        return a if a["status"] in ("executed", "failed") else None

    action = await eventually(check, f"ops action {action_id} to execute")
    assert action["status"] == "executed", action
    return action


class TestWithOpsActions:
    async def test_set_kyc_status_needs_two_approvals_and_is_recorded_in_the_history(
            self, client, token_for, worker, merchant, admin, sessionmaker):
        action_id = await ops_action(client, token_for, "SET_KYC_STATUS",
                                     {"merchant_id": merchant, "status": "needs_info", "reason": "ID expired"})
        plan = (await client.get(f"/api/v1/ops/actions/{action_id}/plan", headers=token_for("approver"))).json()
        assert plan["merchants"] == [{"merchant_id": merchant, "change": "kyc_status", "from_status": "pending",
                                      "to_status": "needs_info"}] and plan["would_refuse"] is None
        r = await client.post(f"/api/v1/ops/actions/{action_id}/approve", headers=token_for("approver", sub="ann@ops"))
        assert r.json()["remaining"] == 1
        assert (await client.get(f"/api/v1/merchants/{merchant}/profile", headers=admin)).json()[
            "kyc_status"] == "pending"  # one approval changes nothing
        r = await client.post(f"/api/v1/ops/actions/{action_id}/approve", headers=token_for("approver", sub="bob@ops"))
        assert r.status_code == 200
        action = await executed(client, token_for, action_id)
        assert action["result"] == {"merchant_id": merchant, "from_status": "pending", "to_status": "needs_info"}
        p = (await client.get(f"/api/v1/merchants/{merchant}/profile", headers=admin)).json()
        assert p["kyc_status"] == "needs_info"
        (change,) = p["kyc_history"]
        assert (change["from_status"], change["to_status"], change["action_id"]) == ("pending", "needs_info", action_id)
        assert "rita@ops" in change["actor"] and "ann@ops" in change["actor"] and "bob@ops" in change["actor"]
        assert change["reason"].startswith("ID expired")
        # setting the status it already has is refused before anyone is asked to approve
        r = await client.post("/api/v1/ops/actions", json={"type": "SET_KYC_STATUS", "params": {
            "merchant_id": merchant, "status": "needs_info", "reason": "again"}}, headers=token_for("risk_ops"))
        problem(r, 409, "invalid_state")
        # a merchant user cannot create one
        r = await client.post("/api/v1/ops/actions", json={"type": "SET_KYC_STATUS", "params": {
            "merchant_id": merchant, "status": "verified", "reason": "me"}}, headers=admin)
        assert r.status_code == 403

    async def test_the_whole_withdrawal(self, client, token_for, worker, merchant, admin, sessionmaker):
        await fund(client, token_for, merchant, "1000.00")
        account = (await register(client, admin, merchant)).json()
        # KYC and the account's early approval, each an ops action with two approvals
        kyc = await ops_action(client, token_for, "SET_KYC_STATUS",
                               {"merchant_id": merchant, "status": "verified", "reason": "documents checked"})
        problem(await withdraw(client, admin, merchant, account["id"]), 409, "kyc_not_verified")
        await approve_twice(client, token_for, kyc)
        await executed(client, token_for, kyc)
        problem(await withdraw(client, admin, merchant, account["id"]), 409, "bank_account_cooling_off")
        approval = await ops_action(client, token_for, "APPROVE_BANK_ACCOUNT", {
            "merchant_id": merchant, "account_id": account["id"], "reason": "called the merchant back"})
        plan = (await client.get(f"/api/v1/ops/actions/{approval}/plan", headers=token_for("approver"))).json()
        assert plan["merchants"][0]["change"] == "bank_account_approved" and "cool-off ends early" in plan["summary"]
        await approve_twice(client, token_for, approval)
        await executed(client, token_for, approval)
        listed = (await client.get(f"/api/v1/merchants/{merchant}/bank-accounts", headers=admin)).json()
        assert listed[0]["usable"] is True and listed[0]["reviewed_by"].startswith("rita@ops")

        idem = key()
        r = await withdraw(client, admin, merchant, account["id"], 25_000, idem=idem)
        assert r.status_code == 201, r.text
        payout = r.json()
        assert (payout["merchant_id"], payout["amount_minor"], payout["currency"], payout["method"]) == (
            merchant, 25_000, "EUR", "sepa")
        assert payout["metadata"] == {"kind": "withdrawal", "bank_account_id": account["id"]}
        replay = await withdraw(client, admin, merchant, account["id"], 25_000, idem=idem)
        assert replay.status_code == 200 and replay.json()["id"] == payout["id"]
        reused = await withdraw(client, admin, merchant, account["id"], 26_000, idem=idem)
        problem(reused, 422, "idempotency_key_reused")

        async def settled():
            body = (await client.get(f"/api/v1/payouts/{payout['id']}", headers=admin)).json()
            return body if body["status"] == "settled" else None

        done = await eventually(settled, "the withdrawal to settle", timeout=60)
        assert done["workflow"]["status"] == "settled"
        # an ordinary payout: in the payouts list, and the panel's balances moved
        listed = (await client.get("/api/v1/payouts", headers=admin)).json()["data"]
        assert [p["id"] for p in listed] == [payout["id"]]
        (eur,) = (await client.get(f"/api/v1/merchants/{merchant}/settlement", headers=admin)).json()["currencies"]
        assert eur["available_minor"] == 100_000 - 25_000 - payout["fee_minor"]
        assert (eur["held_minor"], eur["pending_minor"], eur["in_flight_minor"]) == (0, 0, 0)
        # the replay after settlement still answers with the same payout, not insufficient funds or KYC
        async with sessionmaker() as s, s.begin():
            await profile.set_kyc_status(s, merchant, to_status="rejected", actor="t", reason="t", action_id=None)
        replay = await withdraw(client, admin, merchant, account["id"], 25_000, idem=idem)
        assert replay.status_code == 200 and replay.json()["id"] == payout["id"]
        async with sessionmaker() as s:
            assert len((await s.execute(select(payouts))).all()) == 1
            history = (await s.execute(select(merchant_kyc_history.c.to_status).order_by(merchant_kyc_history.c.id))
                       ).scalars().all()
        assert history == ["verified", "rejected"]

    async def test_concurrent_withdrawals_with_one_key_make_one_payout(self, client, token_for, worker, merchant,
                                                                      admin, sessionmaker, settings):
        await fund(client, token_for, merchant)
        await verify_kyc_directly(sessionmaker, merchant)
        account = (await register(client, admin, merchant)).json()
        await make_effective(sessionmaker, settings, merchant, account["id"])
        idem = key()
        answers = await asyncio.gather(*[withdraw(client, admin, merchant, account["id"], 1_000, idem=idem)
                                         for _ in range(4)])
        ok = [r for r in answers if r.status_code in (200, 201)]
        assert ok and {r.json()["id"] for r in ok} == {ok[0].json()["id"]}
        assert all(r.status_code in (200, 201, 409) for r in answers), [r.text for r in answers]
        async with sessionmaker() as s:
            assert len((await s.execute(select(payouts))).all()) == 1
