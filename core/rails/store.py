"""Reads and writes of the rails tables: SLA/fee rules, calendar overrides, connector health,
what the routing engine needs, and the batches (`payout_batches`, `payout_batch_entries`)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.platform.errors import NotFound, Unprocessable
from core.rails.fees import payout_fee
from core.rails.rules import CALENDARS, BusinessCalendar, RailRule, _builtin_holidays
from core.platform.tables import (
    connector_health,
    controls,
    payout_batch_entries,
    payout_batches,
    payouts,
    rail_calendar_days,
    rail_rules,
)

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


# --- batches: a payout's entry in its rail's queue, and the batch that claims it ----------------


async def enqueue_batch_entry(session: AsyncSession, *, payout_id: str, rail: str, connector: str,
                              cutoff_at: datetime) -> dict:
    """Queue the payout for its rail's cutoff in one statement (a cutoff queues thousands): the
    amount comes from the payout row, and a repeat finds the entry already there (whatever batch
    has claimed it since). Returns its cutoff_at and batch_id."""
    return dict((await session.execute(_ENQUEUE_ENTRY, {
        "payout_id": payout_id, "rail": rail, "connector": connector, "cutoff_at": cutoff_at,
    })).mappings().one())


_ENQUEUE_ENTRY = text("""
                WITH queued AS (
                    INSERT INTO payout_batch_entries (payout_id, rail, connector, cutoff_at, amount_minor, currency)
                    SELECT id, CAST(:rail AS varchar), CAST(:connector AS varchar), CAST(:cutoff_at AS timestamptz),
                           amount_minor, currency
                    FROM payouts WHERE id = :payout_id
                    ON CONFLICT (payout_id) DO NOTHING
                    RETURNING cutoff_at, batch_id
                )
                SELECT cutoff_at, batch_id FROM queued
                UNION ALL
                SELECT cutoff_at, batch_id FROM payout_batch_entries WHERE payout_id = :payout_id
                LIMIT 1
            """)


async def lock_batch_entry(session: AsyncSession, payout_id: str):
    """The payout's queue entry, locked (None when it has none)."""
    return (await session.execute(select(payout_batch_entries).where(
        payout_batch_entries.c.payout_id == payout_id).with_for_update())).mappings().one_or_none()


async def delete_batch_entry(session: AsyncSession, payout_id: str) -> None:
    await session.execute(payout_batch_entries.delete().where(payout_batch_entries.c.payout_id == payout_id))


async def find_batch(session: AsyncSession, batch_id: str, *, for_update: bool = False):
    """The batch row, or None."""
    stmt = select(payout_batches).where(payout_batches.c.id == batch_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).mappings().one_or_none()


async def get_batch(session: AsyncSession, batch_id: str, *, for_update: bool = False):
    """The batch row (NoResultFound when there is none)."""
    stmt = select(payout_batches).where(payout_batches.c.id == batch_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).mappings().one()


def _waiting(rail: str, cutoff: datetime) -> tuple:
    return (payout_batch_entries.c.batch_id.is_(None), payout_batch_entries.c.rail == rail,
            payout_batch_entries.c.cutoff_at <= cutoff)


async def count_waiting_entries(session: AsyncSession, rail: str, cutoff: datetime) -> int | None:
    return await session.scalar(select(func.count()).select_from(payout_batch_entries).where(*_waiting(rail, cutoff)))


async def waiting_entries_connector(session: AsyncSession, rail: str, cutoff: datetime) -> str | None:
    return await session.scalar(select(payout_batch_entries.c.connector).where(*_waiting(rail, cutoff)).limit(1))


async def insert_batch(session: AsyncSession, *, batch_id: str, rail: str, connector: str | None,
                       cutoff_at: datetime, file_format: str) -> None:
    """The batch of (rail, cutoff), collecting; nothing when it exists already."""
    await session.execute(insert(payout_batches).values(
        id=batch_id, rail=rail, connector=connector, cutoff_at=cutoff_at, status="collecting",
        file_format=file_format,
    ).on_conflict_do_nothing())


