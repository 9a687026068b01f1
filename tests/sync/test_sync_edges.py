"""Syncs never go back in time and never stall on one record (issue 16, item 2), against the
sandbox Vima: a late page with older versions, a record with a NUL character, long names."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime, timedelta, timezone

import asyncpg
import pytest

from core.sync import store as sync_store
from core.transactions.normalize import NormalizedTransaction, normalize_vima
from core.sync.models import SyncWorkflowInput
from sandbox.vima import VimaConfig, running_vima
from workflows.sync import SyncWorkflow

FIRST_OP = 50_000_001


@pytest.fixture
async def vima():
    async with running_vima(VimaConfig(seed=16)) as running:
        yield running


@pytest.fixture
def settings(settings, vima):
    return settings.model_copy(update={
        "vima_base_url": vima.url, "vima_page_size": 25, "vima_retry_after_cap_seconds": 0.2,
        "sync_pages_per_activity": 50,
    })


@pytest.fixture
def db(pg_conn):
    return pg_conn


@pytest.fixture
def sync_worker(worker):  # conftest's worker, on this module's settings (the sandbox Vima)
    return worker


async def run_sync(client, settings, params: SyncWorkflowInput, *, timeout: float = 60):
    """The workflow's result; a run stuck retrying one page fails the test at the deadline."""
    handle = await client.start_workflow(
        SyncWorkflow.run, params, id=f"sync-{params.source}-edges-{uuid.uuid4().hex[:8]}",
        task_queue=settings.temporal_task_queue,
    )
    try:
        return await asyncio.wait_for(handle.result(), timeout)
    except asyncio.TimeoutError:
        await handle.terminate("test deadline")
        raise AssertionError(f"sync did not finish within {timeout}s") from None


def backfill() -> SyncWorkflowInput:
    today = date.today()
    return SyncWorkflowInput(source="vima", mode="backfill", date_from=(today - timedelta(days=10)).isoformat(),
                             date_to=(today + timedelta(days=1)).isoformat())


async def stored(db) -> dict[str, asyncpg.Record]:
    rows = await db.fetch("SELECT source_id, original_status, payer_name, source_version, raw FROM transactions "
                          "WHERE source = 'vima'")
    return {r["source_id"]: r for r in rows}


async def test_a_late_page_with_older_versions_never_overwrites_newer_ones(
    temporal_client, settings, sync_worker, vima, db
):
    vima.state.generate(60, days=2)
    first = await run_sync(temporal_client, settings, SyncWorkflowInput(source="vima"))
    assert first.status == "success" and first.totals.inserted == 60
    changed = vima.state.update(30)  # pending ones settle, successes are refunded: new versions
    second = await run_sync(temporal_client, settings, SyncWorkflowInput(source="vima"))
    assert second.totals.updated == 30
    newest = {str(op["operation_id"]): op for op in vima.state.ops}

    # a backfill whose every page comes from a lagging replica: the operations' first versions
    vima.state.faults.extend([("stale", 0)] * 3)  # 60 operations, pages of 25
    late = await run_sync(temporal_client, settings, backfill())
    assert late.status == "success", late.error
    assert vima.state.faults == []  # every page of the backfill was served late
    assert late.totals.rows_fetched == 60 and late.totals.updated == 0

    rows = await stored(db)
    for op_id in map(str, changed):
        assert rows[op_id]["original_status"] == newest[op_id]["current_status"]
        assert rows[op_id]["source_version"] == newest[op_id]["operation_update_id"]
    # and what a later sync of the feed reads agrees with what is stored
    again = await run_sync(temporal_client, settings, SyncWorkflowInput(source="vima"))
    assert again.totals.rows_fetched == 0
    assert {k: r["original_status"] for k, r in (await stored(db)).items()} == {
        k: op["current_status"] for k, op in newest.items()}


