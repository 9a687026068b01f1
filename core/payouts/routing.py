"""Rail selection. `choose_rail` is the fee's rail at creation: method + currency (+ priority).
`decide_route` is the routing a payout goes out by: every rail and connector that can carry it,
scored by cost and expected settlement time (SLA rules, business days, cutoffs) over connector
health, rail/connector pauses and route overrides, with the explanation of each candidate.
"""

from __future__ import annotations

from core.platform.errors import Unprocessable

# method -> currencies it can carry
METHOD_CURRENCIES: dict[str, frozenset[str]] = {
    "sepa": frozenset({"EUR"}),
    "ach": frozenset({"USD"}),
    "wire": frozenset({"USD", "EUR", "GBP", "CHF", "BHD", "INR"}),
    "faster_payments": frozenset({"GBP"}),
    "mobile_money": frozenset({"XOF", "XAF", "GHS", "KES"}),
}

DEFAULT_CONNECTOR = "sandbox"

UnsupportedCurrency = type("UnsupportedCurrencyError", (Unprocessable,), {"type": "unsupported_currency"})


def choose_rail(method: str, currency: str, priority: str) -> str:
    allowed = METHOD_CURRENCIES.get(method)
    if allowed is None:
        raise Unprocessable(f"unknown payout method {method!r}")
    if currency not in allowed:
        raise UnsupportedCurrency(
            f"method {method} does not carry {currency}; it carries {', '.join(sorted(allowed))}"
        )
    if method == "sepa" and priority in ("instant", "priority"):
        return "sepa_instant"
    return method


def explain(method: str, currency: str, priority: str) -> dict:
    rail = choose_rail(method, currency, priority)
    return {
        "rule": "method+currency",
        "rail": rail,
        "connector": DEFAULT_CONNECTOR,
        "why": f"{method} in {currency} at {priority} priority goes by {rail} through {DEFAULT_CONNECTOR}",
    }


# --- the rails routing engine ---------------------------------------------------------------
# Candidates are (rail, connector) pairs: the rail must carry the payout's method, currency and
# beneficiary country; the connector must serve the rail. Pauses always exclude; an open circuit
# breaker (health) excludes unless ops forced the connector with a route override. Priority
# decides the objective: standard and batch take the cheapest rail that meets their SLA budget,
# instant the cheapest within its (short) budget, priority the fastest. Every candidate and
# every exclusion is written into the explanation stored on the payout.

from dataclasses import dataclass, field  # noqa: E402
from datetime import datetime  # noqa: E402

from core.rails.rules import BusinessCalendar, RailRule, next_cutoff, settlement_target  # noqa: E402

# priority -> (objective, SLA budget in seconds or None)
PRIORITY_OBJECTIVES: dict[str, tuple[str, float | None]] = {
    "batch": ("cost", None),
    "standard": ("cost", 4 * 86400),
    "instant": ("cost", 3600),
    "priority": ("time", None),
}


@dataclass(frozen=True)
class RouteFacts:
    payout_id: str
    merchant_id: str
    method: str
    currency: str
    country: str | None
    amount_minor: int
    priority: str
    at: datetime


@dataclass(frozen=True)
class ConnectorInfo:
    name: str
    rails: frozenset[str]
    preference: int = 100  # lower first among equals
    routable: bool = True  # False: only used when a route override names it


@dataclass
class Candidate:
    rail: str
    connector: str
    cost_minor: int = 0
    expected_seconds: float = 0.0
    cutoff_at: datetime | None = None
    settlement_target_at: datetime | None = None
    status: str = "eligible"  # eligible | chosen | excluded
    reasons: list[str] = field(default_factory=list)  # why it is excluded (or ranked lower)
    soft: bool = True  # excluded only by health, a connector pause or a failover: a last resort
    notes: list[str] = field(default_factory=list)
    score: list[float] | None = None
    preference: int = 100

    def view(self) -> dict:
        return {
            "rail": self.rail,
            "connector": self.connector,
            "status": self.status,
            "cost_minor": self.cost_minor,
            "expected_seconds": round(self.expected_seconds, 1),
            "cutoff_at": self.cutoff_at.isoformat() if self.cutoff_at else None,
            "settlement_target_at": self.settlement_target_at.isoformat() if self.settlement_target_at else None,
            "score": self.score,
            "reasons": self.reasons,
            "notes": self.notes,
        }