async def claim_waiting_entries(session: AsyncSession, *, rail: str, cutoff: datetime, batch_id: str) -> None:
    """Set batch_id (and a sequence after the batch's last) on the entries waiting for `rail` due
    by `cutoff`; entries another claim holds locked are skipped."""
    await session.execute(_CLAIM_ENTRIES, {"rail": rail, "cutoff": cutoff, "batch_id": batch_id})


_CLAIM_ENTRIES = text("""
                    WITH locked AS (
                        SELECT payout_id, created_at FROM payout_batch_entries
                        WHERE batch_id IS NULL AND rail = :rail AND cutoff_at <= :cutoff
                        FOR UPDATE SKIP LOCKED
                    ), claim AS (
                        SELECT payout_id, row_number() OVER (ORDER BY created_at, payout_id) AS n FROM locked
                    )
                    UPDATE payout_batch_entries e
                    SET batch_id = CAST(:batch_id AS varchar),
                        sequence = claim.n + COALESCE((SELECT max(sequence) FROM payout_batch_entries
                                                       WHERE batch_id = CAST(:batch_id AS varchar)), 0)
                    FROM claim WHERE e.payout_id = claim.payout_id
                """)


async def refresh_batch_totals(session: AsyncSession, batch_id: str):
    """Count and sum the batch's entries onto its row; returns the row."""
    totals = (await session.execute(select(
        func.count(), func.coalesce(func.sum(payout_batch_entries.c.amount_minor), 0),
        func.min(payout_batch_entries.c.currency),
    ).where(payout_batch_entries.c.batch_id == batch_id))).one()
    return (await session.execute(update(payout_batches).where(payout_batches.c.id == batch_id).values(
        entry_count=totals[0], total_amount_minor=totals[1], currency=totals[2], updated_at=func.now(),
    ).returning(*payout_batches.c))).mappings().one()


async def batch_file_rows(session: AsyncSession, batch_id: str) -> list:
    """The batch's entries in file order, with what the file needs from each payout."""
    return list((await session.execute(
        select(payout_batch_entries.c.payout_id, payout_batch_entries.c.amount_minor,
               payouts.c.beneficiary_encrypted, payouts.c.description)
        .join(payouts, payouts.c.id == payout_batch_entries.c.payout_id)
        .where(payout_batch_entries.c.batch_id == batch_id)
        .order_by(payout_batch_entries.c.sequence)
    )).all())


async def mark_batch_built(session: AsyncSession, batch_id: str, *, content: bytes, file_name: str,
                           file_sha256: str, control: dict):
    return (await session.execute(update(payout_batches).where(payout_batches.c.id == batch_id).values(
        status="built", file_content=content, file_name=file_name,
        file_sha256=file_sha256, control=control, updated_at=func.now(),
    ).returning(*payout_batches.c))).mappings().one()


async def reject_batch(session: AsyncSession, batch_id: str, *, error: str, rejected_count: int) -> None:
    """The bank refused the file: the batch and every entry of it are rejected."""
    await session.execute(update(payout_batches).where(payout_batches.c.id == batch_id).values(
        status="rejected", error=error, rejected_count=rejected_count, updated_at=func.now()))
    await session.execute(update(payout_batch_entries).where(
        payout_batch_entries.c.batch_id == batch_id).values(outcome="file_rejected", error=error))


async def set_batch_error(session: AsyncSession, batch_id: str, error: str | None) -> None:
    await session.execute(update(payout_batches).where(payout_batches.c.id == batch_id).values(
        error=error, updated_at=func.now()))


