"""Dashboard reads: KPIs, trends, breakdowns and the heatmap, answered from the rollups only.

Set-based SQL kept in one module (like the reconciliation's, the rollups' reads are set-based). Reads never touch
`transactions`: a window is split into whole UTC days (served by `transaction_rollups_daily`)
and the hours at its edges (`transaction_rollups_hourly`), so a 30-day platform read is a few
thousand rollup rows however long the history is.

Definitions (the tests check them against SQL over the raw rows):
- a transaction *succeeded* when its status is `success` or `refunded` (a refund follows a capture);
- GMV = amount of succeeded transactions; fees = their fees; refunds = amount of `refunded` ones;
  net revenue = GMV − fees − refunds (what the merchant keeps);
- success rate = succeeded / (succeeded + failed); conversion = succeeded / all attempts;
  fraud rate = fraud-flagged / all; average transaction = GMV / succeeded.
Money is never summed across currencies: money KPIs come per currency.

Windows are whole UTC hours (the rollups' grain): `from` is floored and `to` ceiled to the hour.
Days and hours in a reporting time zone are exact for every zone whose offset is a multiple of 15
minutes, which is every zone in use today: where a local midnight (trends) or local hour
(heatmap) falls inside a UTC hour, as in Asia/Kolkata (+05:30) or Asia/Kathmandu (+05:45), the
hourly rollup row of that hour is split with its sums over the first 15/30/45 minutes
(`*_lt15/30/45`, migration 0010_exports). The rows are read in full as before. Then, for the edge
hours only (one per local day, found by a primary-key lookup), the part after the cut is moved
from the bucket's local day or hour to the next one. No raw rows are read. `exact` is false only
for offsets that are not a multiple of 15 minutes (historical local mean time).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.platform.errors import Unprocessable

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

Granularity = Literal["hour", "day"]
BreakdownBy = Literal["project", "merchant", "source", "status", "currency", "rail", "country"]

# rollup column -> raw `transactions` expression, for the dimensions a read can filter or group on
DIMENSIONS = {"merchant": "merchant_id", "project": "project", "source": "source", "status": "status",
              "currency": "currency"}

PAYOUT_GROUPS: dict[str, tuple[str, ...]] = {
    "pending": ("pending", "held", "routed"),
    "in_flight": ("submitting", "retrying", "submitted"),
    "settled": ("settled",),
    "failed": ("failed", "returned", "rejected"),
    "cancelled": ("cancelled",),
    "dlq": ("dlq",),
}

COUNT_METRICS = ("transactions", "succeeded", "failed", "fraud_flagged")
RATE_METRICS = ("success_rate", "conversion_rate", "fraud_rate")
MONEY_METRICS = ("gmv", "net_revenue", "fees", "refunds", "average_transaction")
TREND_METRICS = COUNT_METRICS + RATE_METRICS + MONEY_METRICS


# --- windows ---------------------------------------------------------------------------------


def floor_hour(t: datetime) -> datetime:
    t = t.astimezone(timezone.utc)
    return t.replace(minute=0, second=0, microsecond=0)


def ceil_hour(t: datetime) -> datetime:
    f = floor_hour(t)
    return f if f == t.astimezone(timezone.utc) else f + HOUR


def _ceil_day(t: datetime) -> datetime:
    d = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return d if d == t else d + DAY


@dataclass(frozen=True)
class Window:
    start: datetime  # inclusive, UTC hour
    end: datetime  # exclusive, UTC hour

    @classmethod
    def of(cls, start: datetime, end: datetime) -> "Window":
        if start.tzinfo is None or end.tzinfo is None:
            raise Unprocessable("from and to need a time zone offset")
        s, e = floor_hour(start), ceil_hour(end)
        if e <= s:
            raise Unprocessable("`to` must be after `from`")
        if e - s > timedelta(days=800):
            raise Unprocessable("a window is at most 800 days")
        return cls(s, e)

    @classmethod
    def last(cls, period: timedelta, now: datetime | None = None) -> "Window":
        end = ceil_hour(now or datetime.now(timezone.utc))
        return cls(end - period, end)

    @property
    def previous(self) -> "Window":
        return Window(self.start - (self.end - self.start), self.start)

    def parts(self) -> list[tuple[str, Any, Any]]:
        """(table, lo, hi): hourly edges and whole UTC days in between."""
        d1, d2 = _ceil_day(self.start), self.end.replace(hour=0)
        if d2 - d1 < DAY:
            return [("hourly", self.start, self.end)]
        out: list[tuple[str, Any, Any]] = []
        if self.start < d1:
            out.append(("hourly", self.start, d1))
        out.append(("daily", d1.date(), d2.date()))
        if d2 < self.end:
            out.append(("hourly", d2, self.end))
        return out


PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30),
           "90d": timedelta(days=90)}


def resolve_window(period: str | None, start: datetime | None, end: datetime | None,
                   *, default: str = "24h", now: datetime | None = None) -> Window:
    if start or end:
        if not (start and end):
            raise Unprocessable("give both `from` and `to`, or a `period`")
        return Window.of(start, end)
    key = period or default
    if key not in PERIODS:
        raise Unprocessable(f"period must be one of {', '.join(PERIODS)} (or give from/to)")
    return Window.last(PERIODS[key], now)


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise Unprocessable(f"unknown time zone {tz!r}") from None


QUARTERS = (15, 30, 45)  # the hourly rollup's split points (minutes into the UTC hour)


def _cut_minutes(t: datetime, tz: ZoneInfo) -> int | None:
    """Minutes into t's UTC hour at which the local hour changes (0: at the hour itself), None if
    it is not a quarter hour."""
    secs = int(-(t.astimezone(tz).utcoffset() or timedelta()).total_seconds()) % 3600
    return secs // 60 if secs % 900 == 0 else None


def local_edges(window: Window, tz: ZoneInfo, unit: Literal["hour", "day"]) -> tuple[list[tuple[datetime, int]], bool]:
    """The UTC hours of the window that a local hour (or local midnight) boundary cuts inside,
    with the cut's minute; and whether every boundary falls on a quarter hour (the answer is exact)."""
    edges: list[tuple[datetime, int]] = []
    exact = True
    if unit == "hour":
        t = window.start
        while t < window.end:
            cut = _cut_minutes(t, tz)
            if cut is None:
                exact = False
            elif cut:
                edges.append((t, cut))
            t += HOUR
        return edges, exact
    d = window.start.astimezone(tz).date()
    last = window.end.astimezone(tz).date()
    while d <= last:
        midnight = datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(timezone.utc)
        if window.start < midnight < window.end and midnight != floor_hour(midnight):
            minutes, rest = divmod(int((midnight - floor_hour(midnight)).total_seconds()), 60)
            if rest or minutes not in QUARTERS:
                exact = False
            else:
                edges.append((floor_hour(midnight), minutes))
        d += DAY
    return edges, exact


