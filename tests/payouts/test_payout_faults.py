"""Issue 17: an ambiguous bank answer is never a refusal, and a return is never missed.

Time-skipping workflow tests against the real sandbox bank and its fault modes: accept-then-5xx
(with the status inquiry itself failing for a while) and a 409 reference conflict settle without
a refund or a failover; a failover happens only after the bank confirms it has no such payment;
a return whose webhook never came is found by the return watch's polls.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType

from core.ledger import service as ledger
from core.payouts.models import PayoutState
from core.platform.names import payout_workflow_id
from core.platform.tables import alerts, events, journal_transactions, payout_events, payouts
from core.rails.fees import payout_fee
from core.rails.models import HealthRunInput
from tests.temporal_history import steps
from tests.factories import create_merchant, create_payout_row, leave_wire_the_only_fallback_for_eur, sepa_beneficiary
from tests.polling import eventually
from workers.main import build_worker
from workflows.connector_health import ConnectorHealthWorkflow
from workflows.payout import PayoutWorkflow

FUNDS = 1_000_000
HISTORIES = Path(__file__).parent.parent / "histories"
# Recorded histories of these paths (replayed by tests/platform/test_replay.py), re-recorded with
# `PAYOPS_RECORD_HISTORIES=1 .venv/bin/python -m pytest tests/payouts/test_payout_faults.py`.
RECORDED = {
    "payout_unknown_accept_then_5xx_settled", "payout_unknown_reference_conflict_settled",
    "payout_unknown_not_found_failover_settled", "payout_return_found_by_poll",
    "payout_inquiry_continued_as_new_first_run", "payout_inquiry_continued_as_new_last_run",
}


async def record(name: str, handle) -> None:
    assert name in RECORDED
    if os.environ.get("PAYOPS_RECORD_HISTORIES") == "1":
        (HISTORIES / f"{name}.json").write_text((await handle.fetch_history()).to_json())


def test_the_new_paths_have_recorded_histories():
    assert RECORDED <= {p.stem for p in HISTORIES.glob("*.json")}


async def activities_in_order(handle) -> list[str]:
    return steps((await handle.fetch_history()).events)


async def fault(bank, mode: str, count: int = 1) -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(f"{bank.url}/_sandbox/faults", json={"mode": mode, "count": count})).raise_for_status()


async def balance(sessionmaker, merchant: str):
    async with sessionmaker() as session:
        [bal] = await ledger.get_balances(session, merchant)
        assert (await ledger.check_ledger(session)).ok
    return bal


async def run_payout(env, worker_deps, settings, params):
    async with build_worker(env.client, worker_deps, task_queue=settings.temporal_task_queue):
        handle = await env.client.start_workflow(
            PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id),
            task_queue=settings.temporal_task_queue,
        )
        result = await handle.result()
        state = await handle.query("state", result_type=PayoutState)
    return handle, result, state


async def run_payout_with_sepa_instant_breaker_open(env, worker_deps, settings, bank, params):
    """SEPA Instant is down and the health workflow has opened its breaker (two runs) before the
    payout starts, so routing falls back to the wire (the one other EUR rail left)."""
    await leave_wire_the_only_fallback_for_eur(worker_deps.sessionmaker)
    async with build_worker(env.client, worker_deps, task_queue=settings.temporal_task_queue):
        async with httpx.AsyncClient() as http:
            await http.post(f"{bank.url}/_sandbox/outages", json={"rail": "sepa_instant", "down": True})
        for _ in range(2):
            health = await env.client.execute_workflow(
                ConnectorHealthWorkflow.run, HealthRunInput(requested_by="test"),
                id=f"health-test-{uuid.uuid4().hex[:8]}", task_queue=settings.temporal_task_queue,
            )
        assert health.open == ["bank_sepa_instant"]
        handle = await env.client.start_workflow(
            PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id),
            task_queue=settings.temporal_task_queue,
        )
        return await handle.result()


def eager_failover(params) -> None:
    """Fail over to the next rail after one attempt on any 5xx: the setting that made the
    tester's payouts leave a bank that had accepted them."""
    params.failover_codes = ["service_unavailable", "bank_unavailable", "timeout", "reference_conflict"]
    params.failover_attempts_per_connector = 1


