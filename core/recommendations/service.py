"""Recommendations: computed by the scheduled RecommendationWorkflow from payops's own data,
listed per tenant, applied (the suggested ops action is created through the ops-action service,
so the usual approvals and audit apply) or dismissed, and expired after their lifetime.

Kinds (docs/recommendations.md):
- cheaper_route: a merchant's corridor (currency, country, rail) paid X in fees over the window;
  another rail and connector that meets every one of those payouts' settlement targets would
  have cost Y by the rails' fee rules; saving (X - Y) per month. Suggests a ROUTE_OVERRIDE.
- float_runway: the available balance lasts fewer than N days at the window's payout velocity;
  suggests a top-up to a month of payouts. Informational: no ops action creates money.
- failing_connector: a connector's failure rate over the failure window, or its open breaker;
  suggests PAUSE_PAYOUTS on it.
- batch_instead_of_standard: the subset of a merchant's corridor's payouts that went by a
  non-batch rail although a batch rail carries them, would have met their deadlines and charges
  less; saving per month. Informational: the merchant sends them with priority "batch".
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from itertools import groupby
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from core.ops_actions import service as ops_action_service
from core.ops_actions.models import ActionType
from core.payouts.routing import PRIORITY_OBJECTIVES, ConnectorInfo
from core.platform import pagination
from core.platform.errors import InvalidState, typed
from core.platform.settings import Settings
from core.rails import store as rail_store
from core.rails.rules import BusinessCalendar, RailRule, settlement_target
from core.recommendations import store
from core.recommendations.models import (
    Draft,
    RecommendationKind,
    RecommendationStatus,
    confidence,
    per_month,
    proportion_confidence,
    runway_days,
    top_up_minor,
)

log = logging.getLogger("payops.recommendations")

NotApplicable = typed(InvalidState, "recommendation_not_applicable",
                      "This recommendation suggests no ops action; dismiss it once handled")
NotPending = typed(InvalidState, "recommendation_not_pending", "The recommendation is no longer pending")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _days(since: datetime, now: datetime) -> list[date]:
    first, last = since.date(), now.date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# --- kind 1: cheaper route -------------------------------------------------------------------


def _carries(rule: RailRule, p: dict) -> bool:
    """The rail takes the payout's method and currency, and its beneficiary country."""
    return (p["method"] in rule.methods and p["currency"] in rule.currencies
            and (not rule.countries or p["country"] in rule.countries))


def _daily_confidence(payouts: list[dict], since: datetime, now: datetime) -> tuple[float, str]:
    """confidence() of these payouts: their count, and the variance of their count per UTC day
    over the window (days without one count as 0)."""
    daily: dict[date, int] = defaultdict(int)
    for p in payouts:
        daily[p["created_at"].astimezone(timezone.utc).date()] += 1
    return confidence(len(payouts), [float(daily[d]) for d in _days(since, now)])


def _meets_targets(rule: RailRule, cal: BusinessCalendar, payouts: list[dict]) -> bool:
    """The rail can carry every payout and would have settled each by its settlement target
    (the one routing gave it; without one, its priority's SLA budget)."""
    for p in payouts:
        if not _carries(rule, p):
            return False
        target = p["settlement_target_at"]
        if target is None:
            budget = PRIORITY_OBJECTIVES.get(p["priority"], PRIORITY_OBJECTIVES["standard"])[1]
            if budget is None:
                continue
            target = p["created_at"] + timedelta(seconds=budget)
        if settlement_target(rule, p["created_at"], cal) > target:
            return False
    return True


