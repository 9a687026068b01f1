"""Reads and writes of the rails tables: SLA/fee rules, calendar overrides, connector health,
and what the routing engine needs in one place (`routing_inputs`)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound, Unprocessable
from core.fees import payout_fee
from core.rails import CALENDARS, BusinessCalendar, RailRule
from core.tables import connector_health, controls, rail_calendar_days, rail_rules

RULE_FIELDS = [c for c in RailRule.model_fields]


async def load_rules(session: AsyncSession) -> list[RailRule]:
    rows = (await session.execute(select(rail_rules).order_by(rail_rules.c.rail))).mappings().all()
    return [RailRule.model_validate({k: r[k] for k in RULE_FIELDS}) for r in rows]


async def get_rule_row(session: AsyncSession, rail: str) -> dict:
    row = (await session.execute(select(rail_rules).where(rail_rules.c.rail == rail))).mappings().one_or_none()
    if row is None:
        raise NotFound(f"no rail {rail!r}")
    return dict(row)


async def update_rule(session: AsyncSession, rail: str, changes: dict, actor: str) -> dict:
    current = await get_rule_row(session, rail)
    merged = {k: current[k] for k in RULE_FIELDS} | changes
    try:
        rule = RailRule.model_validate(merged)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None
    if rule.calendar not in CALENDARS:
        raise Unprocessable(f"calendar must be one of {sorted(CALENDARS)}")
    if not ((rule.cutoff_time and rule.settlement_business_days is not None) or rule.settlement_seconds is not None):
        raise Unprocessable("a rail needs cutoff_time + settlement_business_days, or settlement_seconds")
    row = (await session.execute(
        update(rail_rules).where(rail_rules.c.rail == rail)
        .values(**rule.model_dump(exclude={"rail"}), updated_by=actor, updated_at=datetime.now().astimezone())
        .returning(*rail_rules.c)
    )).mappings().one()
    return dict(row)


def rule_fee(rail: str, amount_minor: int, fee_fixed_minor: int | None, fee_bps: int | None) -> int:
    """The fee from the rail's rule in rail_rules (fixed part + basis points of the amount,
    rounded half up to the minor unit); the built-in default when the table has no such rail."""
    if fee_fixed_minor is None or fee_bps is None:
        return payout_fee(rail, amount_minor)
    return int(fee_fixed_minor) + (amount_minor * int(fee_bps) + 5_000) // 10_000


async def load_calendars(session: AsyncSession) -> dict[str, BusinessCalendar]:
    rows = (await session.execute(select(rail_calendar_days))).mappings().all()
    overrides: dict[str, dict[date, bool]] = {name: {} for name in CALENDARS}
    for r in rows:
        overrides.setdefault(r["calendar"], {})[r["day"]] = r["is_holiday"]
    return {name: BusinessCalendar(name, days) for name, days in overrides.items()}


async def set_calendar_day(session: AsyncSession, calendar: str, day: date, is_holiday: bool,
                           name: str | None, actor: str) -> dict:
    if calendar not in CALENDARS:
        raise NotFound(f"no calendar {calendar!r}; calendars: {sorted(CALENDARS)}")
    stmt = insert(rail_calendar_days).values(calendar=calendar, day=day, is_holiday=is_holiday, name=name,
                                             created_by=actor)
    stmt = stmt.on_conflict_do_update(
        index_elements=[rail_calendar_days.c.calendar, rail_calendar_days.c.day],
        set_={"is_holiday": is_holiday, "name": name, "created_by": actor},
    ).returning(*rail_calendar_days.c)
    return dict((await session.execute(stmt)).mappings().one())


async def delete_calendar_day(session: AsyncSession, calendar: str, day: date) -> bool:
    result = await session.execute(
        rail_calendar_days.delete().where(rail_calendar_days.c.calendar == calendar, rail_calendar_days.c.day == day)
    )
    return result.rowcount > 0


async def list_calendar_days(session: AsyncSession, calendar: str, year: int) -> list[dict]:
    """Holidays of `calendar` in `year`: built-in ones plus ops' overrides, each marked by source."""
    if calendar not in CALENDARS:
        raise NotFound(f"no calendar {calendar!r}; calendars: {sorted(CALENDARS)}")
    from core.rails import _builtin_holidays

    days: dict[date, dict] = {}
    builtin = _builtin_holidays(calendar)
    if builtin is not None:
        _ = date(year, 1, 1) in builtin  # the holidays object fills a year on first lookup
        for d, name in sorted(builtin.items()):
            if d.year == year:
                days[d] = {"day": d, "is_holiday": True, "name": name, "source": "built-in"}
    rows = (await session.execute(select(rail_calendar_days).where(
        rail_calendar_days.c.calendar == calendar,
        rail_calendar_days.c.day >= date(year, 1, 1), rail_calendar_days.c.day <= date(year, 12, 31),
    ))).mappings().all()
    for r in rows:
        days[r["day"]] = {"day": r["day"], "is_holiday": r["is_holiday"], "name": r["name"], "source": "override"}
    return [days[d] for d in sorted(days)]


