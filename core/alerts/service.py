"""Alerts: rules evaluated against the rollups and operational tables, firings deduplicated, and
the acknowledge / resolve life cycle.

A firing's dedupe key is `rule:scope` (e.g. `success_rate_drop:merchant:m_1`). While an alert
with that key is open or acknowledged, a repeated firing only bumps `occurrences` and
`last_seen_at` (the partial unique index on open alerts makes that one atomic upsert, safe with
several checkers at once); once resolved, the next firing opens a new alert.
"""

from __future__ import annotations

import json
import logging
import operator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.alerts.store import expire_unacknowledged, upsert_alert
from core.platform import pagination
from core.platform.errors import InvalidState, NotFound
from core.platform.settings import Settings
from core.platform.live_hub import ALERT_UPDATES_CHANNEL
from core.platform.tables import alert_rules, alerts

log = logging.getLogger("payops.alerts")

OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass
class Finding:
    scope_key: str  # "platform", "merchant:m_1", "merchant:m_1:INR", "source:vima"
    value: float
    merchant_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --- metrics: each returns the current value per scope -----------------------------------------------


async def _rates(session: AsyncSession, rule: dict, column: str) -> list[Finding]:
    since = datetime.now(timezone.utc) - timedelta(minutes=max(rule["window_minutes"], 60))
    since = since.replace(minute=0, second=0, microsecond=0)
    min_count = int(rule["params"].get("min_count", 1))
    rows = (await session.execute(text("""
        SELECT merchant_id, sum(txn_count) AS n,
               sum(txn_count) FILTER (WHERE status IN ('success', 'refunded')) AS ok,
               sum(txn_count) FILTER (WHERE status = 'failed') AS bad, sum(fraud_count) AS fraud
          FROM transaction_rollups_hourly WHERE bucket >= :since AND merchant_id <> ''
         GROUP BY merchant_id"""), {"since": since})).mappings().all()
    out = []
    for r in rows:
        n, ok, bad, fraud = int(r["n"] or 0), int(r["ok"] or 0), int(r["bad"] or 0), int(r["fraud"] or 0)
        if column == "success_rate" and ok + bad >= min_count:
            out.append(Finding(f"merchant:{r['merchant_id']}", ok / (ok + bad), r["merchant_id"],
                               {"succeeded": ok, "failed": bad, "since": since.isoformat()}))
        if column == "fraud_rate" and n >= min_count:
            out.append(Finding(f"merchant:{r['merchant_id']}", fraud / n, r["merchant_id"],
                               {"fraud_flagged": fraud, "transactions": n, "since": since.isoformat()}))
    return out


async def _float(session: AsyncSession, rule: dict) -> list[Finding]:
    rows = (await session.execute(text("""
        SELECT split_part(code, ':', 2) AS merchant_id, currency, -balance_minor AS available FROM ledger_accounts
         WHERE code LIKE :pattern"""), {"pattern": "merchant:%:available"})).mappings().all()
    return [Finding(f"merchant:{r['merchant_id']}:{r['currency']}", int(r["available"]), r["merchant_id"],
                    {"currency": r["currency"]}) for r in rows]


async def _scalar(session: AsyncSession, sql: str, **params: Any) -> list[Finding]:
    value = (await session.execute(text(sql), params)).scalar_one()
    return [Finding("platform", float(value or 0))]


async def _sync_lag(session: AsyncSession, rule: dict) -> list[Finding]:
    rows = (await session.execute(text("""
        SELECT source, extract(epoch FROM now() - coalesce(last_success_at, last_run_at)) / 60 AS lag
          FROM sync_state WHERE coalesce(last_success_at, last_run_at) IS NOT NULL"""))).mappings().all()
    return [Finding(f"source:{r['source']}", round(float(r["lag"]), 1), None, {"source": r["source"]}) for r in rows]


async def _match_rate(session: AsyncSession, rule: dict) -> list[Finding]:
    # A provider-pair run finished by ReconciliationWorkflow judged its own match rate (summary.match_rate,
    # against its pair's threshold) and raised `reconciliation_match_rate` itself: that is the one alert
    # for it. This rule covers the other runs (bank statements, runs no workflow evaluated), so a low
    # rate never alerts twice.
    row = (await session.execute(text("""
        SELECT count(*) AS n, count(*) FILTER (WHERE r.category = 'matched') AS matched
          FROM reconciliation_results r JOIN reconciliation_runs run ON run.id = r.run_id
         WHERE run.finished_at >= now() - make_interval(mins => :w)
           AND NOT (run.kind = 'provider_pair' AND run.summary -> 'match_rate' IS NOT NULL)"""), {"w": rule["window_minutes"]})).mappings().one()
    if not row["n"]:
        return []
    return [Finding("platform", row["matched"] / row["n"], None, {"results": row["n"], "matched": row["matched"]})]


