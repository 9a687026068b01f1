"""HTTP: GET /api/v1/sla/breaches — payouts past their settlement target, for platform roles."""

from __future__ import annotations

import uuid

OPS = "ops_admin"


async def test_sla_breaches_need_a_platform_reader(client, token_for):
    assert (await client.get("/api/v1/sla/breaches")).status_code == 401
    r = await client.get("/api/v1/sla/breaches", headers=token_for("merchant_admin", merchant_id="mer_x"))
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/api/v1/sla/breaches?days=0", headers=token_for(OPS))).status_code == 422
    assert (await client.get("/api/v1/sla/breaches?days=91", headers=token_for(OPS))).status_code == 422


async def test_a_payout_past_its_target_is_an_open_breach_and_a_late_settlement_a_missed_target(
    client, token_for, pg_conn
):
    """Two payouts of one merchant: one still submitted 2 h after its target (open breach, counted
    by rail/connector/country/currency), one settled an hour late (history: missed). A payout settled
    in time and one whose target is still ahead are neither."""
    mid = f"mer_{uuid.uuid4().hex[:12]}"
    await pg_conn.execute("INSERT INTO merchants (id, name, default_currency) VALUES ($1, 'SLA Co', 'EUR')", mid)

    async def payout(status: str, target: str, settled: str | None, iban: str) -> str:
        pid = f"po_{uuid.uuid4().hex}"
        await pg_conn.execute(
            f"""INSERT INTO payouts (id, merchant_id, idempotency_key, amount_minor, currency, method, priority, rail,
                   connector, status, beneficiary_encrypted, beneficiary_masked, settlement_target_at, settled_at)
               VALUES ($1, $2, $1, 1000, 'EUR', 'sepa', 'standard', 'sepa', 'bank_sepa', $3, '\\x00'::bytea,
                   jsonb_build_object('type', 'sepa', 'name', 'X', 'last4', '0000', 'country', $4::text),
                   now() + interval '{target}', {f"now() + interval '{settled}'" if settled else 'NULL'})""",
            pid, mid, status, iban)
        return pid

    open_one = await payout("submitted", "-2 hours", None, "DE")
    await payout("settled", "-3 hours", "-2 hours", "FR")       # settled an hour after its target
    await payout("settled", "-3 hours", "-4 hours", "FR")       # in time
    await payout("submitted", "+5 hours", None, "DE")           # not due yet

    r = await client.get("/api/v1/sla/breaches", headers=token_for(OPS))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["open_total"] == 1
    assert [p["payout_id"] for p in body["open_payouts"]] == [open_one]
    assert 7000 < body["open_payouts"][0]["overdue_seconds"] < 7400
    assert body["open_by_group"] == [{"rail": "sepa", "connector": "bank_sepa", "country": "DE", "currency": "EUR",
                                      "count": 1, "amount_minor": 1000,
                                      "oldest_target_at": body["open_payouts"][0]["settlement_target_at"]}]
    by_country = {}
    for row in body["history"]:
        due, missed = by_country.get(row["country"], (0, 0))
        by_country[row["country"]] = (due + row["due"], missed + row["breached"])
    assert by_country == {"DE": (1, 1), "FR": (2, 1)}