async def test_accept_then_5xx_settles_without_refund_or_failover_even_while_inquiries_fail(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, priority="priority")
    eager_failover(params)
    params.retry_initial_seconds, params.retry_max_interval_seconds = 10, 40
    await fault(bank, "accept_then_5xx")  # the bank keeps the payment and answers 503
    await fault(bank, "reference_conflict", 5)  # and refuses any resubmission of it
    await fault(bank, "inquiry_5xx", 3)  # and its status inquiry is down for a while

    handle, result, state = await run_payout(skipping_env, worker_deps, settings, params)
    await record("payout_unknown_accept_then_5xx_settled", handle)

    assert result.status == "settled", result
    assert state.failovers == [] and state.connector == "bank_sepa_instant"
    report = bank.payment(params.payout_id)
    assert report["accepted_count"] == 1 and report["submissions"] == 1  # never resubmitted
    names = await activities_in_order(handle)
    assert "fail_over_payout" not in names and "reverse_payout" not in names
    assert names.count("submit_payout_to_connector") == 1
    # asked until the bank answered: 3 unanswered inquiries, then the one that found it (and the
    # settlement polls, which are inquiries too); no resubmission met the 409 fault
    assert names[:names.index("settle_payout")].count("inquire_payout") >= 4
    assert bank.state.faults == [["reference_conflict", 5]]
    bal = await balance(sessionmaker, merchant)
    assert bal.available_minor == FUNDS - params.amount_minor - params.fee_minor and bal.held_minor == 0


async def test_a_409_reference_conflict_is_resolved_by_inquiry_and_settles(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, priority="priority")
    eager_failover(params)
    # The bank already has this reference from an earlier submission on another rail (the
    # tester's failover): payops's own submission gets 409 reference_conflict.
    async with httpx.AsyncClient() as http:
        seeded = await http.post(
            f"{bank.url}/v1/payments", headers={"Idempotency-Key": params.payout_id},
            json={"reference": params.payout_id, "amount_minor": params.amount_minor, "currency": "EUR",
                  "rail": "wire", "beneficiary": sepa_beneficiary()},
        )
        assert seeded.status_code == 201

    handle, result, state = await run_payout(skipping_env, worker_deps, settings, params)
    await record("payout_unknown_reference_conflict_settled", handle)

    assert result.status == "settled", result
    assert state.failovers == [] and state.bank_payment_id == seeded.json()["payment_id"]
    report = bank.payment(params.payout_id)
    assert report["accepted_count"] == 1 and report["submissions"] == 2  # the seed and payops's one
    names = await activities_in_order(handle)
    assert "fail_over_payout" not in names and "reverse_payout" not in names
    bal = await balance(sessionmaker, merchant)
    assert bal.available_minor == FUNDS - params.amount_minor - params.fee_minor and bal.held_minor == 0


async def test_failover_only_after_the_bank_confirms_it_has_no_such_payment(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, priority="priority")
    eager_failover(params)
    await leave_wire_the_only_fallback_for_eur(sessionmaker)
    async with httpx.AsyncClient() as http:  # the scheme is down: 503, nothing recorded
        await http.post(f"{bank.url}/_sandbox/outages", json={"rail": "sepa_instant", "down": True})
    await fault(bank, "inquiry_5xx", 2)  # the first two inquiries get no answer

    handle, result, state = await run_payout(skipping_env, worker_deps, settings, params)
    await record("payout_unknown_not_found_failover_settled", handle)

    assert result.status == "settled", result
    assert state.failovers == ["bank_sepa_instant -> bank_wire (service_unavailable)"]
    names = await activities_in_order(handle)
    failover = names.index("fail_over_payout")
    # one submission, two unanswered inquiries, the "no such payment", and only then the failover
    assert names[names.index("submit_payout_to_connector"):failover] == [
        "submit_payout_to_connector", "inquire_payout", "inquire_payout", "inquire_payout"]
    report = bank.payment(params.payout_id)
    assert report["accepted_count"] == 1 and report["submissions"] == 2
    async with sessionmaker() as session:
        rail = await session.scalar(select(payout_events.c.data["rail"].astext).where(
            payout_events.c.payout_id == params.payout_id, payout_events.c.data["event_key"].astext == "failover:1"))
    assert rail == "wire"
    bal = await balance(sessionmaker, merchant)  # the fee is the wire's, the rail that paid it
    assert bal.available_minor == FUNDS - params.amount_minor - 1500 and bal.held_minor == 0


