"""The SLA rule resolver against a brute force written from the documented precedence: of the
enabled rules whose every set key equals the payout's, the most keys set wins; then connector,
then rail, then country, then priority; then the lowest id. No match: None (the rail's terms)."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from core.rails.rules import BusinessCalendar, RailRule
from core.sla.rules import PayoutKeys, SlaRule, explain_resolution, resolve_sla_rule, sla_target

RAILS = ["sepa", "ach", "wire"]
CONNECTORS = ["bank_a", "bank_b", "bank_c"]
COUNTRIES = ["DE", "FR", "US"]
PRIORITIES = ["batch", "standard", "instant", "priority"]


def brute_force(rules: list[SlaRule], p: PayoutKeys) -> SlaRule | None:
    def applies(r: SlaRule) -> bool:
        return (r.enabled
                and (r.connector is None or r.connector == p.connector)
                and (r.rail is None or r.rail == p.rail)
                and (r.country is None or r.country == p.country)
                and (r.priority is None or r.priority == p.priority))

    best: SlaRule | None = None
    for r in rules:
        if not applies(r):
            continue
        if best is None:
            best = r
            continue
        count_r = [r.connector, r.rail, r.country, r.priority].count(None)
        count_b = [best.connector, best.rail, best.country, best.priority].count(None)
        if count_r != count_b:  # fewer wildcards = more specific
            if count_r < count_b:
                best = r
            continue
        decided = False
        for key in ("connector", "rail", "country", "priority"):
            r_set, b_set = getattr(r, key) is not None, getattr(best, key) is not None
            if r_set != b_set:
                if r_set:
                    best = r
                decided = True
                break
        if not decided and r.id < best.id:
            best = r
    return best


payout_keys = st.builds(
    PayoutKeys, rail=st.sampled_from(RAILS), connector=st.none() | st.sampled_from(CONNECTORS),
    country=st.none() | st.sampled_from(COUNTRIES), priority=st.none() | st.sampled_from(PRIORITIES),
)


def key_value(values: list[str], payout_value: str | None):
    """A rule key: a wildcard, the payout's own value (a match) or any value (mostly a mismatch);
    weighted so that most rule sets hold several matching rules with as many keys set."""
    own = [payout_value] if payout_value is not None else []
    return st.one_of(st.none(), st.none(), st.sampled_from(own) if own else st.none(), st.sampled_from(values))


@st.composite
def cases(draw) -> tuple[list[SlaRule], PayoutKeys]:
    payout = draw(payout_keys)
    ids = draw(st.lists(st.integers(1, 10_000), unique=True, max_size=12))
    rules = [SlaRule(id=i, rail=draw(key_value(RAILS, payout.rail)),
                     connector=draw(key_value(CONNECTORS, payout.connector)),
                     country=draw(key_value(COUNTRIES, payout.country)),
                     priority=draw(key_value(PRIORITIES, payout.priority)),
                     target_seconds=draw(st.integers(1, 10**6)),
                     enabled=draw(st.booleans() | st.just(True)))
             for i in ids]
    return rules, payout


@settings(max_examples=500, deadline=None)
@given(case=cases())
def test_resolver_matches_the_brute_force_precedence(case):
    rules, payout = case
    got = resolve_sla_rule(rules, payout)
    want = brute_force(rules, payout)
    assert (got.id if got else None) == (want.id if want else None)
    explained = explain_resolution(rules, payout)
    assert (explained["rule"].id if explained["rule"] else None) == (want.id if want else None)
    verdicts = {v["rule_id"]: v["verdict"] for v in explained["rules"]}
    assert [i for i, v in verdicts.items() if v == "applies"] == ([want.id] if want else [])


@settings(max_examples=200, deadline=None)
@given(case=cases())
def test_a_rule_order_never_changes_the_winner(case):
    rules, payout = case
    winner = resolve_sla_rule(rules, payout)
    again = resolve_sla_rule(list(reversed(rules)), payout)
    assert (winner.id if winner else None) == (again.id if again else None)


def test_the_documented_examples():
    """connector beats rail at equal count; more keys beat the order; disabled rules never apply."""
    rail_only = SlaRule(id=1, rail="sepa", target_business_days=1)
    connector_only = SlaRule(id=2, connector="bank_a", target_seconds=3600)
    rail_country = SlaRule(id=3, rail="sepa", country="DE", target_seconds=7200)
    disabled = SlaRule(id=4, rail="sepa", connector="bank_a", country="DE", target_seconds=60, enabled=False)
    rules = [rail_only, connector_only, rail_country, disabled]
    p = PayoutKeys(rail="sepa", connector="bank_a", country="FR", priority="standard")
    assert resolve_sla_rule(rules, p) is connector_only  # 1 key each: connector > rail
    p_de = p.model_copy(update={"country": "DE"})
    assert resolve_sla_rule(rules, p_de) is rail_country  # 2 keys beat 1
    assert resolve_sla_rule(rules, p.model_copy(update={"rail": "ach", "connector": "bank_b"})) is None
    why = explain_resolution(rules, p)["why"]
    assert "rule 2" in why and "connector > rail > country > priority" in why


def test_targets_from_a_rule_and_from_the_rail():
    at = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)  # a Monday
    sepa = RailRule(rail="sepa", methods=["sepa"], currencies=["EUR"], timezone="Europe/Paris", cutoff_time="18:00",
                    settlement_business_days=1, calendar="NONE")
    cal = BusinessCalendar("NONE")
    assert sla_target(sepa, None, at, cal) == datetime(2026, 3, 3, 17, 0, tzinfo=timezone.utc)
    same = SlaRule(id=1, rail="sepa", target_business_days=1)
    assert sla_target(sepa, same, at, cal) == sla_target(sepa, None, at, cal)
    assert sla_target(sepa, SlaRule(id=2, connector="x", target_seconds=3600), at, cal) == datetime(
        2026, 3, 2, 11, 0, tzinfo=timezone.utc)
    assert sla_target(sepa, SlaRule(id=3, rail="sepa", target_business_days=0), at, cal) == datetime(
        2026, 3, 2, 17, 0, tzinfo=timezone.utc)
