"""HTTP: /api/v1/sla/rules (list, create, change, delete, the audit trail) and
/api/v1/sla/rules/resolve. Reads for platform roles; writes for roles that operate payouts."""

from __future__ import annotations

OPS = "ops_admin"
RULES = "/api/v1/sla/rules"


class TestPermissions:
    async def test_reads_need_a_platform_role_and_writes_an_operator(self, client, token_for):
        assert (await client.get(RULES)).status_code == 401
        merchant = token_for("merchant_admin", merchant_id="mer_x")
        for r in [await client.get(RULES, headers=merchant),
                  await client.get(f"{RULES}/resolve?rail=sepa", headers=merchant),
                  await client.post(RULES, json={"rail": "sepa", "target_seconds": 60}, headers=merchant),
                  # finance_ops reads but does not operate payouts
                  await client.post(RULES, json={"rail": "sepa", "target_seconds": 60},
                                    headers=token_for("finance_ops")),
                  await client.delete(f"{RULES}/1", headers=token_for("auditor"))]:
            assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert (await client.get(RULES, headers=token_for("auditor"))).status_code == 200


class TestCreate:
    async def test_seeded_rules_equal_each_rails_terms(self, client, token_for):
        rules = (await client.get(RULES, headers=token_for(OPS))).json()
        by_rail = {r["rail"]: r for r in rules}
        assert all(r["connector"] is None and r["country"] is None and r["priority"] is None for r in rules)
        assert (by_rail["sepa"]["target_business_days"], by_rail["sepa"]["target_seconds"]) == (1, None)
        assert (by_rail["wire"]["target_business_days"], by_rail["sepa_instant"]["target_seconds"]) == (0, 10)
        assert by_rail["ach"]["created_by"] == "migration" and by_rail["ach"]["specificity"] == 1

    async def test_invalid_rules_are_422_and_a_duplicate_409(self, client, token_for):
        h = token_for(OPS)
        bad = [
            ({"rail": "carrier_pigeon", "target_seconds": 60}, "rail must be one of"),
            ({"connector": "no_such_bank", "target_seconds": 60}, "connector must be one of"),
            ({"rail": "sepa", "target_seconds": 60, "target_business_days": 1}, "exactly one target"),
            ({"rail": "sepa"}, "exactly one target"),
            ({"rail": "sepa", "country": "DEU", "target_seconds": 60}, "country"),
            ({"rail": "sepa", "priority": "urgent", "target_seconds": 60}, "priority"),
            ({"rail": "sepa", "target_seconds": 0}, "target_seconds"),
            ({"rail": "sepa", "target_seconds": 60, "colour": "red"}, "colour"),
        ]
        for body, words in bad:
            r = await client.post(RULES, json=body, headers=h)
            assert r.status_code == 422, (body, r.text)
            assert r.headers["content-type"].startswith("application/problem+json") and words in r.text, r.text
        r = await client.post(RULES, json={"rail": "sepa", "target_seconds": 60}, headers=h)  # seeded: rail=sepa
        assert r.status_code == 409 and r.json()["type"].endswith("duplicate_sla_rule"), r.text

    async def test_a_rule_is_created_changed_resolved_deleted_and_audited(self, client, token_for):
        h = token_for(OPS, sub="ada@ops")
        r = await client.post(RULES, json={"rail": "sepa", "connector": "bank_sepa", "country": "de",
                                           "target_seconds": 7200, "description": "DE via bank_sepa"}, headers=h)
        assert r.status_code == 201, r.text
        rule = r.json()
        assert (rule["country"], rule["specificity"], rule["created_by"]) == ("DE", 3, "ada@ops")
        listed = (await client.get(RULES, headers=h)).json()
        assert listed[0]["id"] == rule["id"]  # most specific first

        r = await client.get(f"{RULES}/resolve", params={"rail": "sepa", "connector": "bank_sepa", "country": "DE",
                                                         "priority": "standard"}, headers=h)
        assert r.status_code == 200, r.text
        res = r.json()
        assert res["rule"]["id"] == rule["id"] and "3 of the 4 keys" in res["why"]
        verdicts = {v["rule_id"]: v["verdict"] for v in res["rules"]}
        seeded_sepa = next(x["id"] for x in listed if x["rail"] == "sepa" and x["specificity"] == 1)
        assert verdicts[rule["id"]] == "applies" and verdicts[seeded_sepa] == "outranked"
        r = await client.get(f"{RULES}/resolve", params={"rail": "sepa", "country": "FR"}, headers=h)
        assert r.json()["rule"]["id"] == seeded_sepa and verdicts  # another country: the rail's rule
        assert (await client.get(f"{RULES}/resolve", params={"rail": "nope"}, headers=h)).status_code == 422
        assert (await client.get(f"{RULES}/resolve", headers=h)).status_code == 422

        r = await client.patch(f"{RULES}/{rule['id']}", json={"target_business_days": 2}, headers=h)
        assert r.status_code == 200, r.text
        assert (r.json()["target_business_days"], r.json()["target_seconds"]) == (2, None)
        r = await client.patch(f"{RULES}/{rule['id']}", json={"rail": "ach", "connector": None, "country": None},
                               headers=h)
        assert r.status_code == 409, r.text  # would be the seeded ach rule's very keys
        assert (await client.patch(f"{RULES}/999999", json={"enabled": False}, headers=h)).status_code == 404
        r = await client.patch(f"{RULES}/{rule['id']}", json={"enabled": False}, headers=h)
        assert r.status_code == 200 and r.json()["enabled"] is False
        r = await client.get(f"{RULES}/resolve", params={"rail": "sepa", "connector": "bank_sepa", "country": "DE"},
                             headers=h)
        assert r.json()["rule"]["id"] == seeded_sepa
        assert {v["rule_id"]: v["verdict"] for v in r.json()["rules"]}[rule["id"]] == "disabled"

        assert (await client.delete(f"{RULES}/{rule['id']}", headers=h)).status_code == 204
        assert (await client.delete(f"{RULES}/{rule['id']}", headers=h)).status_code == 404
        changes = (await client.get(f"{RULES}/changes", params={"rule_id": rule["id"]}, headers=h)).json()
        assert [c["change"] for c in changes] == ["deleted", "updated", "updated", "created"]
        assert {c["actor"] for c in changes} == {"ada@ops"}
        assert changes[2]["before"]["target_seconds"] == 7200 and changes[2]["after"]["target_business_days"] == 2
        assert changes[0]["after"] is None and changes[0]["before"]["enabled"] is False

    async def test_deleting_a_rails_rule_falls_back_to_the_rails_own_terms(self, client, token_for):
        h = token_for(OPS)
        listed = (await client.get(RULES, headers=h)).json()
        seeded = next(x for x in listed if x["rail"] == "wire")
        assert (await client.delete(f"{RULES}/{seeded['id']}", headers=h)).status_code == 204
        r = await client.get(f"{RULES}/resolve", params={"rail": "wire"}, headers=h)
        assert r.json()["rule"] is None and "wire rail's own settlement terms" in r.json()["why"]