async def test_a_return_whose_webhook_was_missed_is_found_by_the_return_watch(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    bank.state.config.settle_delay = 3600  # the bank settles when the test says so
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, priority="priority")
    params.return_window_seconds = 72 * 3600
    params.return_poll_intervals = [3600, 86400]

    async with build_worker(skipping_env.client, worker_deps, task_queue=settings.temporal_task_queue):
        handle = await skipping_env.client.start_workflow(
            PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id),
            task_queue=settings.temporal_task_queue,
        )
        async with httpx.AsyncClient() as http:
            await eventually(lambda: bank.payment(params.payout_id) is not None, "the bank has the payment")
            (await http.post(f"{bank.url}/_sandbox/settle/{params.payout_id}")).raise_for_status()

            async def settled() -> bool:
                return (await handle.query("state", result_type=PayoutState)).status == "settled"

            await eventually(settled, "the payout settled")
            settled_bal = await balance(sessionmaker, merchant)
            # returned at the bank; its webhook never reaches payops
            (await http.post(f"{bank.url}/_sandbox/return/{params.payout_id}",
                             json={"return_code": "R03", "notify": False})).raise_for_status()
        result = await handle.result()  # the return window's timers, skipped
    await record("payout_return_found_by_poll", handle)

    assert result.status == "returned" and result.failure_code == "R03", result
    assert settled_bal.available_minor == FUNDS - params.amount_minor - params.fee_minor
    bal = await balance(sessionmaker, merchant)
    assert bal.available_minor == FUNDS - params.fee_minor and bal.held_minor == 0  # credited once
    async with sessionmaker() as session:
        events = (await session.execute(select(payout_events.c.to_status, payout_events.c.reason).where(
            payout_events.c.payout_id == params.payout_id))).all()
    [returned] = [e.reason for e in events if e.to_status == "returned"]
    assert returned == "returned by the bank (R03), found by status poll 1: no webhook told us"
    assert [e.to_status for e in events].count("settled") == 1  # the merchant heard "settled" once
    names = await activities_in_order(handle)
    watch = names[names.index("settle_payout") + 1:]
    assert watch == ["inquire_payout", "reverse_payout"]  # found at the first poll


async def test_the_fee_follows_the_rail_routing_fell_back_to(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, priority="priority")
    assert params.fee_minor == payout_fee("sepa_instant", params.amount_minor)  # charged at creation
    result = await run_payout_with_sepa_instant_breaker_open(skipping_env, worker_deps, settings, bank, params)

    assert result.status == "settled", result
    wire_fee = payout_fee("wire", params.amount_minor)
    async with sessionmaker() as session:
        row = (await session.execute(select(payouts.c.rail, payouts.c.fee_minor)
                                     .where(payouts.c.id == params.payout_id))).one()
        journal = (await session.execute(select(journal_transactions).where(
            journal_transactions.c.idempotency_ref == f"fee-difference:{params.payout_id}"))).mappings().one()
        reasons = (await session.scalars(select(payout_events.c.reason).where(
            payout_events.c.payout_id == params.payout_id,
            payout_events.c.data["event_key"].astext == "fee-difference"))).all()
    assert row.rail == "wire" and row.fee_minor == wire_fee == 1500
    assert journal["metadata"]["difference_minor"] == wire_fee - params.fee_minor
    assert len(reasons) == 1 and "fee follows the rail used: wire" in reasons[0]
    async with sessionmaker() as session:  # the merchant's settled event carries the fee charged
        [settled] = (await session.scalars(select(events.c.data).where(
            events.c.payout_id == params.payout_id, events.c.type == "payout.settled"))).all()
    assert settled["fee_minor"] == 1500
    bal = await balance(sessionmaker, merchant)  # the ledger check is green (balanced postings)
    assert bal.available_minor == FUNDS - params.amount_minor - wire_fee and bal.held_minor == 0


