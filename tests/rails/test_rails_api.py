"""HTTP: rails rules and calendars, routing shown on the payout, payout batches and their files,
connector health. One class per endpoint group: 401, 403, 404/422 and the valid case."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime

import pytest
from ach.parser import Parser

from core.rails.models import BatchInput, HealthRunInput
from workflows.batch import BatchWorkflow
from workflows.connector_health import ConnectorHealthWorkflow

OPS = "ops_admin"
ACH = {"name": "Grace Hopper", "routing_number": "021000021", "account_number": "000123456789",
       "account_type": "checking"}
SEPA = {"name": "Ada Lovelace", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"}


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"payout_settlement_poll_seconds": 0.3})


def key() -> dict:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def new_merchant(client, token_for, currency: str) -> str:
    mid = f"mer_{uuid.uuid4().hex[:12]}"
    r = await client.post("/api/v1/merchants", json={"id": mid, "name": "Acme", "default_currency": currency,
                                                     "country": "US"}, headers=token_for(OPS))
    assert r.status_code == 201, r.text
    r = await client.post(f"/api/v1/merchants/{mid}/funding", json={"amount": "100000.00", "currency": currency},
                          headers={**token_for(OPS), **key()})
    assert r.status_code == 201, r.text
    return mid


async def wait_for(client, headers, payout_id, check, timeout=20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = (await client.get(f"/api/v1/payouts/{payout_id}", headers=headers)).json()
        if check(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"payout {payout_id} never got there: {body.get('status')}")
        await asyncio.sleep(0.1)


class TestRailRules:
    async def test_no_token_is_401(self, client):
        assert (await client.get("/api/v1/rails")).status_code == 401

    async def test_seeded_rules_are_readable_by_merchants(self, client, token_for):
        r = await client.get("/api/v1/rails", headers=token_for("merchant_viewer", merchant_id="mer_x"))
        assert r.status_code == 200
        rules = {x["rail"]: x for x in r.json()}
        assert set(rules) == {"ach", "sepa", "sepa_instant", "wire", "faster_payments", "mobile_money"}
        ach = rules["ach"]
        assert (ach["cutoff_time"], ach["timezone"], ach["settlement_business_days"], ach["batch"]) == (
            "17:00", "America/New_York", 1, True)
        assert rules["sepa"]["cutoff_time"] == "18:00" and rules["sepa"]["timezone"] == "Europe/Paris"
        assert rules["sepa_instant"]["settlement_seconds"] == 10 and rules["wire"]["cutoff_time"] == "15:00"
        assert rules["wire"]["settlement_business_days"] == 0 and rules["mobile_money"]["currencies"] == ["XOF"]
        assert ach["next_cutoff_at"].endswith("Z")  # an instant in UTC; the rule's timezone is beside it

    async def test_unknown_rail_is_404(self, client, token_for):
        assert (await client.get("/api/v1/rails/carrier_pigeon", headers=token_for(OPS))).status_code == 404

    async def test_merchant_cannot_change_a_rule(self, client, token_for):
        r = await client.put("/api/v1/rails/ach", json={"fee_fixed_minor": 1},
                             headers=token_for("merchant_admin", merchant_id="mer_x"))
        assert r.status_code == 403

    async def test_invalid_change_is_422(self, client, token_for):
        r = await client.put("/api/v1/rails/ach", json={"cutoff_time": "25:00"}, headers=token_for(OPS))
        assert r.status_code == 422
        r = await client.put("/api/v1/rails/ach", json={"calendar": "MARS"}, headers=token_for(OPS))
        assert r.status_code == 422

    async def test_a_fee_change_applies_to_the_next_payout(self, client, token_for):
        r = await client.put("/api/v1/rails/sepa", json={"fee_fixed_minor": 99, "fee_bps": 10}, headers=token_for(OPS))
        assert r.status_code == 200 and (r.json()["fee_fixed_minor"], r.json()["updated_by"]) == (99, "dev-user") or \
            r.json()["fee_fixed_minor"] == 99
        merchant = await new_merchant(client, token_for, "EUR")
        r = await client.post("/api/v1/payouts", json={"merchant_id": merchant, "amount": "100.00", "currency": "EUR",
                                                       "method": "sepa", "beneficiary": SEPA},
                              headers={**token_for(OPS), **key()})
        assert r.status_code == 201 and r.json()["fee_minor"] == 99 + 10  # 10 bps of 100.00 EUR


class TestCalendars:
    async def test_builtin_and_override_days(self, client, token_for):
        r = await client.get("/api/v1/rails/calendars/FED?year=2025", headers=token_for(OPS))
        assert r.status_code == 200
        assert {"day": "2025-07-04", "is_holiday": True, "name": "Independence Day", "source": "built-in"} in r.json()
        r = await client.put("/api/v1/rails/calendars/FED/days/2025-03-05", json={"name": "bank outage day"},
                             headers=token_for(OPS))
        assert r.status_code == 200 and r.json()["is_holiday"] is True
        days = (await client.get("/api/v1/rails/calendars/FED?year=2025", headers=token_for(OPS))).json()
        assert any(d["day"] == "2025-03-05" and d["source"] == "override" for d in days)
        assert (await client.delete("/api/v1/rails/calendars/FED/days/2025-03-05", headers=token_for(OPS))).status_code == 204
        assert (await client.delete("/api/v1/rails/calendars/FED/days/2025-03-05", headers=token_for(OPS))).status_code == 404

    async def test_unknown_calendar_is_404_and_merchants_cannot_edit(self, client, token_for):
        assert (await client.get("/api/v1/rails/calendars/MARS", headers=token_for(OPS))).status_code == 404
        r = await client.put("/api/v1/rails/calendars/FED/days/2025-03-05", json={},
                             headers=token_for("merchant_admin", merchant_id="mer_x"))
        assert r.status_code == 403


class TestPayoutRoutingAndBatches:
    async def test_batch_payout_shows_routing_and_target_then_its_batch_and_file(
        self, client, token_for, worker, temporal_client, settings
    ):
        merchant = await new_merchant(client, token_for, "USD")
        r = await client.post("/api/v1/payouts", json={"merchant_id": merchant, "amount": "250.00", "currency": "USD",
                                                       "method": "ach", "priority": "batch", "beneficiary": ACH},
                              headers={**token_for(OPS), **key()})
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        body = await wait_for(client, token_for(OPS), pid,
                              lambda b: (b.get("workflow") or {}).get("batch_cutoff_at") is not None)
        assert body["rail"] == "ach" and body["connector"] == "bank_ach" and body["status"] == "routed"
        assert body["routing"]["rail"] == "ach" and "batch" in body["routing"]["why"]
        assert body["settlement_target_at"] is not None
        assert {c["status"] for c in body["routing"]["candidates"]} >= {"chosen", "excluded"}
        cutoff = datetime.fromisoformat(body["workflow"]["batch_cutoff_at"])

        result = await temporal_client.execute_workflow(
            BatchWorkflow.run, BatchInput(rail="ach", cutoff_at=cutoff), id=f"batch-{uuid.uuid4().hex[:8]}",
            task_queue=settings.temporal_task_queue,
        )
        assert result.entry_count == 1 and result.status == "submitted"
        await wait_for(client, token_for(OPS), pid, lambda b: b["status"] == "settled")

        finance = token_for("finance_ops")
        page = await client.get("/api/v1/payouts/batches?rail=ach", headers=finance)
        assert page.status_code == 200, page.text
        [batch] = [b for b in page.json()["data"] if b["id"] == result.batch_id]
        assert batch["entry_count"] == 1 and batch["total_amount_minor"] == 25_000
        assert batch["control"]["total_credit_minor"] == 25_000 and batch["links"]["file"]
        detail = await client.get(f"/api/v1/payouts/batches/{result.batch_id}", headers=finance)
        assert detail.status_code == 200 and detail.json()["entries"][0]["payout_id"] == pid
        assert detail.json()["entries"][0]["outcome"] == "accepted"
        f = await client.get(batch["links"]["file"], headers=finance)
        assert f.status_code == 200 and "attachment" in f.headers["content-disposition"]
        parsed = Parser(f.text).as_dict()
        assert int(parsed["file_control"]["credit_amount"]) == 25_000

    async def test_batches_need_a_ledger_reader(self, client, token_for):
        assert (await client.get("/api/v1/payouts/batches")).status_code == 401
        r = await client.get("/api/v1/payouts/batches", headers=token_for("merchant_admin", merchant_id="mer_x"))
        assert r.status_code == 403
        assert (await client.get("/api/v1/payouts/batches/bat_nope", headers=token_for(OPS))).status_code == 404
        assert (await client.get("/api/v1/payouts/batches/bat_nope/file", headers=token_for(OPS))).status_code == 404


class TestConnectorHealth:
    async def test_health_after_a_check(self, client, token_for, worker, temporal_client, settings):
        assert (await client.get("/api/v1/connectors/health")).status_code == 401
        r = await client.get("/api/v1/connectors/health", headers=token_for("merchant_admin", merchant_id="mer_x"))
        assert r.status_code == 403
        await temporal_client.execute_workflow(
            ConnectorHealthWorkflow.run, HealthRunInput(), id=f"health-{uuid.uuid4().hex[:8]}",
            task_queue=settings.temporal_task_queue,
        )
        r = await client.get("/api/v1/connectors/health", headers=token_for("risk_ops"))
        assert r.status_code == 200
        rows = {h["connector"]: h for h in r.json()}
        assert rows["bank_ach"]["state"] == "closed" and rows["bank_ach"]["last_ok"] is True
        assert rows["bank_ach"]["rails"] == ["ach"] and rows["sandbox"]["routable"] is False
        assert rows["momo_xof"]["last_latency_ms"] is not None


@pytest.mark.parametrize("rail, hour", [("ach", 17), ("sepa", 18)])
def test_batch_schedule_fires_at_the_rails_cutoff_in_its_time_zone(rail, hour, base_settings):
    import importlib.util
    from pathlib import Path

    from core.rails.schedules import batch_schedule
    from core.rails.rules import RailRule

    path = Path(__file__).parents[2] / "migrations" / "versions" / "0005_rails.py"
    spec = importlib.util.spec_from_file_location("m0005", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    rule = RailRule.model_validate(next(r for r in module.SEED if r["rail"] == rail))
    schedule = batch_schedule(rule, base_settings)
    [cal] = schedule.spec.calendars
    assert schedule.spec.time_zone_name == rule.timezone
    assert cal.hour[0].start == hour and cal.minute[0].start == 0
    assert (cal.day_of_week[0].start, cal.day_of_week[0].end) == (1, 5)