def cheaper_route_drafts(
    payouts: list[dict], rules: list[RailRule], calendars: dict[str, BusinessCalendar],
    connectors: list[ConnectorInfo], health: dict[str, dict], controls: list[dict], *,
    now: datetime, window_days: int,
) -> list[Draft]:
    since = now - timedelta(days=window_days)
    paused = {c["target"] for c in controls if c["kind"] == "connector_pause"}
    paused_rails = {c["target"] for c in controls if c["kind"] == "rail_pause"}
    overridden = {c["target"].partition(":")[2]: (c.get("params") or {}).get("connector")
                  for c in controls if c["kind"] == "route_override" and str(c["target"]).startswith("merchant:")}
    drafts = []
    corridor = lambda p: (p["merchant_id"], p["currency"], p["country"], p["rail"])  # noqa: E731
    for (merchant_id, currency, country, rail), group in groupby(payouts, key=corridor):
        rows = list(group)
        used = {p["connector"] for p in rows}
        paid = sum(int(p["fee_minor"]) for p in rows)
        best: tuple[int, int, str, RailRule, ConnectorInfo] | None = None
        for rule in rules:
            if rule.rail == rail or not rule.enabled or rule.rail in paused_rails:
                continue
            if not _meets_targets(rule, calendars.get(rule.calendar) or BusinessCalendar(rule.calendar), rows):
                continue
            would = sum(rule.fee(int(p["amount_minor"])) for p in rows)
            for conn in connectors:
                if (rule.rail not in conn.rails or conn.name in used or conn.name in paused
                        or (health.get(conn.name) or {}).get("state") == "open"):
                    continue
                key = (would, conn.preference, conn.name, rule, conn)
                if best is None or key[:3] < best[:3]:
                    best = key
        if best is None or best[0] >= paid:
            continue
        would, _, _, rule, conn = best
        if overridden.get(merchant_id) == conn.name:
            continue  # ops already route this merchant there
        saving_window = paid - would
        saving = per_month(saving_window, window_days)
        n = len(rows)
        conf, conf_text = _daily_confidence(rows, since, now)
        fee_rule = f"{rule.fee_fixed_minor} + amount x {rule.fee_bps} bps"
        until = (now + timedelta(days=30)).replace(microsecond=0)
        drafts.append(Draft(
            kind=RecommendationKind.CHEAPER_ROUTE, merchant_id=merchant_id,
            dedupe_key=f"cheaper_route:{merchant_id}:{currency}:{country or '-'}:{rail}",
            title=(f"Route {merchant_id}'s {currency} payouts to {country or 'any country'} by {rule.rail} "
                   f"via {conn.name} instead of {rail}"),
            impact_minor=saving, currency=currency,
            impact_arithmetic=(
                f"{n} settled {rail} payout(s) in {window_days} days paid {paid} {currency} minor in fees; "
                f"{rule.rail} via {conn.name} ({fee_rule} per payout) would have cost {would}; "
                f"saving ({paid} - {would}) x {30}/{window_days} days = {saving} {currency} minor per month"),
            confidence=conf, confidence_explanation=conf_text,
            evidence={"window_days": window_days, "since": since.isoformat(), "payouts": n,
                      "fees_paid_minor": paid, "alternative_fees_minor": would, "rail": rail,
                      "connectors": sorted(used), "alternative_rail": rule.rail, "alternative_connector": conn.name,
                      "country": country or None, "volume_minor": sum(int(p["amount_minor"]) for p in rows),
                      "note": "a route override applies to all the merchant's payouts the connector can carry"},
            action_type=ActionType.ROUTE_OVERRIDE.value,
            action_params={"merchant_id": merchant_id, "connector": conn.name, "until": until.isoformat()},
        ))
    return drafts


# --- kind 2: float runway --------------------------------------------------------------------


def float_runway_drafts(daily: list[dict], balances: dict[tuple[str, str], int], *, now: datetime,
                        window_days: int, runway_threshold_days: int) -> list[Draft]:
    since = now - timedelta(days=window_days)
    by_account: dict[tuple[str, str], dict[date, tuple[int, int]]] = defaultdict(dict)
    for r in daily:
        by_account[(r["merchant_id"], r["currency"])][r["day"]] = (int(r["outflow_minor"]), int(r["payouts"]))
    drafts = []
    for (merchant_id, currency), days in sorted(by_account.items()):
        outflow = sum(v[0] for v in days.values())
        count = sum(v[1] for v in days.values())
        available = max(0, balances.get((merchant_id, currency), 0))
        runway = runway_days(available, outflow, window_days)
        if runway is None or runway >= runway_threshold_days:
            continue
        top_up = top_up_minor(available, outflow, window_days)
        monthly = per_month(outflow, window_days)
        conf, conf_text = confidence(count, [float(days.get(d, (0, 0))[0]) for d in _days(since, now)])
        drafts.append(Draft(
            kind=RecommendationKind.FLOAT_RUNWAY, merchant_id=merchant_id,
            dedupe_key=f"float_runway:{merchant_id}:{currency}",
            title=(f"{merchant_id}'s {currency} balance runs out in {runway:.1f} days at its payout velocity: "
                   "top up to a month of payouts"),
            impact_minor=top_up, currency=currency,
            impact_arithmetic=(
                f"payouts took {outflow} {currency} minor (amount + fee, {count} payouts) in {window_days} days: "
                f"{monthly} per month; available {available}; runway {available} x {window_days}/{outflow} = "
                f"{runway:.1f} days < {runway_threshold_days}; top-up to a month of payouts {monthly} - {available} = "
                f"{top_up} {currency} minor (the payouts a month at this velocity that the balance cannot fund)"),
            confidence=conf, confidence_explanation=conf_text,
            evidence={"window_days": window_days, "since": since.isoformat(), "payouts": count,
                      "outflow_minor": outflow, "available_minor": available, "runway_days": round(runway, 2),
                      "threshold_days": runway_threshold_days},
            action_type=None, action_params=None,
        ))
    return drafts