async def test_a_batch_entry_refused_as_a_reference_conflict_is_resolved_by_inquiry(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from tests.rails.test_rails_workflows import ach_beneficiary, queued, run_batch, start

    ny = ZoneInfo("America/New_York")
    client = skipping_env.client
    merchant = await create_merchant(sessionmaker, currency="USD", funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, currency="USD", method="ach",
                                     priority="batch", amount_minor=12_345, beneficiary=ach_beneficiary())
    params.created_at = datetime(2025, 3, 4, 16, 59, tzinfo=ny)  # a Tuesday, before the 17:00 cutoff
    async with httpx.AsyncClient() as http:  # the bank already has this reference (another submission)
        seeded = await http.post(
            f"{bank.url}/v1/payments", headers={"Idempotency-Key": params.payout_id},
            json={"reference": params.payout_id, "amount_minor": 12_345, "currency": "USD", "rail": "ach",
                  "beneficiary": ach_beneficiary(), "description": "an earlier submission"},
        )
        assert seeded.status_code == 201

    async with build_worker(client, worker_deps, task_queue=settings.temporal_task_queue):
        handle = await start(client, settings, params)
        await eventually(lambda: queued(sessionmaker, params.payout_id), "the payout queued for the batch")
        batch = await run_batch(client, settings, "ach", datetime(2025, 3, 4, 17, 0, tzinfo=ny))
        assert (batch.entry_count, batch.rejected_count) == (1, 1)  # the bank refused the entry: 409
        result = await handle.result()

    assert result.status == "settled", result
    names = await activities_in_order(handle)
    assert "reverse_payout" not in names and "submit_payout_to_connector" not in names
    assert bank.payment(params.payout_id)["accepted_count"] == 1
    bal = await balance(sessionmaker, merchant)
    assert bal.available_minor == FUNDS - 12_345 - params.fee_minor and bal.held_minor == 0


async def test_connector_outcomes_and_inquiry_against_the_sandbox(bank):
    from connectors.base import ConnectorError, SubmitRequest
    from connectors.rails import RailConnector

    connector = RailConnector("bank_sepa_instant", "sepa_instant", base_url=bank.url)
    req = SubmitRequest(reference="po_outcomes_1", amount_minor=500, currency="EUR", rail="sepa_instant",
                        beneficiary=sepa_beneficiary())

    async def outcome(request: SubmitRequest) -> str:
        try:
            await connector.submit(request)
        except ConnectorError as exc:
            return f"{exc.outcome}:{exc.code}"
        return "accepted"

    try:
        assert (await connector.inquire(req.reference)).answer == "not_found"
        await fault(bank, "accept_then_5xx")
        assert await outcome(req) == "unknown:service_unavailable"
        found = await connector.inquire(req.reference)  # the 503 hid an acceptance
        assert (found.answer, found.status) == ("found", "accepted") and found.payment_id
        await fault(bank, "reference_conflict")
        assert await outcome(req) == "unknown:reference_conflict"  # "it exists", not a refusal
        other_rail = req.model_copy(update={"rail": "wire"})
        wire = RailConnector("bank_wire", "wire", base_url=bank.url)
        try:
            await wire.submit(other_rail)
        except ConnectorError as exc:
            assert (exc.outcome, exc.code) == ("unknown", "reference_conflict")
        finally:
            await wire.aclose()
        closed = req.model_copy(update={"reference": "po_outcomes_2", "beneficiary": sepa_beneficiary("0002")})
        assert await outcome(closed) == "refused:account_closed"
        await fault(bank, "inquiry_5xx")
        assert (await connector.inquire(req.reference)).answer == "unknown"
        assert (await connector.inquire(req.reference)).answer == "found"
        assert bank.payment(req.reference)["accepted_count"] == 1
    finally:
        await connector.aclose()


async def test_return_without_webhook_fault_returns_silently(bank):
    from sandbox.bank import BankConfig

    assert isinstance(bank.state.config, BankConfig)
    bank.state.config.webhook_url = "http://127.0.0.1:9/never"  # a webhook would be logged here
    await fault(bank, "return_without_webhook")
    async with httpx.AsyncClient() as http:
        resp = await http.post(f"{bank.url}/v1/payments", headers={"Idempotency-Key": "po_silent_1"},
                               json={"reference": "po_silent_1", "amount_minor": 700, "currency": "EUR",
                                     "rail": "sepa", "beneficiary": sepa_beneficiary()})
        assert resp.status_code == 201
        await eventually(lambda: bank.payment("po_silent_1")["status"] == "returned", "returned at the bank",
                         timeout=5)
    assert [w.type for w in bank.state.webhooks] == ["payment.settled"]  # no payment.returned sent


async def test_dlq_expiry_asks_the_bank_until_it_answers_before_reversing(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant,
                                     beneficiary=sepa_beneficiary("0036"))  # always 503, nothing accepted
    params.retry_max_attempts, params.dlq_expiry_seconds = 2, 72 * 3600

    async with build_worker(skipping_env.client, worker_deps, task_queue=settings.temporal_task_queue):
        handle = await skipping_env.client.start_workflow(
            PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id),
            task_queue=settings.temporal_task_queue,
        )

        async def in_dlq() -> bool:
            return (await handle.query("state", result_type=PayoutState)).status == "dlq"

        await eventually(in_dlq, "the payout parked in dlq")
        await fault(bank, "inquiry_5xx", 5)  # at expiry the bank's status inquiry is down for a while
        result = await handle.result()

    assert result.status == "failed" and result.failure_code == "dlq_expired", result
    names = await activities_in_order(handle)
    after_dlq = [n for n in names[len(names) - names[::-1].index("record_payout_transition"):]
                 if n != "raise_sla_breach_alert"]  # (the SLA watch runs through the dlq wait)
    assert after_dlq == ["inquire_payout"] * 6 + ["reverse_payout"]  # 5 unanswered, then "no such payment"
    bal = await balance(sessionmaker, merchant)
    assert bal.available_minor == FUNDS and bal.held_minor == 0


