"""Merchants, funding and balances over the API, against real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select, update

from core.platform.tables import controls, journal_transactions

OPS = "ops_admin"


def merchant_body(**extra) -> dict:
    return {"name": "Acme", "default_currency": "EUR", "country": "FR", **extra}


def key() -> dict:
    return {"Idempotency-Key": uuid.uuid4().hex}


@pytest.fixture
async def merchant(client, token_for) -> str:
    r = await client.post("/api/v1/merchants", json=merchant_body(), headers=token_for(OPS))
    assert r.status_code == 201, r.text
    return r.json()["id"]


class TestCreateMerchant:
    async def test_no_token_is_401(self, client):
        assert (await client.post("/api/v1/merchants", json=merchant_body())).status_code == 401

    async def test_merchant_user_is_403(self, client, token_for):
        r = await client.post(
            "/api/v1/merchants", json=merchant_body(), headers=token_for("merchant_admin", merchant_id="mer_a")
        )
        assert r.status_code == 403

    async def test_invalid_is_422(self, client, token_for):
        for body in (
            merchant_body(default_currency="EURO"),
            merchant_body(default_currency="ZZZ"),
            merchant_body(country="France"),
            merchant_body(name=""),
            merchant_body(id="not-a-merchant-id"),
        ):
            r = await client.post("/api/v1/merchants", json=body, headers=token_for(OPS))
            assert r.status_code == 422, body

    async def test_creates_with_generated_or_given_id_and_refuses_a_duplicate(self, client, token_for):
        r = await client.post("/api/v1/merchants", json=merchant_body(), headers=token_for("treasury_ops"))
        assert r.status_code == 201
        m = r.json()
        assert m["id"].startswith("mer_") and len(m["id"]) == 36 and m["frozen"] is False
        given = f"mer_{uuid.uuid4().hex[:8]}"
        r = await client.post("/api/v1/merchants", json=merchant_body(id=given), headers=token_for(OPS))
        assert r.status_code == 201 and r.json()["id"] == given
        r = await client.post("/api/v1/merchants", json=merchant_body(id=given), headers=token_for(OPS))
        assert r.status_code == 409 and r.json()["type"] == "conflict"


class TestGetMerchant:
    async def test_no_token_is_401(self, client, merchant):
        assert (await client.get(f"/api/v1/merchants/{merchant}")).status_code == 401

    async def test_unknown_is_404(self, client, token_for):
        assert (await client.get("/api/v1/merchants/mer_nope", headers=token_for(OPS))).status_code == 404

    async def test_merchant_user_sees_only_itself(self, client, token_for, merchant):
        assert (await client.get(
            f"/api/v1/merchants/{merchant}", headers=token_for("merchant_viewer", merchant_id=merchant)
        )).status_code == 200
        assert (await client.get(
            f"/api/v1/merchants/{merchant}", headers=token_for("merchant_viewer", merchant_id="mer_other")
        )).status_code == 404

    async def test_shows_frozen(self, client, token_for, merchant, sessionmaker):
        async with sessionmaker() as s:
            await s.execute(controls.insert().values(kind="merchant_freeze", target=merchant, created_by="risk"))
            await s.commit()
        r = await client.get(f"/api/v1/merchants/{merchant}", headers=token_for(OPS))
        assert r.status_code == 200 and r.json()["frozen"] is True and r.json()["name"] == "Acme"


class TestFundMerchant:
    async def test_no_token_is_401(self, client, merchant):
        r = await client.post(f"/api/v1/merchants/{merchant}/funding", json={"amount": "1", "currency": "EUR"}, headers=key())
        assert r.status_code == 401

    async def test_merchant_user_is_403(self, client, token_for, merchant):
        r = await client.post(
            f"/api/v1/merchants/{merchant}/funding", json={"amount": "1", "currency": "EUR"},
            headers={**token_for("merchant_admin", merchant_id=merchant), **key()},
        )
        assert r.status_code == 403

    async def test_missing_key_is_400(self, client, token_for, merchant):
        r = await client.post(
            f"/api/v1/merchants/{merchant}/funding", json={"amount": "1", "currency": "EUR"}, headers=token_for(OPS)
        )
        assert r.status_code == 400 and r.json()["type"] == "idempotency_key_missing"

    async def test_unknown_merchant_is_404(self, client, token_for):
        r = await client.post(
            "/api/v1/merchants/mer_nope/funding", json={"amount": "1", "currency": "EUR"},
            headers={**token_for(OPS), **key()},
        )
        assert r.status_code == 404

    async def test_bad_amount_is_422(self, client, token_for, merchant):
        for body in ({"amount": "1.001", "currency": "EUR"}, {"amount": "1.5", "currency": "XOF"},
                     {"amount": "-1", "currency": "EUR"}, {"amount": "1", "currency": "ZZZ"}):
            r = await client.post(
                f"/api/v1/merchants/{merchant}/funding", json=body, headers={**token_for(OPS), **key()}
            )
            assert r.status_code == 422, body

    async def test_funds_once_per_key(self, client, token_for, merchant, sessionmaker):
        headers = {**token_for(OPS), **key()}
        url = f"/api/v1/merchants/{merchant}/funding"
        body = {"amount": "1000.50", "currency": "EUR", "reference": "wire 123"}
        responses = await asyncio.gather(*(client.post(url, json=body, headers=headers) for _ in range(5)))
        assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
        first = next(r for r in responses if r.status_code == 201).json()
        assert all(r.json() == first for r in responses)
        assert first["balances"] == [
            {"currency": "EUR", "available": "1000.50", "held": "0.00", "available_minor": 100050, "held_minor": 0}
        ]
        reused = await client.post(url, json={**body, "amount": "1"}, headers=headers)
        assert reused.status_code == 422 and reused.json()["type"] == "idempotency_key_reused"
        second = await client.post(url, json={"amount": "0.50", "currency": "EUR"}, headers={**token_for(OPS), **key()})
        assert second.status_code == 201
        assert second.json()["balances"][0]["available"] == "1001.00"
        async with sessionmaker() as s:
            assert await s.scalar(select(func.count()).select_from(journal_transactions)) == 2


class TestBalances:
    async def test_no_token_is_401(self, client):
        assert (await client.get("/api/v1/balances")).status_code == 401

    async def test_merchant_user_naming_another_merchant_is_403(self, client, token_for, merchant):
        r = await client.get(
            "/api/v1/balances", params={"merchant_id": "mer_other"}, headers=token_for("merchant_viewer", merchant_id=merchant)
        )
        assert r.status_code == 403

    async def test_platform_role_must_name_the_merchant(self, client, token_for):
        assert (await client.get("/api/v1/balances", headers=token_for("auditor"))).status_code == 422

    async def test_unknown_merchant_is_404(self, client, token_for):
        r = await client.get("/api/v1/balances", params={"merchant_id": "mer_nope"}, headers=token_for("auditor"))
        assert r.status_code == 404

    async def test_balances_per_currency(self, client, token_for, merchant):
        for amount, currency in (("10.00", "EUR"), ("1500", "XOF")):
            r = await client.post(
                f"/api/v1/merchants/{merchant}/funding", json={"amount": amount, "currency": currency},
                headers={**token_for(OPS), **key()},
            )
            assert r.status_code == 201, r.text
        mine = await client.get("/api/v1/balances", headers=token_for("merchant_viewer", merchant_id=merchant))
        assert mine.status_code == 200
        assert mine.json() == [
            {"currency": "EUR", "available": "10.00", "held": "0.00", "available_minor": 1000, "held_minor": 0},
            {"currency": "XOF", "available": "1500", "held": "0", "available_minor": 1500, "held_minor": 0},
        ]
        ops = await client.get("/api/v1/balances", params={"merchant_id": merchant}, headers=token_for("auditor"))
        assert ops.json() == mine.json()


async def test_an_expired_funding_key_never_credits_twice(client, token_for, merchant, sessionmaker):
    from core.platform.tables import idempotency_keys

    headers = {**token_for(OPS), **key()}
    url = f"/api/v1/merchants/{merchant}/funding"
    assert (await client.post(url, json={"amount": "5", "currency": "EUR"}, headers=headers)).status_code == 201
    async with sessionmaker() as s:
        await s.execute(update(idempotency_keys).values(expires_at=func.now() - func.make_interval(0, 0, 0, 1)))
        await s.commit()
    r = await client.post(url, json={"amount": "5", "currency": "EUR"}, headers=headers)
    assert r.status_code == 422 and r.json()["type"] == "idempotency_key_reused"
    balances = (await client.get("/api/v1/balances", params={"merchant_id": merchant}, headers=token_for(OPS))).json()
    assert balances[0]["available"] == "5.00"


async def test_a_request_whose_commit_fails_is_not_answered_as_a_success(client, token_for, sessionmaker):
    """The request's transaction commits before its response is sent: a commit refused by a
    deferred constraint (the ledger's balance check works this way) must reach the client as an
    error, with nothing written, not as a 201 for a row that never existed."""
    from sqlalchemy import text

    async with sessionmaker() as s, s.begin():
        await s.execute(text("""
            CREATE FUNCTION test_refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'refused at commit'; END $$"""))
        await s.execute(text("""
            CREATE CONSTRAINT TRIGGER test_refuse_at_commit AFTER INSERT ON merchants
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.name = 'Refused at commit')
            EXECUTE FUNCTION test_refuse_at_commit()"""))
    try:
        given = f"mer_{uuid.uuid4().hex[:8]}"
        r = await client.post("/api/v1/merchants", json=merchant_body(id=given, name="Refused at commit"),
                              headers=token_for(OPS))
        assert r.status_code == 500 and r.json()["type"] == "internal_error", r.text
        assert (await client.get(f"/api/v1/merchants/{given}", headers=token_for(OPS))).status_code == 404
    finally:
        async with sessionmaker() as s, s.begin():
            await s.execute(text("DROP TRIGGER test_refuse_at_commit ON merchants"))
            await s.execute(text("DROP FUNCTION test_refuse_at_commit()"))