def _moved(col: str) -> str:
    """The part of an hourly rollup column after the cut `e.cut`."""
    return (f"h.{col} - CASE e.cut WHEN 15 THEN h.{col}_lt15 WHEN 30 THEN h.{col}_lt30 "
            f"ELSE h.{col}_lt45 END")


def _edge_moves(edges: list[tuple[datetime, int]], scope: Scope, params: dict[str, Any]) -> str:
    """Rows moving the part of each edge hour after its cut from the hour's own local bucket to
    the next one: (−part at the hour's start, +part at the cut), to add to the hourly rows."""
    if not edges:
        return ""
    where = scope.where(params)
    params["edge_buckets"] = [b for b, _ in edges]
    params["edge_cuts"] = [c for _, c in edges]
    parts = ", ".join(f"{_moved(c)} AS {c}" for c in ("txn_count", "amount_minor", "fee_minor", "fraud_count"))
    moved = (f"SELECT h.bucket, e.cut, h.merchant_id, h.project, h.source, h.currency, h.status, {parts} "
             f"FROM unnest(CAST(:edge_buckets AS timestamptz[]), CAST(:edge_cuts AS integer[])) AS e(bucket, cut) "
             f"JOIN transaction_rollups_hourly h ON h.bucket = e.bucket WHERE true{where}")
    dims = "merchant_id, project, source, currency, status"
    return (f" UNION ALL SELECT bucket AS t, {dims}, -txn_count, -amount_minor, -fee_minor, -fraud_count FROM ({moved}) m"
            f" UNION ALL SELECT bucket + make_interval(mins => cut) AS t, {dims}, txn_count, amount_minor, fee_minor, "
            f"fraud_count FROM ({moved}) m")


# --- filters -------------------------------------------------------------------------------------


