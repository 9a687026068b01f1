"""System health for one merchant over the last 24 h and 7 d (docs/merchant_health.md)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.health import store

WINDOWS: dict[str, timedelta] = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def _ms(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


async def merchant_health(session: AsyncSession, merchant_id: str, now: datetime | None = None) -> dict[str, Any]:
    """Every figure over [now - window, now). Rates are fractions 0..1 (None without rows);
    uptime is a percentage."""
    until = now or datetime.now(timezone.utc)
    windows = {}
    for name, span in WINDOWS.items():
        since = until - span
        wh = await store.webhook_figures(session, merchant_id, since, until)
        api = await store.api_figures(session, merchant_id, since, until)
        uptime = await store.uptime_figures(session, since, until)
        rails = await store.rail_figures(session, merchant_id, since, until)
        windows[name] = {
            "since": since, "until": until,
            "webhooks": {"attempts": wh["attempts"], "succeeded": wh["succeeded"],
                         "success_rate": _share(wh["succeeded"], wh["attempts"]),
                         "latency_p50_ms": _ms(wh["latency_p50_ms"]), "latency_p95_ms": _ms(wh["latency_p95_ms"])},
            "api": {"requests": api["requests"], "latency_p50_ms": _ms(api["latency_p50_ms"]),
                    "latency_p95_ms": _ms(api["latency_p95_ms"]),
                    "error_rate_5xx": _share(api["errors_5xx"], api["requests"]),
                    "error_rate_4xx": _share(api["errors_4xx"], api["requests"])},
            "uptime": [{"component": u["component"], "probes": u["probes"], "up": u["up"],
                        "uptime_pct": 100.0 * u["up"] / u["probes"]} for u in uptime],
            "rails": [{"rail": r["rail"], "connector": r["connector"], "payouts": r["payouts"],
                       "settled": r["settled"], "finished": r["finished"],
                       "success_rate": _share(r["settled"], r["finished"])} for r in rails],
        }
    return {"merchant_id": merchant_id, "windows": windows}


async def record_probe(sessionmaker, checks: dict[str, dict[str, Any]], *, at: datetime,
                       retention_days: float) -> int:
    """Store one `/ready` probe (a row per component) and prune probes past the retention; returns
    how many rows were pruned."""
    rows = [{"at": at, "component": name, "up": check["status"] == "up", "latency_ms": check.get("latency_ms")}
            for name, check in checks.items()]
    async with sessionmaker() as session, session.begin():
        await store.insert_probes(session, rows)
        return await store.delete_probes_older_than(session, at - timedelta(days=retention_days), batch=5000)
