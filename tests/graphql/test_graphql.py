"""The GraphQL read API against real PostgreSQL, Redis and Temporal: the same answers as REST for
the same tenant and window, the same tenant scoping (an authorization matrix like REST's), and
its limits (depth, aliases, page size, introspection only outside prod)."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import insert, select

from api.app import create_app
from graphql import GraphQLError

from api.routers.graphql import _masked, build_schema
from core.platform.errors import Forbidden
from core.platform.tables import payouts as payouts_table, webhook_attempts, webhook_endpoints
from core.webhooks import events as webhook_events
from core.webhooks.models import EventType
from tests.dashboards.test_dashboard_api import _period, data  # noqa: F401 — the dashboards' data fixture
from tests.factories import create_merchant, create_payout_row

GRAPHQL = "/api/v1/graphql"

PAYOUT_FIELDS = ("id merchantId status amount amountMinor currency fee feeMinor method priority rail connector "
                 "settlementTargetAt beneficiary description metadata failureCode failureMessage createdAt updatedAt")


def snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


async def gql(client, headers: dict, query: str, variables: dict | None = None) -> dict:
    r = await client.post(GRAPHQL, json={"query": query, "variables": variables or {}}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def error_messages(answer: dict) -> list[str]:
    return [e["message"] for e in answer.get("errors") or []]


@pytest.fixture
async def tenants(sessionmaker, settings):
    """Two merchants, funded, each with two payouts."""
    a = await create_merchant(sessionmaker, funded_minor=500_000)
    b = await create_merchant(sessionmaker, funded_minor=700_000)
    payouts = {m: [(await create_payout_row(sessionmaker, settings, merchant_id=m, amount_minor=n)).payout_id
                   for n in (1_000, 2_000)] for m in (a, b)}
    return a, b, payouts


class TestSameAnswersAsRest:
    async def test_payouts_list(self, client, token_for, tenants):
        a, _, payouts = tenants
        headers = token_for("merchant_viewer", merchant_id=a)
        rest = (await client.get("/api/v1/payouts", headers=headers)).json()["data"]
        answer = await gql(client, headers, f"{{ payouts(first: 50) {{ data {{ {PAYOUT_FIELDS} }} nextCursor }} }}")
        assert "errors" not in answer
        graph = answer["data"]["payouts"]["data"]
        assert [p["id"] for p in graph] == [p["id"] for p in rest] and {p["id"] for p in graph} == set(payouts[a])
        for g, r in zip(graph, rest):
            assert {snake(k): v for k, v in g.items()} == {snake(k): r[snake(k)] for k in g}

    async def test_payouts_pages_by_cursor(self, client, token_for, tenants):
        a, _, payouts = tenants
        headers = token_for("merchant_viewer", merchant_id=a)
        first = (await gql(client, headers, "{ payouts(first: 1) { data { id } nextCursor } }"))["data"]["payouts"]
        second = (await gql(client, headers, "query($c: String) { payouts(first: 1, after: $c) { data { id } nextCursor } }",
                            {"c": first["nextCursor"]}))["data"]["payouts"]
        rest = (await client.get("/api/v1/payouts", params={"limit": 1, "cursor": first["nextCursor"]},
                                 headers=headers)).json()
        assert [p["id"] for p in second["data"]] == [p["id"] for p in rest["data"]]
        assert {first["data"][0]["id"], second["data"][0]["id"]} == set(payouts[a])
        assert second["nextCursor"] is None

    async def test_settlement(self, client, token_for, tenants):
        a, _, _ = tenants
        headers = token_for("merchant_viewer", merchant_id=a)
        query = ("{ settlement { merchantId kycStatus canWithdraw currencies { currency available availableMinor held "
                 "heldMinor pending pendingMinor inFlight inFlightMinor pendingPayouts inFlightPayouts nextSettlementAt "
                 "rails { rail methods nextCutoffAt nextSettlementAt calendar timezone continuous } } } }")
        answer = await gql(client, headers, query)
        rest = (await client.get(f"/api/v1/merchants/{a}/settlement", headers=headers)).json()
        assert "errors" not in answer, answer
        graph = answer["data"]["settlement"]

        def plain(x):
            if isinstance(x, dict):
                return {snake(k): plain(v) for k, v in x.items()}
            return [plain(v) for v in x] if isinstance(x, list) else x

        graph = plain(graph)
        # the two reads are moments apart: each rail's dates are computed from "now", so compare
        # everything but those, then the dates' rails and order
        def without_times(c):
            return {**{k: v for k, v in c.items() if k not in ("rails", "next_settlement_at")},
                    "rails": [{k: v for k, v in r.items() if k not in ("next_cutoff_at", "next_settlement_at")}
                              for r in c["rails"]]}

        assert graph["merchant_id"] == a and graph["kyc_status"] == rest["kyc_status"]
        assert graph["can_withdraw"] == rest["can_withdraw"]
        assert [without_times(c) for c in graph["currencies"]] == [
            without_times({k: c[k] for k in graph["currencies"][0]}) for c in rest["currencies"]]
        assert graph["currencies"] and all(c["held_minor"] == c["pending_minor"] + c["in_flight_minor"]
                                           for c in graph["currencies"])
        assert sum(c["available_minor"] + c["held_minor"] for c in graph["currencies"]) == 500_000  # what was funded

    async def test_balances(self, client, token_for, tenants):
        a, _, _ = tenants
        headers = token_for("merchant_admin", merchant_id=a)
        rest = (await client.get("/api/v1/balances", headers=headers)).json()
        answer = await gql(client, headers, "{ balances { currency available held availableMinor heldMinor } }")
        assert [{snake(k): v for k, v in b.items()} for b in answer["data"]["balances"]] == rest
        assert rest and rest[0]["available_minor"] == 500_000

    async def test_overview_trends_breakdown_for_a_merchant_and_for_ops(self, client, token_for, data):  # noqa: F811
        window = _period()
        for headers, extra in ((token_for("merchant_viewer", merchant_id="m_a"), {}),
                               (token_for("finance_ops"), {"merchant_id": "m_b"})):
            variables = {"f": window["from"], "t": window["to"], "m": extra.get("merchant_id")}
            answer = await gql(client, headers, """query($f: DateTime, $t: DateTime, $m: String) {
                overview(from: $f, to: $t, merchantId: $m)
                trends(metric: "gmv", granularity: "day", from: $f, to: $t, merchantId: $m)
                breakdown(by: "status", from: $f, to: $t, merchantId: $m) }""", variables)
            assert "errors" not in answer, answer
            params = {**window, **extra}
            overview = (await client.get("/api/v1/dashboard/overview", params=params, headers=headers)).json()
            trends = (await client.get("/api/v1/metrics/trends", params={**params, "metric": "gmv"},
                                       headers=headers)).json()
            breakdown = (await client.get("/api/v1/metrics/breakdown", params={**params, "by": "status"},
                                          headers=headers)).json()
            assert answer["data"]["overview"] == overview and overview["kpis"]["transactions"]["value"] > 0
            assert answer["data"]["trends"] == trends
            assert answer["data"]["breakdown"] == breakdown

    async def test_transactions(self, client, token_for, data):  # noqa: F811
        headers = token_for("merchant_viewer", merchant_id="m_a")
        rest = (await client.get("/api/v1/transactions", params={"limit": 20}, headers=headers)).json()
        answer = await gql(client, headers, "{ transactions(first: 20) { data nextCursor } }")
        assert answer["data"]["transactions"] == {"data": rest["data"], "nextCursor": rest["next_cursor"]}
        assert rest["data"] and {t["merchant_id"] for t in rest["data"]} == {"m_a"}

    async def test_webhook_deliveries_with_their_attempts(self, client, token_for, tenants, sessionmaker):
        a, b, payouts = tenants
        endpoint_id = f"we_{a}"
        async with sessionmaker() as s, s.begin():
            await s.execute(insert(webhook_endpoints).values(  # the API would resolve the host first
                id=endpoint_id, merchant_id=a, url="https://example.com/hooks", event_types=[],
                secrets_encrypted=b"not used here"))
            for merchant in (a, b):
                row = dict((await s.execute(select(payouts_table).where(
                    payouts_table.c.id == payouts[merchant][0]))).mappings().one())
                event_id = await webhook_events.record_payout_event(s, row, event_type=EventType.PAYOUT_CREATED)
                if merchant == a:
                    mine = event_id
            await s.execute(insert(webhook_attempts).values(
                event_id=mine, endpoint_id=endpoint_id, merchant_id=a, workflow_id=f"wf-{mine}",
                attempt=1, url="https://example.com/hooks", outcome="failed", status_code=503, latency_ms=12,
                error="HTTP 503"))
        headers = token_for("merchant_viewer", merchant_id=a)
        answer = await gql(client, headers, """{ webhookDeliveries { nextCursor data { id type created payoutVersion
            data attempts { endpointId attempt outcome statusCode latencyMs error createdAt } } } }""")
        assert "errors" not in answer, answer
        graph = answer["data"]["webhookDeliveries"]
        rest = (await client.get("/api/v1/events", headers=headers)).json()
        assert [e["id"] for e in graph["data"]] == [e["id"] for e in rest["data"]] == [mine]
        detail = (await client.get(f"/api/v1/events/{mine}", headers=headers)).json()
        event = graph["data"][0]
        assert {snake(k): v for k, v in event.items() if k != "attempts"} == {
            k: v for k, v in detail.items() if k != "attempts"}
        assert [{snake(k): v for k, v in x.items()} for x in event["attempts"]] == [
            {k: v for k, v in x.items() if k != "response_excerpt"} for x in detail["attempts"]]
        assert event["attempts"][0]["statusCode"] == 503


class TestAuthorizationMatrix:
    """Merchant A's token never reaches merchant B's rows, whatever it asks."""

    @pytest.mark.parametrize("query", [
        "query($b: String) { payouts(merchantId: $b) { data { id } } }",
        "query($b: String) { balances(merchantId: $b) { currency } }",
        "query($b: String) { overview(merchantId: $b) }",
        "query($b: String) { trends(merchantId: $b) }",
        "query($b: String) { breakdown(by: \"status\", merchantId: $b) }",
        "query($b: String) { transactions(merchantId: $b) { data } }",
        "query($b: String) { webhookDeliveries(merchantId: $b) { data { id } } }",
        "query($b: String) { apiLogs(merchantId: $b) { data { id } } }",
        "query($b: String) { settlement(merchantId: $b) { merchantId } }",
    ])
    async def test_naming_another_merchant_is_forbidden(self, client, token_for, tenants, query):
        a, b, _ = tenants
        answer = await gql(client, token_for("merchant_admin", merchant_id=a), query, {"b": b})
        assert answer["data"] is None
        assert error_messages(answer) == ["you may only access your own merchant's data"]

    async def test_another_merchants_payout_id_is_not_found(self, client, token_for, tenants):
        a, b, payouts = tenants
        for payout_id in payouts[b]:
            answer = await gql(client, token_for("merchant_viewer", merchant_id=a),
                               "query($id: String!) { payout(id: $id) { id merchantId amount } }", {"id": payout_id})
            assert answer["data"] is None and payout_id in error_messages(answer)[0]
            assert "not found" in error_messages(answer)[0]
        own = await gql(client, token_for("merchant_viewer", merchant_id=a),
                        "query($id: String!) { payout(id: $id) { id merchantId } }", {"id": payouts[a][0]})
        assert own["data"]["payout"] == {"id": payouts[a][0], "merchantId": a}

    async def test_unfiltered_lists_hold_only_the_callers_rows(self, client, token_for, tenants):
        a, b, payouts = tenants
        answer = await gql(client, token_for("merchant_viewer", merchant_id=a),
                           "{ payouts(first: 200) { data { id merchantId } } balances { currency } }")
        assert {p["merchantId"] for p in answer["data"]["payouts"]["data"]} == {a}
        ops = await gql(client, token_for("ops_admin"), "{ payouts(first: 200) { data { id } } }")
        assert set(payouts[a]) | set(payouts[b]) <= {p["id"] for p in ops["data"]["payouts"]["data"]}

    async def test_a_role_without_the_permission_is_forbidden(self, client, token_for):
        answer = await gql(client, token_for("approver"), "{ balances(merchantId: \"mer_x\") { currency } }")
        assert answer["data"] is None and error_messages(answer) == ["your roles do not grant balances:read"]

    async def test_unauthenticated_is_401(self, client):
        r = await client.post(GRAPHQL, json={"query": "{ payouts { data { id } } }"})
        assert r.status_code == 401 and r.json()["type"] == "unauthorized"
        bad = await client.post(GRAPHQL, json={"query": "{ payouts { data { id } } }"},
                                headers={"Authorization": "Bearer not-a-jwt"})
        assert bad.status_code == 401


class TestLimits:
    async def test_depth_beyond_the_limit_is_refused_with_a_clear_error(self, settings, temporal_client, token_for):
        shallow = create_app(settings.model_copy(update={"graphql_max_depth": 2}), temporal_client=temporal_client)
        async with shallow.router.lifespan_context(shallow):
            transport = httpx.ASGITransport(app=shallow, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://payops.test") as c:
                answer = await gql(c, token_for("ops_admin"),
                                   "query Deep { webhookDeliveries { data { attempts { endpointId } } } }")
                ok = await gql(c, token_for("ops_admin"), "query Flat { payouts { nextCursor } }")
        assert answer.get("data") is None
        assert error_messages(answer) == ["'Deep' exceeds maximum operation depth of 2"]
        assert "errors" not in ok

    async def test_a_page_beyond_the_maximum_is_refused(self, client, token_for, settings):
        answer = await gql(client, token_for("ops_admin"),
                           f"{{ payouts(first: {settings.graphql_max_page_size + 1}) {{ data {{ id }} }} }}")
        assert error_messages(answer) == [f"first must be between 1 and {settings.graphql_max_page_size}"]

    async def test_too_many_aliases_are_refused(self, client, token_for, settings):
        aliases = " ".join(f"a{i}: payouts {{ nextCursor }}" for i in range(settings.graphql_max_aliases + 1))
        answer = await gql(client, token_for("ops_admin"), f"{{ {aliases} }}")
        assert answer.get("data") is None
        assert "aliases" in error_messages(answer)[0]

    async def test_introspection_in_dev_but_not_in_prod(self, client, token_for, settings):
        query = "{ __schema { queryType { name } } }"
        dev = await gql(client, token_for("merchant_viewer", merchant_id="m_a"), query)
        assert dev["data"]["__schema"]["queryType"]["name"] == "Query"
        prod = await build_schema(settings.model_copy(update={"env": "prod"})).execute(query)
        assert prod.data is None and "introspection" in prod.errors[0].message.lower()

    async def test_a_bad_cursor_says_so(self, client, token_for):
        answer = await gql(client, token_for("ops_admin"), "{ payouts(after: \"!!\") { data { id } } }")
        assert answer["data"] is None and error_messages(answer) == ["cursor is not one this API returned"]

    def test_unexpected_errors_are_masked_and_payops_errors_are_not(self):
        leaked = GraphQLError("boom", original_error=RuntimeError("password=hunter2 at db:5432"))
        assert _masked(leaked)
        assert not _masked(GraphQLError("no", original_error=Forbidden("you may only access your own merchant's data")))
        assert not _masked(GraphQLError("Cannot query field 'x' on type 'Query'."))