async def test_an_unaffordable_fee_difference_is_an_alert_and_an_audit_event(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    """Routing fell back to the wire, whose fee the merchant cannot pay: the payout settles with
    the fee held, and the unpaid difference is a high alert plus an event on the payout."""
    amount = 10_000
    fee = payout_fee("sepa_instant", amount)
    merchant = await create_merchant(sessionmaker, funded_minor=amount + fee)  # nothing left for the wire's fee
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, priority="priority",
                                     amount_minor=amount)
    assert params.fee_minor == fee
    result = await run_payout_with_sepa_instant_breaker_open(skipping_env, worker_deps, settings, bank, params)

    assert result.status == "settled", result
    wire_fee = payout_fee("wire", amount)
    async with sessionmaker() as session:
        row = (await session.execute(select(payouts.c.rail, payouts.c.fee_minor)
                                     .where(payouts.c.id == params.payout_id))).one()
        posted = await session.scalar(select(journal_transactions.c.id).where(
            journal_transactions.c.idempotency_ref == f"fee-difference:{params.payout_id}"))
        unpaid = (await session.execute(select(payout_events.c.reason, payout_events.c.data).where(
            payout_events.c.payout_id == params.payout_id,
            payout_events.c.data["event_key"].astext == "fee-difference-unpaid"))).all()
        [alert] = (await session.execute(select(alerts).where(
            alerts.c.dedupe_key == f"fee_difference_unpaid:{params.payout_id}"))).mappings().all()
    assert row.rail == "wire" and row.fee_minor == fee and posted is None  # nothing charged
    assert len(unpaid) == 1 and "fee not charged" in unpaid[0].reason
    assert unpaid[0].data["difference_minor"] == wire_fee - fee and unpaid[0].data["used_rail"] == "wire"
    assert alert["severity"] == "high" and alert["status"] == "open"
    assert alert["data"]["payout_id"] == params.payout_id and alert["data"]["difference_minor"] == wire_fee - fee
    bal = await balance(sessionmaker, merchant)  # the ledger stays balanced: the held fee was charged
    assert bal.available_minor == 0 and bal.held_minor == 0


