"""SLA rules as the API and routing use them: validated writes (every change audited) and the
rule that applies to a payout's rail, connector, country and priority."""

from __future__ import annotations

import re
from collections.abc import Collection

from sqlalchemy.ext.asyncio import AsyncSession

from core.platform.errors import Conflict, NotFound, Unprocessable, typed
from core.sla import store
from core.sla.rules import KEY_ORDER, PayoutKeys, SlaRule, explain_resolution

PRIORITIES = ("batch", "standard", "instant", "priority")  # core.payouts.models.Priority
MAX_TARGET_SECONDS = 90 * 86400
MAX_TARGET_BUSINESS_DAYS = 30
_COUNTRY = re.compile(r"[A-Z]{2}")

DuplicateSlaRule = typed(Conflict, "duplicate_sla_rule", "An SLA rule with these keys exists")


def _normalise(values: dict) -> dict:
    out = dict(values)
    for key in KEY_ORDER:
        if key in out and isinstance(out[key], str):
            out[key] = out[key].strip() or None
    if out.get("country"):
        out["country"] = out["country"].upper()
    return out


async def _validate(session: AsyncSession, rule: dict, connectors: Collection[str], rule_id: int | None) -> None:
    """422 for a key naming nothing that exists or a target that is not exactly one positive
    duration; 409 for a second rule with the very same keys (it could never apply)."""
    rails = await store.rail_names(session)
    if rule.get("rail") is not None and rule["rail"] not in rails:
        raise Unprocessable(f"rail must be one of {rails} or null (any rail); got {rule['rail']!r}")
    if rule.get("connector") is not None and rule["connector"] not in connectors:
        raise Unprocessable(f"connector must be one of {sorted(connectors)} or null (any connector); "
                            f"got {rule['connector']!r}")
    if rule.get("country") is not None and not _COUNTRY.fullmatch(rule["country"]):
        raise Unprocessable(f"country must be an ISO 3166 alpha-2 code such as DE, or null; got {rule['country']!r}")
    if rule.get("priority") is not None and rule["priority"] not in PRIORITIES:
        raise Unprocessable(f"priority must be one of {list(PRIORITIES)} or null (any priority); "
                            f"got {rule['priority']!r}")
    seconds, days = rule.get("target_seconds"), rule.get("target_business_days")
    if (seconds is None) == (days is None):
        raise Unprocessable("give exactly one target: target_seconds or target_business_days")
    if seconds is not None and not 1 <= seconds <= MAX_TARGET_SECONDS:
        raise Unprocessable(f"target_seconds must be between 1 and {MAX_TARGET_SECONDS} (90 days)")
    if days is not None and not 0 <= days <= MAX_TARGET_BUSINESS_DAYS:
        raise Unprocessable(f"target_business_days must be between 0 and {MAX_TARGET_BUSINESS_DAYS}")
    for other in await store.list_rules(session):
        if other["id"] != rule_id and all(other[k] == rule.get(k) for k in KEY_ORDER):
            raise DuplicateSlaRule(f"rule {other['id']} already has these keys; change that one instead",
                                   extra={"rule_id": other["id"]})


async def create_rule(session: AsyncSession, values: dict, connectors: Collection[str], actor: str) -> dict:
    rule = {k: None for k in KEY_ORDER} | _normalise(values)
    rule.setdefault("enabled", True)
    await _validate(session, rule, connectors, None)
    return await store.insert_rule(session, rule, actor)


async def update_rule(session: AsyncSession, rule_id: int, changes: dict, connectors: Collection[str],
                      actor: str) -> dict:
    before = await store.get_rule(session, rule_id, for_update=True)
    if before is None:
        raise NotFound(f"no SLA rule {rule_id}")
    changes = _normalise(changes)
    # Setting one kind of target clears the other: a PATCH names the target it wants.
    if changes.get("target_seconds") is not None and "target_business_days" not in changes:
        changes["target_business_days"] = None
    if changes.get("target_business_days") is not None and "target_seconds" not in changes:
        changes["target_seconds"] = None
    if changes.get("enabled") is None:
        changes.pop("enabled", None)
    merged = {k: before[k] for k in store.RULE_COLUMNS} | changes
    await _validate(session, merged, connectors, rule_id)
    return await store.update_rule(session, before, {k: merged[k] for k in store.RULE_COLUMNS}, actor)


async def delete_rule(session: AsyncSession, rule_id: int, actor: str) -> None:
    before = await store.get_rule(session, rule_id, for_update=True)
    if before is None:
        raise NotFound(f"no SLA rule {rule_id}")
    await store.delete_rule(session, before, actor)


async def resolve(session: AsyncSession, payout: PayoutKeys) -> dict:
    """The rule that applies to these keys, why, and every rule's verdict."""
    if payout.rail not in await store.rail_names(session):
        raise Unprocessable(f"no rail {payout.rail!r}")
    rules: list[SlaRule] = await store.load_rules(session)
    return explain_resolution(rules, payout)
