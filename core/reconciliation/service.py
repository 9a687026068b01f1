"""Reconciliation as the API and CLI see it: start a run, read runs and the day's summary, list,
export and resolve discrepancies, upload bank statements, and the daily schedule."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

from sqlalchemy import and_, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from core.reconciliation import store as sql
from core.reconciliation.statements import ParsedStatement, parse_statement
from core.platform import pagination
from core.platform.db import driver_connection
from core.platform.errors import Conflict, NotFound, ServiceUnavailable, Unprocessable
from core.platform.names import RECONCILIATION_WORKFLOW, reconciliation_schedule_id, reconciliation_workflow_id
from core.reconciliation.models import (
    DEFAULT_LEFT_SOURCE,
    DEFAULT_RIGHT_SOURCE,
    DISCREPANCY_CATEGORIES,
    KIND_PAYOUTS_STATEMENT,
    KIND_PROVIDER_PAIR,
    ReconciliationProgress,
    ReconciliationWorkflowInput,
    provider_run_id,
)
from core.platform.settings import Settings
from core.platform.temporal import upsert_schedule
from core.platform.tables import (
    bank_statement_lines,
    bank_statements,
    reconciliation_pairs,
    reconciliation_resolutions,
    reconciliation_results,
    reconciliation_runs,
)

log = logging.getLogger("payops.reconciliation")

RESOLUTIONS = ("accepted", "corrected", "written_off", "false_positive", "confirmed_match", "duplicate_confirmed",
               "other")
STATEMENT_LEFT, STATEMENT_RIGHT = "bank_statement", "payouts"
EXPORT_COLUMNS = ("id", "run_id", "category", "match_key", "left_id", "right_id", "amount_diff_minor", "confidence",
                  "resolution", "resolved_by", "resolved_at", "note", "carried_from_id", "created_at", "details")


# --- schedule --------------------------------------------------------------------------------


def daily_schedule(settings: Settings, left: str = DEFAULT_LEFT_SOURCE, right: str = DEFAULT_RIGHT_SOURCE) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RECONCILIATION_WORKFLOW,
            ReconciliationWorkflowInput(left_source=left, right_source=right, requested_by="schedule"),
            id=f"{reconciliation_schedule_id(left, right)}",
            task_queue=settings.temporal_task_queue,
        ),
        # no dates in the input: the run reconciles yesterday in the reporting time zone
        spec=ScheduleSpec(
            calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(settings.reconciliation_daily_hour)],
                                            minute=[ScheduleRange(0)], second=[ScheduleRange(0)])],
            time_zone_name=settings.reconciliation_timezone,
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_reconciliation_schedules(client: Client, settings: Settings) -> list[str]:
    """The daily run of the default pair (idempotent; a paused schedule stays paused)."""
    schedule_id = reconciliation_schedule_id(DEFAULT_LEFT_SOURCE, DEFAULT_RIGHT_SOURCE)
    await upsert_schedule(client, schedule_id, daily_schedule(settings))
    return [schedule_id]


async def schedule_info(client: Client | None, settings: Settings, left: str = DEFAULT_LEFT_SOURCE,
                        right: str = DEFAULT_RIGHT_SOURCE) -> dict[str, Any]:
    """The pair's daily Schedule as Temporal has it: whether it exists, is paused, and its next runs
    (each reconciles the day before it, in the reporting time zone). Temporal unreachable is a 503."""
    schedule_id = reconciliation_schedule_id(left, right)
    out: dict[str, Any] = {"schedule_id": schedule_id, "exists": False, "paused": False, "note": None,
                           "next_run_at": None, "next_runs": [], "recent_runs": [],
                           "time_zone": settings.reconciliation_timezone}
    if client is None:
        raise ServiceUnavailable("Temporal is unreachable: the schedule cannot be read")
    try:
        d = await client.get_schedule_handle(schedule_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return out
        raise ServiceUnavailable(f"Temporal: {exc.message}") from exc
    spec_tz = d.schedule.spec.time_zone_name
    nexts = list(d.info.next_action_times)[:3]
    return {**out, "exists": True, "paused": d.schedule.state.paused, "note": d.schedule.state.note or None,
            "next_run_at": nexts[0] if nexts else None, "next_runs": nexts,
            "recent_runs": [a.started_at for a in d.info.recent_actions][-3:],
            "time_zone": spec_tz or settings.reconciliation_timezone}


# --- runs ------------------------------------------------------------------------------------


def _day(value: str | date | None, field: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Unprocessable(f"{field} must be an ISO date (YYYY-MM-DD), got {value!r}") from None


async def start_run(session: AsyncSession, client: Client, settings: Settings, *, left_source: str, right_source: str,
                    date_from: date, date_to: date | None, requested_by: str | None,
                    shards: int | None = None) -> dict[str, Any]:
    """Record the run (queued) and start its workflow once the row is committed. The same pair and
    dates again re-runs it (results replaced); while it runs, the running one is returned."""
    date_to = date_to or date_from
    if date_to < date_from:
        raise Unprocessable("date_to is before date_from")
    if (date_to - date_from).days > 31:
        raise Unprocessable("a run covers at most 31 days")
    pair = await session.scalar(select(reconciliation_pairs.c.id).where(
        reconciliation_pairs.c.left_source == left_source, reconciliation_pairs.c.right_source == right_source))
    if pair is None:
        raise Unprocessable(f"no reconciliation pair {left_source} ↔ {right_source}")
    run_id = provider_run_id(left_source, right_source, date_from.isoformat(), date_to.isoformat())
    workflow_id = reconciliation_workflow_id(run_id)
    await session.execute(
        sql_upsert_queued_run(), dict(id=run_id, kind=KIND_PROVIDER_PAIR, left=left_source, right=right_source,
                                      date_from=date_from, date_to=date_to, by=requested_by, pair=pair, wf=workflow_id),
    )
    await session.commit()
    try:
        handle = await client.start_workflow(
            RECONCILIATION_WORKFLOW,
            ReconciliationWorkflowInput(left_source=left_source, right_source=right_source,
                                        date_from=date_from.isoformat(), date_to=date_to.isoformat(),
                                        requested_by=requested_by, shards=shards),
            id=workflow_id, task_queue=settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
    except RPCError as exc:
        raise ServiceUnavailable(f"Temporal: {exc.message}") from exc
    return {"run_id": run_id, "workflow_id": workflow_id, "workflow_run_id": handle.result_run_id, "status": "queued"}


def sql_upsert_queued_run():
    return text(
        """
        INSERT INTO reconciliation_runs (id, kind, left_source, right_source, date_from, date_to, status, requested_by,
                                         pair_id, workflow_id)
        VALUES (:id, :kind, :left, :right, :date_from, :date_to, 'queued', :by, :pair, :wf)
        ON CONFLICT (id) DO UPDATE SET
            status = CASE WHEN reconciliation_runs.status = 'running' THEN 'running' ELSE 'queued' END,
            requested_by = EXCLUDED.requested_by, updated_at = now()
        """
    )


def _run_out(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    data["progress"] = float(data["progress"] or 0)
    data["shards_done"] = len(data.get("shards_done") or [])
    return data


async def get_run(session: AsyncSession, client: Client | None, run_id: str) -> dict[str, Any]:
    row = (await session.execute(select(reconciliation_runs).where(reconciliation_runs.c.id == run_id))).first()
    if row is None:
        raise NotFound(f"no reconciliation run {run_id}")
    out = _run_out(row)
    out["live"] = None
    if client is not None and row.status in ("queued", "running") and row.workflow_id:
        try:
            progress = await client.get_workflow_handle(row.workflow_id).query(
                "progress", result_type=ReconciliationProgress, rpc_timeout=timedelta(seconds=5))
            out["live"] = progress.model_dump()
        except Exception as exc:  # noqa: BLE001 - the stored row is still an answer
            log.info("no live progress for %s: %s", run_id, exc)
    return out


async def summary_for_day(session: AsyncSession, day: date) -> dict[str, Any]:
    """Every run covering `day` (provider pairs and statements), newest first, with the day's totals."""
    rows = (await session.execute(
        select(reconciliation_runs)
        .where(reconciliation_runs.c.date_from <= day, reconciliation_runs.c.date_to >= day)
        .order_by(reconciliation_runs.c.created_at.desc())
    )).all()
    runs = [_run_out(r) for r in rows]
    totals: dict[str, int] = {}
    for run in runs:
        for category, n in ((run.get("summary") or {}).get("counts") or {}).items():
            totals[category] = totals.get(category, 0) + int(n)
    open_count = await session.scalar(
        select(func.count()).select_from(reconciliation_results.join(
            reconciliation_runs, reconciliation_runs.c.id == reconciliation_results.c.run_id))
        .where(reconciliation_runs.c.date_from <= day, reconciliation_runs.c.date_to >= day,
               reconciliation_results.c.resolution.is_(None), reconciliation_results.c.category != "matched")
    )
    keyed = sum(v for k, v in totals.items() if k != "probable_match")
    return {"date": day, "runs": runs, "totals": totals, "open_discrepancies": int(open_count or 0),
            "match_rate": round(totals.get("matched", 0) / keyed, 6) if keyed else None}