async def measure(session: AsyncSession, rule: dict) -> list[Finding]:
    metric = rule["metric"]
    if metric in ("success_rate", "fraud_rate"):
        return await _rates(session, rule, metric)
    if metric == "float_available":
        return await _float(session, rule)
    if metric == "payouts_dlq":
        return await _scalar(session, "SELECT count(*) FROM payouts WHERE status = 'dlq'")
    if metric == "payouts_sla_breached":
        return await _scalar(session, """
            SELECT count(*) FROM payouts WHERE settlement_target_at < now()
               AND status NOT IN ('settled', 'returned', 'failed', 'cancelled', 'rejected')""")
    if metric == "sync_lag_minutes":
        return await _sync_lag(session, rule)
    if metric == "match_rate":
        return await _match_rate(session, rule)
    log.warning("alert rule %s has an unknown metric %s", rule["id"], metric)
    return []


# --- firing ----------------------------------------------------------------------------------------


async def fire(session: AsyncSession, rule: dict, finding: Finding) -> dict[str, Any]:
    threshold = float(rule["threshold"])
    message = (f"{rule['id']}: {rule['metric']} is {finding.value:g} for {finding.scope_key} "
               f"({rule['operator']} {threshold:g})")
    data = {"metric": rule["metric"], "value": finding.value, "threshold": threshold, "operator": rule["operator"],
            "scope": finding.scope_key, "merchant_id": finding.merchant_id, **finding.extra}
    row = await upsert_alert(session, rule=rule["id"], severity=rule["severity"],
                             dedupe_key=f"{rule['id']}:{finding.scope_key}", message=message, data=data)
    return {"id": row["id"], "opened": row["opened"], "rule": rule["id"], "severity": rule["severity"],
            "status": row["status"], "occurrences": row["occurrences"], "message": message,
            "merchant_id": finding.merchant_id}


async def raise_alert(session: AsyncSession, *, rule: str, severity: str, scope: str, message: str,
                      data: dict[str, Any]) -> dict[str, Any]:
    """An alert raised by an event rather than a rule's metric (e.g. a bank notification that
    contradicts a payout): same dedupe key (`rule:scope`) and life cycle as rule firings."""
    row = await upsert_alert(session, rule=rule, severity=severity, dedupe_key=f"{rule}:{scope}", message=message,
                             data={"scope": scope, **data})
    if row["opened"]:
        log.log(logging.CRITICAL if severity == "critical" else logging.WARNING, "alert %s opened: %s", row["id"], message)
    return {"id": row["id"], "opened": row["opened"], "rule": rule, "severity": severity, "status": row["status"],
            "occurrences": row["occurrences"], "message": message, "merchant_id": data.get("merchant_id")}


async def check_rules(session: AsyncSession) -> dict[str, Any]:
    """Evaluate every enabled rule once; returns what fired (opened or repeated)."""
    rules = [dict(r) for r in (await session.execute(
        select(alert_rules).where(alert_rules.c.enabled).order_by(alert_rules.c.id))).mappings()]
    fired: list[dict[str, Any]] = []
    for rule in rules:
        compare = OPERATORS[rule["operator"]]
        threshold = float(rule["threshold"])
        for finding in await measure(session, rule):
            if compare(finding.value, threshold):
                fired.append(await fire(session, rule, finding))
    return {"rules_checked": len(rules), "fired": fired}


async def publish_alerts(redis: Redis | None, fired: list[dict[str, Any]]) -> None:
    """Best effort: newly opened alerts to live views."""
    if redis is None:
        return
    for a in fired:
        if not a["opened"]:
            continue
        try:
            await redis.publish(ALERT_UPDATES_CHANNEL, json.dumps({"type": "alert.opened", **a}, default=str))
        except Exception as exc:  # noqa: BLE001
            log.warning("could not publish alert %s: %s", a["id"], exc)


# --- expiry ---------------------------------------------------------------------------------------

SEVERITIES = ("low", "medium", "high", "critical")


