"""Alerts deduplicated by the open-alert partial index keep working on a long-lived connection.

PostgreSQL switches a prepared statement to a generic plan after five runs; from then on an
`ON CONFLICT (dedupe_key) WHERE status <> $1` can no longer be matched to the partial index and
every insert failed. The SLA-breach activity retries forever on that error, so a busy worker
stopped settling payouts once a few had breached (found by bench/payouts.py under load).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select
from temporalio.testing import ActivityEnvironment

from activities.rails import RailActivities
from core.rails.models import SlaBreachInput
from core.platform.tables import alerts


async def test_sla_breach_alerts_survive_the_generic_plan(sessionmaker, settings):
    acts = RailActivities(sessionmaker, None, [], None, settings)  # type: ignore[arg-type]
    env = ActivityEnvironment()
    target = datetime(2026, 1, 5, 17, tzinfo=timezone.utc)
    for i in range(12):  # well past the five custom-plan runs, on the pool's one reused connection
        params = SlaBreachInput(payout_id=f"po_sla{i}", rail="ach", connector="sandbox_ach",
                                settlement_target_at=target, status="submitted")
        assert (await env.run(acts.raise_sla_breach_alert, params)).raised
        assert not (await env.run(acts.raise_sla_breach_alert, params)).raised  # deduplicated
    async with sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(alerts).where(alerts.c.rule == "payout_sla_breach"))
    assert count == 12
