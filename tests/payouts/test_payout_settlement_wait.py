"""Issue 17: a payout whose bank takes days to settle keeps a bounded history.

The settlement wait polls the bank about once per settlement_poll_seconds, and the return watch
after settlement at its return_poll_intervals. From patch settlement-wait-continue-as-new-v1 on,
after inquiry_continue_as_new_after polls in one run the workflow continues as new, carrying its
state (the bank's payment, the SLA alert already raised, the webhooks seen, the return window's
end and its polls), and goes on waiting in the next run. Time-skipping server, real worker, real
PostgreSQL, the real sandbox bank (which settles only when the test says so).
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType

from core.ledger import service as ledger
from core.payouts.models import PayoutState
from core.platform.names import payout_workflow_id
from core.platform.tables import payout_events
from tests.temporal_history import steps
from tests.factories import create_merchant, create_payout_row
from tests.polling import eventually
from workers.main import build_worker
from workflows.payout import PayoutWorkflow

FUNDS = 1_000_000
HISTORIES = Path(__file__).parent.parent / "histories"
POLLS_PER_RUN = 4
# Recorded histories of these runs (replayed by tests/platform/test_replay.py), re-recorded with
# `PAYOPS_RECORD_HISTORIES=1 .venv/bin/python -m pytest tests/payouts/test_payout_settlement_wait.py`.
RECORDED = {
    "payout_settlement_wait_continued_as_new_first_run",  # polls, then continues as new (stage settlement)
    "payout_settlement_wait_settling_run",  # a continued run: the bank settles; the return watch begins
    "payout_settlement_wait_return_watch_last_run",  # a continued return watch: the window closes
}


def test_the_settlement_wait_paths_have_recorded_histories():
    assert RECORDED <= {p.stem for p in HISTORIES.glob("*.json")}


async def runs_of(client, handle) -> list[dict]:
    """Every run of the workflow, first to last: its activities, its history's length, how it ended."""
    runs, run_id = [], handle.first_execution_run_id or handle.result_run_id
    while run_id:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        last = history.events[-1]
        runs.append({
            "history": history,
            "activities": steps(history.events),
            "events": len(history.events),
            "continued": last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
            "closed_at": last.event_time.ToDatetime(),
        })
        run_id = (last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                  if runs[-1]["continued"] else None)
    return runs


def save(name: str, run: dict) -> None:
    assert name in RECORDED
    if os.environ.get("PAYOPS_RECORD_HISTORIES") == "1":
        (HISTORIES / f"{name}.json").write_text(run["history"].to_json())


async def balance(sessionmaker, merchant: str):
    async with sessionmaker() as session:
        [bal] = await ledger.get_balances(session, merchant)
        report = await ledger.check_ledger(session)
    assert report.ok, report.violations
    return bal


async def statuses(sessionmaker, payout_id: str) -> list[tuple[str, str | None]]:
    async with sessionmaker() as session:
        return [(r.to_status, r.reason) for r in await session.execute(
            select(payout_events.c.to_status, payout_events.c.reason)
            .where(payout_events.c.payout_id == payout_id).order_by(payout_events.c.sequence))]


async def slow_payout(sessionmaker, settings, bank):
    bank.state.config.settle_delay = 10 * 86400  # the bank settles when the test says so
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, priority="priority")
    params.settlement_poll_seconds = 60
    params.return_window_seconds = 72 * 3600
    params.inquiry_continue_as_new_after = POLLS_PER_RUN
    return merchant, params