class NoRoute(Unprocessable):
    type = "no_route"


def _active_override(controls: list[dict], merchant_id: str, rails: set[str], at: datetime) -> dict | None:
    """The route override that applies: a merchant's beats a rail's; expired ones do not count."""
    found = {}
    for c in controls:
        if c["kind"] != "route_override":
            continue
        params = c.get("params") or {}
        until = params.get("until")
        if until:
            until_at = datetime.fromisoformat(until) if isinstance(until, str) else until
            if until_at <= at:
                continue
        kind, _, ident = str(c["target"]).partition(":")
        if kind == "merchant" and ident == merchant_id:
            found["merchant"] = {**c, "params": params}
        elif kind == "rail" and ident in rails:
            found.setdefault("rail", {**c, "params": params})
    return found.get("merchant") or found.get("rail")


def decide_route(
    facts: RouteFacts,
    rules: list[RailRule],
    calendars: dict[str, BusinessCalendar],
    connectors: list[ConnectorInfo],
    health: dict[str, dict],
    controls: list[dict],
    *,
    avoid_connectors: frozenset[str] = frozenset(),
) -> dict:
    """The routing decision and its explanation (JSON-ready). Raises NoRoute when nothing fits."""
    objective, budget = PRIORITY_OBJECTIVES.get(facts.priority, PRIORITY_OBJECTIVES["standard"])
    paused_rails = {c["target"]: c.get("reason") for c in controls if c["kind"] == "rail_pause"}
    paused_connectors = {c["target"]: c.get("reason") for c in controls if c["kind"] == "connector_pause"}
    override = _active_override(controls, facts.merchant_id, {r.rail for r in rules}, facts.at)
    forced = (override or {}).get("params", {}).get("connector")

    candidates: list[Candidate] = []
    for rule in sorted(rules, key=lambda r: r.rail):
        serving = [c for c in connectors if rule.rail in c.rails and (c.routable or c.name == forced)]
        if not serving:
            continue
        cal = calendars.get(rule.calendar) or BusinessCalendar(rule.calendar)
        hard = []
        if not rule.enabled:
            hard.append(f"rail {rule.rail} is disabled")
        if facts.method not in rule.methods:
            hard.append(f"rail {rule.rail} cannot pay a {facts.method} beneficiary")
        if facts.currency not in rule.currencies:
            hard.append(f"rail {rule.rail} does not carry {facts.currency}")
        if rule.countries and facts.country not in rule.countries:
            hard.append(f"rail {rule.rail} does not reach country {facts.country or 'unknown'}")
        for conn in serving:
            cand = Candidate(rail=rule.rail, connector=conn.name, preference=conn.preference,
                             reasons=list(hard), soft=not hard)
            if not hard:
                cand.cost_minor = rule.fee(facts.amount_minor)
                cand.cutoff_at = next_cutoff(rule, facts.at, cal)
                cand.settlement_target_at = settlement_target(rule, facts.at, cal)
                cand.expected_seconds = (cand.settlement_target_at - facts.at).total_seconds()
            # A paused rail holds its payouts at the submission gate until resumed (ops' intent is
            # "stop this rail", not "send it another, dearer way"); a paused connector is avoided.
            if rule.rail in paused_rails:
                reason = paused_rails[rule.rail]
                cand.notes.append(f"rail {rule.rail} is paused{': ' + reason if reason else ''}: "
                                  "payouts on it wait at the submission gate until it resumes")
            if conn.name in paused_connectors:
                reason = paused_connectors[conn.name]
                cand.reasons.append(f"connector {conn.name} is paused" + (f": {reason}" if reason else ""))
            h = health.get(conn.name) or {}
            if h.get("state") == "open":
                if conn.name == forced:
                    cand.notes.append(f"connector {conn.name} circuit open, used because a route override forces it")
                else:
                    cand.reasons.append(f"connector {conn.name} circuit open: {h.get('open_reason') or 'unhealthy'}")
            if conn.name in avoid_connectors:
                cand.reasons.append(f"connector {conn.name} failed this payout; failing over")
            if cand.reasons:
                cand.status = "excluded"
            candidates.append(cand)

    def score(c: Candidate) -> list[float]:
        primary, secondary = ((c.cost_minor, c.expected_seconds) if objective == "cost"
                              else (c.expected_seconds, c.cost_minor))
        return [float(primary), float(secondary), float(c.preference)]

    eligible = [c for c in candidates if c.status == "eligible"]
    last_resort = None
    if not eligible:
        # Nothing healthy and unpaused: take the best of those excluded only by health or a
        # connector pause, so the payout waits at the gate or retries instead of failing.
        eligible = [c for c in candidates if c.soft and c.reasons and not any("failing over" in r for r in c.reasons)]
        if eligible:
            last_resort = "no healthy, unpaused candidate: using the best one anyway"
            for c in eligible:
                c.status = "eligible"
    if facts.priority == "batch":
        batch_rails = {r.rail for r in rules if r.batch}
        if any(c.rail in batch_rails for c in eligible):
            for c in eligible:
                if c.rail not in batch_rails:
                    c.status, c.reasons = "excluded", ["a batch payout goes by a batch rail when one is eligible"]
            eligible = [c for c in eligible if c.status == "eligible"]
    if budget is not None and any(c.expected_seconds <= budget for c in eligible):
        for c in eligible:
            if c.expected_seconds > budget:
                c.status = "excluded"
                c.reasons = [f"expected {c.expected_seconds / 3600:.1f} h exceeds the {facts.priority} "
                             f"SLA budget of {budget / 3600:g} h"]
        eligible = [c for c in eligible if c.status == "eligible"]
    for c in eligible:
        c.score = score(c)
    eligible.sort(key=lambda c: (c.score, c.rail, c.connector))

    chosen: Candidate | None = None
    override_note = None
    if forced:
        viable = [c for c in candidates if c.connector == forced and c.soft
                  and not any("paused" in r or "failing over" in r for r in c.reasons)]
        if viable:
            for c in viable:
                c.score = c.score or score(c)
            chosen = min(viable, key=lambda c: (c.score, c.rail))
            override_note = (f"route override {override['target']} forces connector {forced}"
                             + (f" until {override['params'].get('until')}" if override["params"].get("until") else ""))
        else:
            override_note = (f"route override {override['target']} names connector {forced}, "
                             "which cannot take this payout: ignored")
    if chosen is None:
        if not eligible:
            reasons = sorted({r for c in candidates for r in c.reasons}) or ["no connector serves it"]
            raise NoRoute(
                f"no rail can pay this {facts.method} payout in {facts.currency} to "
                f"{facts.country or 'unknown'}: " + "; ".join(reasons)
            )
        chosen = eligible[0]
    chosen.status = "chosen"
    if chosen.reasons:
        chosen.notes += [f"chosen despite: {r}" for r in chosen.reasons]
        chosen.reasons = []
    others = [c for c in eligible if c is not chosen]
    for c in others:
        c.reasons = c.reasons or [f"ranked below {chosen.rail} via {chosen.connector}"]
    fallbacks, seen = [], {chosen.connector}
    for c in others:
        if c.connector not in seen:
            seen.add(c.connector)
            fallbacks.append({"rail": c.rail, "connector": c.connector})
    goal = ("fastest" if objective == "time" else
            "cheapest" + (f" within {budget / 3600:g} h" if budget else ""))
    why = "; ".join(filter(None, [override_note, last_resort])) + ("; " if (override_note or last_resort) else "") + (
        f"{facts.priority} payout: {goal} -> {chosen.rail} via {chosen.connector} "
        f"(fee {chosen.cost_minor} minor, expected {chosen.expected_seconds / 3600:.2f} h)"
    )
    order = {"chosen": 0, "eligible": 1, "excluded": 2}
    return {
        "engine": "rails-v1",
        "rail": chosen.rail,
        "connector": chosen.connector,
        "priority": facts.priority,
        "objective": objective,
        "sla_budget_seconds": budget,
        "country": facts.country,
        "decided_at": facts.at.isoformat(),
        "cutoff_at": chosen.cutoff_at.isoformat() if chosen.cutoff_at else None,
        "settlement_target_at": chosen.settlement_target_at.isoformat() if chosen.settlement_target_at else None,
        "override": override_note,
        "why": why,
        "fallbacks": fallbacks,
        "candidates": [c.view() for c in sorted(candidates, key=lambda c: (order[c.status], c.score or [], c.rail, c.connector))],
    }