async def record_file_report(session: AsyncSession, batch_id: str, *, entries: list[dict[str, Any]],
                             file_id: str | None, accepted_count: int, rejected_count: int, now: datetime) -> None:
    """Each entry's outcome from the bank's report; accepted payouts get their bank payment id;
    the batch is submitted."""
    await session.execute(_ENTRY_OUTCOMES, {"entries": json.dumps(entries), "batch_id": batch_id})
    await session.execute(_ACCEPTED_PAYOUTS, {"batch_id": batch_id, "now": now})
    await session.execute(update(payout_batches).where(payout_batches.c.id == batch_id).values(
        status="submitted", bank_file_id=file_id, accepted_count=accepted_count,
        rejected_count=rejected_count, submitted_at=now, error=None, updated_at=func.now()))


_ENTRY_OUTCOMES = text("""
                UPDATE payout_batch_entries e SET outcome = r.status, bank_payment_id = r.payment_id, error = r.error
                FROM jsonb_to_recordset(CAST(:entries AS jsonb))
                     AS r(reference text, status text, payment_id text, error text)
                WHERE e.payout_id = r.reference AND e.batch_id = :batch_id
            """)

_ACCEPTED_PAYOUTS = text("""
                UPDATE payouts p SET bank_payment_id = e.bank_payment_id, submitted_at = :now
                FROM payout_batch_entries e
                WHERE e.batch_id = :batch_id AND e.payout_id = p.id AND e.outcome = 'accepted'
            """)


async def batch_entry_outcomes(session: AsyncSession, batch_id: str) -> list:
    """(payout_id, outcome, bank_payment_id, error) of each entry of the batch."""
    return list((await session.execute(select(
        payout_batch_entries.c.payout_id, payout_batch_entries.c.outcome,
        payout_batch_entries.c.bank_payment_id, payout_batch_entries.c.error,
    ).where(payout_batch_entries.c.batch_id == batch_id))).all())


# --- SLA breaches (the console's report; read-only over payouts) ------------------------------

# a payout in one of these has reached its end: it can no longer breach
_DONE = "('settled', 'returned', 'failed', 'cancelled', 'rejected')"
_COUNTRY = "p.beneficiary_masked ->> 'country'"


async def sla_breaches(session: AsyncSession, days: int) -> tuple[list, list, list]:
    """Open breaches grouped by rail, connector, country and currency; the 100 most overdue
    payouts; and per day over `days`, targets due and missed."""
    groups = (await session.execute(text(f"""
        SELECT p.rail, p.connector, {_COUNTRY} AS country, p.currency, count(*) AS count,
               sum(p.amount_minor) AS amount_minor, min(p.settlement_target_at) AS oldest_target_at
          FROM payouts p
         WHERE p.settlement_target_at < now() AND p.status NOT IN {_DONE}
         GROUP BY 1, 2, 3, 4 ORDER BY count(*) DESC, 1, 2, 3, 4""")) ).mappings().all()
    rows = (await session.execute(text(f"""
        SELECT p.id AS payout_id, p.merchant_id, p.rail, p.connector, {_COUNTRY} AS country, p.status,
               p.amount_minor, p.currency, p.settlement_target_at, p.priority,
               p.routing -> 'sla_rule' AS sla_rule,
               extract(epoch FROM now() - p.settlement_target_at) AS overdue_seconds
          FROM payouts p
         WHERE p.settlement_target_at < now() AND p.status NOT IN {_DONE}
         ORDER BY p.settlement_target_at, p.id LIMIT 100"""))).mappings().all()
    history = (await session.execute(text(f"""
        SELECT to_char(p.settlement_target_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, p.rail, p.connector,
               {_COUNTRY} AS country, count(*) AS due,
               count(*) FILTER (WHERE (p.settled_at IS NOT NULL AND p.settled_at > p.settlement_target_at)
                                   OR (p.settled_at IS NULL AND p.status NOT IN {_DONE})) AS breached
          FROM payouts p
         WHERE p.settlement_target_at >= (now() AT TIME ZONE 'UTC')::date - make_interval(days => :days - 1)
           AND p.settlement_target_at < now()
         GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"""), {"days": days})).mappings().all()
    return groups, rows, history