# --- kind 3: failing connector ---------------------------------------------------------------


def failing_connector_drafts(outcomes: list[dict], health: dict[str, dict], controls: list[dict], *,
                             now: datetime, window_hours: float, rate_threshold: float,
                             min_payouts: int) -> list[Draft]:
    paused = {c["target"] for c in controls if c["kind"] == "connector_pause"}
    by_connector: dict[str, list[dict]] = defaultdict(list)
    for r in outcomes:
        by_connector[r["connector"]].append(r)
    drafts = []
    for name in sorted(set(by_connector) | {c for c, h in health.items() if h.get("state") == "open"}):
        if name in paused:
            continue
        rows = by_connector.get(name, [])
        total = sum(int(r["payouts"]) for r in rows)
        failed = sum(int(r["failed"]) for r in rows)
        breaker_open = (health.get(name) or {}).get("state") == "open"
        rate = failed / total if total else 0.0
        if not breaker_open and not (total >= min_payouts and rate >= rate_threshold):
            continue
        worst = max(rows, key=lambda r: (int(r["failed_minor"]), r["currency"]), default=None)
        currency = worst["currency"] if worst else "XXX"  # ISO 4217 "no currency": nothing observed
        failed_minor = int(worst["failed_minor"]) if worst else 0
        impact = per_month(failed_minor, window_hours / 24)
        conf, conf_text = proportion_confidence(failed, total)
        if breaker_open:
            reason = (health.get(name) or {}).get("open_reason") or "unhealthy"
            conf = max(conf, 0.9)
            conf_text = (f"the circuit breaker is open ({reason}): payops's own health checks or error window "
                         f"tripped it, so confidence is at least 0.90. " + conf_text)
        why = ("breaker open" if breaker_open else "") + (" and " if breaker_open and total else "") + (
            f"{failed} of {total} payouts failed ({rate:.0%}) in {window_hours:g} h" if total else "")
        drafts.append(Draft(
            kind=RecommendationKind.FAILING_CONNECTOR, merchant_id=None, dedupe_key=f"failing_connector:{name}",
            title=f"Pause connector {name}: {why}",
            impact_minor=impact, currency=currency,
            impact_arithmetic=(
                f"{failed_minor} {currency} minor failed through {name} in {window_hours:g} h; "
                f"{failed_minor} x {30 * 24}/{window_hours:g} h = {impact} {currency} minor per month at risk"),
            confidence=conf, confidence_explanation=conf_text,
            evidence={"window_hours": window_hours, "since": (now - timedelta(hours=window_hours)).isoformat(),
                      "payouts": total, "failed": failed, "failure_rate": round(rate, 4),
                      "rate_threshold": rate_threshold, "min_payouts": min_payouts, "breaker_open": breaker_open,
                      "by_currency": [{k: (int(v) if k != "currency" else v) for k, v in r.items() if k != "connector"}
                                      for r in rows]},
            action_type=ActionType.PAUSE_PAYOUTS.value, action_params={"connector": name},
        ))
    return drafts


# --- kind 4: batch instead of standard --------------------------------------------------------


