"""Dashboard HTTP API: auth and tenant scope, snapshot cache and its invalidation, transactions
list/detail, exports, alerts (check, dedupe, acknowledge, resolve, the scheduled workflow)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from core.alerts import service as alert_service
from tests.dashboards.test_dashboard_metrics import GENERATE, NOW

OVERVIEW = "/api/v1/dashboard/overview"


@pytest.fixture
async def data(sessionmaker):
    async with sessionmaker() as session, session.begin():
        for stmt in GENERATE.strip().split(";\n"):
            if stmt.strip():
                await session.execute(text(stmt), {"now": NOW} if ":now" in stmt else {})
        await session.execute(text("""
            INSERT INTO reconciliation_runs (id, kind, left_source, right_source, date_from, date_to, status, finished_at)
            VALUES ('run_1', 'provider_pair', 'vima', 'payshack', current_date, current_date, 'success', now())"""))
        await session.execute(text("""
            INSERT INTO reconciliation_results (run_id, category, match_key, left_id, right_id, amount_diff_minor)
            SELECT 'run_1', CASE WHEN id % 2 = 0 THEN 'matched' ELSE 'amount_mismatch' END, source_id, id, NULL,
                   CASE WHEN id % 2 = 0 THEN 0 ELSE 5 END
              FROM transactions WHERE id <= 40"""))
    return sessionmaker


def _period() -> dict:
    end = NOW.replace(minute=0) + timedelta(hours=1)
    return {"from": (end - timedelta(days=30)).isoformat(), "to": end.isoformat()}


class TestOverview:
    async def test_requires_a_token(self, client):
        assert (await client.get(OVERVIEW)).status_code == 401

    async def test_merchant_cannot_read_another_merchant(self, client, token_for):
        r = await client.get(OVERVIEW, params={"merchant_id": "m_b"}, headers=token_for("merchant_admin", merchant_id="m_a"))
        assert r.status_code == 403

    async def test_bad_window_is_422(self, client, token_for):
        r = await client.get(OVERVIEW, params={"period": "5y"}, headers=token_for("ops_admin"))
        assert r.status_code == 422

    async def test_merchant_sees_only_its_own_numbers(self, client, token_for, data):
        mine = (await client.get(OVERVIEW, params=_period(), headers=token_for("merchant_viewer", merchant_id="m_a"))).json()
        asked = (await client.get(OVERVIEW, params={**_period(), "merchant_id": "m_a"},
                                  headers=token_for("finance_ops"))).json()
        platform = (await client.get(OVERVIEW, params=_period(), headers=token_for("finance_ops"))).json()
        assert mine["merchant_id"] == "m_a"
        assert mine["kpis"] == asked["kpis"]
        async with data() as session:
            n = (await session.execute(text(
                "SELECT count(*) FROM transactions WHERE merchant_id = 'm_a' AND occurred_at >= :s AND occurred_at < :e"),
                {"s": datetime.fromisoformat(_period()["from"]), "e": datetime.fromisoformat(_period()["to"])})).scalar_one()
        assert mine["kpis"]["transactions"]["value"] == n
        assert platform["kpis"]["transactions"]["value"] > n

    async def test_snapshot_cached_and_invalidated_by_new_data(self, client, token_for, data, app):
        headers = token_for("ops_admin")
        first = await client.get(OVERVIEW, params=_period(), headers=headers)
        second = await client.get(OVERVIEW, params=_period(), headers=headers)
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
        assert first.json() == second.json()
        async with data() as session, session.begin():
            await session.execute(text("""
                INSERT INTO transactions (source, source_id, merchant_id, amount_minor, currency, status, occurred_at,
                                          raw, data_hash)
                VALUES ('vima', 'late_1', 'm_a', 999, 'INR', 'success', :t, '{}', 'x')"""), {"t": NOW})
        await asyncio.wait_for(app.state.live_hub.ready.wait(), 10)
        await app.state.redis.publish("payops:updates:transactions", json.dumps({"source": "vima", "inserted": 1}))
        deadline = time.monotonic() + 5
        while True:
            third = await client.get(OVERVIEW, params=_period(), headers=headers)
            if third.headers["x-cache"] == "miss":
                break
            assert time.monotonic() < deadline, "new data did not invalidate the snapshot"
            await asyncio.sleep(0.05)
        assert third.json()["kpis"]["transactions"]["value"] == first.json()["kpis"]["transactions"]["value"] + 1


class TestMetrics:
    async def test_trends_breakdown_heatmap(self, client, token_for, data):
        h = token_for("merchant_admin", merchant_id="m_c")
        t = await client.get("/api/v1/metrics/trends", params={**_period(), "metric": "success_rate", "tz": "Asia/Kolkata"},
                             headers=h)
        assert t.status_code == 200 and t.json()["exact"] is True and t.json()["merchant_id"] == "m_c"
        b = await client.get("/api/v1/metrics/breakdown", params={**_period(), "by": "merchant"}, headers=h)
        assert {i["key"] for i in b.json()["items"]} == {"m_c"}
        m = await client.get("/api/v1/metrics/heatmap", params=_period(), headers=h)
        assert len(m.json()["cells"]) == 168
        bad = await client.get("/api/v1/metrics/trends", params={"metric": "nope"}, headers=h)
        assert bad.status_code == 422
        assert (await client.get("/api/v1/metrics/breakdown", params={"by": "color"}, headers=h)).status_code == 422


class TestTransactions:
    async def test_keyset_pages_cover_the_filtered_rows_in_order(self, client, token_for, data):
        h = token_for("merchant_viewer", merchant_id="m_b")
        seen, cursor = [], None
        while True:
            params = {"limit": 97, "status": "success", "sort": "-amount_minor"}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/api/v1/transactions", params=params, headers=h)).json()
            seen += page["data"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        async with data() as session:
            ids = (await session.execute(text(
                "SELECT id FROM transactions WHERE merchant_id = 'm_b' AND status = 'success' "
                "ORDER BY amount_minor DESC, id DESC"))).scalars().all()
        assert [r["id"] for r in seen] == list(ids)
        assert {r["merchant_id"] for r in seen} == {"m_b"}

    async def test_search_by_utr_email_and_id(self, client, token_for, data):
        h = token_for("ops_admin")
        async with data() as session:
            row = (await session.execute(text(
                "SELECT id, utr, source_id FROM transactions WHERE utr IS NOT NULL ORDER BY id LIMIT 1"))).one()
            emails = (await session.execute(text(
                "SELECT count(*) FROM transactions WHERE payer_email = 'payer7@example.com'"))).scalar_one()
        for q in (row.utr, row.source_id, str(row.id)):
            got = (await client.get("/api/v1/transactions", params={"q": q}, headers=h)).json()["data"]
            assert [r["id"] for r in got] == [row.id], q
        got = (await client.get("/api/v1/transactions", params={"q": "PAYER7@example.com", "limit": 500},
                                headers=h)).json()["data"]
        assert len(got) == emails

    async def test_detail_with_reconciliation_and_raw(self, client, token_for, data):
        async with data() as session:
            tid, merchant = (await session.execute(text(
                "SELECT id, merchant_id FROM transactions WHERE id <= 40 AND id % 2 = 1 AND merchant_id IS NOT NULL "
                "ORDER BY id LIMIT 1"))).one()
            other = (await session.execute(text("SELECT id FROM transactions WHERE id > 40 ORDER BY id LIMIT 1"))).scalar_one()
        d = await client.get(f"/api/v1/transactions/{tid}", headers=token_for("merchant_admin", merchant_id=merchant))
        assert d.status_code == 200
        body = d.json()
        assert body["reconciliation"]["status"] == "amount_mismatch" and body["raw"]["n"] > 0
        assert (await client.get(f"/api/v1/transactions/{other}", headers=token_for("ops_admin"))).json()[
            "reconciliation"]["status"] == "unreconciled"
        foreign = "m_b" if merchant != "m_b" else "m_a"
        r = await client.get(f"/api/v1/transactions/{tid}", headers=token_for("merchant_admin", merchant_id=foreign))
        assert r.status_code == 404


class TestExports:
    async def test_csv_matches_the_filter(self, client, token_for, data):
        r = await client.get("/api/v1/export/transactions", params={"format": "csv", "currency": "USD"},
                             headers=token_for("merchant_admin", merchant_id="m_a"))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        async with data() as session:
            n = (await session.execute(text(
                "SELECT count(*) FROM transactions WHERE merchant_id = 'm_a' AND currency = 'USD'"))).scalar_one()
        assert len(rows) == n and {x["merchant_id"] for x in rows} == {"m_a"}

    async def test_xlsx_and_discrepancies(self, client, token_for, data):
        from openpyxl import load_workbook

        r = await client.get("/api/v1/export/transactions", params={"format": "xlsx", "status": "failed"},
                             headers=token_for("ops_admin"))
        assert r.status_code == 200
        ws = load_workbook(io.BytesIO(r.content), read_only=True).active
        async with data() as session:
            n = (await session.execute(text("SELECT count(*) FROM transactions WHERE status = 'failed'"))).scalar_one()
        assert sum(1 for _ in ws.iter_rows()) == n + 1
        d = await client.get("/api/v1/export/discrepancies", params={"format": "csv"}, headers=token_for("finance_ops"))
        async with data() as session:
            bad = (await session.execute(text(
                "SELECT count(*) FROM reconciliation_results WHERE category <> 'matched'"))).scalar_one()
        assert len(list(csv.DictReader(io.StringIO(d.text)))) == bad > 0
        denied = await client.get("/api/v1/export/discrepancies", headers=token_for("merchant_admin", merchant_id="m_a"))
        assert denied.status_code == 403


class TestAlerts:
    async def test_firings_deduplicated_then_acknowledged_and_resolved(self, client, token_for, data):
        async with data() as session, session.begin():
            # m_a fails everything in the last hour: success rate 0 over > min_count transactions
            await session.execute(text("""
                INSERT INTO transactions (source, source_id, merchant_id, amount_minor, currency, status, occurred_at,
                                          raw, data_hash)
                SELECT 'vima', 'burst_' || g, 'm_a', 100, 'INR', 'failed', now() - interval '1 minute', '{}', 'b'
                  FROM generate_series(1, 400) g"""))
        for _ in range(2):
            async with data() as session, session.begin():
                await alert_service.check_rules(session)
        h = token_for("ops_admin")
        alerts = (await client.get("/api/v1/alerts", params={"rule": "success_rate_drop"}, headers=h)).json()["data"]
        mine = [a for a in alerts if a["data"]["merchant_id"] == "m_a"]
        assert len(mine) == 1 and mine[0]["occurrences"] == 2 and mine[0]["status"] == "open"
        assert (await client.get("/api/v1/alerts", headers=token_for("merchant_viewer", merchant_id="m_b"))).json()[
            "data"] == [] or all(a["data"]["merchant_id"] == "m_b" for a in (await client.get(
                "/api/v1/alerts", headers=token_for("merchant_viewer", merchant_id="m_b"))).json()["data"])
        aid = mine[0]["id"]
        ack = await client.post(f"/api/v1/alerts/{aid}/acknowledge", headers=token_for("merchant_admin", merchant_id="m_a"))
        assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
        async with data() as session, session.begin():
            await alert_service.check_rules(session)  # still failing: counts on the acknowledged alert
        again = (await client.get("/api/v1/alerts", params={"rule": "success_rate_drop"}, headers=h)).json()["data"]
        assert [a["occurrences"] for a in again if a["id"] == aid] == [3]
        assert (await client.post(f"/api/v1/alerts/{aid}/resolve", headers=h)).json()["status"] == "resolved"
        assert (await client.post(f"/api/v1/alerts/{aid}/acknowledge", headers=h)).status_code == 409
        assert (await client.post("/api/v1/alerts/999999/resolve", headers=h)).status_code == 404
        async with data() as session, session.begin():
            await alert_service.check_rules(session)  # resolved: the next firing opens a new alert
        fresh = (await client.get("/api/v1/alerts", params={"rule": "success_rate_drop", "status": "open"},
                                  headers=h)).json()["data"]
        assert [a["id"] for a in fresh if a["data"]["merchant_id"] == "m_a"] != [aid]
        rules = (await client.get("/api/v1/alerts/rules", headers=h)).json()
        assert {r["id"] for r in rules} >= {"success_rate_drop", "fraud_rate_spike", "float_low", "dlq_size",
                                             "stale_sync", "low_match_rate", "sla_breaches"}

    async def test_alert_check_workflow_on_a_worker(self, temporal_client, worker, settings, data):
        from workflows.alerts import AlertCheckInput, AlertCheckWorkflow

        result = await temporal_client.execute_workflow(
            AlertCheckWorkflow.run, AlertCheckInput(), id=f"alert-check-{uuid.uuid4().hex[:8]}",
            task_queue=settings.temporal_task_queue)
        assert result.rules_checked == 7
        async with data() as session:
            low_match = (await session.execute(text(
                "SELECT count(*) FROM alerts WHERE rule = 'low_match_rate'"))).scalar_one()
        assert low_match == 1  # about half of run_1's results matched


async def test_alert_schedule_is_ensured(temporal_client, settings):
    from workers.schedules import ALERT_CHECK_SCHEDULE_ID, alert_check_schedule
    from core.platform.temporal import upsert_schedule

    sid = f"{ALERT_CHECK_SCHEDULE_ID}-{uuid.uuid4().hex[:6]}"
    await upsert_schedule(temporal_client, sid, alert_check_schedule(settings))
    await upsert_schedule(temporal_client, sid, alert_check_schedule(settings))  # idempotent
    desc = await temporal_client.get_schedule_handle(sid).describe()
    assert desc.schedule.spec.intervals[0].every == timedelta(seconds=settings.alert_check_every_seconds)
    await temporal_client.get_schedule_handle(sid).delete()
    _ = timezone