def alert_lifetimes(settings: Settings) -> dict[str, float]:
    """severity -> lifetime in hours of an unacknowledged alert (0 = never expires)."""
    return {sev: settings.alert_ttl_hours_for(sev) for sev in SEVERITIES}


async def expire_alerts(session: AsyncSession, settings: Settings) -> list[dict[str, Any]]:
    """Expire the open alerts that outlived their severity's lifetime since they last fired
    (PAYOPS_ALERT_TTL_HOURS, PAYOPS_ALERT_TTL_HOURS_BY_SEVERITY); audited in alert_audit."""
    expired = await expire_unacknowledged(session, alert_lifetimes(settings))
    for a in expired:
        log.info("alert %s (%s, %s) expired: not acknowledged, last fired %s", a["id"], a["rule"], a["severity"],
                 a["last_seen_at"].isoformat())
    return expired


async def publish_expired(redis: Redis | None, expired: list[dict[str, Any]]) -> None:
    """Best effort: expired alerts to live views (the console's alert list reloads)."""
    if redis is None:
        return
    for a in expired:
        try:
            await redis.publish(ALERT_UPDATES_CHANNEL, json.dumps({"type": "alert.expired", **a}, default=str))
        except Exception as exc:  # noqa: BLE001
            log.warning("could not publish expired alert %s: %s", a["id"], exc)


# --- reads and the life cycle ------------------------------------------------------------------------


def _cursor(alert_id: int) -> str:
    return pagination.encode_cursor(alert_id)


def _uncursor(cursor: str) -> int:
    return pagination.decode_cursor(cursor, int, message="invalid cursor")


async def list_alerts(session: AsyncSession, *, merchant_id: str | None, status: str | None, severity: str | None,
                      rule: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
    """`severity`: one, or several separated by commas (e.g. "critical,high")."""
    conds = []
    if merchant_id is not None:
        conds.append(alerts.c.data["merchant_id"].astext == merchant_id)
    if status is not None:
        conds.append(alerts.c.status == status)
    if severity is not None:
        conds.append(alerts.c.severity.in_(severity.split(",")))
    if rule is not None:
        conds.append(alerts.c.rule == rule)
    if cursor:
        conds.append(alerts.c.id < _uncursor(cursor))
    rows = [dict(r) for r in (await session.execute(
        select(alerts).where(*conds).order_by(alerts.c.id.desc()).limit(limit + 1))).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return {"data": rows, "next_cursor": _cursor(rows[-1]["id"]) if more and rows else None}


async def _get(session: AsyncSession, alert_id: int, merchant_id: str | None) -> dict[str, Any]:
    stmt = select(alerts).where(alerts.c.id == alert_id).with_for_update()
    if merchant_id is not None:
        stmt = stmt.where(alerts.c.data["merchant_id"].astext == merchant_id)
    row = (await session.execute(stmt)).mappings().first()
    if row is None:
        raise NotFound(f"alert {alert_id} not found")
    return dict(row)


async def acknowledge(session: AsyncSession, alert_id: int, *, actor: str, merchant_id: str | None) -> dict[str, Any]:
    row = await _get(session, alert_id, merchant_id)
    if row["status"] in ("resolved", "expired"):
        raise InvalidState(f"alert {alert_id} is {row['status']}")
    if row["status"] == "acknowledged":
        return row
    return dict((await session.execute(
        update(alerts).where(alerts.c.id == alert_id)
        .values(status="acknowledged", acknowledged_by=actor, acknowledged_at=datetime.now(timezone.utc))
        .returning(*alerts.c))).mappings().one())


async def resolve(session: AsyncSession, alert_id: int, *, actor: str, merchant_id: str | None) -> dict[str, Any]:
    row = await _get(session, alert_id, merchant_id)
    if row["status"] == "resolved":
        return row
    if row["status"] == "expired":
        raise InvalidState(f"alert {alert_id} expired at {row['expired_at'].isoformat()}: nothing to resolve")
    return dict((await session.execute(
        update(alerts).where(alerts.c.id == alert_id)
        .values(status="resolved", resolved_by=actor, resolved_at=datetime.now(timezone.utc))
        .returning(*alerts.c))).mappings().one())


async def list_rules(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (await session.execute(select(alert_rules).order_by(alert_rules.c.id))).mappings().all()
    return [{**dict(r), "threshold": float(r["threshold"]) if isinstance(r["threshold"], Decimal) else r["threshold"]}
            for r in rows]