def payout_deadline(p: dict) -> tuple[bool, datetime | None]:
    """(has a deadline a batch rail can be measured against, that deadline or None for "any").

    The stored `settlement_target_at` when routing set one; else `created_at` + the SLA budget
    of the payout's priority (an unknown priority counts as standard, as in routing). The
    `batch` priority has no budget: any batch settlement meets it (True, None). Any other
    priority without a budget (`priority`: fastest wins, no deadline to leave room in) does not
    qualify (False, None)."""
    if p["settlement_target_at"] is not None:
        return True, p["settlement_target_at"]
    priority = p["priority"] if p["priority"] in PRIORITY_OBJECTIVES else "standard"
    budget = PRIORITY_OBJECTIVES[priority][1]
    if budget is None:
        return priority == "batch", None
    return True, p["created_at"] + timedelta(seconds=budget)


def _batch_verdict(rule: RailRule, cal: BusinessCalendar, p: dict) -> str:
    """Why one payout would (\"qualifies\") or would not have gone by the batch rail `rule`."""
    if not _carries(rule, p):
        return "not_carried"
    ok, deadline = payout_deadline(p)
    if not ok:
        return "no_deadline_budget"
    if deadline is not None and settlement_target(rule, p["created_at"], cal) > deadline:
        return "deadline_too_near"
    if rule.fee(int(p["amount_minor"])) >= int(p["fee_minor"]):
        return "batch_fee_not_lower"
    return "qualifies"


def batch_instead_of_standard_drafts(
    payouts: list[dict], rules: list[RailRule], calendars: dict[str, BusinessCalendar],
    connectors: list[ConnectorInfo], health: dict[str, dict], controls: list[dict], *,
    now: datetime, window_days: int, skip_corridors: set[tuple[str, str, str, str]] = frozenset(),
) -> list[Draft]:
    """Per merchant corridor (currency, country, rail) whose rail is not a batch rail: the
    settled payouts a batch rail (enabled, not paused, served by a connector that is not paused
    and whose breaker is not open) carries, whose deadline (`payout_deadline`) its batch
    settlement (`settlement_target` from the payout's creation) would still have met, and whose
    fee it would have lowered. Only that subset counts (unlike cheaper_route, which needs every
    payout of the corridor). Among several batch rails, the largest saving wins.
    Corridors in `skip_corridors` (those cheaper_route already suggests a route for) are
    skipped, so one saving is never counted twice."""
    since = now - timedelta(days=window_days)
    paused = {c["target"] for c in controls if c["kind"] == "connector_pause"}
    paused_rails = {c["target"] for c in controls if c["kind"] == "rail_pause"}
    by_rail = {r.rail: r for r in rules}
    candidates = []
    for rule in sorted(rules, key=lambda r: r.rail):
        if not rule.batch or not rule.enabled or rule.rail in paused_rails:
            continue
        serving = sorted(c.name for c in connectors if rule.rail in c.rails and c.name not in paused
                         and (health.get(c.name) or {}).get("state") != "open")
        if serving:
            candidates.append((rule, serving))
    drafts = []
    corridor = lambda p: (p["merchant_id"], p["currency"], p["country"], p["rail"])  # noqa: E731
    for key, group in groupby(payouts, key=corridor):
        merchant_id, currency, country, rail = key
        used_rule = by_rail.get(rail)
        if (used_rule is not None and used_rule.batch) or key in skip_corridors:
            continue
        rows = list(group)
        best = None
        for rule, serving in candidates:
            if rule.rail == rail:
                continue
            cal = calendars.get(rule.calendar) or BusinessCalendar(rule.calendar)
            verdicts = [(_batch_verdict(rule, cal, p), p) for p in rows]
            chosen = [p for v, p in verdicts if v == "qualifies"]
            if not chosen:
                continue
            paid = sum(int(p["fee_minor"]) for p in chosen)
            would = sum(rule.fee(int(p["amount_minor"])) for p in chosen)
            reasons: dict[str, int] = defaultdict(int)
            for v, _ in verdicts:
                if v != "qualifies":
                    reasons[v] += 1
            option = (paid - would, rule, serving, chosen, paid, would, dict(sorted(reasons.items())))
            if best is None or option[0] > best[0]:  # candidates go by rail name: the first wins a tie
                best = option
        if best is None:
            continue
        saving_window, rule, serving, chosen, paid, would, reasons = best
        saving = per_month(saving_window, window_days)
        k, n = len(chosen), len(rows)
        conf, conf_text = _daily_confidence(chosen, since, now)
        fee_rule = f"{rule.fee_fixed_minor} + amount x {rule.fee_bps} bps"
        batch_desc = (f"{rule.cutoff_time} {rule.timezone} cutoff, T+{rule.settlement_business_days or 0} "
                      f"business day(s)" if rule.cutoff_time else "batch")
        drafts.append(Draft(
            kind=RecommendationKind.BATCH_INSTEAD_OF_STANDARD, merchant_id=merchant_id,
            dedupe_key=f"batch_instead_of_standard:{merchant_id}:{currency}:{country or '-'}:{rail}",
            title=(f"Send {k} of {n} of {merchant_id}'s {currency} payouts to {country or 'any country'} with "
                   f"priority \"batch\" ({rule.rail}) instead of {rail}: their deadlines leave room for the batch file"),
            impact_minor=saving, currency=currency,
            impact_arithmetic=(
                f"{k} of {n} settled {rail} payout(s) in {window_days} days had deadlines that {rule.rail}'s batch "
                f"({batch_desc}) would still have met; they paid {paid} {currency} minor in fees, {rule.rail} "
                f"({fee_rule} per payout) would have charged {would}; saving ({paid} - {would}) x "
                f"{30}/{window_days} days = {saving} {currency} minor per month"),
            confidence=conf, confidence_explanation=conf_text,
            evidence={"window_days": window_days, "since": since.isoformat(), "payouts": k,
                      "corridor_payouts": n, "not_qualifying": reasons, "fees_paid_minor": paid,
                      "batch_fees_minor": would, "rail": rail, "batch_rail": rule.rail,
                      "batch_connectors": serving, "country": country or None,
                      "volume_minor": sum(int(p["amount_minor"]) for p in chosen),
                      "note": ("informational: the merchant chooses per payout; send such payouts with "
                               "priority \"batch\" and routing takes the batch rail")},
            action_type=None, action_params=None,
        ))
    return drafts


