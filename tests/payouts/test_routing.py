"""The routing engine over a table of cases: currency, country, priority, health, pause, override.
Pure: the seeded rules as the migration writes them, the sandbox's connectors, no services."""

from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connectors.rails import RAIL_CONNECTORS
from core.rails.rules import BusinessCalendar, RailRule, beneficiary_country
from core.payouts.routing import ConnectorInfo, NoRoute, RouteFacts, decide_route


def seeded_rules() -> list[RailRule]:
    path = Path(__file__).parents[2] / "migrations" / "versions" / "0005_rails.py"
    spec = importlib.util.spec_from_file_location("rails_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return [RailRule.model_validate(row) for row in module.SEED]


RULES = seeded_rules()
CONNECTORS = [ConnectorInfo(name=n, rails=frozenset({rail}), preference=10) for n, _, rail in RAIL_CONNECTORS] + [
    ConnectorInfo(name="sandbox", rails=frozenset(r.rail for r in RULES), routable=False)
]
CALENDARS = {n: BusinessCalendar(n) for n in ("FED", "TARGET", "GB", "NONE")}
# a Tuesday, 10:00 in New York
AT = datetime(2025, 3, 4, 15, 0, tzinfo=timezone.utc)
OPEN = {"state": "open", "open_reason": "2 failed health check(s): HTTP 503"}


def route(method, currency, priority="standard", country=None, health=None, controls=(), amount=10_000,
          merchant="mer_1", avoid=()):
    facts = RouteFacts(payout_id="po_x", merchant_id=merchant, method=method, currency=currency, country=country,
                       amount_minor=amount, priority=priority, at=AT)
    return decide_route(facts, RULES, CALENDARS, CONNECTORS, health or {}, list(controls),
                        avoid_connectors=frozenset(avoid))


def excluded(decision, connector):
    c = next(c for c in decision["candidates"] if c["connector"] == connector)
    assert c["status"] == "excluded", c
    return " ".join(c["reasons"])


UNTIL = (AT + timedelta(hours=2)).isoformat()

CASES = [
    # (id, kwargs, rail, connector, explanation must mention)
    ("eur-standard-cheapest", dict(method="sepa", currency="EUR", country="DE"), "sepa", "bank_sepa", "cheapest"),
    ("eur-instant", dict(method="sepa", currency="EUR", country="DE", priority="instant"),
     "sepa_instant", "bank_sepa_instant", "within 1 h"),
    ("eur-priority-fastest", dict(method="sepa", currency="EUR", country="FR", priority="priority"),
     "sepa_instant", "bank_sepa_instant", "fastest"),
    ("eur-batch", dict(method="sepa", currency="EUR", country="DE", priority="batch"), "sepa", "bank_sepa", "batch"),
    ("usd-batch-ach", dict(method="ach", currency="USD", country="US", priority="batch"), "ach", "bank_ach", "batch"),
    ("usd-priority-wire", dict(method="ach", currency="USD", country="US", priority="priority"),
     "wire", "bank_wire", "fastest"),
    ("gbp-fps", dict(method="faster_payments", currency="GBP", country="GB"), "faster_payments", "bank_fps", "cheapest"),
    ("xof-momo", dict(method="mobile_money", currency="XOF", country="SN"), "mobile_money", "momo_xof", "cheapest"),
    ("chf-wire", dict(method="wire", currency="CHF", country="CH"), "wire", "bank_wire", "cheapest"),
    ("health-open-instant-moves-to-wire",
     dict(method="sepa", currency="EUR", country="DE", priority="priority", health={"bank_sepa_instant": OPEN}),
     "wire", "bank_wire", "fastest"),
    ("connector-pause-moves",
     dict(method="sepa", currency="EUR", country="DE", priority="instant",
          controls=[{"kind": "connector_pause", "target": "bank_sepa_instant", "params": {}, "reason": "bank incident"}]),
     "sepa", "bank_sepa", "instant"),
    ("rail-pause-holds",
     dict(method="sepa", currency="EUR", country="DE",
          controls=[{"kind": "rail_pause", "target": "sepa", "params": {}, "reason": "file issue"}]),
     "sepa", "bank_sepa", "cheapest"),
    ("merchant-override",
     dict(method="sepa", currency="EUR", country="DE",
          controls=[{"kind": "route_override", "target": "merchant:mer_1", "params": {"connector": "bank_wire", "until": UNTIL},
                     "reason": None}]),
     "wire", "bank_wire", "route override merchant:mer_1 forces connector bank_wire"),
    ("rail-override-to-sandbox",
     dict(method="ach", currency="USD", country="US",
          controls=[{"kind": "route_override", "target": "rail:ach", "params": {"connector": "sandbox", "until": UNTIL},
                     "reason": None}]),
     "ach", "sandbox", "forces connector sandbox"),
    ("expired-override-ignored",
     dict(method="sepa", currency="EUR", country="DE",
          controls=[{"kind": "route_override", "target": "merchant:mer_1",
                     "params": {"connector": "bank_wire", "until": (AT - timedelta(minutes=1)).isoformat()}, "reason": None}]),
     "sepa", "bank_sepa", "cheapest"),
    ("failover-avoids", dict(method="sepa", currency="EUR", country="DE", avoid=("bank_sepa",)),
     "sepa_instant", "bank_sepa_instant", "cheapest"),
]


@pytest.mark.parametrize("kwargs, rail, connector, mention", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_routing_decision_and_explanation(kwargs, rail, connector, mention):
    d = route(**kwargs)
    assert (d["rail"], d["connector"]) == (rail, connector), d["why"]
    assert mention in d["why"] or any(mention in " ".join(c["reasons"] + c["notes"]) for c in d["candidates"]), d
    chosen = [c for c in d["candidates"] if c["status"] == "chosen"]
    assert len(chosen) == 1 and chosen[0]["connector"] == connector
    assert d["settlement_target_at"] is not None
    # every candidate not chosen says why
    assert all(c["reasons"] for c in d["candidates"] if c["status"] != "chosen")


def test_explanations_say_why_each_other_candidate_was_excluded():
    d = route("sepa", "EUR", "priority", country="DE", health={"bank_sepa_instant": OPEN})
    assert "circuit open" in excluded(d, "bank_sepa_instant")
    assert "cannot pay a sepa beneficiary" in excluded(d, "bank_ach")
    assert "does not carry EUR" in excluded(d, "bank_fps")
    d = route("sepa", "EUR", country="DE")
    assert "exceeds" not in excluded(d, "bank_ach")
    paused = route("sepa", "EUR", country="DE", controls=[{"kind": "rail_pause", "target": "sepa", "params": {}, "reason": None}])
    chosen = next(c for c in paused["candidates"] if c["status"] == "chosen")
    assert any("wait at the submission gate" in n for n in chosen["notes"])
    fallbacks = route("sepa", "EUR", "priority", country="DE")["fallbacks"]
    assert [f["connector"] for f in fallbacks] == ["bank_wire", "bank_sepa"]


def test_country_and_currency_outside_every_rail_is_no_route():
    with pytest.raises(NoRoute, match="does not carry XAF"):
        route("mobile_money", "XAF", country="CM")
    d = route("sepa", "EUR", country="US")  # an IBAN outside SEPA: only a wire reaches it
    assert d["rail"] == "wire" and "does not reach country US" in excluded(d, "bank_sepa")


def test_every_candidate_unhealthy_uses_the_best_anyway():
    d = route("faster_payments", "GBP", country="GB", health={"bank_fps": OPEN})
    assert d["connector"] == "bank_fps" and "no healthy, unpaused candidate" in d["why"]


def test_beneficiary_country():
    assert beneficiary_country("sepa", {"iban": "FR7630006000011234567890189"}) == "FR"
    assert beneficiary_country("ach", {"routing_number": "021000021"}) == "US"
    assert beneficiary_country("mobile_money", {"phone": "+221771234567"}) == "SN"
    assert beneficiary_country("wire", {"bic": "UBSWCHZH80A", "account_number": "1234"}) == "CH"