@dataclass
class Scope:
    """What a read is limited to; `merchant_id` is forced by the caller's tenant scope."""

    merchant_id: str | None = None
    project: str | None = None
    source: str | None = None
    currency: str | None = None

    def where(self, params: dict[str, Any]) -> str:
        clauses = []
        for name in ("merchant_id", "project", "source", "currency"):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"{name} = :f_{name}")
                params[f"f_{name}"] = value
        return "".join(f" AND {c}" for c in clauses)

    def key(self) -> str:
        return json.dumps([self.merchant_id, self.project, self.source, self.currency])


def _union(window: Window, scope: Scope, select_cols: str, params: dict[str, Any], *, tag: str = "w",
           label: str | None = None) -> str:
    where = scope.where(params)
    parts = []
    for i, (table, lo, hi) in enumerate(window.parts()):
        params[f"{tag}lo{i}"], params[f"{tag}hi{i}"] = lo, hi
        lab = f"'{label}'::text AS period, " if label else ""
        if table == "hourly":
            parts.append(f"SELECT {lab}bucket AS t, {select_cols} FROM transaction_rollups_hourly "
                         f"WHERE bucket >= :{tag}lo{i} AND bucket < :{tag}hi{i}{where}")
        else:
            parts.append(f"SELECT {lab}(day::timestamp AT TIME ZONE 'UTC') AS t, {select_cols} "
                         f"FROM transaction_rollups_daily WHERE day >= :{tag}lo{i} AND day < :{tag}hi{i}{where}")
    return " UNION ALL ".join(parts)


_ROLLUP_COLS = "merchant_id, project, source, currency, status, txn_count, amount_minor, fee_minor, fraud_count"

# aggregates over rollup rows (alias-free: used in GROUP BY queries)
_AGG = """
    sum(txn_count) AS transactions,
    sum(txn_count) FILTER (WHERE status IN ('success', 'refunded')) AS succeeded,
    sum(txn_count) FILTER (WHERE status = 'failed') AS failed,
    sum(fraud_count) AS fraud_flagged,
    sum(amount_minor) FILTER (WHERE status IN ('success', 'refunded')) AS gmv,
    sum(fee_minor) FILTER (WHERE status IN ('success', 'refunded')) AS fees,
    sum(amount_minor) FILTER (WHERE status = 'refunded') AS refunds
"""


def _int(v: Any) -> int:
    return int(v or 0)


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 6) if b else None