# --- the scheduled run -----------------------------------------------------------------------


async def recompute(session: AsyncSession, settings: Settings, connectors: list[ConnectorInfo],
                    *, now: datetime | None = None) -> dict[str, int]:
    """Expire what is due, then compute every kind and open (or refresh) its recommendations.
    Returns counts: expired, computed, opened, refreshed, suppressed."""
    now = now or _now()
    window = settings.recommendation_window_days
    since = now - timedelta(days=window)
    expired = await store.expire_due(session, now)
    health = await rail_store.health_states(session)
    controls = await rail_store.active_controls(session, now)
    settled = await store.settled_corridor_payouts(session, since)
    rules = await rail_store.load_rules(session)
    calendars = await rail_store.load_calendars(session)
    drafts = cheaper_route_drafts(settled, rules, calendars, connectors, health, controls, now=now, window_days=window)
    routed = {(d.merchant_id, d.currency, d.evidence["country"] or "", d.evidence["rail"]) for d in drafts}
    drafts += batch_instead_of_standard_drafts(settled, rules, calendars, connectors, health, controls, now=now,
                                               window_days=window, skip_corridors=routed)
    drafts += float_runway_drafts(await store.daily_outflows(session, since), await store.available_balances(session),
                                  now=now, window_days=window,
                                  runway_threshold_days=settings.recommendation_runway_days)
    hours = settings.recommendation_failure_window_hours
    drafts += failing_connector_drafts(
        await store.connector_outcomes(session, now - timedelta(hours=hours)), health, controls, now=now,
        window_hours=hours, rate_threshold=settings.recommendation_failure_rate,
        min_payouts=settings.recommendation_failure_min_payouts)
    counts = {"expired": expired, "computed": len(drafts), "opened": 0, "refreshed": 0, "suppressed": 0}
    ttl = timedelta(hours=settings.recommendation_ttl_hours)
    decided = await store.recently_decided_keys(session, now)
    for draft in drafts:
        if draft.dedupe_key in decided:
            counts["suppressed"] += 1
            continue
        _, created = await store.upsert_pending(session, draft, now=now, ttl=ttl)
        counts["opened" if created else "refreshed"] += 1
    log.info("recommendations: %s", counts)
    return counts


# --- reads and decisions ---------------------------------------------------------------------


