"""The SLA rule that applies sets the target the breach alert, `payouts_past_target_date` and
the breaches endpoint report: a payout on connector bank_sepa_instant under a 1 h connector rule
breaches 2 h after routing, where the rail's 24 h rule would not have."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from activities.rails import RailActivities
from core.platform.tables import alerts, payouts
from core.rails.models import RailRouteInput, SlaBreachInput
from tests.factories import create_merchant, create_payout_row

OPS = "ops_admin"


def past_target_gauge(metrics_text: str, rail: str) -> float | None:
    for line in metrics_text.splitlines():
        if line.startswith(f'payouts_past_target_date{{rail="{rail}"}}'):
            return float(line.split()[-1])
    return None


async def test_a_connector_rule_sets_the_target_the_alert_metric_and_breaches_use(
    client, token_for, worker_deps, settings, sessionmaker
):
    h = token_for(OPS)
    rules = (await client.get("/api/v1/sla/rules", headers=h)).json()
    rail_rule = next(r for r in rules if r["rail"] == "sepa_instant" and r["specificity"] == 1)
    r = await client.patch(f"/api/v1/sla/rules/{rail_rule['id']}", json={"target_seconds": 24 * 3600}, headers=h)
    assert r.status_code == 200, r.text

    acts = RailActivities(worker_deps.sessionmaker, None, worker_deps.connectors, worker_deps.cipher, settings)
    env = ActivityEnvironment()
    merchant = await create_merchant(sessionmaker, currency="EUR", funded_minor=1_000_000)
    two_hours_ago = datetime.now(timezone.utc) - timedelta(hours=2)

    # Under the rail's 24 h rule: routed 2 h ago, not past its target.
    before = await create_payout_row(sessionmaker, settings, merchant_id=merchant, priority="instant")
    routed = await env.run(acts.route_payout_by_rules, RailRouteInput(payout_id=before.payout_id, at=two_hours_ago))
    assert (routed.rail, routed.connector) == ("sepa_instant", "bank_sepa_instant")
    assert routed.settlement_target_at == two_hours_ago + timedelta(hours=24)
    assert past_target_gauge((await client.get("/metrics")).text, "sepa_instant") in (None, 0.0)
    assert (await client.get("/api/v1/sla/breaches", headers=h)).json()["open_total"] == 0

    r = await client.post("/api/v1/sla/rules", json={"connector": "bank_sepa_instant", "target_seconds": 3600},
                          headers=h)
    assert r.status_code == 201, r.text
    connector_rule = r.json()

    late = await create_payout_row(sessionmaker, settings, merchant_id=merchant, priority="instant")
    routed = await env.run(acts.route_payout_by_rules, RailRouteInput(payout_id=late.payout_id, at=two_hours_ago))
    assert routed.settlement_target_at == two_hours_ago + timedelta(hours=1)
    async with sessionmaker() as session:
        row = (await session.execute(select(payouts.c.settlement_target_at, payouts.c.routing)
                                     .where(payouts.c.id == late.payout_id))).one()
    assert row.settlement_target_at == routed.settlement_target_at
    assert row.routing["sla_rule"]["id"] == connector_rule["id"]

    # the metric: one open payout past its target on the rail (the other is within its 24 h)
    assert past_target_gauge((await client.get("/metrics")).text, "sepa_instant") == 1.0

    # the breaches endpoint: that payout, with the rule that set its target
    body = (await client.get("/api/v1/sla/breaches", headers=h)).json()
    assert body["open_total"] == 1 and [p["payout_id"] for p in body["open_payouts"]] == [late.payout_id]
    assert body["open_payouts"][0]["sla_rule"]["id"] == connector_rule["id"]
    assert body["open_payouts"][0]["sla_rule"]["connector"] == "bank_sepa_instant"
    assert 3500 < body["open_payouts"][0]["overdue_seconds"] < 3800

    # the breach alert: raised with that target and naming the rule
    raised = await env.run(acts.raise_sla_breach_alert, SlaBreachInput(
        payout_id=late.payout_id, rail=routed.rail, connector=routed.connector,
        settlement_target_at=routed.settlement_target_at, status="routed"))
    assert raised.raised
    async with sessionmaker() as session:
        alert = (await session.execute(select(alerts.c.message, alerts.c.data)
                                       .where(alerts.c.dedupe_key == f"payout_sla_breach:{late.payout_id}"))).one()
    assert alert.data["sla_rule"]["id"] == connector_rule["id"]
    assert f"SLA rule {connector_rule['id']}" in alert.message
    assert alert.data["settlement_target_at"] == (two_hours_ago + timedelta(hours=1)).isoformat()