async def test_a_bank_that_takes_long_to_settle_continues_as_new_settles_once_and_posts_once(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    merchant, params = await slow_payout(sessionmaker, settings, bank)
    params.return_poll_intervals = [3600, 21600, 86400]  # polls at 1 h, 7 h, 31 h, 55 h and 72 h
    client = skipping_env.client
    async with build_worker(client, worker_deps, task_queue=settings.temporal_task_queue):
        handle = await client.start_workflow(
            PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id),
            task_queue=settings.temporal_task_queue,
        )
        await eventually(lambda: bank.payment(params.payout_id) is not None, "the bank has the payment")
        await skipping_env.sleep(timedelta(minutes=15))  # ~15 polls: the bank has not settled

        async def continued_twice() -> bool:
            return len(await runs_of(client, handle)) >= 3

        await eventually(continued_twice, "the settlement wait continued as new twice")
        assert bank.payment(params.payout_id)["status"] == "accepted"
        async with httpx.AsyncClient() as http:
            (await http.post(f"{bank.url}/_sandbox/settle/{params.payout_id}")).raise_for_status()
        result = await handle.result()  # follows the runs; the return window's timers are skipped
        state = await client.get_workflow_handle(handle.id).query("state", result_type=PayoutState)
        runs = await runs_of(client, handle)

    assert result.status == "settled", result
    everything = [a for run in runs for a in run["activities"]]
    assert everything.count("submit_payout_to_connector") == 1 and everything.count("settle_payout") == 1
    assert "reverse_payout" not in everything and "fail_over_payout" not in everything
    # the SLA alert (sepa_instant settles within its target, long passed) is raised once, not once per run
    assert state.settlement_target_at is not None and everything.count("raise_sla_breach_alert") == 1
    [settling] = [i for i, run in enumerate(runs) if "settle_payout" in run["activities"]]
    assert settling >= 2, [r["activities"] for r in runs]  # it polled through at least two runs first
    # bounded: no run asks the bank more than POLLS_PER_RUN times, every run but the last continued
    # as new, and a run that only waits is short whatever the bank's delay
    for run in runs:
        assert run["activities"].count("inquire_payout") <= POLLS_PER_RUN, run["activities"]
    assert [r["continued"] for r in runs] == [True] * (len(runs) - 1) + [False]
    assert all(run["events"] <= 70 for run in runs[1:]), [r["events"] for r in runs]
    assert runs[1]["activities"] == ["inquire_payout"] * POLLS_PER_RUN
    # the return watch continued as new too, with its window and its polls carried: exactly the 5
    # polls of one 72 h window (1 h, 7 h, 31 h, 55 h, and as it closes), then it ended 72 h after
    # the settlement, not 72 h after its last run began
    assert settling < len(runs) - 1
    watch = runs[settling]["activities"][runs[settling]["activities"].index("settle_payout") + 1:]
    watch += [a for run in runs[settling + 1:] for a in run["activities"]]
    assert watch == ["inquire_payout"] * 5, watch
    settled_at = state.timestamps["settled"]
    assert abs((runs[-1]["closed_at"].replace(tzinfo=settled_at.tzinfo) - settled_at)
               - timedelta(hours=72)) < timedelta(minutes=2)
    # the state carried over every run
    assert state.status == "settled" and state.attempts == 1 and state.connector == "bank_sepa_instant"
    assert state.bank_payment_id == bank.state.payments[params.payout_id].payment_id
    assert state.sla_breached and state.failovers == []
    # settled once at the bank, posted once in the ledger, told once to the merchant
    report = bank.payment(params.payout_id)
    assert report["accepted_count"] == 1 and report["submissions"] == 1 and report["status"] == "settled"
    bal = await balance(sessionmaker, merchant)
    assert bal.available_minor == FUNDS - params.amount_minor - params.fee_minor and bal.held_minor == 0
    assert [s for s, _ in await statuses(sessionmaker, params.payout_id)].count("settled") == 1

    save("payout_settlement_wait_continued_as_new_first_run", runs[0])
    save("payout_settlement_wait_settling_run", runs[settling])
    save("payout_settlement_wait_return_watch_last_run", runs[-1])


async def test_a_return_found_by_a_continued_return_watch_is_posted_once(
    skipping_env, worker_deps, settings, sessionmaker, bank
):
    """Hourly return polls over 72 h: the watch continues as new every 4 polls; the bank returns
    the payment (no webhook) after ten hours and a later run finds it, numbering its poll across
    the runs, and credits the merchant once."""
    merchant, params = await slow_payout(sessionmaker, settings, bank)
    params.return_poll_intervals = [3600]
    client = skipping_env.client
    async with build_worker(client, worker_deps, task_queue=settings.temporal_task_queue):
        handle = await client.start_workflow(
            PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id),
            task_queue=settings.temporal_task_queue,
        )
        await eventually(lambda: bank.payment(params.payout_id) is not None, "the bank has the payment")
        async with httpx.AsyncClient() as http:
            (await http.post(f"{bank.url}/_sandbox/settle/{params.payout_id}")).raise_for_status()
            await skipping_env.sleep(timedelta(minutes=2))

            async def settled() -> bool:
                latest = client.get_workflow_handle(handle.id)
                return (await latest.query("state", result_type=PayoutState)).status == "settled"

            await eventually(settled, "the payout settled")
            await skipping_env.sleep(timedelta(hours=10))

            async def watch_continued_twice() -> bool:
                runs = await runs_of(client, handle)
                return sum(1 for r in runs if "settle_payout" not in r["activities"]) >= 2

            await eventually(watch_continued_twice, "the return watch continued as new twice")
            (await http.post(f"{bank.url}/_sandbox/return/{params.payout_id}",
                             json={"return_code": "R03", "notify": False})).raise_for_status()
        result = await handle.result()
        runs = await runs_of(client, handle)

    assert result.status == "returned" and result.failure_code == "R03", result
    everything = [a for run in runs for a in run["activities"]]
    assert everything.count("settle_payout") == 1 and everything.count("reverse_payout") == 1
    polls = everything[everything.index("settle_payout") + 1:].count("inquire_payout")
    assert 10 <= polls < 72, polls  # found hours before the window closes
    for run in runs:
        assert run["activities"].count("inquire_payout") <= POLLS_PER_RUN, run["activities"]
    events = await statuses(sessionmaker, params.payout_id)
    [returned] = [reason for status, reason in events if status == "returned"]
    found = re.fullmatch(r"returned by the bank \(R03\), found by status poll (\d+): no webhook told us", returned)
    assert found and int(found.group(1)) == polls, returned  # numbered across the runs
    assert [s for s, _ in events].count("settled") == 1
    bal = await balance(sessionmaker, merchant)
    assert bal.available_minor == FUNDS - params.fee_minor and bal.held_minor == 0  # credited once
