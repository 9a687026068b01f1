"""Replay recorded workflow histories (tests/histories/*.json) through the current workflow code.

Any change that would break a running workflow's history fails here. To record new histories
after an intentional, versioned change: `PAYOPS_RECORD_HISTORIES=1 .venv/bin/pytest tests/platform/test_replay.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from core.payouts.models import CancelRequest, RetryRequest
from core.platform.temporal import data_converter
from tests.factories import create_merchant, create_payout_row, sepa_beneficiary
from workers.main import no_cyclic_gc, workflows

HISTORIES = Path(__file__).parent.parent / "histories"
RECORD = os.environ.get("PAYOPS_RECORD_HISTORIES") == "1"


def recorded() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


@pytest.mark.parametrize("path", recorded(), ids=lambda p: p.stem)
async def test_recorded_history_replays_cleanly(path: Path, base_settings):
    history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
    replayer = Replayer(workflows=workflows(), data_converter=data_converter(base_settings))
    with no_cyclic_gc():  # the replayer validates the workflows in the sandbox, as Worker() does
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"


def test_histories_exist():
    names = {p.stem for p in recorded()}
    assert {"payout_settled", "payout_dlq_retry_settled", "payout_cancelled_at_start"} <= names
    # the rails path (patch rails-routing-v1): batch file, failover, and the BatchWorkflow itself
    assert {"payout_rails_batch_settled", "payout_rails_failover_settled", "batch_ach_cutoff"} <= names
    # patch standard-cutoff-v1: a standard payout waits for its cutoff; the SLA watch in every wait
    assert {"payout_standard_cutoff_settled", "payout_standard_cutoff_cancelled", "payout_sla_at_gate_settled",
            "payout_sla_in_dlq_cancelled"} <= names
    # patch payout-temporal-cancel-v1: Temporal's own cancel is an ops cancel
    assert {"payout_temporal_cancel_dlq", "payout_temporal_cancel_recalled",
            "payout_temporal_cancel_refused_settled"} <= names
    # patch payout-verified-ops-v1: retry/cancel attributed by grant; refused signals audited
    # (recorded by tests/payouts/test_payout_ops_identity.py with PAYOPS_RECORD_HISTORIES=1)
    assert {"payout_verified_ops_retry_signal_cancel", "payout_signal_refusals_cancelled"} <= names
    # patch settlement-wait-continue-as-new-v1: a long settlement wait and return watch continue as new
    # (recorded by tests/payouts/test_payout_settlement_wait.py with PAYOPS_RECORD_HISTORIES=1)
    assert {"payout_settlement_wait_continued_as_new_first_run", "payout_settlement_wait_settling_run",
            "payout_settlement_wait_return_watch_last_run"} <= names
    # patch reset-follows-accepted-connector-v1: a Reset's new run routed elsewhere follows the
    # connector the bank accepted it on (recorded by tests/payouts/test_payout_reset.py)
    assert "payout_reset_follows_accepted_connector" in names
    # the RecommendationWorkflow (recorded by tests/recommendations/test_recommendations.py)
    assert "recommendations_run" in names
    assert {"ops_action_freeze_executed", "ops_action_adjust_executed", "ops_action_rejected"} <= names
    assert {"reconciliation_two_shards", "reconciliation_bad_dates"} <= names
    assert "alert_expiry_one_expired" in names  # AlertExpiryWorkflow (issue 20)
    # a payout schedule's fire (recorded by tests/payouts/test_payout_schedules.py with PAYOPS_RECORD_HISTORIES=1)
    assert "payout_schedule_fire_created" in names
    assert "ready_probe_run" in names  # ReadyProbeWorkflow (recorded by tests/health/test_ready_probe.py)
    # patch payout-lean-v1 (issue 19): one marker, local database steps, statuses written at rest
    assert {"payout_lean_settled", "payout_lean_gate_hold_settled", "payout_lean_dlq_retry_settled",
            "payout_lean_cancelled_at_start"} <= names


@pytest.mark.skipif(not RECORD, reason="set PAYOPS_RECORD_HISTORIES=1 to re-record")
async def test_record_payout_histories(temporal_client, worker, settings, sessionmaker, bank):
    from core.platform.names import payout_workflow_id
    from workflows.payout import PayoutWorkflow

    async def run(name, params, fault=None, **start_kwargs):
        if fault:
            async with httpx.AsyncClient() as http:
                await http.post(f"{bank.url}/_sandbox/faults", json=fault)
        handle = await temporal_client.start_workflow(
            PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id),
            task_queue=settings.temporal_task_queue, **start_kwargs,
        )
        return handle

    async def save(name, handle):
        await handle.result()
        history = await handle.fetch_history()
        HISTORIES.mkdir(exist_ok=True)
        (HISTORIES / f"{name}.json").write_text(history.to_json())

    merchant = await create_merchant(sessionmaker, funded_minor=10_000_000)
    p = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    await save("payout_settled", await run("payout_settled", p))

    p = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    handle = await run("dlq", p, fault={"mode": "5xx", "count": p.retry_max_attempts})
    from tests.payouts.test_payout_workflow import wait_for_status

    await wait_for_status(handle, "dlq")
    await handle.execute_update("retry", RetryRequest(actor="ops", reason="recorded"))
    await save("payout_dlq_retry_settled", handle)

    p = await create_payout_row(sessionmaker, settings, merchant_id=merchant, beneficiary=sepa_beneficiary())
    handle = await run("cancel", p, start_signal="cancel_signal",
                       start_signal_args=[CancelRequest(actor="ops", reason="recorded")])
    await save("payout_cancelled_at_start", handle)


@pytest.mark.skipif(not RECORD, reason="set PAYOPS_RECORD_HISTORIES=1 to re-record")
async def test_record_lean_payout_histories(temporal_client, worker, settings, sessionmaker, bank):
    """Patch payout-lean-v1: one patch marker, local database steps, statuses written at rest.
    Settled; held at the submission gate (a freeze) then settled; dlq then an ops retry; cancelled
    at start; a Temporal cancel of a submitted payout the bank recalls."""
    from core.payouts.models import ControlsChanged
    from core.platform.names import payout_workflow_id
    from tests.payouts.test_payout_workflow import _control, start_held_at_the_gate, wait_for_status
    from workflows.payout import PayoutWorkflow

    async def run(params, **kwargs):
        return await temporal_client.start_workflow(
            PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id),
            task_queue=settings.temporal_task_queue, **kwargs)

    async def save(name, handle):
        await handle.result()
        (HISTORIES / f"{name}.json").write_text((await handle.fetch_history()).to_json())

    merchant = await create_merchant(sessionmaker, funded_minor=10_000_000)
    await save("payout_lean_settled", await run(await create_payout_row(sessionmaker, settings, merchant_id=merchant)))

    frozen, _, handle, _ = await start_held_at_the_gate(temporal_client, settings, sessionmaker)
    await _control(sessionmaker, "merchant_freeze", frozen, active=False)
    await handle.signal("controls_changed", ControlsChanged(reason="unfrozen"))
    await save("payout_lean_gate_hold_settled", handle)

    p = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    async with httpx.AsyncClient() as http:
        await http.post(f"{bank.url}/_sandbox/faults", json={"mode": "5xx", "count": p.retry_max_attempts})
    handle = await run(p)
    await wait_for_status(handle, "dlq")
    await handle.execute_update("retry", RetryRequest(actor="ops", reason="recorded"))
    await save("payout_lean_dlq_retry_settled", handle)

    p = await create_payout_row(sessionmaker, settings, merchant_id=merchant, beneficiary=sepa_beneficiary())
    handle = await run(p, start_signal="cancel_signal",
                       start_signal_args=[CancelRequest(actor="ops", reason="recorded")])
    await save("payout_lean_cancelled_at_start", handle)


@pytest.mark.skipif(not RECORD, reason="set PAYOPS_RECORD_HISTORIES=1 to re-record")
async def test_record_temporal_cancel_histories(temporal_client, worker, settings, sessionmaker, bank):
    """Patch payout-temporal-cancel-v1: Temporal's own cancel of a payout in dlq (cancelled, hold
    reversed), of a submitted one (recalled at the bank, cancelled) and of one the bank settled
    already (the recall is refused and recorded; it settles)."""
    from core.platform.names import payout_workflow_id
    from tests.polling import eventually
    from tests.payouts.test_payout_workflow import wait_for_status
    from workflows.payout import PayoutWorkflow

    async def run(params):
        return await temporal_client.start_workflow(
            PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id),
            task_queue=settings.temporal_task_queue)

    async def save(name, handle):
        await handle.result()
        (HISTORIES / f"{name}.json").write_text((await handle.fetch_history()).to_json())

    merchant = await create_merchant(sessionmaker, funded_minor=10_000_000)
    p = await create_payout_row(sessionmaker, settings, merchant_id=merchant, beneficiary=sepa_beneficiary("0036"))
    handle = await run(p)
    await wait_for_status(handle, "dlq")
    await handle.cancel()
    await save("payout_temporal_cancel_dlq", handle)

    bank.bank.config.settle_delay = 4.0  # the bank settles slowly: the cancel finds the payout submitted
    p = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    handle = await run(p)
    await wait_for_status(handle, "submitted")
    await handle.cancel()
    await save("payout_temporal_cancel_recalled", handle)

    bank.bank.config.settle_delay = 0.2
    p = await create_payout_row(sessionmaker, settings, merchant_id=merchant)
    p.settlement_poll_seconds = 600  # payops has not heard of the settlement when the cancel comes
    handle = await run(p)
    await wait_for_status(handle, "submitted")
    await eventually(lambda: bank.payment(p.payout_id)["status"] == "settled", "the bank settles it")
    await handle.cancel()
    await save("payout_temporal_cancel_refused_settled", handle)


@pytest.mark.skipif(not RECORD, reason="set PAYOPS_RECORD_HISTORIES=1 to re-record")
async def test_record_ops_action_histories(temporal_client, worker, settings, sessionmaker):
    from core.ops_actions import service as ops_action_service
    from core.platform.names import ops_action_workflow_id
    from core.ops_actions.models import ApprovalRequest, ExecuteRequest

    async def create(action_type, params):
        async with sessionmaker() as session:
            return await ops_action_service.create_action(
                session, temporal_client, settings, None, actor="ops-creator", action_type=action_type, params=params)

    async def save(name, action):
        handle = temporal_client.get_workflow_handle(ops_action_workflow_id(action["id"]))
        await handle.result()
        HISTORIES.mkdir(exist_ok=True)
        (HISTORIES / f"{name}.json").write_text((await handle.fetch_history()).to_json())

    def vote(actor, role="approver"):
        return ApprovalRequest(actor=actor, roles=[role], comment="recorded")

    merchant = await create_merchant(sessionmaker, funded_minor=10_000_000)
    a = await create("FREEZE_MERCHANT", {"merchant_id": merchant})
    handle = temporal_client.get_workflow_handle(ops_action_workflow_id(a["id"]))
    await handle.execute_update("approve", vote("alice"))
    await handle.signal("approve_signal", vote("bob"))
    await save("ops_action_freeze_executed", a)

    a = await create("ADJUST_BALANCE", {"merchant_id": merchant, "amount_minor": 500, "currency": "EUR",
                                        "reason": "recorded"})
    handle = temporal_client.get_workflow_handle(ops_action_workflow_id(a["id"]))
    for name in ("alice", "bob"):
        await handle.execute_update("approve", vote(name))
    await handle.execute_update("approve", vote("carol", "ops_admin"))
    await handle.execute_update("execute", ExecuteRequest(actor="fin-1", roles=["finance_ops"]))
    await save("ops_action_adjust_executed", a)

    a = await create("PAUSE_PAYOUTS", {"rail": "wire"})
    handle = temporal_client.get_workflow_handle(ops_action_workflow_id(a["id"]))
    await handle.execute_update("approve", vote("alice"))
    await handle.execute_update("reject", vote("bob"))
    await save("ops_action_rejected", a)


@pytest.mark.skipif(not RECORD, reason="set PAYOPS_RECORD_HISTORIES=1 to re-record")
async def test_record_rails_payout_histories(temporal_client, worker, settings, sessionmaker, bank):
    """`PAYOPS_RECORD_HISTORIES=1 pytest tests/platform/test_replay.py -k rails` records only these."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from core.platform.names import payout_workflow_id
    from core.rails.models import BatchInput
    from tests.rails.test_rails_workflows import ach_beneficiary, eventually, queued
    from workflows.batch import BatchWorkflow
    from workflows.payout import PayoutWorkflow

    async def save(name, handle):
        await handle.result()
        (HISTORIES / f"{name}.json").write_text((await handle.fetch_history()).to_json())

    async def start(params):
        return await temporal_client.start_workflow(
            PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id), task_queue=settings.temporal_task_queue,
        )

    usd = await create_merchant(sessionmaker, currency="USD", funded_minor=10_000_000)
    p = await create_payout_row(sessionmaker, settings, merchant_id=usd, currency="USD", method="ach",
                                priority="batch", beneficiary=ach_beneficiary())
    p.created_at = datetime(2025, 3, 4, 16, 59, tzinfo=ZoneInfo("America/New_York"))
    handle = await start(p)
    await eventually(lambda: queued(sessionmaker, p.payout_id), "queued for the batch")
    batch = await temporal_client.start_workflow(
        BatchWorkflow.run, BatchInput(rail="ach", cutoff_at=datetime(2025, 3, 4, 17, tzinfo=ZoneInfo("America/New_York"))),
        id="batch-ach-recorded", task_queue=settings.temporal_task_queue,
    )
    await save("batch_ach_cutoff", batch)
    await save("payout_rails_batch_settled", handle)

    eur = await create_merchant(sessionmaker, funded_minor=10_000_000)
    p = await create_payout_row(sessionmaker, settings, merchant_id=eur, priority="priority")
    p.failover_codes = ["service_unavailable"]
    async with httpx.AsyncClient() as http:
        await http.post(f"{bank.url}/_sandbox/outages", json={"rail": "sepa_instant", "down": True})
    await save("payout_rails_failover_settled", await start(p))


