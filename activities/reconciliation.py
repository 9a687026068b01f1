"""Side effects of the ReconciliationWorkflow: record the run, match one shard of keys, finish the run.

All matching is set-based SQL (core.reconciliation.store); these activities only open transactions,
pass parameters and keep the run row's progress current.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from datetime import date, datetime, time as dtime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.platform import metrics
from core.reconciliation import store as sql
from core.platform.db import driver_connection
from core.reconciliation.models import (
    ERR_BAD_RUN,
    KIND_PROVIDER_PAIR,
    FailRunInput,
    FailRunResult,
    FinalizeRunInput,
    FinalizeRunResult,
    PreparedRun,
    PrepareRunInput,
    ShardInput,
    ShardResult,
    pair_id,
    provider_run_id,
)
from core.platform.settings import Settings

log = logging.getLogger("payops.activities.reconciliation")

HEARTBEAT_EVERY_SECONDS = 10.0
MATCH_RATE_RULE = "reconciliation_match_rate"


def day_window(date_from: date, date_to: date, tz: str) -> tuple[datetime, datetime]:
    """[date_from 00:00, date_to + 1 00:00) in the reporting time zone, as UTC instants."""
    zone = ZoneInfo(tz)
    start = datetime.combine(date_from, dtime(0), tzinfo=zone)
    end = datetime.combine(date_to + timedelta(days=1), dtime(0), tzinfo=zone)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def rules_from_params(params: dict[str, Any]) -> sql.PairRules:
    r = params["rules"]
    return sql.PairRules(
        left_source=r["left_source"], right_source=r["right_source"],
        amount_tolerance_minor=int(r["amount_tolerance_minor"]), amount_tolerance_bps=int(r["amount_tolerance_bps"]),
        status_equivalents=tuple((a, b) for a, b in r["status_equivalents"]),
        probable_window_seconds=int(r["probable_window_seconds"]),
        probable_min_confidence=float(r["probable_min_confidence"]),
    )


class ReconciliationActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings

    def _parse_dates(self, params: PrepareRunInput) -> tuple[date, date]:
        try:
            if params.date_from is None:
                today = datetime.now(ZoneInfo(self._settings.reconciliation_timezone)).date()
                first = today - timedelta(days=1)
            else:
                first = date.fromisoformat(params.date_from)
            last = date.fromisoformat(params.date_to) if params.date_to else first
        except ValueError as exc:
            raise ApplicationError(f"bad date: {exc}", type=ERR_BAD_RUN, non_retryable=True) from None
        if last < first:
            raise ApplicationError("date_to is before date_from", type=ERR_BAD_RUN, non_retryable=True)
        if (last - first).days > 31:
            raise ApplicationError("a run covers at most 31 days", type=ERR_BAD_RUN, non_retryable=True)
        return first, last

    @activity.defn(name="prepare_reconciliation_run")
    async def prepare_reconciliation_run(self, params: PrepareRunInput) -> PreparedRun:
        """Record the run (replacing an earlier run of the same pair and dates), snapshot the pair's
        rules onto it, and decide the number of shards from the window's estimated size."""
        s = self._settings
        first, last = self._parse_dates(params)
        start, end = day_window(first, last, s.reconciliation_timezone)
        run_id = provider_run_id(params.left_source, params.right_source, first.isoformat(), last.isoformat())
        async with self._sessionmaker() as session, session.begin():
            conn = await driver_connection(session)
            pair = await sql.get_pair(conn, params.left_source, params.right_source)
            if pair is None:
                raise ApplicationError(f"no reconciliation pair {pair_id(params.left_source, params.right_source)}",
                                       type=ERR_BAD_RUN, non_retryable=True)
            equivalents = pair["status_equivalents"]
            if isinstance(equivalents, str):
                equivalents = json.loads(equivalents)
            rules = {
                "left_source": params.left_source, "right_source": params.right_source,
                "amount_tolerance_minor": pair["amount_tolerance_minor"],
                "amount_tolerance_bps": pair["amount_tolerance_bps"],
                "status_equivalents": equivalents,
                "probable_window_seconds": pair["probable_window_seconds"],
                "probable_min_confidence": float(pair["probable_min_confidence"]),
                "match_rate_threshold": float(pair["match_rate_threshold"] if pair["match_rate_threshold"] is not None
                                              else s.reconciliation_match_rate_threshold),
                "grace_seconds": s.reconciliation_boundary_grace_seconds,
                "work_mem": s.reconciliation_work_mem,
            }
            rows = await sql.estimate_window_rows(conn, params.left_source, params.right_source, start, end)
            shards = params.shards or max(1, math.ceil(rows / max(1, s.reconciliation_rows_per_shard)))
            shards = min(shards, s.reconciliation_max_shards)
            existed = await sql.lock_run_started(conn, run_id)
            if existed:
                await sql.clear_run_results(conn, run_id)
            await sql.start_run(
                conn, run_id=run_id, kind=KIND_PROVIDER_PAIR, left_source=params.left_source,
                right_source=params.right_source, date_from=first, date_to=last, requested_by=params.requested_by,
                pair_id=pair["id"], workflow_id=params.workflow_id, timezone=s.reconciliation_timezone,
                window_start=start, window_end=end,
                params_json=json.dumps({"rules": rules, "rows_in_window": rows}), shards=shards,
            )
        return PreparedRun(run_id=run_id, date_from=first.isoformat(), date_to=last.isoformat(), window_start=start,
                           window_end=end, shards=shards, rows_in_window=rows)

    @activity.defn(name="reconcile_shard")
    async def reconcile_shard(self, params: ShardInput) -> ShardResult:
        """Match the keys of one hash shard and persist its results, replacing what an earlier
        attempt of the shard wrote. The statement runs long: a side task keeps heartbeating."""
        started = time.perf_counter()
        beat = asyncio.create_task(self._heartbeat_forever(params.shard))
        try:
            async with self._sessionmaker() as session, session.begin():
                conn = await driver_connection(session)
                run = await sql.run_window(conn, params.run_id)
                if run is None:
                    raise ApplicationError(f"no reconciliation run {params.run_id}", type=ERR_BAD_RUN, non_retryable=True)
                run_params = json.loads(run["params"]) if isinstance(run["params"], str) else run["params"]
                rules = rules_from_params(run_params)
                r = run_params["rules"]
                await sql.relax_commit(conn)
                counts = await sql.match_shard(
                    conn, run_id=params.run_id, shard=params.shard, shards=params.shards, rules=rules,
                    window_start=run["window_start"], window_end=run["window_end"], grace_seconds=int(r["grace_seconds"]),
                    replace=activity.info().attempt > 1, work_mem=_memory_setting(r["work_mem"]),
                )
                await sql.mark_shard_done(conn, params.run_id, params.shard)
        finally:
            beat.cancel()
        return ShardResult(shard=params.shard, counts=counts, seconds=round(time.perf_counter() - started, 3))

    async def _heartbeat_forever(self, shard: int) -> None:
        while True:
            activity.heartbeat(shard)
            await asyncio.sleep(HEARTBEAT_EVERY_SECONDS)

    @activity.defn(name="finalize_reconciliation_run")
    async def finalize_reconciliation_run(self, params: FinalizeRunInput) -> FinalizeRunResult:
        """Run-wide steps (probable matches, carry-forward, re-check, resolutions), the summary, and
        an alert when the match rate is under the threshold."""
        async with self._sessionmaker() as session, session.begin():
            conn = await driver_connection(session)
            run = await sql.lock_run(conn, params.run_id)
            if run is None:
                raise ApplicationError(f"no reconciliation run {params.run_id}", type=ERR_BAD_RUN, non_retryable=True)
            run_params = json.loads(run["params"]) if isinstance(run["params"], str) else run["params"]
            rules = rules_from_params(run_params)
            r = run_params["rules"]
            extra = await sql.finalize_run(
                conn, run_id=run["id"], kind=run["kind"], date_from=run["date_from"], rules=rules,
                window_start=run["window_start"], window_end=run["window_end"], grace_seconds=int(r["grace_seconds"]),
            )
            counts = {c: int(params.counts.get(c, 0)) for c in
                      ("matched", "amount_mismatch", "status_mismatch", "missing_left", "missing_right", "duplicate_key")}
            total = sum(counts.values())
            match_rate = counts["matched"] / total if total else 1.0
            open_count = await sql.open_discrepancies(conn, run["id"])
            summary = {
                "counts": {**counts, "probable_match": extra["probable_match"]},
                "total_keys": total,
                "match_rate": round(match_rate, 6),
                "match_rate_threshold": r["match_rate_threshold"],
                "carried_in": extra["carried"],
                "carried_auto_matched": extra["auto_matched"],
                "resolutions_reapplied": extra["resolutions_reapplied"],
                "open_discrepancies": int(open_count),
                "rows_in_window_estimate": run_params.get("rows_in_window"),
                "shards": run["shards_total"],
                "timezone": run["timezone"],
            }
            alert_id = None
            if total and match_rate < r["match_rate_threshold"]:
                alert_id = await sql.raise_alert(
                    conn, rule=MATCH_RATE_RULE,
                    severity="high" if match_rate < r["match_rate_threshold"] - 0.05 else "medium",
                    dedupe_key=f"{MATCH_RATE_RULE}:{run['pair_id']}:{run['date_from']}:{run['date_to']}",
                    message=(f"reconciliation {run['left_source']} ↔ {run['right_source']} {run['date_from']}: "
                             f"match rate {match_rate:.2%} is under {r['match_rate_threshold']:.2%}"),
                    data={"run_id": run["id"], "match_rate": match_rate, "counts": counts},
                )
                summary["alert_id"] = alert_id
            await sql.finish_run(conn, run["id"], json.dumps(summary, default=_json_default))
        metrics.reconciliation_runs_total.labels(run["kind"], "success").inc()
        metrics.reconciliation_match_rate.labels(run["left_source"], run["right_source"]).set(match_rate)
        for category, count in summary["counts"].items():
            metrics.reconciliation_keys_total.labels(run["kind"], category).inc(count)
        return FinalizeRunResult(summary=summary, alert_id=alert_id)

    @activity.defn(name="fail_reconciliation_run")
    async def fail_reconciliation_run(self, params: FailRunInput) -> FailRunResult:
        async with self._sessionmaker() as session, session.begin():
            conn = await driver_connection(session)
            kind = await sql.fail_run(conn, params.run_id, params.error[:4000])
        metrics.reconciliation_runs_total.labels(kind or "unknown", "error").inc()
        return FailRunResult()


def _memory_setting(value: str) -> str:
    """work_mem goes into SET LOCAL (no bind parameters there): digits and a unit only."""
    text = str(value).strip()
    if not text[:-2].isdigit() and not text.isdigit():
        raise ApplicationError(f"bad work_mem {value!r}", type=ERR_BAD_RUN, non_retryable=True)
    return text


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)