def view(row: dict, now: datetime | None = None) -> dict[str, Any]:
    now = now or _now()
    status = row["status"]
    if status == RecommendationStatus.PENDING and row["expires_at"] <= now:
        status = RecommendationStatus.EXPIRED.value
    return {
        "id": row["id"], "kind": row["kind"], "merchant_id": row["merchant_id"], "status": status,
        "title": row["title"],
        "impact": {"amount_minor": row["impact_minor"], "currency": row["currency"], "per": "month",
                   "arithmetic": row["impact_arithmetic"]},
        "confidence": float(row["confidence"]), "confidence_explanation": row["confidence_explanation"],
        "evidence": row["evidence"],
        "suggested_action": (None if row["action_type"] is None
                             else {"type": row["action_type"], "params": row["action_params"]}),
        "action_id": row["action_id"], "decided_by": row["decided_by"], "decided_at": row["decided_at"],
        "expires_at": row["expires_at"], "created_at": row["created_at"], "updated_at": row["updated_at"],
        "links": {"self": f"/api/v1/recommendations/{row['id']}",
                  "action": f"/api/v1/ops/actions/{row['action_id']}" if row["action_id"] else None},
    }


async def list_recommendations(session: AsyncSession, *, merchant_id: str | None, kind: str | None,
                               status: str | None, sort: str, limit: int, cursor: str | None) -> dict[str, Any]:
    now = _now()
    by_impact = sort == "impact"
    after = pagination.decode_time_id_cursor(cursor) if cursor and not by_impact else None
    rows = await store.list_rows(session, merchant_id=merchant_id, kind=kind, status=status, now=now, after=after,
                                 by_impact=by_impact, limit=limit + 1)
    more = len(rows) > limit and not by_impact
    rows = rows[:limit]
    return {"data": [view(r, now) for r in rows],
            "next_cursor": pagination.time_id_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None}


async def get_recommendation(session: AsyncSession, rec_id: str, *, merchant_id: str | None) -> dict[str, Any]:
    return view(await store.get_row(session, rec_id, merchant_id=merchant_id))


def action_id_for(rec_id: str) -> str:
    """The ops action an apply creates: derived from the recommendation, so applying twice (or
    two applies racing) can only ever name one action."""
    return f"act_{rec_id}"


async def apply(session: AsyncSession, temporal: Client | None, settings: Settings, redis: Redis | None,
                rec_id: str, *, actor: str, merchant_id: str | None) -> dict[str, Any]:
    """Create the suggested ops action (approvals and audit as for any action) and link it.
    Applying an applied recommendation returns it unchanged: no second action."""
    now = _now()
    row = await store.get_row(session, rec_id, merchant_id=merchant_id, for_update=True)
    if row["status"] == RecommendationStatus.APPLIED:
        return view(row, now)
    if row["action_type"] is None:
        raise NotApplicable(f"recommendation {rec_id} ({row['kind']}) is informational: it suggests no ops action")
    current = view(row, now)["status"]
    if current != RecommendationStatus.PENDING:
        raise NotPending(f"recommendation {rec_id} is {current}; only a pending one can be applied")
    action_id = action_id_for(rec_id)
    # marked applied in the same transaction the action is created in (create_action commits it)
    await store.set_decision(session, rec_id, status=RecommendationStatus.APPLIED, actor=actor, now=now,
                             action_id=action_id)
    await ops_action_service.create_action(
        session, temporal, settings, redis, actor=actor, action_type=row["action_type"],
        params=row["action_params"], reason=f"recommendation {rec_id}: {row['title']}", action_id=action_id)
    return view(await store.get_row(session, rec_id, merchant_id=merchant_id), now)


async def dismiss(session: AsyncSession, rec_id: str, *, actor: str, merchant_id: str | None) -> dict[str, Any]:
    """Dismiss a pending recommendation (the same suggestion is not raised again within its
    lifetime). Dismissing a dismissed one returns it unchanged."""
    now = _now()
    row = await store.get_row(session, rec_id, merchant_id=merchant_id, for_update=True)
    if row["status"] == RecommendationStatus.DISMISSED:
        return view(row, now)
    current = view(row, now)["status"]
    if current != RecommendationStatus.PENDING:
        raise NotPending(f"recommendation {rec_id} is {current}; only a pending one can be dismissed")
    return view(await store.set_decision(session, rec_id, status=RecommendationStatus.DISMISSED, actor=actor,
                                         now=now), now)
