"""The payouts API against real PostgreSQL, Redis and Temporal: idempotent creation (also under
concurrency), validation, scoping, reads, ops updates and stats.

Creation tests need no worker: a started PayoutWorkflow without a worker simply waits."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from schwifty import IBAN
from sqlalchemy import func, select, update

from core.platform.names import payout_workflow_id
from core.platform.tables import controls, payouts

OPS = "ops_admin"

SEPA = {"name": "Ada Lovelace", "iban": "DE89 3704 0044 0532 0130 00", "bic": "COBADEFFXXX"}
ACH = {"name": "Grace Hopper", "routing_number": "021000021", "account_number": "000123456789", "account_type": "checking"}
WIRE = {"name": "Alan Turing", "bic": "CHASUS33XXX", "account_number": "123456789012"}
FPS = {"name": "Tim Berners-Lee", "sort_code": "04-00-04", "account_number": "12345678"}
MOMO = {"name": "Awa Diop", "phone": "+221771234567", "operator": "orange"}


def sepa_body(amount: str = "100.50", **extra) -> dict:
    return {"amount": amount, "currency": "EUR", "method": "sepa", "beneficiary": dict(SEPA), **extra}


def key() -> dict:
    return {"Idempotency-Key": uuid.uuid4().hex}


@pytest.fixture
async def merchant(client, token_for) -> str:
    mid = f"mer_{uuid.uuid4().hex[:12]}"
    r = await client.post(
        "/api/v1/merchants",
        json={"id": mid, "name": "Acme", "default_currency": "EUR", "country": "FR"},
        headers=token_for(OPS),
    )
    assert r.status_code == 201, r.text
    return mid


@pytest.fixture
async def other_merchant(client, token_for) -> str:
    mid = f"mer_{uuid.uuid4().hex[:12]}"
    r = await client.post(
        "/api/v1/merchants",
        json={"id": mid, "name": "Other", "default_currency": "USD", "country": "US"},
        headers=token_for(OPS),
    )
    assert r.status_code == 201, r.text
    return mid


@pytest.fixture
def as_merchant(token_for, merchant):
    return token_for("merchant_admin", merchant_id=merchant)


async def create(client, headers, body=None, idem=None) -> httpx.Response:
    return await client.post(
        "/api/v1/payouts", json=body or sepa_body(), headers={**headers, **(idem or key())}
    )


class TestCreatePayout:
    async def test_no_token_is_401(self, client):
        r = await client.post("/api/v1/payouts", json=sepa_body(), headers=key())
        assert r.status_code == 401 and r.json()["type"] == "unauthorized"

    async def test_role_without_write_is_403(self, client, token_for, merchant):
        r = await create(client, token_for("auditor"), sepa_body(merchant_id=merchant))
        assert r.status_code == 403

    async def test_merchant_user_cannot_pay_out_for_another_merchant(self, client, as_merchant, other_merchant):
        r = await create(client, as_merchant, sepa_body(merchant_id=other_merchant))
        assert r.status_code == 403 and r.json()["type"] == "forbidden"

    async def test_platform_role_must_name_the_merchant(self, client, token_for):
        r = await create(client, token_for(OPS), sepa_body())
        assert r.status_code == 422 and "merchant_id" in r.json()["detail"]

    async def test_unknown_merchant_is_404(self, client, token_for):
        r = await create(client, token_for(OPS), sepa_body(merchant_id="mer_nope"))
        assert r.status_code == 404 and r.json()["type"] == "not_found"

    async def test_frozen_merchant_is_409(self, client, as_merchant, merchant, sessionmaker):
        async with sessionmaker() as s:
            await s.execute(
                controls.insert().values(kind="merchant_freeze", target=merchant, created_by="risk", reason="fraud")
            )
            await s.commit()
        r = await create(client, as_merchant)
        assert r.status_code == 409 and r.json()["type"] == "merchant_frozen"
        async with sessionmaker() as s:
            assert await s.scalar(select(func.count()).select_from(payouts)) == 0

    async def test_missing_idempotency_key_is_400(self, client, as_merchant):
        r = await client.post("/api/v1/payouts", json=sepa_body(), headers=as_merchant)
        assert r.status_code == 400 and r.json()["type"] == "idempotency_key_missing"

    async def test_too_long_idempotency_key_is_422(self, client, as_merchant):
        r = await create(client, as_merchant, idem={"Idempotency-Key": "k" * 256})
        assert r.status_code == 422 and "Idempotency-Key" in r.json()["detail"]

    @pytest.mark.parametrize(
        ("method", "currency", "beneficiary", "field"),
        [
            ("sepa", "EUR", {**SEPA, "iban": "DE89370400440532013001"}, "iban"),
            ("sepa", "EUR", {**SEPA, "bic": "NOTABIC"}, "bic"),
            ("sepa", "EUR", {"name": "x", "iban": SEPA["iban"]}, "bic"),
            ("ach", "USD", {**ACH, "routing_number": "021000022"}, "routing_number"),
            ("ach", "USD", {**ACH, "routing_number": "12345"}, "routing_number"),
            ("ach", "USD", {**ACH, "account_number": "123"}, "account_number"),
            ("ach", "USD", {**ACH, "account_type": "brokerage"}, "account_type"),
            ("wire", "USD", {"name": "x", "bic": "CHASUS33XXX"}, "wire"),
            ("wire", "USD", {**WIRE, "bic": "bad"}, "bic"),
            ("faster_payments", "GBP", {**FPS, "sort_code": "12345"}, "sort_code"),
            ("faster_payments", "GBP", {**FPS, "account_number": "1234567"}, "account_number"),
            ("mobile_money", "XOF", {**MOMO, "phone": "0771234567"}, "phone"),
            ("mobile_money", "XOF", {**MOMO, "operator": "acme"}, "operator"),
            ("sepa", "EUR", {**SEPA, "name": ""}, "name"),
        ],
    )
    async def test_invalid_beneficiary_is_422_naming_the_field(
        self, client, as_merchant, method, currency, beneficiary, field
    ):
        body = {"amount": "10", "currency": currency, "method": method, "beneficiary": beneficiary}
        r = await create(client, as_merchant, body)
        assert r.status_code == 422, r.text
        problem = r.json()
        assert problem["type"] == "validation_error"
        locs = [".".join(e["loc"]) for e in problem["errors"]]
        assert any(loc.startswith(f"body.beneficiary.{method}") and field in loc for loc in locs), locs

    @pytest.mark.parametrize(
        ("amount", "currency", "method", "beneficiary"),
        [
            ("10.001", "USD", "ach", ACH),
            ("10.5", "XOF", "mobile_money", MOMO),
            ("-5", "EUR", "sepa", SEPA),
            ("0", "EUR", "sepa", SEPA),
            ("1e3", "EUR", "sepa", SEPA),
            ("abc", "EUR", "sepa", SEPA),
        ],
    )
    async def test_bad_amount_is_422_on_amount(self, client, as_merchant, amount, currency, method, beneficiary):
        body = {"amount": amount, "currency": currency, "method": method, "beneficiary": beneficiary}
        r = await create(client, as_merchant, body)
        assert r.status_code == 422, r.text
        assert ["body", "amount"] in [e["loc"] for e in r.json()["errors"]]

    async def test_amount_as_json_number_is_422(self, client, as_merchant):
        r = await create(client, as_merchant, {**sepa_body(), "amount": 10.5})
        assert r.status_code == 422

    async def test_other_field_errors_are_422(self, client, as_merchant):
        cases = [
            {**sepa_body(), "currency": "ZZZ"},
            {**sepa_body(), "priority": "yesterday"},
            {**sepa_body(), "method": "carrier_pigeon"},
            {**sepa_body(), "description": "x" * 141},
            {**sepa_body(), "metadata": {f"k{i}": "v" for i in range(21)}},
            {**sepa_body(), "metadata": {"k": 1}},
            {**sepa_body(), "currency": "USD"},  # sepa does not carry USD
            {**sepa_body(), "beneficiary": {**SEPA, "type": "ach"}},
        ]
        for body in cases:
            r = await create(client, as_merchant, body)
            assert r.status_code == 422, (body, r.text)

    async def test_creates_a_pending_payout_and_starts_its_workflow(
        self, client, as_merchant, merchant, temporal_client, sessionmaker, settings
    ):
        body = sepa_body("100.50", description="invoice 42", metadata={"order": "42"}, priority="instant")
        r = await create(client, as_merchant, body)
        assert r.status_code == 201, r.text
        p = r.json()
        assert p["id"].startswith("po_") and p["merchant_id"] == merchant
        assert p["status"] == "pending"
        assert (p["amount"], p["amount_minor"], p["currency"]) == ("100.50", 10050, "EUR")
        assert p["rail"] == "sepa_instant" and p["priority"] == "instant"
        assert p["fee_minor"] == 50 + (10050 * 5 + 5000) // 10000 and p["fee"] == "0.55"
        assert p["beneficiary"] == {
            "type": "sepa", "name": "Ada Lovelace", "last4": "3000", "bic": "COBADEFFXXX", "country": "DE",
        }
        assert "DE89370400440532013000" not in r.text
        assert p["metadata"] == {"order": "42"} and p["description"] == "invoice 42"
        assert p["links"]["self"] == f"/api/v1/payouts/{p['id']}"
        assert p["links"]["temporal_ui"].endswith(f"/workflows/{payout_workflow_id(p['id'])}")

        desc = await temporal_client.get_workflow_handle(payout_workflow_id(p["id"])).describe()
        assert desc.workflow_type == "PayoutWorkflow"
        assert desc.task_queue == settings.temporal_task_queue
        from core.platform.names import search_attribute_keys

        keys = search_attribute_keys()
        sa = desc.typed_search_attributes
        assert sa.get(keys["MerchantId"]) == merchant and sa.get(keys["AmountMinor"]) == 10050
        assert sa.get(keys["PayoutStatus"]) == "pending" and sa.get(keys["Rail"]) == "sepa_instant"

        async with sessionmaker() as s:
            row = (await s.execute(select(payouts).where(payouts.c.id == p["id"]))).mappings().one()
        assert b"DE89370400440532013000" not in row["beneficiary_encrypted"]

    async def test_the_answer_and_the_created_event_are_the_stored_row(self, client, as_merchant, sessionmaker, settings):
        # create_payout answers without reading the row back (one statement writes it): the row it
        # answers from is its values plus NEW_PAYOUT_DEFAULTS, which must be the table's defaults.
        from core.payouts.service import NEW_PAYOUT_DEFAULTS
        from core.payouts.view import PayoutOut, payout_view
        from core.platform.tables import events, payout_events

        r = await create(client, as_merchant, sepa_body("12.34", priority="instant"))
        assert r.status_code == 201, r.text
        async with sessionmaker() as s:
            row = dict((await s.execute(select(payouts).where(payouts.c.id == r.json()["id"]))).mappings().one())
            event = (await s.execute(select(events).where(events.c.payout_id == row["id"]))).mappings().one()
            audit = (await s.execute(select(payout_events).where(payout_events.c.payout_id == row["id"]))).mappings().all()
        assert r.json() == PayoutOut.model_validate(payout_view(row, settings)).model_dump(mode="json")
        assert event["data"] == r.json() and event["type"] == "payout.created" and event["payout_version"] == 1
        assert [(a["sequence"], a["from_status"], a["to_status"]) for a in audit] == [(1, None, "pending")]
        explicit = {"id", "merchant_id", "idempotency_key", "amount_minor", "currency", "fee_minor", "method",
                    "priority", "rail", "status", "beneficiary_encrypted", "beneficiary_masked", "description",
                    "metadata", "created_at", "updated_at"}
        assert set(payouts.c.keys()) == explicit | set(NEW_PAYOUT_DEFAULTS)
        assert {k: row[k] for k in set(NEW_PAYOUT_DEFAULTS) - explicit} == {
            k: v for k, v in NEW_PAYOUT_DEFAULTS.items() if k not in explicit}
        assert row["created_at"] == row["updated_at"]

    async def test_replay_returns_the_original_and_a_changed_body_is_422(self, client, as_merchant):
        idem = key()
        first = await create(client, as_merchant, sepa_body("10"), idem)
        replay = await create(client, as_merchant, sepa_body("10"), idem)
        assert first.status_code == 201 and replay.status_code == 200
        assert replay.json() == first.json()
        changed = await create(client, as_merchant, sepa_body("11"), idem)
        assert changed.status_code == 422 and changed.json()["type"] == "idempotency_key_reused"

    async def test_keys_are_per_merchant(self, client, as_merchant, token_for, other_merchant):
        idem = key()
        a = await create(client, as_merchant, sepa_body("10"), idem)
        b = await create(client, token_for("merchant_admin", merchant_id=other_merchant), sepa_body("10"), idem)
        assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]

    async def test_50_concurrent_requests_over_10_keys_make_exactly_10_payouts(
        self, client, as_merchant, sessionmaker
    ):
        keys = [uuid.uuid4().hex for _ in range(10)]
        requests = [(keys[i % 10], sepa_body(f"{10 + i % 10}.00")) for i in range(50)]
        responses = await asyncio.gather(
            *(create(client, as_merchant, body, {"Idempotency-Key": k}) for k, body in requests)
        )
        by_key: dict[str, list[httpx.Response]] = {}
        for (k, _), r in zip(requests, responses):
            assert r.status_code in (200, 201), r.text
            by_key.setdefault(k, []).append(r)
        for k, rs in by_key.items():
            assert len({r.json()["id"] for r in rs}) == 1
            assert sorted(r.status_code for r in rs) == [200] * 4 + [201]
            assert all(r.json() == rs[0].json() for r in rs)
        async with sessionmaker() as s:
            assert await s.scalar(select(func.count()).select_from(payouts)) == 10
        replay = await create(client, as_merchant, requests[0][1], {"Idempotency-Key": requests[0][0]})
        assert replay.status_code == 200
        assert replay.json() == next(r.json() for r in by_key[requests[0][0]] if r.status_code == 201)

    async def test_a_payout_is_created_while_temporal_is_down_and_the_sweeper_starts_it(
        self, settings, temporal_client, as_merchant, sessionmaker
    ):
        from api.app import create_app
        from core.payouts.service import sweep_unstarted_payouts

        down = settings.model_copy(update={"temporal_address": "127.0.0.1:1"})
        app = create_app(down)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                r = await create(c, as_merchant)
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        async with sessionmaker() as s:
            assert await s.scalar(select(payouts.c.workflow_started_at).where(payouts.c.id == pid)) is None
            assert await sweep_unstarted_payouts(sessionmaker, temporal_client, settings, older_than_seconds=60) == 0
        assert await sweep_unstarted_payouts(sessionmaker, temporal_client, settings, older_than_seconds=0) == 1
        await temporal_client.get_workflow_handle(payout_workflow_id(pid)).describe()
        async with sessionmaker() as s:
            assert await s.scalar(select(payouts.c.workflow_started_at).where(payouts.c.id == pid)) is not None
        assert await sweep_unstarted_payouts(sessionmaker, temporal_client, settings, older_than_seconds=0) == 0

    async def test_a_replay_heals_a_payout_whose_workflow_never_started(
        self, client, as_merchant, settings, temporal_client, sessionmaker
    ):
        from api.app import create_app

        down = settings.model_copy(update={"temporal_address": "127.0.0.1:1"})
        app = create_app(down)
        idem = key()
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                first = await create(c, as_merchant, idem=idem)
        replay = await create(client, as_merchant, idem=idem)
        assert replay.status_code == 200 and replay.json() == first.json()
        await temporal_client.get_workflow_handle(payout_workflow_id(first.json()["id"])).describe()


class TestListPayouts:
    async def test_no_token_is_401(self, client):
        assert (await client.get("/api/v1/payouts")).status_code == 401

    async def test_merchant_user_naming_another_merchant_is_403(self, client, as_merchant, other_merchant):
        r = await client.get("/api/v1/payouts", params={"merchant_id": other_merchant}, headers=as_merchant)
        assert r.status_code == 403

    async def test_bad_limit_and_cursor_are_422(self, client, as_merchant):
        assert (await client.get("/api/v1/payouts?limit=0", headers=as_merchant)).status_code == 422
        assert (await client.get("/api/v1/payouts?limit=201", headers=as_merchant)).status_code == 422
        assert (await client.get("/api/v1/payouts?cursor=zzz", headers=as_merchant)).status_code == 422

    async def test_scoped_filtered_and_paginated(self, client, as_merchant, token_for, other_merchant, sessionmaker):
        mine = [(await create(client, as_merchant, sepa_body(f"{i + 1}.00"))).json()["id"] for i in range(5)]
        theirs = await create(
            client, token_for("merchant_admin", merchant_id=other_merchant),
            {"amount": "5", "currency": "USD", "method": "ach", "beneficiary": ACH},
        )
        assert theirs.status_code == 201
        async with sessionmaker() as s:
            await s.execute(update(payouts).where(payouts.c.id == mine[0]).values(status="settled"))
            await s.commit()

        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/api/v1/payouts", params=params, headers=as_merchant)).json()
            seen += [p["id"] for p in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(mine))  # newest first, each exactly once, none of theirs

        def ids(r):
            assert r.status_code == 200, r.text
            return {p["id"] for p in r.json()["data"]}

        assert ids(await client.get("/api/v1/payouts?status=settled", headers=as_merchant)) == {mine[0]}
        assert ids(await client.get(
            "/api/v1/payouts", params={"amount_minor_min": 200, "amount_minor_max": 300}, headers=as_merchant
        )) == {mine[1], mine[2]}
        assert ids(await client.get("/api/v1/payouts?method=ach", headers=as_merchant)) == set()
        ops = token_for(OPS)
        assert ids(await client.get("/api/v1/payouts?method=ach", headers=ops)) == {theirs.json()["id"]}
        assert ids(await client.get("/api/v1/payouts?rail=sepa", headers=ops)) == set(mine)
        assert ids(await client.get(
            "/api/v1/payouts", params={"created_from": "2000-01-01T00:00:00Z", "created_to": "2001-01-01T00:00:00Z"},
            headers=ops,
        )) == set()


class TestGetPayout:
    async def test_no_token_is_401(self, client):
        assert (await client.get("/api/v1/payouts/po_x")).status_code == 401

    async def test_unknown_is_404(self, client, as_merchant):
        r = await client.get("/api/v1/payouts/po_nope", headers=as_merchant)
        assert r.status_code == 404 and r.json()["type"] == "not_found"

    async def test_another_merchants_payout_is_404_and_not_listed(self, client, as_merchant, token_for, other_merchant):
        theirs = (await create(
            client, token_for("merchant_admin", merchant_id=other_merchant),
            {"amount": "5", "currency": "USD", "method": "ach", "beneficiary": ACH},
        )).json()["id"]
        r = await client.get(f"/api/v1/payouts/{theirs}", headers=as_merchant)
        assert r.status_code == 404
        assert (await client.get(f"/api/v1/payouts/{theirs}/events", headers=as_merchant)).status_code == 404
        listed = (await client.get("/api/v1/payouts", headers=as_merchant)).json()["data"]
        assert theirs not in {p["id"] for p in listed}

    async def test_returns_the_row_with_workflow_state_or_why_not(self, client, as_merchant):
        created = (await create(client, as_merchant)).json()
        r = await client.get(f"/api/v1/payouts/{created['id']}", headers=as_merchant)
        assert r.status_code == 200, r.text
        body = r.json()
        assert {k: body[k] for k in created} == created
        # no worker runs in this test: the workflow cannot answer its query
        assert body["workflow"] is None and body["workflow_error"]


class TestPayoutEvents:
    async def test_no_token_is_401(self, client):
        assert (await client.get("/api/v1/payouts/po_x/events")).status_code == 401

    async def test_unknown_is_404(self, client, as_merchant):
        assert (await client.get("/api/v1/payouts/po_nope/events", headers=as_merchant)).status_code == 404

    async def test_the_created_event(self, client, as_merchant):
        pid = (await create(client, as_merchant)).json()["id"]
        r = await client.get(f"/api/v1/payouts/{pid}/events", headers=as_merchant)
        assert r.status_code == 200
        [event] = r.json()
        assert event["sequence"] == 1 and event["to_status"] == "pending" and event["from_status"] is None
        assert event["actor"] == "dev-merchant_admin"


class TestCancelPayout:
    async def test_no_token_is_401(self, client):
        assert (await client.post("/api/v1/payouts/po_x/cancel", json={"reason": "x"})).status_code == 401

    async def test_merchant_user_is_403(self, client, as_merchant):
        r = await client.post("/api/v1/payouts/po_x/cancel", json={"reason": "x"}, headers=as_merchant)
        assert r.status_code == 403

    async def test_unknown_is_404(self, client, token_for):
        r = await client.post("/api/v1/payouts/po_nope/cancel", json={"reason": "x"}, headers=token_for(OPS))
        assert r.status_code == 404

    async def test_reason_is_required(self, client, token_for):
        r = await client.post("/api/v1/payouts/po_x/cancel", json={}, headers=token_for(OPS))
        assert r.status_code == 422

    async def test_after_submission_is_409(self, client, as_merchant, token_for, sessionmaker):
        pid = (await create(client, as_merchant)).json()["id"]
        async with sessionmaker() as s:
            await s.execute(update(payouts).where(payouts.c.id == pid).values(status="submitted"))
            await s.commit()
        r = await client.post(f"/api/v1/payouts/{pid}/cancel", json={"reason": "oops"}, headers=token_for(OPS))
        assert r.status_code == 409 and r.json()["type"] == "invalid_state"
        assert "submitted" in r.json()["detail"]


class TestRetryPayout:
    async def test_no_token_is_401(self, client):
        assert (await client.post("/api/v1/payouts/po_x/retry")).status_code == 401

    async def test_merchant_user_is_403(self, client, as_merchant):
        assert (await client.post("/api/v1/payouts/po_x/retry", headers=as_merchant)).status_code == 403

    async def test_unknown_is_404(self, client, token_for):
        assert (await client.post("/api/v1/payouts/po_nope/retry", headers=token_for(OPS))).status_code == 404

    async def test_a_settled_payout_is_409(self, client, as_merchant, token_for, sessionmaker):
        pid = (await create(client, as_merchant)).json()["id"]
        async with sessionmaker() as s:
            await s.execute(update(payouts).where(payouts.c.id == pid).values(status="settled"))
            await s.commit()
        r = await client.post(f"/api/v1/payouts/{pid}/retry", json={"reason": "again"}, headers=token_for(OPS))
        assert r.status_code == 409 and r.json()["type"] == "invalid_state"


class TestPayoutStats:
    async def test_no_token_is_401(self, client):
        assert (await client.get("/api/v1/payouts/stats/summary")).status_code == 401

    async def test_merchant_user_naming_another_merchant_is_403(self, client, as_merchant, other_merchant):
        r = await client.get("/api/v1/payouts/stats/summary", params={"merchant_id": other_merchant}, headers=as_merchant)
        assert r.status_code == 403

    async def test_counts_amounts_and_settlement_time(self, client, as_merchant, token_for, other_merchant, sessionmaker):
        ids = [(await create(client, as_merchant, sepa_body(a))).json()["id"] for a in ("10.00", "20.00", "30.00")]
        await create(
            client, token_for("merchant_admin", merchant_id=other_merchant),
            {"amount": "5", "currency": "USD", "method": "ach", "beneficiary": ACH},
        )
        async with sessionmaker() as s:
            await s.execute(
                update(payouts).where(payouts.c.id.in_(ids[:2]))
                .values(status="settled", settled_at=payouts.c.created_at + func.make_interval(0, 0, 0, 0, 0, 0, 90))
            )
            await s.commit()
        r = await client.get("/api/v1/payouts/stats/summary", headers=as_merchant)
        assert r.status_code == 200, r.text
        stats = r.json()
        assert stats["total_count"] == 3 and stats["by_status"] == {"pending": 1, "settled": 2}
        settled = next(g for g in stats["by_status_currency"] if g["status"] == "settled")
        assert (settled["count"], settled["amount"], settled["amount_minor"]) == (2, "30.00", 3000)
        assert stats["average_settlement_seconds"] == pytest.approx(90)
        everyone = (await client.get("/api/v1/payouts/stats/summary", headers=token_for(OPS))).json()
        assert everyone["total_count"] == 4


# --- with a worker: the API driving real PayoutWorkflows through the sandbox bank ---------------


async def wait_for(client, headers, payout_id: str, statuses: set[str], timeout: float = 30.0) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        body = (await client.get(f"/api/v1/payouts/{payout_id}", headers=headers)).json()
        if body["status"] in statuses:
            return body
        assert loop.time() < deadline, f"payout stayed {body['status']}, wanted {statuses}: {body}"
        await asyncio.sleep(0.1)


class TestOpsOnRunningPayouts:
    @pytest.fixture
    def settings(self, settings):
        # fast retries so a payout the sandbox bank always refuses with 503 reaches dlq in a second
        return settings.model_copy(update={
            "payout_retry_initial_seconds": 0.1, "payout_retry_max_interval_seconds": 0.2,
            "payout_retry_max_attempts": 2, "payout_settlement_poll_seconds": 0.5,
        })

    async def fund(self, client, token_for, merchant, amount="1000.00"):
        r = await client.post(
            f"/api/v1/merchants/{merchant}/funding", json={"amount": amount, "currency": "EUR"},
            headers={**token_for(OPS), **key()},
        )
        assert r.status_code == 201, r.text

    async def test_a_payout_settles_and_its_detail_shows_the_live_state(
        self, client, worker, token_for, merchant, as_merchant
    ):
        await self.fund(client, token_for, merchant)
        created = (await create(client, as_merchant, sepa_body("100.00", priority="instant"))).json()
        done = await wait_for(client, as_merchant, created["id"], {"settled"})
        assert done["workflow"]["status"] == "settled" and done["workflow"]["hold_status"]
        assert done["workflow_error"] is None
        balances = (await client.get("/api/v1/balances", headers=as_merchant)).json()
        assert balances[0]["available_minor"] == 100_000 - 10_000 - created["fee_minor"]
        assert balances[0]["held_minor"] == 0
        events = (await client.get(f"/api/v1/payouts/{created['id']}/events", headers=as_merchant)).json()
        assert [e["to_status"] for e in events][0] == "pending" and events[-1]["to_status"] == "settled"
        stats = (await client.get("/api/v1/payouts/stats/summary", headers=as_merchant)).json()
        assert stats["by_status"] == {"settled": 1} and stats["average_settlement_seconds"] > 0

    async def test_insufficient_funds_is_a_rejected_payout(self, client, worker, as_merchant):
        created = await create(client, as_merchant, sepa_body("100.00"))
        assert created.status_code == 201
        done = await wait_for(client, as_merchant, created.json()["id"], {"rejected"})
        assert done["failure_code"] == "insufficient_funds"

    async def test_dlq_retry_then_cancel_through_the_api(
        self, client, worker, token_for, merchant, as_merchant
    ):
        await self.fund(client, token_for, merchant)
        # the sandbox bank answers 503 forever to an account ending in 0036
        always_503 = {**SEPA, "iban": str(IBAN.generate("DE", bank_code="37040044", account_code="0532010036"))}
        pid = (await create(client, as_merchant, sepa_body("10.00", beneficiary=always_503, priority="instant"))).json()["id"]
        await wait_for(client, as_merchant, pid, {"dlq"})
        ops = token_for("risk_ops")

        r = await client.post(f"/api/v1/payouts/{pid}/retry", json={"reason": "bank says fixed"}, headers=ops)
        assert r.status_code == 200, r.text
        assert r.json()["decision"]["accepted"] is True and r.json()["payout"]["id"] == pid
        await wait_for(client, as_merchant, pid, {"dlq"})  # still 503: back in dlq

        r = await client.post(f"/api/v1/payouts/{pid}/cancel", json={"reason": "merchant asked"}, headers=ops)
        assert r.status_code == 200, r.text
        assert r.json()["decision"] == {"accepted": True, "status": "cancelled", "detail": r.json()["decision"]["detail"]}
        await wait_for(client, as_merchant, pid, {"cancelled"})
        balances = (await client.get("/api/v1/balances", headers=as_merchant)).json()
        assert balances[0]["available_minor"] == 100_000 and balances[0]["held_minor"] == 0

        again = await client.post(f"/api/v1/payouts/{pid}/retry", headers=ops)
        assert again.status_code == 409 and again.json()["type"] == "invalid_state"

    async def test_a_retry_outside_dlq_is_refused_by_the_workflow(
        self, client, worker, token_for, merchant, as_merchant, sessionmaker
    ):
        """The stored status says nothing against it, so the workflow's validator answers."""
        await self.fund(client, token_for, merchant)
        pid = (await create(client, as_merchant, sepa_body("10.00", priority="instant"))).json()["id"]
        await wait_for(client, as_merchant, pid, {"settled"})
        async with sessionmaker() as s:  # pretend the row lags behind the workflow
            await s.execute(update(payouts).where(payouts.c.id == pid).values(status="submitted"))
            await s.commit()
        r = await client.post(f"/api/v1/payouts/{pid}/retry", headers=token_for(OPS))
        assert r.status_code == 409 and r.json()["type"] == "invalid_state"
        assert "only a payout in dlq" in r.json()["detail"]


async def test_an_expired_key_never_creates_a_second_payout(client, as_merchant, sessionmaker):
    from core.platform.tables import idempotency_keys

    idem = key()
    first = await create(client, as_merchant, sepa_body("10"), idem)
    assert first.status_code == 201
    async with sessionmaker() as s:
        await s.execute(update(idempotency_keys).values(expires_at=func.now() - func.make_interval(0, 0, 0, 1)))
        await s.commit()
    again = await create(client, as_merchant, sepa_body("10"), idem)
    assert again.status_code == 422 and again.json()["type"] == "idempotency_key_reused"
    assert first.json()["id"] in again.json()["detail"]
    async with sessionmaker() as s:
        assert await s.scalar(select(func.count()).select_from(payouts)) == 1