@pytest.mark.skipif(not RECORD, reason="set PAYOPS_RECORD_HISTORIES=1 to re-record")
async def test_record_cutoff_payout_histories(skipping_env, worker_deps, settings, sessionmaker, bank):
    """`PAYOPS_RECORD_HISTORIES=1 pytest tests/platform/test_replay.py -k cutoff` records only these (on the
    time-skipping server: the waits are hours long)."""
    from datetime import datetime, timedelta

    from sqlalchemy import insert, update

    from core.payouts.models import ControlsChanged
    from core.platform.tables import controls
    from tests.rails.test_rails_cutoff import (
        NY, _status_is, _waiting, ach_beneficiary, eventually, fps_beneficiary, next_weekday, start,
    )
    from workers.main import build_worker

    client = skipping_env.client

    async def save(name, handle):
        await handle.result()
        (HISTORIES / f"{name}.json").write_text((await handle.fetch_history()).to_json())

    usd = await create_merchant(sessionmaker, currency="USD", funded_minor=10_000_000)
    gbp = await create_merchant(sessionmaker, currency="GBP", funded_minor=10_000_000)
    eur = await create_merchant(sessionmaker, funded_minor=10_000_000)
    tuesday = datetime.combine(next_weekday(1), datetime.min.time(), NY)
    # the cancel first: a settled payout's result moves the skipped clock past Tuesday's cutoff
    async with build_worker(client, worker_deps, task_queue=settings.temporal_task_queue):
        p = await create_payout_row(sessionmaker, settings, merchant_id=usd, currency="USD", method="ach",
                                    priority="standard", beneficiary=ach_beneficiary())
        p.created_at = tuesday.replace(hour=9)
        handle = await start(client, settings, p)
        await eventually(lambda: _waiting(handle), "waiting for the cutoff")
        await handle.execute_update("cancel", CancelRequest(actor="ops", reason="recorded"))
        await save("payout_standard_cutoff_cancelled", handle)

        p = await create_payout_row(sessionmaker, settings, merchant_id=usd, currency="USD", method="ach",
                                    priority="standard", beneficiary=ach_beneficiary())
        p.created_at = tuesday.replace(hour=16)
        await save("payout_standard_cutoff_settled", await start(client, settings, p))

        async with sessionmaker() as session, session.begin():
            await session.execute(insert(controls).values(kind="rail_pause", target="faster_payments",
                                                          created_by="recorded"))
        p = await create_payout_row(sessionmaker, settings, merchant_id=gbp, currency="GBP",
                                    method="faster_payments", beneficiary=fps_beneficiary())
        handle = await start(client, settings, p)
        await skipping_env.sleep(timedelta(minutes=20))
        async with sessionmaker() as session, session.begin():
            await session.execute(update(controls).where(controls.c.target == "faster_payments").values(active=False))
        await handle.signal("controls_changed", ControlsChanged(reason="recorded"))
        await save("payout_sla_at_gate_settled", handle)

        p = await create_payout_row(sessionmaker, settings, merchant_id=eur, beneficiary=sepa_beneficiary("0036"))
        p.retry_max_attempts = 2
        handle = await start(client, settings, p)
        await eventually(lambda: _status_is(handle, "dlq"), "parked in dlq")
        await skipping_env.sleep(timedelta(minutes=5))
        await handle.execute_update("cancel", CancelRequest(actor="ops", reason="recorded"))
        await save("payout_sla_in_dlq_cancelled", handle)


