"""ReconciliationWorkflow on generated data with known truth, through a real worker and Temporal:
every category, duplicates, tolerance edges, midnight in a non-UTC zone, sharding, re-runs,
resolutions surviving a re-run, carry-forward, the match-rate alert."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import pytest

from core.reconciliation.models import ReconciliationWorkflowInput
from tests.reconciliation_truth import DAY, Row, build_day, insert_rows, install_pair_rules, local
from workflows.reconciliation import ReconciliationWorkflow


@pytest.fixture
def recon_settings(settings):
    return settings.model_copy(update={"reconciliation_timezone": "Asia/Kolkata",
                                       "reconciliation_boundary_grace_seconds": 3600})


@pytest.fixture
async def recon_worker(temporal_client, recon_settings):
    from workers.main import WorkerDeps, build_worker

    deps = WorkerDeps.from_settings(recon_settings)
    async with build_worker(temporal_client, deps, task_queue=recon_settings.temporal_task_queue):
        yield
    await deps.aclose()


@pytest.fixture
async def db(database_url):
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    yield conn
    await conn.close()


async def reconcile(client, settings, day=DAY, *, shards=None, timeout=60):
    handle = await client.start_workflow(
        ReconciliationWorkflow.run,
        ReconciliationWorkflowInput(date_from=day.isoformat(), shards=shards, requested_by="test"),
        id=f"reconciliation-test-{uuid.uuid4().hex[:8]}", task_queue=settings.temporal_task_queue,
    )
    result = await asyncio.wait_for(handle.result(), timeout)
    return handle, result


async def categories(db, run_id) -> dict[str | None, str]:
    rows = await db.fetch("SELECT match_key, category FROM reconciliation_results WHERE run_id = $1 "
                          "AND category <> 'probable_match' AND carried_from_id IS NULL", run_id)
    return {r["match_key"]: r["category"] for r in rows if r["match_key"] is not None}


@pytest.mark.parametrize("shards", [1, 3])
async def test_every_category_matches_the_known_truth(temporal_client, recon_settings, recon_worker, db, shards):
    truth = build_day()
    await install_pair_rules(db)
    await insert_rows(db, truth.rows)
    handle, result = await reconcile(temporal_client, recon_settings, shards=shards)

    assert result.status == "success", result.error
    found = await categories(db, result.run_id)
    assert found == truth.discrepancies()  # a row per discrepancy; matched keys are counted, not stored
    assert not truth.excluded & set(found)  # rows of the neighbouring days are not this day's business
    counts = {k: v for k, v in result.summary["counts"].items() if v and k != "probable_match"}
    assert counts == truth.counts()
    # one result row per discrepant key (no double report of a pair straddling midnight), none for a match
    assert await db.fetchval("SELECT count(*) FROM reconciliation_results WHERE run_id = $1 AND shard >= 0",
                             result.run_id) == truth.discrepancy_rows()
    # the keyless PayShack row is missing on the left, without a key
    assert await db.fetchval("SELECT count(*) FROM reconciliation_results WHERE run_id = $1 AND match_key IS NULL "
                             "AND category = 'missing_left'", result.run_id) == 1

    # past the tolerance by one minor unit: the difference is kept (within it: matched, see the detail test)
    diff = await db.fetchval("SELECT amount_diff_minor FROM reconciliation_results WHERE run_id = $1 AND "
                             "match_key = 'tol_over'", result.run_id)
    assert diff == 101
    # duplicates carry every row behind the key
    dup = await db.fetchrow("SELECT details FROM reconciliation_results WHERE run_id = $1 AND match_key = 'dup_right'",
                            result.run_id)
    import json
    details = json.loads(dup["details"])
    assert len(details["right_rows"]) == 2 and len(details["left_rows"]) == 1

    # the probable match is reported with a confidence, and the two missing rows stay open
    probable = await db.fetch("SELECT * FROM reconciliation_results WHERE run_id = $1 AND category = 'probable_match'",
                              result.run_id)
    assert len(probable) == 1 and float(probable[0]["confidence"]) >= 0.9
    assert await db.fetchval("SELECT count(*) FROM reconciliation_results WHERE run_id = $1 AND match_key IN "
                             "('prob_l', 'prob_r') AND resolution IS NULL", result.run_id) == 2

    run = await db.fetchrow("SELECT * FROM reconciliation_runs WHERE id = $1", result.run_id)
    assert run["status"] == "success" and float(run["progress"]) == 1.0
    assert run["shards_total"] == shards and sorted(run["shards_done"]) == list(range(shards))
    assert run["window_start"] == local(DAY, 0) and run["window_end"] == local(DAY + timedelta(days=1), 0)
    progress = await handle.query(ReconciliationWorkflow.progress)
    assert progress.status == "success" and progress.shards_done == shards


async def test_a_transaction_shows_the_match_its_run_counted(temporal_client, recon_settings, recon_worker, db,
                                                             sessionmaker):
    """A run stores no row for a matched key: the transaction's detail derives the match from the run
    (window, one row a side, no discrepancy reported, rows unchanged since the run started)."""
    from core.transactions.queries import get_transaction
    from tests.reconciliation_truth import TOLERANCE

    truth = build_day()
    await install_pair_rules(db)
    await insert_rows(db, truth.rows)
    _, result = await reconcile(temporal_client, recon_settings)

    async def detail(key, source):
        tid = await db.fetchval("SELECT min(id) FROM transactions WHERE client_operation_id = $1 AND source = $2",
                                key, source)
        async with sessionmaker() as session:
            return tid, (await get_transaction(session, tid, merchant_id=None))["reconciliation"]

    left_id, left = await detail("late_left", "vima")  # matched across midnight
    right_id, right = await detail("late_left", "payshack")
    assert left["status"] == right["status"] == "matched"
    assert left["results"] == right["results"]
    [match] = left["results"]
    assert (match["run_id"], match["left_id"], match["right_id"]) == (result.run_id, left_id, right_id)
    assert match["id"] is None  # derived, not a stored row
    assert (await detail("early_left", "payshack"))[1]["status"] == "matched"  # its right row is the day before
    _, edge = await detail("tol_edge", "payshack")
    assert edge["status"] == "matched" and edge["results"][0]["amount_diff_minor"] == TOLERANCE
    assert (await detail("status", "vima"))[1]["status"] == "status_mismatch"
    assert (await detail("dup_right", "payshack"))[1]["status"] == "duplicate_key"
    assert (await detail("only_left", "vima"))[1]["status"] == "missing_right"
    assert (await detail("next_local_day", "vima"))[1]["status"] == "unreconciled"  # the next day's run's business

    # a row changed after the run is not the row the run compared: no match is claimed for it
    await db.execute("UPDATE transactions SET amount_minor = amount_minor + 1, updated_at = now() WHERE id = $1",
                     left_id)
    assert (await detail("late_left", "vima"))[1] == {"status": "unreconciled", "results": []}
    assert (await detail("late_left", "payshack"))[1]["status"] == "unreconciled"


async def test_rerun_replaces_results_and_keeps_resolutions(temporal_client, recon_settings, recon_worker, db):
    truth = build_day()
    await install_pair_rules(db)
    await insert_rows(db, truth.rows)
    _, first = await reconcile(temporal_client, recon_settings, shards=2)
    target = await db.fetchrow("SELECT id FROM reconciliation_results WHERE run_id = $1 AND match_key = 'status'",
                               first.run_id)
    # resolved the way the API does it (tested in test_reconciliation_api)
    await db.execute("UPDATE reconciliation_results SET resolution = 'accepted', resolved_by = 'fin', "
                     "resolved_at = now(), note = 'bank confirmed' WHERE id = $1", target["id"])
    await db.execute("INSERT INTO reconciliation_resolutions (result_id, run_id, category, match_key, action, "
                     "resolution, note, actor) VALUES ($1, $2, 'status_mismatch', 'status', 'resolve', 'accepted', "
                     "'bank confirmed', 'fin')", target["id"], first.run_id)
    before = await db.fetchval("SELECT count(*) FROM reconciliation_results WHERE run_id = $1", first.run_id)

    _, second = await reconcile(temporal_client, recon_settings, shards=3)  # another shard count, same truth
    assert second.run_id == first.run_id
    assert await db.fetchval("SELECT count(*) FROM reconciliation_results WHERE run_id = $1", first.run_id) == before
    assert await categories(db, second.run_id) == truth.discrepancies()
    again = await db.fetchrow("SELECT resolution, resolved_by, note FROM reconciliation_results WHERE run_id = $1 "
                              "AND match_key = 'status'", second.run_id)
    assert dict(again) == {"resolution": "accepted", "resolved_by": "fin", "note": "bank confirmed"}
    assert second.summary["resolutions_reapplied"] == 1


async def test_unresolved_discrepancies_carry_into_the_next_run(temporal_client, recon_settings, recon_worker, db):
    await install_pair_rules(db, threshold=0.0)
    previous = DAY - timedelta(days=1)
    await insert_rows(db, [
        Row("vima", "late", 5000, local(previous, 10)),  # PayShack's row comes later
        Row("vima", "gone", 6000, local(previous, 11)),
        Row("vima", "ok", 100, local(DAY, 10)), Row("payshack", "ok", 100, local(DAY, 10)),
    ])
    _, day1 = await reconcile(temporal_client, recon_settings, day=previous)
    assert (await categories(db, day1.run_id)) == {"late": "missing_right", "gone": "missing_right"}

    await insert_rows(db, [Row("payshack", "late", 5000, local(previous, 10, 5))])  # a late sync
    _, day2 = await reconcile(temporal_client, recon_settings, day=DAY)
    carried = await db.fetch("SELECT match_key, resolution, carried_from_id FROM reconciliation_results "
                             "WHERE run_id = $1 AND carried_from_id IS NOT NULL ORDER BY match_key", day2.run_id)
    assert [(r["match_key"], r["resolution"]) for r in carried] == [("gone", None), ("late", "auto_matched")]
    originals = await db.fetch("SELECT resolution FROM reconciliation_results WHERE run_id = $1", day1.run_id)
    assert {r["resolution"] for r in originals} == {"carried_forward"}
    assert day2.summary["carried_in"] == 2 and day2.summary["carried_auto_matched"] == 1
    assert day2.summary["open_discrepancies"] == 1


async def test_low_match_rate_raises_one_alert(temporal_client, recon_settings, recon_worker, db, sessionmaker):
    from core.alerts import service as alert_service

    truth = build_day()
    await install_pair_rules(db, threshold=0.99)
    await insert_rows(db, truth.rows)
    _, first = await reconcile(temporal_client, recon_settings)
    _, second = await reconcile(temporal_client, recon_settings)
    # the alert check sees the finished run too: its `low_match_rate` rule leaves a run the workflow
    # judged to the workflow (the single source), so the low rate is still one alert
    async with sessionmaker() as session, session.begin():
        await alert_service.check_rules(session)
    assert await db.fetchval("SELECT count(*) FROM alerts WHERE rule = 'low_match_rate'") == 0
    alerts = await db.fetch("SELECT * FROM alerts WHERE rule = 'reconciliation_match_rate'")
    assert len(alerts) == 1
    assert alerts[0]["occurrences"] == 2 and alerts[0]["status"] == "open"
    assert alerts[0]["dedupe_key"] == f"reconciliation_match_rate:vima:payshack:{DAY}:{DAY}"
    assert first.summary["match_rate"] < 0.99 and second.summary["alert_id"] == alerts[0]["id"]


async def test_bad_dates_end_the_run_without_retrying(temporal_client, recon_settings, recon_worker):
    handle = await temporal_client.start_workflow(
        ReconciliationWorkflow.run, ReconciliationWorkflowInput(date_from="2026-11-20", date_to="2026-11-01"),
        id=f"reconciliation-test-{uuid.uuid4().hex[:8]}", task_queue=recon_settings.temporal_task_queue,
    )
    result = await asyncio.wait_for(handle.result(), 30)
    assert result.status == "error" and "before" in result.error


async def test_a_retried_shard_replaces_its_rows_atomically(recon_settings, sessionmaker, db, monkeypatch):
    """A retried shard's DELETE and its matching INSERT are one transaction (SQL sent straight to the
    driver before SQLAlchemy's lazy BEGIN would autocommit: the DELETE would stick when the matching
    fails), and the matching query's own error fails the activity."""
    import dataclasses

    from temporalio.testing import ActivityEnvironment

    from activities.reconciliation import ReconciliationActivities
    from core.reconciliation import store as sql
    from core.reconciliation.models import DEFAULT_LEFT_SOURCE, DEFAULT_RIGHT_SOURCE, PrepareRunInput, ShardInput

    truth = build_day()
    await install_pair_rules(db)
    await insert_rows(db, truth.rows)
    acts = ReconciliationActivities(sessionmaker, recon_settings)
    prepared = await ActivityEnvironment().run(
        acts.prepare_reconciliation_run,
        PrepareRunInput(left_source=DEFAULT_LEFT_SOURCE, right_source=DEFAULT_RIGHT_SOURCE, date_from=DAY.isoformat(),
                        shards=1))
    shard = ShardInput(run_id=prepared.run_id, shard=0, shards=1)
    await ActivityEnvironment().run(acts.reconcile_shard, shard)
    written = await db.fetchval("SELECT count(*) FROM reconciliation_results WHERE run_id = $1", prepared.run_id)
    assert written == truth.discrepancy_rows()

    # the matching query fails on the server after it started streaming (division by zero at one key)
    monkeypatch.setattr(sql, "SHARD_SELECT", f"SELECT * FROM ({sql.SHARD_SELECT}) s "
                                             "WHERE 1 / CASE WHEN s.match_key = 'status' THEN 0 ELSE 1 END = 1")
    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2)  # a retry replaces the shard's rows
    with pytest.raises(asyncpg.DivisionByZeroError):
        await retry.run(acts.reconcile_shard, shard)
    assert await db.fetchval("SELECT count(*) FROM reconciliation_results WHERE run_id = $1",
                             prepared.run_id) == written


async def test_a_finished_run_moves_the_reconciliation_metrics(temporal_client, recon_settings, recon_worker, db):
    """The Grafana reconciliation dashboard's series (deploy/grafana/dashboards/reconciliation.json)."""
    from prometheus_client import REGISTRY

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    truth = build_day()
    await install_pair_rules(db)
    await insert_rows(db, truth.rows)
    runs_before = value("reconciliation_runs_total", kind="provider_pair", status="success")
    matched_before = value("reconciliation_keys_total", kind="provider_pair", category="matched")
    _, result = await reconcile(temporal_client, recon_settings)
    assert result.status == "success", result.error
    run = await db.fetchrow("SELECT kind, left_source, right_source FROM reconciliation_runs WHERE id = $1",
                            result.run_id)
    assert run["kind"] == "provider_pair"
    assert value("reconciliation_runs_total", kind="provider_pair", status="success") == runs_before + 1
    assert value("reconciliation_keys_total", kind="provider_pair", category="matched") == \
        matched_before + result.summary["counts"]["matched"]
    assert value("reconciliation_match_rate", left_source=run["left_source"], right_source=run["right_source"]) == \
        pytest.approx(result.summary["match_rate"], abs=1e-6)