# --- discrepancies ---------------------------------------------------------------------------


def encode_cursor(last_id: int) -> str:
    return pagination.encode_cursor({"id": last_id})


def decode_cursor(cursor: str) -> int:
    return pagination.decode_cursor(cursor, lambda key: int(key["id"]))


def discrepancy_filters(*, run_id: str | None = None, day: date | None = None, categories: list[str] | None = None,
                        state: str = "open", kind: str | None = None, match_key: str | None = None,
                        min_abs_amount_diff: int | None = None) -> list:
    r, run = reconciliation_results.c, reconciliation_runs.c
    bad = [c for c in categories or [] if c not in DISCREPANCY_CATEGORIES]
    if bad:
        raise Unprocessable(f"unknown categories {bad}; known: {', '.join(DISCREPANCY_CATEGORIES)}")
    where: list = [r.category.in_(categories) if categories else r.category != "matched"]
    if state == "open":
        where.append(r.resolution.is_(None))
    elif state == "resolved":
        where.append(r.resolution.is_not(None))
    elif state != "all":
        raise Unprocessable("state is one of open, resolved, all")
    if run_id:
        where.append(r.run_id == run_id)
    if day:
        where += [run.date_from <= day, run.date_to >= day]
    if kind:
        where.append(run.kind == kind)
    if match_key:
        where.append(r.match_key == match_key)
    if min_abs_amount_diff is not None:
        where.append(func.abs(r.amount_diff_minor) >= min_abs_amount_diff)
    return where


