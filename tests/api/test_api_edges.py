"""API edges (issue 16 item 3): inputs that used to answer 500, over the real app and real PostgreSQL."""

from __future__ import annotations

import uuid

import httpx
import pytest

OPS = "ops_admin"
BIG = str(2**64)


def _is_problem(r, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    assert r.json()["status"] == status


@pytest.fixture
async def merchant(client, token_for) -> str:
    body = {"name": "Acme", "default_currency": "EUR", "country": "FR"}
    r = await client.post("/api/v1/merchants", json=body, headers=token_for(OPS))
    assert r.status_code == 201, r.text
    return r.json()["id"]


class TestIntegerBounds:
    @pytest.mark.parametrize(
        "url",
        [
            f"/api/v1/transactions/{BIG}",
            f"/api/v1/transactions/-{BIG}",
            f"/api/v1/transactions?amount_minor_min={BIG}",
            f"/api/v1/transactions?amount_minor_max={2**63}",
            f"/api/v1/alerts/{BIG}",
        ],
    )
    async def test_beyond_int64_is_422(self, client, token_for, url):
        _is_problem(await client.get(url, headers=token_for(OPS)), 422)

    async def test_a_long_all_digit_search_is_text_not_an_integer(self, client, token_for):
        r = await client.get("/api/v1/transactions?q=1234567890123456789012", headers=token_for(OPS))
        assert r.status_code == 200, r.text

    async def test_body_amount_beyond_int64_is_422(self, client, token_for, merchant):
        for amount in (2**64, str(2**63), "92233720368547758.08"):
            r = await client.post(
                f"/api/v1/merchants/{merchant}/funding", json={"amount": amount, "currency": "EUR"},
                headers={**token_for(OPS), "Idempotency-Key": uuid.uuid4().hex},
            )
            assert r.status_code in (400, 422), r.text
            assert r.headers["content-type"].startswith("application/problem+json")

    async def test_one_payment_moves_at_most_a_trillion_euros_so_sums_stay_within_bigint(self, client, token_for,
                                                                                           merchant):
        """Found by an adversarial run: a funding of 92233720368547758.07 EUR was accepted (201) and
        filled the treasury account, so every later EUR funding of any merchant answered 500; a payout
        that large was accepted and its hold could never be placed."""
        def fund(amount: str):
            return client.post(f"/api/v1/merchants/{merchant}/funding", json={"amount": amount, "currency": "EUR"},
                               headers={**token_for(OPS), "Idempotency-Key": uuid.uuid4().hex})

        for amount in ("92233720368547758.07", "1000000000000.01"):
            r = await fund(amount)
            assert r.status_code == 422 and "too large" in r.text, r.text
        assert (await fund("1000000000000.00")).status_code == 201  # the limit itself
        assert (await fund("100.00")).status_code == 201  # and funding goes on
        r = await client.post("/api/v1/payouts", json={
            "amount": "92233720368547758.07", "currency": "EUR", "method": "sepa",
            "beneficiary": {"type": "sepa", "name": "Big", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"}},
            headers={**token_for("merchant_admin", merchant_id=merchant), "Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 422 and "too large" in r.text, r.text


class TestControlCharacters:
    @pytest.mark.parametrize(
        "url",
        [
            "/api/v1/transactions/ab%00c",
            "/api/v1/merchants/mer%00x",
            "/api/v1/transactions?q=a%00b",
            "/api/v1/transactions?merchant_id=%01",
        ],
    )
    async def test_in_path_and_query_is_422(self, client, token_for, url):
        _is_problem(await client.get(url, headers=token_for(OPS)), 422)

    async def test_in_body_is_422(self, client, token_for):
        body = {"name": "Ac\u0000me", "default_currency": "EUR", "country": "FR"}
        r = await client.post("/api/v1/merchants", json=body, headers=token_for(OPS))
        _is_problem(r, 422)
        assert "control characters" in r.json()["detail"]

    async def test_malformed_json_is_a_422_problem(self, client, token_for):
        r = await client.post(
            "/api/v1/merchants", content=b"{not json",
            headers={**token_for(OPS), "content-type": "application/json"},
        )
        _is_problem(r, 422)


class TestYears:
    @pytest.mark.parametrize(
        "value",
        ["0001-01-01T00:00:00%2B14:00", "9999-12-31T23:59:59-14:00", "10000-01-01T00:00:00Z", "0000-01-01"],
    )
    async def test_years_outside_1_9999_are_422(self, client, token_for, value):
        r = await client.get(f"/api/v1/transactions?occurred_from={value}", headers=token_for(OPS))
        _is_problem(r, 422)


class TestFundingKey:
    @pytest.mark.parametrize("length", [230, 255])
    async def test_a_key_up_to_255_chars_works_once(self, client, token_for, merchant, length):
        headers = {**token_for(OPS), "Idempotency-Key": "k" * (length - 8) + uuid.uuid4().hex[:8]}
        url = f"/api/v1/merchants/{merchant}/funding"
        first = await client.post(url, json={"amount": "1.00", "currency": "EUR"}, headers=headers)
        assert first.status_code == 201, first.text
        again = await client.post(url, json={"amount": "1.00", "currency": "EUR"}, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()

    async def test_a_longer_key_is_422(self, client, token_for, merchant):
        headers = {**token_for(OPS), "Idempotency-Key": "k" * 256}
        r = await client.post(
            f"/api/v1/merchants/{merchant}/funding", json={"amount": "1.00", "currency": "EUR"}, headers=headers
        )
        _is_problem(r, 422)


class TestSecurityHeaders:
    async def test_api_json_console_and_docs(self, client, token_for):
        api = await client.get("/api/v1/transactions", headers=token_for(OPS))
        assert api.status_code == 200
        assert api.headers["cache-control"] == "no-store"
        for r in (api, await client.get("/console/"), await client.get("/docs"), await client.get("/health/live")):
            assert r.headers["x-content-type-options"] == "nosniff"
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
            assert r.headers["referrer-policy"] == "no-referrer"
            assert "strict-transport-security" not in r.headers  # plain http in dev
        err = await client.get("/api/v1/transactions/ab%00c", headers=token_for(OPS))
        assert err.headers["x-content-type-options"] == "nosniff"


class TestSepaBeneficiary:
    SEPA = {"name": "Ada Lovelace", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"}

    @pytest.mark.parametrize(
        ("beneficiary", "words"),
        [
            ({"iban": "BR1800360305000010009795493C1", "bic": "BRASBRRJXXX"}, "not in the SEPA scheme"),
            ({"bic": "BNPAFRPPXXX"}, "BIC BNPAFRPPXXX is for country FR"),
        ],
    )
    async def test_outside_the_scheme_is_422(self, client, token_for, merchant, beneficiary, words):
        body = {"amount": "10.00", "currency": "EUR", "method": "sepa", "beneficiary": {**self.SEPA, **beneficiary}}
        r = await client.post(
            "/api/v1/payouts", json=body,
            headers={**token_for("merchant_admin", merchant_id=merchant), "Idempotency-Key": uuid.uuid4().hex},
        )
        _is_problem(r, 422)
        assert words in r.text

    def test_the_scheme_territories(self):
        from core.rails.sepa import sepa_problem

        assert sepa_problem("DE89370400440532013000", "COBADEFFXXX") is None
        assert sepa_problem("FR7630006000011234567890189", "BDAFGPGPXXX") is None  # Guadeloupe bank, FR IBAN
        assert sepa_problem("GB29NWBK60161331926819", "RBOSGGSXXXX") is None  # Guernsey
        assert sepa_problem("NO9386011117947", "DNBANOKKXXX") is None
        assert "SEPA" in sepa_problem("US12345678", None)
        assert "BIC" in sepa_problem("DE89370400440532013000", "BNPAFRPPXXX")


async def test_the_connection_stays_usable_after_bad_requests(served, token_for):
    """One keep-alive connection: bad requests answer problem documents and the server keeps the
    connection open (after a 500 it closed it)."""
    async with httpx.AsyncClient(base_url=served, limits=httpx.Limits(max_connections=1)) as c:

        def local_port(r: httpx.Response) -> int:
            return r.extensions["network_stream"].get_extra_info("client_addr")[1]

        first = await c.get("/health")
        port = local_port(first)
        for url in (f"/api/v1/transactions/{BIG}", "/api/v1/transactions?q=a%00b",
                    "/api/v1/transactions?occurred_from=0001-01-01T00:00:00%2B14:00"):
            bad = await c.get(url, headers=token_for(OPS))
            assert bad.status_code == 422, bad.text
            assert bad.headers.get("connection", "").lower() != "close"
        good = await c.get("/api/v1/transactions", headers=token_for(OPS))
        assert good.status_code == 200
        assert local_port(good) == port  # the same TCP connection all along


async def test_the_openapi_documents_problem_documents_and_real_statuses(client):
    spec = (await client.get("/openapi.json")).json()
    ops = [(p, m, op) for p, item in spec["paths"].items() for m, op in item.items() if m in ("get", "post", "put", "patch", "delete")]
    for path, method, op in ops:
        for status, resp in op["responses"].items():
            if status[0] in "45":
                assert list(resp["content"]) == ["application/problem+json"], (path, method, status)
        if path.startswith("/api/v1"):
            assert {"422", "503"} <= set(op["responses"]), (path, method)
            if op.get("security"):
                assert {"401", "403"} <= set(op["responses"]), (path, method)
    assert spec["paths"]["/api/v1/sse/updates"]["get"]["security"]
    assert "requestBody" in spec["paths"]["/api/v1/reconciliation/statements"]["post"]
    assert "text/csv" in str(spec["paths"])


async def test_routes_are_built_at_startup_not_by_the_first_request(settings, temporal_client, token_for,
                                                                     monkeypatch):
    """api/app.py warm_routes: the lifespan builds every router's effective routes (FastAPI builds
    them lazily, on the first request matched against a router: ~0.3 s the first callers wait for).
    An app as `payops up` makes it (the suite's `app` fixture skips the warm-up)."""
    import httpx
    from fastapi import routing

    from api.app import create_app

    built: list[str] = []
    original = routing._EffectiveRouteContext.from_api_route

    def counting(*args, **kwargs):
        built.append(kwargs.get("original_route", args[0] if args else None).path)
        return original(*args, **kwargs)

    application = create_app(settings, temporal_client=temporal_client)
    async with application.router.lifespan_context(application):
        monkeypatch.setattr(routing._EffectiveRouteContext, "from_api_route", staticmethod(counting))
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://payops.test") as client:
            for url in ("/api/v1/payouts", "/api/v1/ops/actions", "/api/v1/agents", "/api/v1/recommendations"):
                r = await client.get(url, headers=token_for(OPS))
                assert r.status_code < 500, r.text
    assert built == []