@pytest.mark.skipif(not RECORD, reason="set PAYOPS_RECORD_HISTORIES=1 to re-record")
async def test_record_reconciliation_histories(temporal_client, worker, settings, database_url):
    """`PAYOPS_RECORD_HISTORIES=1 pytest tests/platform/test_replay.py -k reconciliation` records only these."""
    import asyncpg

    from core.reconciliation.models import ReconciliationWorkflowInput
    from tests.reconciliation_truth import DAY, build_day, insert_rows, install_pair_rules
    from workflows.reconciliation import ReconciliationWorkflow

    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await install_pair_rules(conn, threshold=0.99)  # the known-truth day is under it: the alert path too
        await insert_rows(conn, build_day().rows)
    finally:
        await conn.close()

    async def save(name, params):
        handle = await temporal_client.start_workflow(
            ReconciliationWorkflow.run, params, id=f"reconciliation-recorded-{name}",
            task_queue=settings.temporal_task_queue,
        )
        await handle.result()
        (HISTORIES / f"{name}.json").write_text((await handle.fetch_history()).to_json())

    # prepare, two shard activities in parallel, finalize
    await save("reconciliation_two_shards", ReconciliationWorkflowInput(date_from=DAY.isoformat(), shards=2,
                                                                        requested_by="recorded"))
    # prepare fails without retrying: the run ends in error
    await save("reconciliation_bad_dates", ReconciliationWorkflowInput(date_from="2026-11-20", date_to="2026-11-01",
                                                                       requested_by="recorded"))


@pytest.mark.skipif(not RECORD, reason="set PAYOPS_RECORD_HISTORIES=1 to re-record")
async def test_record_alert_expiry_history(temporal_client, worker, settings, sessionmaker):
    """`PAYOPS_RECORD_HISTORIES=1 pytest tests/platform/test_replay.py -k alert_expiry` records only this."""
    from sqlalchemy import text

    from core.alerts import service as alert_service
    from workflows.alerts import AlertExpiryInput, AlertExpiryWorkflow

    async with sessionmaker() as session, session.begin():
        a = await alert_service.raise_alert(session, rule="recorded", severity="low", scope="platform",
                                            message="recorded", data={"merchant_id": None})
        await session.execute(text("UPDATE alerts SET last_seen_at = now() - interval '100 hours' WHERE id = :id"),
                              {"id": a["id"]})
    handle = await temporal_client.start_workflow(AlertExpiryWorkflow.run, AlertExpiryInput(),
                                                  id="alert-expiry-recorded", task_queue=settings.temporal_task_queue)
    assert (await handle.result()).alert_ids == [a["id"]]
    (HISTORIES / "alert_expiry_one_expired.json").write_text((await handle.fetch_history()).to_json())
