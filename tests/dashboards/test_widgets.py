"""Dashboard widgets over HTTP on real services: the defaults seeded once per tenant, CRUD and
reorder with their validation, strict configs (422 naming the field), the tenant scoping matrix
(merchant A / merchant B / platform; viewer / admin), every change audited, and each widget's
data equal to what the Overview endpoint it shows answers for the same tenant and window."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import pytest
from sqlalchemy import text

from core.dashboards.widgets import DEFAULT_WIDGETS, MAX_WIDGETS
from tests.dashboards.test_dashboard_metrics import GENERATE, NOW
from tests.factories import create_payout_row

W = "/api/v1/dashboard/widgets"
DEFAULT_TITLES = [t for _, t, _ in DEFAULT_WIDGETS]


@pytest.fixture
async def data(sessionmaker, settings):
    from core.ledger import service as ledger

    async with sessionmaker() as session, session.begin():
        for stmt in GENERATE.strip().split(";\n"):
            if stmt.strip():
                await session.execute(text(stmt), {"now": NOW} if ":now" in stmt else {})
        await session.execute(text(
            "UPDATE transactions SET payer_country = (ARRAY['SN', 'CI', 'GH'])[1 + (id / 7) % 3] WHERE id % 4 <> 0"))
        await ledger.fund_merchant(session, "m_a", 500_000, "INR", ref="fund-a-1")
        await ledger.fund_merchant(session, "m_b", 70_000, "USD", ref="fund-b-1")
        for merchant, severity in (("m_a", "critical"), ("m_a", "low"), ("m_b", "high"), ("m_b", "critical")):
            await session.execute(text(
                "INSERT INTO alerts (rule, severity, dedupe_key, message, data) "
                "VALUES ('float_low', :sev, :key, 'float low', CAST(:data AS jsonb))"),
                {"sev": severity, "key": f"t:{merchant}:{severity}", "data": json.dumps({"merchant_id": merchant})})
    for merchant in ("m_a", "m_b", "m_a"):
        await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    return sessionmaker


@pytest.fixture
def who(token_for):
    return {
        "ops": token_for("ops_admin", sub="olivia"),
        "finance": token_for("finance_ops", sub="fin"),
        "risk": token_for("risk_ops", sub="risky"),
        "a_admin": token_for("merchant_admin", merchant_id="m_a", sub="ada"),
        "a_viewer": token_for("merchant_viewer", merchant_id="m_a", sub="vera"),
        "b_admin": token_for("merchant_admin", merchant_id="m_b", sub="bob"),
    }


async def layout(client, headers) -> list[dict]:
    r = await client.get(W, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def changes(sessionmaker, kind: str, tid: str) -> list[dict]:
    async with sessionmaker() as s:
        rows = (await s.execute(text(
            "SELECT widget_id, change, actor, before, after FROM dashboard_widget_changes "
            "WHERE tenant_kind = :k AND tenant_id = :t ORDER BY id"), {"k": kind, "t": tid})).mappings().all()
    return [dict(r) for r in rows]


class TestDefaults:
    async def test_each_tenant_gets_the_six_defaults_once(self, client, who, sessionmaker):
        # three first reads at once for merchant A: one layout, seeded once
        answers = await asyncio.gather(*(client.get(W, headers=who["a_admin"]) for _ in range(3)))
        assert [r.status_code for r in answers] == [200, 200, 200]
        mine = await layout(client, who["a_admin"])
        assert [w["title"] for w in mine] == DEFAULT_TITLES
        assert [w["kind"] for w in mine] == ["trend", "trend", "gauge", "gauge", "breakdown", "alerts"]
        assert mine[4]["config"] == {"by": "country", "metric": "gmv", "limit": 5, "period": None, "currency": None}
        assert [w["position"] for w in mine] == list(range(6))
        body = (await client.get(W, headers=who["a_admin"])).json()
        assert (body["tenant_kind"], body["tenant_id"], body["can_edit"]) == ("merchant", "m_a", True)
        # the viewer reads the same layout; it may not edit it
        viewer = (await client.get(W, headers=who["a_viewer"])).json()
        assert [w["id"] for w in viewer["data"]] == [w["id"] for w in mine] and viewer["can_edit"] is False
        # the platform and merchant B have their own copies
        platform = await layout(client, who["ops"])
        theirs = await layout(client, who["b_admin"])
        assert [w["title"] for w in platform] == [w["title"] for w in theirs] == DEFAULT_TITLES
        assert not {w["id"] for w in mine} & ({w["id"] for w in platform} | {w["id"] for w in theirs})
        seeded = await changes(sessionmaker, "merchant", "m_a")
        assert [c["change"] for c in seeded] == ["seeded"]
        assert [w["title"] for w in seeded[0]["after"]["widgets"]] == DEFAULT_TITLES

    async def test_an_emptied_layout_stays_empty(self, client, who):
        for w in await layout(client, who["b_admin"]):
            assert (await client.delete(f"{W}/{w['id']}", headers=who["b_admin"])).status_code == 204
        assert await layout(client, who["b_admin"]) == []

    async def test_catalog_lists_every_kind_with_its_schema(self, client, who):
        r = await client.get(f"{W}/catalog", headers=who["a_viewer"])
        assert r.status_code == 200
        kinds = {c["kind"]: c for c in r.json()}
        assert set(kinds) == {"kpi", "trend", "breakdown", "gauge", "table", "alerts", "map"}
        assert "metric" in kinds["kpi"]["config_schema"]["required"]
        assert set(kinds["breakdown"]["config_schema"]["properties"]["by"]["enum"]) >= {"country", "rail", "currency"}
        assert kinds["table"]["config_schema"]["properties"]["query"]["enum"] == ["recent_payouts", "recent_transactions"]


class TestCrud:
    async def test_add_edit_delete_audited(self, client, who, sessionmaker):
        before = await layout(client, who["ops"])
        r = await client.post(W, headers=who["finance"], json={"kind": "kpi", "title": "GMV today",
                                                                "config": {"metric": "gmv", "currency": "INR"}})
        assert r.status_code == 201, r.text
        added = r.json()
        assert added["position"] == before[-1]["position"] + 1 and added["tenant_kind"] == "platform"
        assert added["config"] == {"metric": "gmv", "period": None, "currency": "INR"}
        assert [w["id"] for w in await layout(client, who["ops"])] == [w["id"] for w in before] + [added["id"]]

        r = await client.patch(f"{W}/{added['id']}", headers=who["ops"], json={"title": "GMV (INR)"})
        assert r.status_code == 200 and r.json()["title"] == "GMV (INR)" and r.json()["config"] == added["config"]
        r = await client.put(f"{W}/{added['id']}", headers=who["ops"],
                             json={"title": "Fees", "config": {"metric": "fees", "period": "7d"}})
        assert r.status_code == 200 and (r.json()["title"], r.json()["config"]["metric"]) == ("Fees", "fees")
        assert r.json()["updated_by"] == "olivia"
        assert (await client.delete(f"{W}/{added['id']}", headers=who["ops"])).status_code == 204
        assert (await client.delete(f"{W}/{added['id']}", headers=who["ops"])).status_code == 404
        assert [w["id"] for w in await layout(client, who["ops"])] == [w["id"] for w in before]

        trail = [c for c in await changes(sessionmaker, "platform", "platform") if c["widget_id"] == added["id"]]
        assert [(c["change"], c["actor"]) for c in trail] == [
            ("created", "fin"), ("updated", "olivia"), ("updated", "olivia"), ("deleted", "olivia")]
        assert trail[1]["before"]["title"] == "GMV today" and trail[1]["after"]["title"] == "GMV (INR)"
        assert trail[2]["after"]["config"]["metric"] == "fees" and trail[3]["after"] is None
        api_trail = (await client.get(f"{W}/changes", headers=who["ops"])).json()
        assert [c["change"] for c in api_trail[:4]] == ["deleted", "updated", "updated", "created"]

    async def test_audit_trail_is_append_only(self, client, who, sessionmaker):
        await layout(client, who["ops"])
        async with sessionmaker() as s:
            with pytest.raises(Exception, match="append-only"):
                await s.execute(text("UPDATE dashboard_widget_changes SET actor = 'someone else'"))

    async def test_layout_full(self, client, who):
        n = len(await layout(client, who["a_admin"]))
        for _ in range(MAX_WIDGETS - n):
            assert (await client.post(W, headers=who["a_admin"], json={"kind": "map"})).status_code == 201
        r = await client.post(W, headers=who["a_admin"], json={"kind": "map"})
        assert r.status_code == 409 and r.json()["type"] == "layout_full"


BAD_CONFIGS = [
    ("kpi", {"metric": "gmvv"}, "config.metric"),
    ("kpi", {}, "config.metric"),
    ("kpi", {"metric": "gmv", "colour": "red"}, "config.colour"),
    ("kpi", {"metric": "gmv", "currency": "euro"}, "config.currency"),
    ("trend", {"metric": "gmv", "granularity": "week"}, "config.granularity"),
    ("trend", {"metric": "gmv", "period": "5y"}, "config.period"),
    ("breakdown", {"by": "planet"}, "config.by"),
    ("breakdown", {"by": "rail", "metric": "gmv"}, "config: Value error, metric must be one of payouts"),
    ("breakdown", {"by": "country", "limit": 0}, "config.limit"),
    ("gauge", {"metric": "conversion_rate", "min": 1, "max": 0}, "config: Value error, max must be greater than min"),
    ("gauge", {"metric": "conversion_rate", "max": 1, "thresholds": [{"at": 0.9, "level": "ok"}, {"at": 0.5, "level": "bad"}]},
     "config: Value error, thresholds must be in ascending order"),
    ("gauge", {"metric": "conversion_rate", "max": 1, "thresholds": [{"at": 0.9, "level": "great"}]},
     "config.thresholds.0.level"),
    ("gauge", {"metric": "gmv", "max": 1}, "config.metric"),
    ("table", {"query": "recent_refunds"}, "config.query"),
    ("table", {"query": "recent_payouts", "status": "success"}, "config: Value error, status must be one of pending"),
    ("table", {"query": "recent_transactions", "limit": 51}, "config.limit"),
    ("alerts", {"severity": []}, "config.severity"),
    ("alerts", {"severity": ["urgent"]}, "config.severity.0"),
    ("map", {"zoom": 23}, "config.zoom"),
    ("map", {"bbox": "1,2,3"}, "config: Value error, must be west,south,east,north"),
    ("map", {"bbox": "-20,-80,20,80", "zoom": 18}, "config: Value error, the box is too large for zoom 18"),
    ("map", {"country": "sn"}, "config.country"),
    ("map", {"colour": "red"}, "config.colour"),
]


class TestValidation:
    @pytest.mark.parametrize(("kind", "config", "names"), BAD_CONFIGS)
    async def test_a_bad_config_is_422_naming_the_field(self, client, who, kind, config, names):
        r = await client.post(W, headers=who["ops"], json={"kind": kind, "config": config})
        assert r.status_code == 422, r.text
        body = r.json()
        assert r.headers["content-type"].startswith("application/problem+json")
        assert body["detail"].startswith(names), body["detail"]
        assert body["errors"][0]["loc"][:2] == ["body", "config"]

    async def test_unknown_kind_and_bad_title(self, client, who):
        r = await client.post(W, headers=who["ops"], json={"kind": "pie", "config": {}})
        assert r.status_code == 422 and r.json()["detail"].startswith("kind:")
        r = await client.post(W, headers=who["ops"], json={"kind": "map", "title": "  "})
        assert r.status_code == 422 and r.json()["detail"].startswith("title:")

    async def test_a_bad_edit_changes_nothing(self, client, who):
        first = (await layout(client, who["ops"]))[0]
        r = await client.patch(f"{W}/{first['id']}", headers=who["ops"], json={"config": {"metric": "nope"}})
        assert r.status_code == 422 and r.json()["detail"].startswith("config.metric")
        assert (await layout(client, who["ops"]))[0] == first


class TestReorder:
    async def test_a_permutation_reorders_and_is_audited(self, client, who, sessionmaker):
        ids = [w["id"] for w in await layout(client, who["a_admin"])]
        wanted = ids[::-1]
        r = await client.post(f"{W}/reorder", headers=who["a_admin"], json={"ids": wanted})
        assert r.status_code == 200, r.text
        assert [w["id"] for w in r.json()["data"]] == wanted
        assert [w["id"] for w in await layout(client, who["a_viewer"])] == wanted
        last = (await changes(sessionmaker, "merchant", "m_a"))[-1]
        assert (last["change"], last["actor"], last["before"], last["after"]) == (
            "reordered", "ada", {"ids": ids}, {"ids": wanted})

    async def test_a_list_that_is_not_a_permutation_is_422(self, client, who):
        ids = [w["id"] for w in await layout(client, who["a_admin"])]
        platform_id = (await layout(client, who["ops"]))[0]["id"]
        for bad, says in ((ids[:-1], "missing"), (ids + [ids[0]], "more than once"),
                          (ids[:-1] + [platform_id], "not in your layout"), ([], "missing")):
            r = await client.post(f"{W}/reorder", headers=who["a_admin"], json={"ids": bad})
            assert r.status_code == 422 and says in r.json()["detail"], r.text
        assert [w["id"] for w in await layout(client, who["a_admin"])] == ids


class TestScoping:
    async def test_the_matrix(self, client, who):
        a_ids = [w["id"] for w in await layout(client, who["a_admin"])]
        b_ids = [w["id"] for w in await layout(client, who["b_admin"])]
        p_ids = [w["id"] for w in await layout(client, who["ops"])]
        target = a_ids[0]
        # another tenant's widget is not found, for reads and edits alike
        for other in ("b_admin", "ops", "finance"):
            h = who[other]
            assert (await client.get(f"{W}/{target}/data", headers=h)).status_code == 404
            assert (await client.patch(f"{W}/{target}", headers=h, json={"title": "x"})).status_code == 404
            assert (await client.put(f"{W}/{target}", headers=h,
                                     json={"title": "x", "config": {"metric": "gmv"}})).status_code == 404
            assert (await client.delete(f"{W}/{target}", headers=h)).status_code == 404
        assert (await client.get(f"{W}/{p_ids[0]}/data", headers=who["a_admin"])).status_code == 404
        assert (await client.delete(f"{W}/{b_ids[0]}", headers=who["a_admin"])).status_code == 404
        # the viewer reads, never edits; a platform role without dashboard:edit likewise
        assert (await client.get(f"{W}/{target}/data", headers=who["a_viewer"])).status_code == 200
        for reader, wid in (("a_viewer", target), ("risk", p_ids[0])):
            h = who[reader]
            assert (await client.post(W, headers=h, json={"kind": "map"})).status_code == 403
            assert (await client.patch(f"{W}/{wid}", headers=h, json={"title": "x"})).status_code == 403
            assert (await client.delete(f"{W}/{wid}", headers=h)).status_code == 403
            assert (await client.post(f"{W}/reorder", headers=h, json={"ids": []})).status_code == 403
        assert (await client.get(W)).status_code == 401
        # nothing above changed any layout
        assert [w["id"] for w in await layout(client, who["a_admin"])] == a_ids
        assert [w["id"] for w in await layout(client, who["b_admin"])] == b_ids
        assert [w["id"] for w in await layout(client, who["ops"])] == p_ids
        # an admin's edit shows in its own tenant only
        assert (await client.delete(f"{W}/{a_ids[1]}", headers=who["a_admin"])).status_code == 204
        assert len(await layout(client, who["a_viewer"])) == 5
        assert len(await layout(client, who["b_admin"])) == 6 and len(await layout(client, who["ops"])) == 6


EXTRA_WIDGETS = [
    ("kpi", {"metric": "gmv"}),
    ("kpi", {"metric": "transactions", "period": "7d"}),
    ("trend", {"metric": "conversion_rate", "granularity": "hour", "period": "7d"}),
    ("breakdown", {"by": "rail", "metric": "amount_minor"}),
    ("breakdown", {"by": "status", "metric": "transactions", "limit": 3, "currency": "INR"}),
    ("table", {"query": "recent_transactions", "limit": 5}),
    ("table", {"query": "recent_payouts", "limit": 5}),
    ("alerts", {"severity": ["critical", "high", "low"], "status": "open"}),
]


class TestData:
    @pytest.mark.parametrize("tenant", ["ops", "a_admin", "a_viewer", "b_admin"])
    async def test_each_widget_equals_its_overview_endpoint(self, client, who, data, tenant):
        h = who[tenant]
        if tenant != "a_viewer":
            for kind, config in EXTRA_WIDGETS:
                r = await client.post(W, headers=h, json={"kind": kind, "config": config})
                assert r.status_code == 201, r.text
        widgets = await layout(client, h)
        assert len(widgets) >= 6
        for period in ("24h", "30d"):
            for w in widgets:
                r = await client.get(f"{W}/{w['id']}/data", headers=h, params={"period": period, "tz": "Asia/Kolkata"})
                assert r.status_code == 200, r.text
                got = r.json()
                assert got["widget"]["id"] == w["id"]
                src = got["source"]
                if w["kind"] in ("kpi", "gauge", "trend", "breakdown"):
                    assert src["params"]["period"] == (w["config"]["period"] or period)
                # what the existing endpoint answers for the same caller and parameters
                direct = await client.get(src["path"].removeprefix("/api/v1").join(["/api/v1", ""]), headers=h,
                                          params=src["params"])
                assert direct.status_code == 200, (src, direct.text)
                assert got["data"] == direct.json(), (w["kind"], w["config"])
                if "merchant_id" in got["data"]:  # scoped to the tenant
                    assert got["data"]["merchant_id"] == (None if tenant == "ops" else f"m_{tenant[0]}")
                elif "data" in got["data"] and got["data"]["data"]:  # lists: only the tenant's rows
                    rows = got["data"]["data"]
                    owners = {row.get("merchant_id") or (row.get("data") or {}).get("merchant_id") for row in rows}
                    if tenant != "ops":
                        assert owners == {f"m_{tenant[0]}"}, owners

    async def test_the_numbers_are_real_and_served_from_the_same_cache(self, client, who, data):
        ids = {w["title"]: w["id"] for w in await layout(client, who["a_admin"])}
        # the Overview first: the widget's read is then a snapshot cache hit on the same key
        ov = await client.get("/api/v1/dashboard/overview", headers=who["a_admin"], params={"period": "30d"})
        assert ov.headers["x-cache"] == "miss"
        r = await client.get(f"{W}/{ids['Conversion rate']}/data", headers=who["a_admin"], params={"period": "30d"})
        assert r.headers["x-cache"] == "hit" and r.json()["data"] == ov.json()
        async with data() as s:
            ok, total = (await s.execute(text(
                "SELECT count(*) FILTER (WHERE status IN ('success', 'refunded')), count(*) FROM transactions "
                "WHERE merchant_id = 'm_a' AND occurred_at >= :s AND occurred_at < :e"),
                {"s": datetime.fromisoformat(ov.json()["window"]["from"]),
                 "e": datetime.fromisoformat(ov.json()["window"]["to"])})).one()
        assert total > 0 and r.json()["data"]["kpis"]["conversion_rate"]["value"] == round(ok / total, 6)
        # top countries: m_a's payer countries by GMV, ranked
        top = (await client.get(f"{W}/{ids['Top countries']}/data", headers=who["a_admin"],
                                params={"period": "30d", "currency": "INR"})).json()
        assert top["source"]["params"] == {"period": "30d", "currency": "INR", "by": "country", "limit": 5}
        keys = [i["key"] for i in top["data"]["items"]]
        assert set(keys) <= {"SN", "CI", "GH", None} and len(keys) >= 3
        gmvs = [i["gmv"] for i in top["data"]["items"]]
        assert gmvs == sorted(gmvs, reverse=True)
        # alerts: critical and high only, the merchant's own
        alerts = (await client.get(f"{W}/{ids['Alerts']}/data", headers=who["a_admin"])).json()["data"]["data"]
        assert [(a["severity"], a["data"]["merchant_id"]) for a in alerts] == [("critical", "m_a")]

    async def test_a_pinned_period_wins(self, client, who, data):
        r = await client.post(W, headers=who["ops"], json={"kind": "trend", "config": {"metric": "gmv", "period": "7d"}})
        got = (await client.get(f"{W}/{r.json()['id']}/data", headers=who["ops"], params={"period": "24h"})).json()
        assert got["source"]["params"]["period"] == "7d" and got["source"]["params"]["granularity"] == "day"
        assert len(got["data"]["series"][0]["points"]) in (7, 8)


# --- the map widget: the agent map's clusters, scoped like the agent map ------------------------------


@pytest.fixture
async def agents(sessionmaker):
    """Agents of merchants m_a and m_b and operator agents, in Dakar (SN) and Accra (GH)."""
    from core.agents import service as agent_service

    rows = []
    for i in range(60):
        owner = ("m_a", "m_b", None)[i % 3]
        lat, lon, country = (14.70 + i * 0.004, -17.45 + i * 0.003, "SN") if i % 2 else (5.60 + i * 0.002, -0.19, "GH")
        rows.append({"id": f"agt_w{i:03d}", "name": f"Agent {i}", "lat": lat, "lon": lon, "country": country,
                     "city": "x", "merchant_id": owner, "operator": None if owner else "wave",
                     "floats": [{"currency": "XOF", "amount_minor": 1000 + i}]})
    async with sessionmaker() as s, s.begin():
        await s.execute(text("INSERT INTO merchants (id, name, default_currency) VALUES ('m_a', 'A', 'INR'), "
                             "('m_b', 'B', 'USD') ON CONFLICT DO NOTHING"))
        await agent_service.upsert_agents(s, rows)
    return rows


def _ids_in(clusters: dict) -> set[str]:
    return {c["agent"]["id"] for c in clusters["clusters"] if c["agent"]}


class TestMapWidget:
    @pytest.mark.parametrize("config", [{}, {"country": "SN"}, {"bbox": "-17.6,14.6,-17.2,15", "zoom": 16},
                                        {"bbox": "-20,0,5,20"}, {"country": "KE"}])
    async def test_map_data_is_the_agent_maps_clusters_for_the_caller(self, client, who, agents, config):
        for caller, admin in (("ops", "ops"), ("a_viewer", "a_admin"), ("b_admin", "b_admin")):
            m = await client.post(W, headers=who[admin], json={"kind": "map", "config": config})
            assert m.status_code == 201, m.text
            got = await client.get(f"{W}/{m.json()['id']}/data", headers=who[caller])
            assert got.status_code == 200, got.text
            body = got.json()
            assert body["source"]["path"] == "/api/v1/agents/clusters"
            direct = await client.get("/api/v1/agents/clusters", headers=who[caller], params=body["source"]["params"])
            assert direct.status_code == 200, direct.text
            assert body["data"] == direct.json()
            assert body["data"]["total"] > 0 or config == {"country": "KE"} or caller != "ops"
            if "zoom" in config:
                assert body["source"]["params"] == {"bbox": config["bbox"], "zoom": config["zoom"]}

    async def test_the_box_is_the_countrys_agents_or_west_africa(self, client, who, agents):
        ops_sn = (await client.post(W, headers=who["ops"], json={"kind": "map", "config": {"country": "SN"}})).json()
        body = (await client.get(f"{W}/{ops_sn['id']}/data", headers=who["ops"])).json()
        sn = [a for a in agents if a["country"] == "SN"]
        west, south, east, north = (float(v) for v in body["source"]["params"]["bbox"].split(","))
        assert west < min(a["lon"] for a in sn) and east > max(a["lon"] for a in sn)
        assert south < min(a["lat"] for a in sn) and north > max(a["lat"] for a in sn)
        assert south > 5.8  # Accra's agents are not in Senegal's box
        assert body["data"]["total"] == len(sn)
        default = (await client.post(W, headers=who["ops"], json={"kind": "map", "config": {}})).json()
        body = (await client.get(f"{W}/{default['id']}/data", headers=who["ops"])).json()
        assert body["source"]["params"]["bbox"] == "-18,4,16,25"
        assert body["data"]["total"] == len(agents)

    async def test_a_merchants_map_never_shows_another_merchants_agents(self, client, who, agents):
        owner = {a["id"]: a["merchant_id"] for a in agents}
        for config in ({"bbox": "-17.6,14.6,-17.2,15", "zoom": 15}, {}, {"country": "SN"}):
            m = (await client.post(W, headers=who["a_admin"], json={"kind": "map", "config": config})).json()
            body = (await client.get(f"{W}/{m['id']}/data", headers=who["a_admin"])).json()
            in_senegal = "bbox" in config or "country" in config
            assert body["data"]["total"] == sum(1 for a in agents if a["merchant_id"] == "m_a"
                                                and (not in_senegal or a["country"] == "SN")) > 0
            if config.get("zoom") == 15:  # every agent on its own: each is merchant A's
                ids = _ids_in(body["data"])
                assert ids and {owner[i] for i in ids} == {"m_a"}
            # merchant B cannot read merchant A's widget at all
            assert (await client.get(f"{W}/{m['id']}/data", headers=who["b_admin"])).status_code == 404

    async def test_a_role_without_agents_read_gets_403(self, client, who, token_for, agents):
        m = (await client.post(W, headers=who["ops"], json={"kind": "map", "config": {}})).json()
        r = await client.get(f"{W}/{m['id']}/data", headers=token_for("approver", sub="appr"))
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