def _discrepancy_query(where: list):
    r = reconciliation_results
    run = reconciliation_runs
    return (select(r, run.c.kind, run.c.left_source, run.c.right_source, run.c.date_from, run.c.date_to)
            .select_from(r.join(run, run.c.id == r.c.run_id)).where(and_(*where)))


def _discrepancy_out(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    if data.get("confidence") is not None:
        data["confidence"] = float(data["confidence"])
    return data


async def list_discrepancies(session: AsyncSession, *, where: list, cursor: str | None, limit: int) -> dict[str, Any]:
    """Newest first, keyset-paginated on id (stable while new runs write rows)."""
    r = reconciliation_results.c
    query = _discrepancy_query(where + ([r.id < decode_cursor(cursor)] if cursor else []))
    rows = (await session.execute(query.order_by(r.id.desc()).limit(limit + 1))).all()
    items = [_discrepancy_out(x) for x in rows[:limit]]
    return {"items": items, "next_cursor": encode_cursor(items[-1]["id"]) if len(rows) > limit else None}


async def stream_discrepancies(sessionmaker: async_sessionmaker[AsyncSession], where: list,
                               batch: int = 2000) -> AsyncIterator[list[dict[str, Any]]]:
    """Batches of discrepancies for an export, read page by page (keyset) so memory stays flat."""
    r = reconciliation_results.c
    last: int | None = None
    while True:
        async with sessionmaker() as session:
            query = _discrepancy_query(where + ([r.id < last] if last is not None else []))
            rows = (await session.execute(query.order_by(r.id.desc()).limit(batch))).all()
        if not rows:
            return
        items = [_discrepancy_out(x) for x in rows]
        yield items
        last = items[-1]["id"]
        if len(rows) < batch:
            return


async def resolve_discrepancy(session: AsyncSession, result_id: int, *, actor: str, action: str,
                              resolution: str | None, note: str | None) -> dict[str, Any]:
    """Resolve (with a resolution and a reason), annotate (a note only) or reopen a discrepancy.
    Every call is kept in the resolution log; a re-run of the run re-applies the latest."""
    r = reconciliation_results
    row = (await session.execute(select(r).where(r.c.id == result_id).with_for_update())).first()
    if row is None:
        raise NotFound(f"no discrepancy {result_id}")
    if row.category == "matched":
        raise Conflict("a matched result is not a discrepancy")
    values: dict[str, Any]
    if action == "resolve":
        if resolution not in RESOLUTIONS:
            raise Unprocessable(f"resolution is one of {', '.join(RESOLUTIONS)}")
        if not note:
            raise Unprocessable("a resolution needs a note saying why")
        if row.resolution is not None:
            raise Conflict(f"already resolved ({row.resolution} by {row.resolved_by}); reopen it first")
        values = dict(resolution=resolution, resolved_by=actor, resolved_at=func.now(), note=note)
    elif action == "annotate":
        if not note:
            raise Unprocessable("an annotation needs a note")
        values = dict(note=note)
    elif action == "reopen":
        if row.resolution is None:
            raise Conflict("not resolved")
        values = dict(resolution=None, resolved_by=None, resolved_at=None, note=note or row.note)
    else:
        raise Unprocessable("action is one of resolve, annotate, reopen")
    await session.execute(update(r).where(r.c.id == result_id).values(**values))
    await session.execute(reconciliation_resolutions.insert().values(
        result_id=result_id, run_id=row.run_id, category=row.category, match_key=row.match_key, left_id=row.left_id,
        right_id=row.right_id, action=action, resolution=resolution if action == "resolve" else None, note=note,
        actor=actor,
    ))
    # confirming a probable match settles the two "missing" halves it pairs
    if action == "resolve" and row.category == "probable_match" and resolution == "confirmed_match":
        halves = [row.details.get("left_result_id"), row.details.get("right_result_id")]
        await session.execute(update(r).where(r.c.id.in_([h for h in halves if h]), r.c.resolution.is_(None)).values(
            resolution="confirmed_match", resolved_by=actor, resolved_at=func.now(),
            note=f"paired by probable match {result_id}: {note}"))
    fresh = (await session.execute(_discrepancy_query([r.c.id == result_id]))).first()
    return _discrepancy_out(fresh)


# --- bank statements -------------------------------------------------------------------------


async def upload_statement(session: AsyncSession, settings: Settings, content: bytes, *, fmt: str | None,
                           filename: str | None, uploaded_by: str | None, decimal_separator: str | None = None,
                           account: str | None = None) -> dict[str, Any]:
    """Parse, store and reconcile a statement against payouts in one transaction. The same file
    again is the same statement (its stored result is returned). `account` names a CSV
    statement's account (camt.053 and MT940 carry theirs; a different one is refused); a CSV
    statement's decimal separator is `decimal_separator`, else its account's setting, else a
    decimal point (a comma is then refused as ambiguous)."""
    account = (account or "").strip() or None
    if decimal_separator is None and account in settings.reconciliation_statement_decimal_comma_accounts:
        decimal_separator = ","
    parsed = parse_statement(content, fmt, filename, decimal_separator=decimal_separator)
    if account is not None:
        if parsed.account is not None and parsed.account != account:
            raise Unprocessable(f"the statement is for account {parsed.account}, not {account}")
        parsed.account = account
    existing = (await session.execute(select(bank_statements).where(
        bank_statements.c.content_hash == parsed.content_hash))).first()
    if existing is not None:
        return {**await statement_result(session, existing.id), "duplicate_upload": True}
    statement_id = f"stm_{uuid.uuid4().hex[:20]}"
    run_id = f"statement-{statement_id}"
    period_from, period_to = parsed.period()
    await session.execute(bank_statements.insert().values(
        id=statement_id, format=parsed.format, filename=filename, content_hash=parsed.content_hash,
        statement_ref=parsed.statement_ref, account=parsed.account, period_from=period_from, period_to=period_to,
        line_count=len(parsed.lines), run_id=run_id, uploaded_by=uploaded_by,
    ))
    await _insert_lines(session, statement_id, parsed)
    await session.execute(reconciliation_runs.insert().values(
        id=run_id, kind=KIND_PAYOUTS_STATEMENT, left_source=STATEMENT_LEFT, right_source=STATEMENT_RIGHT,
        date_from=period_from, date_to=period_to, status="running", requested_by=uploaded_by,
        params={"statement_id": statement_id, "format": parsed.format},
    ))
    connectors, warnings = _statement_connectors(settings, parsed)
    payable = list(sql.STATEMENT_PAYABLE_STATUSES)
    conn = await driver_connection(session)
    await conn.execute(sql.STATEMENT_REVERSALS, statement_id, run_id)
    await conn.execute(sql.STATEMENT_BY_REFERENCE, statement_id, run_id, payable)
    await conn.execute(sql.STATEMENT_BY_AMOUNT_DATE, statement_id, run_id,
                       settings.reconciliation_statement_date_window_days, payable)
    await conn.fetchrow(sql.STATEMENT_UNMATCHED, statement_id, run_id, period_from, period_to, parsed.currencies(),
                        connectors)
    counts = {r["category"]: int(r["n"]) for r in await conn.fetch(sql.STATEMENT_COUNTS, run_id)}
    debits = sum(1 for line in parsed.lines if line.direction == "debit" and not line.reversal)
    reversals = sum(1 for line in parsed.lines if line.reversal)
    summary = {"counts": counts, "lines": len(parsed.lines), "debit_lines": debits,
               "credit_lines_ignored": len(parsed.lines) - debits - reversals, "reversal_lines": reversals,
               "match_rate": round(counts.get("matched", 0) / debits, 6) if debits else None,
               "warnings": parsed.warnings + warnings, "statements": [s.as_dict() for s in parsed.statements],
               "missing_scope": {"period": [period_from.isoformat(), period_to.isoformat()],
                                 "currencies": parsed.currencies(), "connectors": connectors}}
    await session.execute(update(reconciliation_runs).where(reconciliation_runs.c.id == run_id).values(
        status="success", progress=1, summary=summary, finished_at=func.now(), updated_at=func.now()))
    return await statement_result(session, statement_id)


def _statement_connectors(settings: Settings, parsed: ParsedStatement) -> tuple[list[str] | None, list[str]]:
    """The connectors whose payouts the statement's accounts carry (PAYOPS_RECONCILIATION_STATEMENT_ACCOUNT_
    CONNECTORS), which limit the payouts reported missing; None (and a warning) when no account of the
    statement is mapped: missing payouts are then limited by period and currency only."""
    mapping = settings.reconciliation_statement_account_connectors
    accounts = parsed.accounts()
    mapped = [a for a in accounts if a in mapping]
    if not mapped:
        return None, [f"account {', '.join(accounts) or '(none given)'} is not mapped to connectors: payouts missing "
                      "from the statement are limited to its period and currencies, not to its account"]
    unmapped = [a for a in accounts if a not in mapping]
    warnings = [f"accounts {', '.join(unmapped)} are not mapped to connectors"] if unmapped else []
    return sorted({c for a in mapped for c in mapping[a]}), warnings


async def _insert_lines(session: AsyncSession, statement_id: str, parsed: ParsedStatement) -> None:
    if not parsed.lines:
        return
    await session.execute(bank_statement_lines.insert(), [
        dict(statement_id=statement_id, line_no=line.line_no, booking_date=line.booking_date,
             value_date=line.value_date, amount_minor=line.amount_minor, currency=line.currency,
             direction=line.direction, end_to_end_id=line.end_to_end_id, bank_reference=line.bank_reference,
             counterparty=line.counterparty, description=line.description, reversal=line.reversal)
        for line in parsed.lines
    ])


async def statement_result(session: AsyncSession, statement_id: str) -> dict[str, Any]:
    stmt = (await session.execute(select(bank_statements).where(bank_statements.c.id == statement_id))).first()
    if stmt is None:
        raise NotFound(f"no statement {statement_id}")
    run = await get_run(session, None, stmt.run_id)
    return {"statement": dict(stmt._mapping), "run": run, "duplicate_upload": False}