async def test_a_batch_file_whose_answer_was_lost_is_asked_about_not_resent(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    """The bank takes the ACH file and answers 503; its file inquiry is down for two tries; a
    resend would meet 409 file_id_conflict. The batch asks the bank about the file (never resends
    it) and takes the entries' outcomes from the bank's report: the payout settles, once."""
    import asyncio
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from connectors.rails import AchConnector
    from core.platform.tables import payout_batches
    from tests.rails.test_rails_workflows import ach_beneficiary, queued, run_batch, start

    ny = ZoneInfo("America/New_York")
    client = skipping_env.client
    merchant = await create_merchant(sessionmaker, currency="USD", funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, currency="USD", method="ach",
                                     priority="batch", amount_minor=23_456, beneficiary=ach_beneficiary())
    params.created_at = datetime(2025, 3, 4, 16, 59, tzinfo=ny)
    await fault(bank, "file_accept_then_5xx")
    await fault(bank, "file_inquiry_5xx", 2)
    await fault(bank, "file_replay_conflict", 3)

    async with build_worker(client, worker_deps, task_queue=settings.temporal_task_queue):
        handle = await start(client, settings, params)
        await eventually(lambda: queued(sessionmaker, params.payout_id), "the payout queued for the batch")
        batch = await asyncio.wait_for(
            run_batch(client, settings, "ach", datetime(2025, 3, 4, 17, 0, tzinfo=ny)), 90)
        assert (batch.status, batch.entry_count, batch.accepted_count) == ("submitted", 1, 1)
        result = await handle.result()

    assert result.status == "settled", result
    assert bank.state.faults == [["file_replay_conflict", 3]]  # never sent again
    report = bank.payment(params.payout_id)
    assert report["accepted_count"] == 1 and report["submissions"] == 1
    names = await activities_in_order(handle)
    assert "reverse_payout" not in names and "submit_payout_to_connector" not in names
    async with sessionmaker() as session:
        row = (await session.execute(select(payout_batches).where(
            payout_batches.c.id == batch.batch_id))).mappings().one()
    assert row["status"] == "submitted" and row["error"] is None and row["bank_file_id"] == batch.batch_id
    bal = await balance(sessionmaker, merchant)
    assert bal.available_minor == FUNDS - 23_456 - params.fee_minor and bal.held_minor == 0
    # the inquiry's "no such file" is a confirmed no, distinct from an unanswered one
    connector = AchConnector("bank_ach", "ach", base_url=bank.url)
    assert await connector.file_status("bat_never_sent") is None
    assert (await connector.file_status(batch.batch_id)).accepted_count == 1


async def test_a_long_inquiry_continues_as_new_with_its_state_and_settles_once(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    """The bank took the payment, answered 503, and its status inquiry stays down for 11 tries.
    Every 4 unanswered inquiries the workflow continues as new (patch inquiry-continue-as-new-v1):
    each run's history stays short, the state carries over, and the payout settles once, without
    a resubmission, a failover or a refund."""
    params_merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=params_merchant, priority="priority")
    eager_failover(params)
    params.retry_initial_seconds, params.retry_max_interval_seconds = 10, 3600
    params.inquiry_continue_as_new_after = 4
    await fault(bank, "accept_then_5xx")
    await fault(bank, "reference_conflict", 5)
    await fault(bank, "inquiry_5xx", 11)

    client = skipping_env.client
    async with build_worker(client, worker_deps, task_queue=settings.temporal_task_queue):
        handle = await client.start_workflow(
            PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id),
            task_queue=settings.temporal_task_queue,
        )
        result = await handle.result()  # follows the runs
        latest = client.get_workflow_handle(handle.id)
        state = await latest.query("state", result_type=PayoutState)
        last_run = (await latest.describe()).run_id

    assert result.status == "settled", result
    first_run = handle.first_execution_run_id or handle.result_run_id
    runs, run_id = [], first_run
    while run_id:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        names = steps(history.events)
        last = history.events[-1]
        if os.environ.get("PAYOPS_RECORD_HISTORIES") == "1" and run_id in (first_run, last_run):
            which = "first" if run_id == first_run else "last"
            (HISTORIES / f"payout_inquiry_continued_as_new_{which}_run.json").write_text(history.to_json())
        runs.append((names, len(history.events)))
        run_id = (last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                  if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW else None)
    assert len(runs) == 3, [n for n, _ in runs]  # 4 + 4 unanswered, then the third run's answer
    assert runs[0][0].count("inquire_payout") == 4 and runs[1][0] == ["inquire_payout"] * 4
    # bounded per run: a run that only asks holds its few inquiries, not the whole outage
    assert runs[1][1] <= 60 and runs[1][1] < runs[0][1], [n for _, n in runs]
    everything = [a for names, _ in runs for a in names]
    assert everything.count("submit_payout_to_connector") == 1
    assert "fail_over_payout" not in everything and "reverse_payout" not in everything
    assert "settle_payout" in runs[2][0]
    # the state carried over: the one attempt, the connector, the bank's payment id
    assert (await latest.describe()).run_id == last_run
    assert state.status == "settled" and state.attempts == 1 and state.connector == "bank_sepa_instant"
    assert state.failovers == [] and state.bank_payment_id == bank.state.payments[params.payout_id].payment_id
    report = bank.payment(params.payout_id)
    assert report["accepted_count"] == 1 and report["submissions"] == 1
    bal = await balance(sessionmaker, params_merchant)
    assert bal.available_minor == FUNDS - params.amount_minor - params.fee_minor and bal.held_minor == 0


