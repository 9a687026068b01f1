"""Which SLA rule applies to a payout, and the settlement target it gives. Pure: no I/O.

A rule keys on rail, connector, beneficiary country and priority; a key left empty (None) is a
wildcard. Of the enabled rules that match, the most specific wins: the one with the most keys
set. Between rules with as many keys set, the fixed order connector > rail > country > priority
decides (a rule that sets connector beats one that does not; then rail; then country; then
priority); two rules with the very same keys: the older (lower id). No rule matches: the rail's
own settlement terms (`rail_rules`) are the target.

Routing resolves the rule once, when it chooses rail and connector, and stores the target on the
payout; the payout workflow's breach timer, the breach alert, `payouts_past_target_date` and
`GET /api/v1/sla/breaches` all read that stored target (so a rule changed later applies to
payouts routed later, as a rail rule change does).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from core.rails.rules import BusinessCalendar, RailRule, settlement_target

# The tie-break among rules with as many keys set: earlier in this tuple wins.
KEY_ORDER: tuple[str, ...] = ("connector", "rail", "country", "priority")


class SlaRule(BaseModel):
    id: int
    rail: str | None = None
    connector: str | None = None
    country: str | None = None  # the beneficiary's country, ISO 3166 alpha-2
    priority: str | None = None  # the payout's priority: batch | standard | instant | priority
    target_seconds: int | None = Field(default=None, description="target = routing time + this")
    target_business_days: int | None = Field(
        default=None, description="target = this many business days after the rail's next cutoff")
    enabled: bool = True

    def keys(self) -> dict[str, str | None]:
        return {k: getattr(self, k) for k in KEY_ORDER}

    def specificity(self) -> tuple[int, tuple[bool, ...]]:
        """Sort key: (keys set, which keys in KEY_ORDER): larger is more specific."""
        flags = tuple(getattr(self, k) is not None for k in KEY_ORDER)
        return sum(flags), flags

    def describe(self) -> str:
        keys = ", ".join(f"{k}={v}" for k, v in self.keys().items() if v is not None) or "any payout"
        return f"rule {self.id} ({keys})"

    def target_text(self) -> str:
        if self.target_seconds is not None:
            return f"{self.target_seconds / 3600:g} h"
        return f"T+{self.target_business_days} business days"


class PayoutKeys(BaseModel):
    rail: str
    connector: str | None = None
    country: str | None = None
    priority: str | None = None


def _mismatch(rule: SlaRule, payout: PayoutKeys) -> str | None:
    for key in KEY_ORDER:
        want = getattr(rule, key)
        if want is None:
            continue
        have = getattr(payout, key)
        if have is None or want.lower() != have.lower():
            return f"{key} is {have or 'unknown'}, not {want}"
    return None


def resolve_sla_rule(rules: list[SlaRule], payout: PayoutKeys) -> SlaRule | None:
    """The enabled rule that applies to the payout (None: the rail's own terms apply)."""
    matching = [r for r in rules if r.enabled and _mismatch(r, payout) is None]
    if not matching:
        return None
    return max(matching, key=lambda r: (r.specificity(), -r.id))


def explain_resolution(rules: list[SlaRule], payout: PayoutKeys) -> dict:
    """The rule that applies, why, and each rule's verdict (matches / does not, and why),
    most specific first."""
    chosen = resolve_sla_rule(rules, payout)
    verdicts = []
    for r in sorted(rules, key=lambda r: (r.specificity(), -r.id), reverse=True):
        why = _mismatch(r, payout)
        if not r.enabled:
            verdict, why = "disabled", "disabled"
        elif why is not None:
            verdict = "no_match"
        elif r is chosen:
            verdict, why = "applies", f"matches {r.specificity()[0]} of 4 keys"
        else:
            verdict, why = "outranked", f"matches, but {chosen.describe()} is more specific"  # type: ignore[union-attr]
        verdicts.append({"rule_id": r.id, "verdict": verdict, "why": why, "specificity": r.specificity()[0]})
    if chosen is None:
        why = f"no enabled rule matches: the {payout.rail} rail's own settlement terms apply"
    else:
        tied = [r for r in rules if r.enabled and _mismatch(r, payout) is None and r is not chosen
                and r.specificity()[0] == chosen.specificity()[0]]
        why = (f"{chosen.describe()} applies: target {chosen.target_text()}; it sets "
               f"{chosen.specificity()[0]} of the 4 keys")
        if tied:
            why += (f", as many as {', '.join(r.describe() for r in tied)}, and wins by the order "
                    f"{' > '.join(KEY_ORDER)} (then the older rule)")
    return {"rule": chosen, "why": why, "rules": verdicts}


def sla_target(rail: RailRule, rule: SlaRule | None, at: datetime, calendar: BusinessCalendar) -> datetime:
    """The settlement target of a payout routed at `at` on `rail` under `rule` (None: the
    rail's own terms). A business-day target counts from the rail's next cutoff like the rail
    does; on a rail without cutoffs, from `at`'s day, at `at`'s time of day."""
    if rule is None:
        return settlement_target(rail, at, calendar)
    if rule.target_seconds is not None:
        return at + timedelta(seconds=rule.target_seconds)
    days = rule.target_business_days or 0
    if rail.cutoff_time is not None:
        return settlement_target(rail.model_copy(update={"settlement_business_days": days}), at, calendar)
    return datetime.combine(calendar.add_business_days(at.date(), days), at.timetz())


def rule_summary(rule: SlaRule | None) -> dict | None:
    """What a payout's routing records about the rule that set its target."""
    if rule is None:
        return None
    return {"id": rule.id, **rule.keys(), "target_seconds": rule.target_seconds,
            "target_business_days": rule.target_business_days, "specificity": rule.specificity()[0]}