# --- controls and health as routing sees them -----------------------------------------------


async def active_controls(session: AsyncSession, now: datetime) -> list[dict]:
    rows = (await session.execute(
        select(controls.c.kind, controls.c.target, controls.c.params, controls.c.reason).where(
            controls.c.active,
            controls.c.kind.in_(["rail_pause", "connector_pause", "route_override"]),
            or_(controls.c.ends_at.is_(None), controls.c.ends_at > now),
        )
    )).mappings().all()
    return [dict(r) for r in rows]


async def health_states(session: AsyncSession) -> dict[str, dict]:
    rows = (await session.execute(select(connector_health))).mappings().all()
    return {r["connector"]: dict(r) for r in rows}


async def record_check(session: AsyncSession, connector: str, ok: bool, latency_ms: float | None,
                       detail: str | None, *, failures_to_open: int, now: datetime) -> dict:
    """A health check's outcome: failures in a row open the breaker; a success closes it and
    starts a fresh error-rate window."""
    stmt = insert(connector_health).values(connector=connector, window_started_at=now, updated_at=now)
    stmt = stmt.on_conflict_do_nothing(index_elements=[connector_health.c.connector])
    await session.execute(stmt)
    row = (await session.execute(
        select(connector_health).where(connector_health.c.connector == connector).with_for_update()
    )).mappings().one()
    values: dict = {"last_checked_at": now, "last_ok": ok, "last_latency_ms": latency_ms, "updated_at": now,
                    "last_error": None if ok else detail}
    if ok:
        values |= {"consecutive_failures": 0, "state": "closed", "opened_at": None, "open_reason": None,
                   "window_started_at": now, "window_requests": 0, "window_errors": 0}
    else:
        failures = row["consecutive_failures"] + 1
        values["consecutive_failures"] = failures
        if failures >= failures_to_open and row["state"] != "open":
            values |= {"state": "open", "opened_at": now,
                       "open_reason": f"{failures} failed health check(s): {detail or 'unhealthy'}"}
    return dict((await session.execute(
        update(connector_health).where(connector_health.c.connector == connector).values(**values)
        .returning(*connector_health.c)
    )).mappings().one())


async def record_outcome(session: AsyncSession, connector: str, error: bool, *, window_seconds: float,
                         min_requests: int, error_rate_to_open: float, now: datetime) -> None:
    """A submission's outcome, for the breaker's recent error rate (a rolling fixed window).

    The connector's row is shared by every submission through it: one upsert counts the outcome
    (the row is locked for that statement, not for a read-decide-write exchange), and a second
    statement only when the error rate trips the breaker."""
    row = (await session.execute(_RECORD_OUTCOME, {
        "connector": connector, "now": now, "err": int(error), "window": timedelta(seconds=window_seconds),
    })).one()
    requests, errors = row.window_requests, row.window_errors
    if row.state != "open" and requests >= min_requests and errors / requests >= error_rate_to_open:
        await session.execute(
            update(connector_health).where(connector_health.c.connector == connector, connector_health.c.state != "open")
            .values(state="open", opened_at=now, updated_at=now,
                    open_reason=f"error rate {errors}/{requests} in the last {window_seconds:g}s")
        )


_RECORD_OUTCOME = text("""
INSERT INTO connector_health AS h (connector, window_started_at, window_requests, window_errors, updated_at)
VALUES (:connector, :now, 1, :err, :now)
ON CONFLICT (connector) DO UPDATE SET
    window_started_at = CASE WHEN :now - h.window_started_at > :window THEN :now ELSE h.window_started_at END,
    window_requests = CASE WHEN :now - h.window_started_at > :window THEN 1 ELSE h.window_requests + 1 END,
    window_errors = CASE WHEN :now - h.window_started_at > :window THEN :err ELSE h.window_errors + :err END,
    updated_at = :now
RETURNING state, window_requests, window_errors
""")
