"""Rails end to end: batch cutoffs (time-skipping), SLA breach alerts (time-skipping), connector
health moving payouts to the next candidate and back, failover of a retryable failure."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from ach.parser import Parser
from sqlalchemy import func, select

from core.platform.names import payout_workflow_id
from core.payouts.models import PayoutState
from core.rails.models import BatchInput, HealthRunInput
from core.platform.tables import alerts, payout_batch_entries, payout_batches, payouts
from tests.factories import create_merchant, create_payout_row, leave_wire_the_only_fallback_for_eur
from tests.polling import eventually
from workers.main import build_worker
from workflows.batch import BatchWorkflow
from workflows.connector_health import ConnectorHealthWorkflow
from workflows.payout import PayoutWorkflow

NY = ZoneInfo("America/New_York")
FUNDS = 10_000_000


def ach_beneficiary(tail: str = "6789") -> dict:
    return {"type": "ach", "name": "John Roe", "routing_number": "021000021", "account_number": "00012345" + tail,
            "account_type": "checking"}


def fps_beneficiary() -> dict:
    return {"type": "faster_payments", "name": "Ann Smith", "sort_code": "040004", "account_number": "12345678"}


async def start(client, settings, params):
    return await client.start_workflow(PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id),
                                       task_queue=settings.temporal_task_queue)


async def run_batch(client, settings, rail: str, cutoff: datetime):
    return await client.execute_workflow(
        BatchWorkflow.run, BatchInput(rail=rail, cutoff_at=cutoff), id=f"batch-test-{uuid.uuid4().hex[:8]}",
        task_queue=settings.temporal_task_queue,
    )


async def run_health(client, settings):
    return await client.execute_workflow(
        ConnectorHealthWorkflow.run, HealthRunInput(requested_by="test"), id=f"health-test-{uuid.uuid4().hex[:8]}",
        task_queue=settings.temporal_task_queue,
    )


async def queued(sm, *payout_ids) -> bool:
    async with sm() as session:
        n = await session.scalar(select(func.count()).select_from(payout_batch_entries)
                                 .where(payout_batch_entries.c.payout_id.in_(payout_ids)))
    return n == len(payout_ids)


async def test_batch_payout_at_1659_goes_in_that_days_ach_file_and_1701_in_the_next(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    client = skipping_env.client
    merchant = await create_merchant(sessionmaker, currency="USD", funded_minor=FUNDS)
    before = await create_payout_row(sessionmaker, settings, merchant_id=merchant, currency="USD", method="ach",
                                     priority="batch", amount_minor=12_345, beneficiary=ach_beneficiary())
    after = await create_payout_row(sessionmaker, settings, merchant_id=merchant, currency="USD", method="ach",
                                    priority="batch", amount_minor=54_321, beneficiary=ach_beneficiary("4321"))
    before.created_at = datetime(2025, 3, 4, 16, 59, tzinfo=NY)  # a Tuesday
    after.created_at = datetime(2025, 3, 4, 17, 1, tzinfo=NY)
    tuesday, wednesday = datetime(2025, 3, 4, 17, 0, tzinfo=NY), datetime(2025, 3, 5, 17, 0, tzinfo=NY)

    async with build_worker(client, worker_deps, task_queue=settings.temporal_task_queue):
        h1, h2 = await start(client, settings, before), await start(client, settings, after)
        await eventually(lambda: queued(sessionmaker, before.payout_id, after.payout_id), "both payouts queued")
        async with sessionmaker() as session:
            cutoffs = dict((await session.execute(select(payout_batch_entries.c.payout_id,
                                                         payout_batch_entries.c.cutoff_at))).all())
        assert cutoffs == {before.payout_id: tuesday, after.payout_id: wednesday}

        first = await run_batch(client, settings, "ach", tuesday)
        assert (first.status, first.entry_count, first.accepted_count) == ("submitted", 1, 1)
        again = await run_batch(client, settings, "ach", tuesday)  # re-running the cutoff adds nothing
        assert (again.batch_id, again.entry_count) == (first.batch_id, 1)
        second = await run_batch(client, settings, "ach", wednesday)
        assert second.entry_count == 1 and second.batch_id != first.batch_id

        assert (await h1.result()).status == "settled"
        assert (await h2.result()).status == "settled"

    async with sessionmaker() as session:
        files = {r.id: r for r in (await session.execute(select(payout_batches))).all()}
    tue = Parser(files[first.batch_id].file_content.decode()).as_dict()
    wed = Parser(files[second.batch_id].file_content.decode()).as_dict()
    refs = lambda f: [e["addenda"][0]["pmt_rel_info"].strip() for b in f["batches"] for e in b["entries"]]  # noqa: E731
    assert refs(tue) == [before.payout_id] and refs(wed) == [after.payout_id]
    assert int(tue["file_control"]["credit_amount"]) == 12_345 == files[first.batch_id].control["total_credit_minor"]
    assert int(wed["file_control"]["credit_amount"]) == 54_321
    assert tue["batches"][0]["batch_header"]["eff_ent_date"] == "250304"
    for p in (before, after):
        assert bank.payment(p.payout_id)["accepted_count"] == 1
    assert len(bank.state.files) == 2


async def test_sla_breach_raises_exactly_one_alert_and_the_payout_keeps_waiting(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    from prometheus_client import REGISTRY

    client = skipping_env.client
    bank.state.config.settle_delay = 3600  # the bank sits on it
    merchant = await create_merchant(sessionmaker, currency="GBP", funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, currency="GBP",
                                     method="faster_payments", beneficiary=fps_beneficiary())
    params.settlement_poll_seconds, params.return_window_seconds = 60, 60
    violations = lambda: REGISTRY.get_sample_value("sla_violations_total", {"rail": "faster_payments"}) or 0.0  # noqa: E731
    before = violations()

    async with build_worker(client, worker_deps, task_queue=settings.temporal_task_queue):
        handle = await start(client, settings, params)
        await skipping_env.sleep(timedelta(hours=2))  # far past the 10-second Faster Payments target
        state = await handle.query("state", result_type=PayoutState)
        assert state.status == "submitted" and state.sla_breached and state.rail == "faster_payments"
        async with sessionmaker() as session:
            rows = (await session.execute(select(alerts).where(alerts.c.rule == "payout_sla_breach"))).mappings().all()
            target = await session.scalar(select(payouts.c.settlement_target_at).where(payouts.c.id == params.payout_id))
        assert len(rows) == 1
        assert rows[0]["severity"] == "high" and rows[0]["dedupe_key"] == f"payout_sla_breach:{params.payout_id}"
        assert violations() == before + 1
        assert target == state.settlement_target_at

        async with httpx.AsyncClient() as http:
            (await http.post(f"{bank.url}/_sandbox/settle/{params.payout_id}")).raise_for_status()
        assert (await handle.result()).status == "settled"
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(alerts)) == 1


async def test_connector_health_moves_new_payouts_to_the_next_candidate_and_back(
    temporal_client, worker, settings, sessionmaker, bank
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)

    async def pay() -> tuple[str, dict]:
        p = await create_payout_row(sessionmaker, settings, merchant_id=merchant, priority="priority")
        result = await (await start(temporal_client, settings, p)).result()
        assert result.status == "settled"
        async with sessionmaker() as session:
            row = (await session.execute(select(payouts.c.connector, payouts.c.routing)
                                         .where(payouts.c.id == p.payout_id))).one()
        return row.connector, row.routing

    await leave_wire_the_only_fallback_for_eur(sessionmaker)
    assert (await pay())[0] == "bank_sepa_instant"
    async with httpx.AsyncClient() as http:
        await http.post(f"{bank.url}/_sandbox/outages", json={"rail": "sepa_instant", "down": True})
        first = await run_health(temporal_client, settings)
        assert first.open == []  # one failed check is not enough
        second = await run_health(temporal_client, settings)
        assert second.open == ["bank_sepa_instant"]
        connector, routing = await pay()
        assert connector == "bank_wire"
        instant = next(c for c in routing["candidates"] if c["connector"] == "bank_sepa_instant")
        assert instant["status"] == "excluded" and "circuit open" in instant["reasons"][0]

        await http.post(f"{bank.url}/_sandbox/outages", json={"rail": "sepa_instant", "down": False})
        assert (await run_health(temporal_client, settings)).open == []
    assert (await pay())[0] == "bank_sepa_instant"


async def test_a_retryable_failure_fails_over_to_the_next_candidate_with_the_same_identity(
    temporal_client, worker, settings, sessionmaker, bank
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, priority="priority")
    params.failover_codes, params.failover_attempts_per_connector = ["service_unavailable"], 2
    await leave_wire_the_only_fallback_for_eur(sessionmaker)
    async with httpx.AsyncClient() as http:  # the scheme is down but health has not noticed yet
        await http.post(f"{bank.url}/_sandbox/outages", json={"rail": "sepa_instant", "down": True})
    handle = await start(temporal_client, settings, params)
    assert (await handle.result()).status == "settled"
    state = await handle.query("state", result_type=PayoutState)
    assert state.connector == "bank_wire" and state.failovers == ["bank_sepa_instant -> bank_wire (service_unavailable)"]
    report = bank.payment(params.payout_id)
    assert report["accepted_count"] == 1 and report["submissions"] == 3  # 2 refused on instant, 1 by wire
    async with sessionmaker() as session:
        routing = await session.scalar(select(payouts.c.routing).where(payouts.c.id == params.payout_id))
    assert routing["failovers"][0]["from"] == "bank_sepa_instant" and routing["connector"] == "bank_wire"


async def test_enqueueing_a_payout_twice_queues_it_once_and_returns_its_entry(worker_deps, settings, sessionmaker):
    from activities.rails import RailActivities
    from core.rails.models import BatchEnqueueInput

    merchant = await create_merchant(sessionmaker, currency="USD", funded_minor=FUNDS)
    p = await create_payout_row(sessionmaker, settings, merchant_id=merchant, currency="USD", method="ach",
                                priority="batch", amount_minor=4_321, beneficiary=ach_beneficiary())
    acts = RailActivities(worker_deps.sessionmaker, None, worker_deps.connectors, worker_deps.cipher, settings)
    cutoff = datetime(2025, 3, 4, 17, 0, tzinfo=NY)
    first = await acts.enqueue_payout_for_batch(BatchEnqueueInput(payout_id=p.payout_id, rail="ach",
                                                                  connector="bank_ach", cutoff_at=cutoff))
    later = datetime(2025, 3, 5, 17, 0, tzinfo=NY)  # a repeat never moves it to another cutoff
    again = await acts.enqueue_payout_for_batch(BatchEnqueueInput(payout_id=p.payout_id, rail="ach",
                                                                  connector="bank_ach", cutoff_at=later))
    assert first.cutoff_at == again.cutoff_at == cutoff and first.batch_id is None
    async with sessionmaker() as session:
        rows = (await session.execute(select(payout_batch_entries))).mappings().all()
    assert [(r["payout_id"], r["amount_minor"], r["currency"]) for r in rows] == [(p.payout_id, 4_321, "USD")]