def derive(row: dict[str, Any]) -> dict[str, Any]:
    """From the summed columns to every KPI (money KPIs only make sense within one currency)."""
    tx, ok, bad, fraud = (_int(row.get(k)) for k in ("transactions", "succeeded", "failed", "fraud_flagged"))
    gmv, fees, refunds = (_int(row.get(k)) for k in ("gmv", "fees", "refunds"))
    return {
        "transactions": tx, "succeeded": ok, "failed": bad, "fraud_flagged": fraud,
        "success_rate": _ratio(ok, ok + bad), "conversion_rate": _ratio(ok, tx), "fraud_rate": _ratio(fraud, tx),
        "gmv": gmv, "fees": fees, "refunds": refunds, "net_revenue": gmv - fees - refunds,
        "average_transaction": (gmv // ok) if ok else None,
    }


def _pair(value: Any, previous: Any) -> dict[str, Any]:
    return {"value": value, "previous": previous}


# --- overview ----------------------------------------------------------------------------------


async def overview(session: AsyncSession, window: Window, scope: Scope) -> dict[str, Any]:
    params: dict[str, Any] = {}
    cur = _union(window, scope, _ROLLUP_COLS, params, tag="c", label="current")
    prev = _union(window.previous, scope, _ROLLUP_COLS, params, tag="p", label="previous")
    rows = (await session.execute(text(
        f"SELECT period, currency, {_AGG} FROM ({cur} UNION ALL {prev}) r GROUP BY period, currency"
    ), params)).mappings().all()

    totals: dict[str, dict[str, int]] = {"current": {}, "previous": {}}
    per_currency: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        r = dict(r)
        t = totals[r["period"]]
        for k in COUNT_METRICS:
            t[k] = t.get(k, 0) + _int(r[k])
        per_currency.setdefault(r["currency"], {})[r["period"]] = derive(r)

    cur_all, prev_all = derive(totals["current"]), derive(totals["previous"])
    kpis = {k: _pair(cur_all[k], prev_all[k]) for k in COUNT_METRICS + RATE_METRICS}

    payouts = await _payout_groups(session, window, scope)
    floats = await float_available(session, scope.merchant_id, since=window.start)
    currencies = sorted(set(per_currency) | set(payouts) | set(floats))
    if scope.currency:
        currencies = [c for c in currencies if c == scope.currency]
    empty = derive({})
    money = []
    for c in currencies:
        now_, before = per_currency.get(c, {}).get("current", empty), per_currency.get(c, {}).get("previous", empty)
        block = {"currency": c, **{k: _pair(now_[k], before[k]) for k in MONEY_METRICS}}
        fl = floats.get(c, {"value": 0, "previous": 0})
        block["float_available"] = _pair(fl["value"], fl["previous"])
        block["payouts"] = payouts.get(c, _empty_payouts())
        money.append(block)
    return {
        "window": {"from": window.start, "to": window.end},
        "previous_window": {"from": window.previous.start, "to": window.previous.end},
        "merchant_id": scope.merchant_id,
        "kpis": kpis,
        "by_currency": money,
    }


def _empty_payouts() -> dict[str, Any]:
    return {g: {"count": _pair(0, 0), "amount_minor": _pair(0, 0)} for g in PAYOUT_GROUPS}


def _payout_union(window: Window, scope: Scope, params: dict[str, Any], *, tag: str, label: str | None = None) -> str:
    where = ""
    if scope.merchant_id is not None:
        where += " AND merchant_id = :pm"
        params["pm"] = scope.merchant_id
    if scope.currency is not None:
        where += " AND currency = :pcur"
        params["pcur"] = scope.currency
    lab = f"'{label}'::text AS period, " if label else ""
    cols = "merchant_id, currency, rail, status, payout_count, amount_minor, fee_minor"
    parts = []
    for i, (table, lo, hi) in enumerate(window.parts()):
        params[f"{tag}lo{i}"], params[f"{tag}hi{i}"] = lo, hi
        if table == "hourly":
            parts.append(f"SELECT {lab}{cols} FROM payout_rollups_hourly "
                         f"WHERE bucket >= :{tag}lo{i} AND bucket < :{tag}hi{i}{where}")
        else:
            parts.append(f"SELECT {lab}{cols} FROM payout_rollups_daily "
                         f"WHERE day >= :{tag}lo{i} AND day < :{tag}hi{i}{where}")
    return " UNION ALL ".join(parts)


async def _payout_groups(session: AsyncSession, window: Window, scope: Scope) -> dict[str, dict[str, Any]]:
    """Payouts created in the window (and the previous one) by their current status group."""
    params: dict[str, Any] = {}
    source = (_payout_union(window, scope, params, tag="pc", label="current") + " UNION ALL "
              + _payout_union(window.previous, scope, params, tag="pp", label="previous"))
    case = " ".join(f"WHEN status IN ({', '.join(repr(s) for s in sts)}) THEN '{g}'"
                    for g, sts in PAYOUT_GROUPS.items())
    rows = (await session.execute(text(f"""
        SELECT currency, CASE {case} ELSE 'other' END AS grp, period = 'current' AS current,
               sum(payout_count) AS n, sum(amount_minor) AS amount
          FROM ({source}) p GROUP BY 1, 2, 3"""), params)).mappings().all()
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["grp"] == "other":
            continue
        block = out.setdefault(r["currency"], _empty_payouts())[r["grp"]]
        slot = "value" if r["current"] else "previous"
        block["count"][slot] = _int(r["n"])
        block["amount_minor"][slot] = _int(r["amount"])
    return out


async def float_available(session: AsyncSession, merchant_id: str | None, *, since: datetime) -> dict[str, dict[str, int]]:
    """Merchants' available balances per currency from the ledger (one row per account), and
    what they were at `since` (the current balance less the entries posted after it)."""
    if merchant_id is not None:
        cond, params = "a.code = :code", {"code": f"merchant:{merchant_id}:available"}
    else:
        cond, params = "a.code LIKE :pattern", {"pattern": "merchant:%:available"}
    params["since"] = since
    rows = (await session.execute(text(f"""
        SELECT a.currency, -sum(a.balance_minor) AS available,
               coalesce((SELECT sum(e.amount_minor) FROM journal_entries e
                          WHERE e.account_id = ANY(array_agg(a.id)) AND e.created_at >= :since), 0) AS moved
          FROM ledger_accounts a WHERE {cond} GROUP BY a.currency"""), params)).mappings().all()
    return {r["currency"]: {"value": _int(r["available"]), "previous": _int(r["available"]) + _int(r["moved"])}
            for r in rows}


# --- trends ------------------------------------------------------------------------------------------


def _buckets(window: Window, granularity: Granularity, tz: ZoneInfo) -> list[datetime]:
    """Every bucket label of the window (so empty buckets show as zero), in local time."""
    out: list[datetime] = []
    if granularity == "hour":
        t = window.start
        while t < window.end:
            out.append(t.astimezone(tz))
            t += HOUR
        return out
    first = window.start.astimezone(tz).date()
    # the local day of the window's last instant: in a zone whose midnight is not on the hour
    # (Kathmandu +05:45) the window's last UTC hour can already hold the first minutes of a day
    last = (window.end - timedelta(microseconds=1)).astimezone(tz).date()
    d = first
    while d <= last:
        out.append(datetime(d.year, d.month, d.day))
        d += DAY
    return out


async def trends(session: AsyncSession, window: Window, scope: Scope, *, metric: str,
                 granularity: Granularity, tz_name: str) -> dict[str, Any]:
    if metric not in TREND_METRICS:
        raise Unprocessable(f"metric must be one of {', '.join(TREND_METRICS)}")
    tz = zone(tz_name)
    params: dict[str, Any] = {"tz": tz_name}
    exact = True
    if granularity == "day" and tz_name in ("UTC", "Etc/UTC"):
        source = _union(window, scope, _ROLLUP_COLS, params)  # whole days come from the daily rollup
    elif granularity == "day":
        edges, exact = local_edges(window, tz, "day")
        source = _union_hourly(window, scope, params) + _edge_moves(edges, scope, params)
    else:  # UTC hours, labelled in local time: exact in any zone
        source = _union_hourly(window, scope, params)
    if granularity == "hour":
        label = "t"
    else:
        label = "date_trunc('day', t AT TIME ZONE :tz)"
    by_currency = metric in MONEY_METRICS
    rows = (await session.execute(text(
        f"SELECT {label} AS b{', currency' if by_currency else ''}, {_AGG} FROM ({source}) r "
        f"GROUP BY 1{', 2' if by_currency else ''}"), params)).mappings().all()

    def key(b: datetime) -> Any:
        return b.astimezone(timezone.utc) if granularity == "hour" else b.replace(tzinfo=None)

    series: dict[str | None, dict[Any, Any]] = {}
    for r in rows:
        series.setdefault(r["currency"] if by_currency else None, {})[key(r["b"])] = derive(dict(r))[metric]
    if not series:
        series[scope.currency if by_currency else None] = {}
    empty = derive({})[metric]
    labels = _buckets(window, granularity, tz)
    out_series = []
    for cur, values in sorted(series.items(), key=lambda kv: kv[0] or ""):
        points = [{"t": (b.isoformat() if granularity == "hour" else b.date().isoformat()),
                   "value": values.get(key(b), empty)} for b in labels]
        out_series.append({"currency": cur, "points": points})
    return {"metric": metric, "granularity": granularity, "tz": tz_name, "exact": exact,
            "window": {"from": window.start, "to": window.end}, "merchant_id": scope.merchant_id,
            "series": out_series}


def _union_hourly(window: Window, scope: Scope, params: dict[str, Any]) -> str:
    where = scope.where(params)
    params["hlo"], params["hhi"] = window.start, window.end
    return (f"SELECT bucket AS t, {_ROLLUP_COLS} FROM transaction_rollups_hourly "
            f"WHERE bucket >= :hlo AND bucket < :hhi{where}")


# --- breakdown and heatmap ---------------------------------------------------------------------------


async def breakdown(session: AsyncSession, window: Window, scope: Scope, *, by: BreakdownBy,
                    limit: int = 100) -> dict[str, Any]:
    if by == "rail":
        return await _payout_breakdown(session, window, scope, limit)
    if by == "country":
        return await _country_breakdown(session, window, scope, limit)
    col = DIMENSIONS[by]
    params: dict[str, Any] = {"lim": limit}
    source = _union(window, scope, _ROLLUP_COLS, params)
    group = col if col == "currency" else f"{col}, currency"
    rows = (await session.execute(text(
        f"SELECT {group}, {_AGG} FROM ({source}) r GROUP BY {group} ORDER BY gmv DESC NULLS LAST, "
        f"transactions DESC, {group} LIMIT :lim"), params)).mappings().all()
    items = []
    for r in rows:
        d = derive(dict(r))
        key = r[col]
        items.append({"key": (key or None) if col in ("merchant_id", "project") else key,
                      "currency": r["currency"], **d})
    return {"by": by, "window": {"from": window.start, "to": window.end}, "merchant_id": scope.merchant_id,
            "items": items}


async def _country_breakdown(session: AsyncSession, window: Window, scope: Scope, limit: int) -> dict[str, Any]:
    """By payer country (None: unknown). The rollups have no country dimension, so this one reads
    the window's `transactions` rows (index ix_transactions_occurred_country), with the rollups'
    definitions: the same aggregates over one row per transaction."""
    params: dict[str, Any] = {"lim": limit, "lo": window.start, "hi": window.end}
    where = scope.where(params)
    rows = (await session.execute(text(f"""
        SELECT payer_country, currency, {_AGG}
          FROM (SELECT payer_country, currency, status, 1 AS txn_count, amount_minor, fee_minor,
                       dashboard_fraud_flag(raw) AS fraud_count
                  FROM transactions WHERE occurred_at >= :lo AND occurred_at < :hi{where}) r
         GROUP BY payer_country, currency
         ORDER BY gmv DESC NULLS LAST, transactions DESC, payer_country NULLS LAST, currency LIMIT :lim"""),
        params)).mappings().all()
    items = [{"key": r["payer_country"], "currency": r["currency"], **derive(dict(r))} for r in rows]
    return {"by": "country", "window": {"from": window.start, "to": window.end}, "merchant_id": scope.merchant_id,
            "items": items}


async def _payout_breakdown(session: AsyncSession, window: Window, scope: Scope, limit: int) -> dict[str, Any]:
    params: dict[str, Any] = {"lim": limit}
    source = _payout_union(window, scope, params, tag="pb")
    rows = (await session.execute(text(f"""
        SELECT rail, currency, sum(payout_count) AS payouts, sum(amount_minor) AS amount,
               sum(payout_count) FILTER (WHERE status = 'settled') AS settled,
               sum(payout_count) FILTER (WHERE status IN ('failed', 'returned', 'rejected')) AS failed
          FROM ({source}) p
         GROUP BY rail, currency HAVING sum(payout_count) <> 0 ORDER BY amount DESC, rail LIMIT :lim"""),
        params)).mappings().all()
    items = [{"key": r["rail"] or None, "currency": r["currency"], "payouts": _int(r["payouts"]),
              "amount_minor": _int(r["amount"]), "settled": _int(r["settled"]), "failed": _int(r["failed"]),
              "settle_rate": _ratio(_int(r["settled"]), _int(r["settled"]) + _int(r["failed"]))} for r in rows]
    return {"by": "rail", "window": {"from": window.start, "to": window.end}, "merchant_id": scope.merchant_id,
            "items": items}


async def heatmap(session: AsyncSession, window: Window, scope: Scope, *, metric: str, tz_name: str) -> dict[str, Any]:
    """Hour of day (0-23) × ISO weekday (1 = Monday) in the reporting time zone."""
    if metric not in ("transactions", "succeeded", "failed", "gmv", "fraud_flagged"):
        raise Unprocessable("heatmap metric must be transactions, succeeded, failed, gmv or fraud_flagged")
    if metric == "gmv" and scope.currency is None:
        raise Unprocessable("a gmv heatmap needs `currency`")
    edges, exact = local_edges(window, zone(tz_name), "hour")
    params: dict[str, Any] = {"tz": tz_name}
    source = _union_hourly(window, scope, params) + _edge_moves(edges, scope, params)
    rows = (await session.execute(text(f"""
        SELECT extract(isodow FROM t AT TIME ZONE :tz)::int AS weekday,
               extract(hour FROM t AT TIME ZONE :tz)::int AS hour, {_AGG}
          FROM ({source}) r GROUP BY 1, 2"""), params)).mappings().all()
    cells = {(r["weekday"], r["hour"]): _int(r[metric]) for r in rows}
    return {"metric": metric, "tz": tz_name, "exact": exact, "window": {"from": window.start, "to": window.end},
            "merchant_id": scope.merchant_id,
            "cells": [{"weekday": w, "hour": h, "value": cells.get((w, h), 0)}
                      for w in range(1, 8) for h in range(24)]}


def cache_key(kind: str, **parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return f"{kind}:{hashlib.sha1(blob.encode()).hexdigest()}"