async def test_a_record_with_a_nul_character_is_quarantined_alone_and_the_page_lands(
    temporal_client, settings, sync_worker, vima, db, client, token_for
):
    vima.state.generate(20, days=1)  # one page of 25 holds them all
    vima.state.edit(FIRST_OP + 4, {"payer_name": "Ann\x00Smith"})
    vima.state.edit(FIRST_OP + 11, {"reference_id": "ref\x00"})  # a field payops does not map
    result = await run_sync(temporal_client, settings, SyncWorkflowInput(source="vima"))

    assert result.status == "success", result.error
    assert result.totals.quarantined == 2 and result.totals.inserted == 18
    rows = await stored(db)
    assert set(rows) == {str(FIRST_OP + i) for i in range(20)} - {str(FIRST_OP + 4), str(FIRST_OP + 11)}
    state = await db.fetchrow("SELECT status, error, records_quarantined FROM sync_state WHERE source = 'vima'")
    assert (state["status"], state["error"], state["records_quarantined"]) == ("idle", None, 2)

    listed = await client.get("/api/v1/sync/quarantine", headers=token_for("ops_admin"))
    assert listed.status_code == 200, listed.text
    by_id = {q["source_id"]: q for q in listed.json()}
    assert set(by_id) == {str(FIRST_OP + 4), str(FIRST_OP + 11)}
    assert by_id[str(FIRST_OP + 4)]["reason"] == "payer_name contains a NUL character"
    assert by_id[str(FIRST_OP + 4)]["raw"]["payer_name"] == "Ann\\u0000Smith"  # kept, readable
    assert by_id[str(FIRST_OP + 11)]["reason"] == "reference_id contains a NUL character"
    assert by_id[str(FIRST_OP + 4)]["run_id"] == result.run_id
    merchant = await client.get("/api/v1/sync/quarantine", headers=token_for("merchant_admin", merchant_id="m1"))
    assert merchant.status_code == 403
    assert (await client.get("/api/v1/sync/quarantine?limit=0", headers=token_for("ops_admin"))).status_code == 422

    # the provider fixes the record: the next run stores it and the source stays healthy
    vima.state.edit(FIRST_OP + 4, {"payer_name": "Ann Smith"})
    fixed = await run_sync(temporal_client, settings, SyncWorkflowInput(source="vima"))
    assert fixed.status == "success" and fixed.totals.inserted == 1
    assert (await stored(db))[str(FIRST_OP + 4)]["payer_name"] == "Ann Smith"


async def test_long_names_are_kept_whole_or_quarantined_never_cut(temporal_client, settings, sync_worker, vima, db):
    vima.state.generate(10, days=1)
    long_name = "Maria " + "de la Santísima Trinidad " * 12  # 306 characters
    assert len(long_name) > 200
    vima.state.edit(FIRST_OP + 2, {"payer_name": long_name})
    vima.state.edit(FIRST_OP + 3, {"payer_name": "N" * 5000})  # beyond any sensible name
    result = await run_sync(temporal_client, settings, SyncWorkflowInput(source="vima"))

    assert result.status == "success", result.error
    rows = await stored(db)
    assert rows[str(FIRST_OP + 2)]["payer_name"] == long_name
    assert str(FIRST_OP + 3) not in rows
    reason = await db.fetchval("SELECT reason FROM sync_quarantine WHERE source_id = $1", str(FIRST_OP + 3))
    assert reason == "payer_name is 5000 characters long; at most 1000 can be stored"
    assert len(rows) == 9


async def test_a_record_the_database_refuses_is_quarantined_and_the_rest_of_the_page_lands(db):
    """The fallback behind the normaliser's checks: records built past them, one of which the
    database refuses; the others are stored, the refused one comes back with the database's reason."""
    when = datetime(2026, 11, 3, 12, tzinfo=timezone.utc)
    rows = []
    for i in range(8):
        op = {"operation_id": 70_000_000 + i, "operation_update_id": i + 1, "complete_amount": "10.00",
              "complete_currency": "USD", "current_status": "success", "payer_name": f"Payer {i}",
              "created_at": when.isoformat()}
        row = normalize_vima(op)
        assert isinstance(row, NormalizedTransaction)
        rows.append(row)
    rows[5].payer_email = "x\x00y"  # past the checks: PostgreSQL text cannot hold it
    async with db.transaction():
        counts, rejected = await sync_store.store_page(db, "vima", rows, [])
        quarantined = await sync_store.quarantine(db, rejected, None)
    assert counts.inserted == 7 and quarantined == 1
    assert [r.source_id for r in rejected] == ["70000005"]
    assert rejected[0].reason.startswith("cannot be stored: ")
    stored_ids = {r["source_id"] for r in await db.fetch("SELECT source_id FROM transactions")}
    assert stored_ids == {str(70_000_000 + i) for i in range(8)} - {"70000005"}
    assert await db.fetchval("SELECT count(*) FROM transaction_keys WHERE source_id = '70000005'") == 0