def test_the_continue_as_new_threshold_comes_from_settings(monkeypatch):
    from datetime import datetime, timezone

    from core.payouts.service import workflow_input
    from core.platform.settings import Settings

    monkeypatch.setenv("PAYOPS_PAYOUT_INQUIRY_CONTINUE_AS_NEW_AFTER", "7")
    row = {"id": "po_x", "merchant_id": "mer_x", "amount_minor": 100, "fee_minor": 1, "currency": "EUR",
           "method": "sepa", "priority": "instant", "created_at": datetime.now(timezone.utc)}
    params = workflow_input(row, Settings(_env_file=None))
    assert params.inquiry_continue_as_new_after == 7 and params.resume is None


async def test_a_batch_file_the_bank_confirms_it_never_got_is_sent_again(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    """The ACH scheme is down: the file POST answers 503 (unknown). The next attempt asks the
    bank first (its first inquiry fails too: the file stays unknown), then the bank answers "no
    such file", and only then is the file sent again, once the scheme is back."""
    import asyncio
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from core.platform.tables import payout_batches
    from tests.rails.test_rails_workflows import ach_beneficiary, queued, run_batch, start

    ny = ZoneInfo("America/New_York")
    client = skipping_env.client
    merchant = await create_merchant(sessionmaker, currency="USD", funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, currency="USD", method="ach",
                                     priority="batch", amount_minor=34_567, beneficiary=ach_beneficiary())
    params.created_at = datetime(2025, 3, 4, 16, 59, tzinfo=ny)
    await fault(bank, "file_inquiry_5xx")

    async def marked_unknown() -> bool:
        async with sessionmaker() as session:
            errors = (await session.scalars(select(payout_batches.c.error).where(
                payout_batches.c.rail == "ach"))).all()
        return any((e or "").startswith("outcome unknown") for e in errors)

    async with build_worker(client, worker_deps, task_queue=settings.temporal_task_queue):
        handle = await start(client, settings, params)
        await eventually(lambda: queued(sessionmaker, params.payout_id), "the payout queued for the batch")
        async with httpx.AsyncClient() as http:
            await http.post(f"{bank.url}/_sandbox/outages", json={"rail": "ach", "down": True})
            batch_run = asyncio.create_task(run_batch(client, settings, "ach", datetime(2025, 3, 4, 17, 0, tzinfo=ny)))
            await eventually(marked_unknown, "the batch recorded its file's outcome as unknown")
            await eventually(lambda: bank.state.faults == [], "the bank was asked about the file")
            await http.post(f"{bank.url}/_sandbox/outages", json={"rail": "ach", "down": False})
        batch = await asyncio.wait_for(batch_run, 90)
        result = await handle.result()

    assert (batch.status, batch.accepted_count) == ("submitted", 1)
    assert result.status == "settled", result
    report = bank.payment(params.payout_id)
    assert report["accepted_count"] == 1 and report["submissions"] == 1
    assert list(bank.state.files) == [batch.batch_id]
