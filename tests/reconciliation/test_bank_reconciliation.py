"""payops against the bank (issue 17, item 6): the sandbox bank's payment report, the comparison
with payops's payouts, the second look that lets a webhook in flight heal, and
`payops ledger check --against-bank` / the BankReconciliationWorkflow reporting disagreements
made on purpose (exit code included). Real PostgreSQL, Temporal dev server and sandbox bank."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import select, update

from connectors.base import BankPaymentRecord
from core.reconciliation.bank import (
    KINDS,
    BankView,
    PayoutView,
    classify,
    compare_with_bank,
    confirm_discrepancies,
)
from core.platform.names import payout_workflow_id
from core.platform.tables import alerts, bank_discrepancies, bank_reconciliation_runs, payouts
from tests.factories import create_merchant, create_payout_row
from workflows.bank_reconciliation import BankReconciliationInput, BankReconciliationWorkflow
from workflows.payout import PayoutWorkflow

FUNDS = 10_000_000


def _payout(status: str, amount: int = 1000, currency: str = "EUR") -> PayoutView:
    return PayoutView("po_1", status, amount, currency, "bank_sepa")


def _bank(status: str | None, amount: int | None = 1000, currency: str | None = "EUR", n: int = 1) -> BankView | None:
    if status is None:
        return None
    view = BankView("po_1")
    for i in range(n):
        view.add(BankPaymentRecord(reference="po_1", payment_id=f"bnk_{i}", status=status, amount_minor=amount,
                                   currency=currency), "bank_sepa")
    return view


@pytest.mark.parametrize(("payops", "bank", "expected"), [
    ("settled", "settled", "agreed"),
    ("returned", "returned", "agreed"),
    ("failed", None, "agreed"),  # refused before reaching the bank
    ("failed", "failed", "agreed"),
    ("cancelled", None, "agreed"),
    ("submitted", "accepted", "in_flight"),
    ("submitted", "settled", "in_flight"),  # payops's poll or webhook is on its way
    ("routed", None, "in_flight"),
    ("submitting", "accepted", "in_flight"),
    ("failed", "settled", "paid_there_failed_here"),
    ("failed", "accepted", "paid_there_failed_here"),
    ("cancelled", "settled", "paid_there_failed_here"),
    ("settled", "returned", "returned_there_settled_here"),
    ("settled", "failed", "failed_there_settled_here"),
    ("returned", "settled", "settled_there_returned_here"),
    ("submitted", None, "missing_at_bank"),
    ("settled", None, "missing_at_bank"),
    ("dlq", "accepted", "at_bank_dlq_here"),
    ("failed", "returned", "status_mismatch"),
])
def test_classify(payops: str, bank: str | None, expected: str) -> None:
    verdict = classify(_payout(payops), _bank(bank))
    assert (verdict.kind or verdict.outcome) == expected
    if verdict.kind:
        assert verdict.kind in KINDS and "po_1" in verdict.message


def test_classify_amounts_duplicates_and_strangers() -> None:
    assert classify(_payout("settled"), _bank("settled", amount=999)).kind == "amount_mismatch"
    assert classify(_payout("settled"), _bank("settled", currency="USD")).kind == "amount_mismatch"
    assert classify(_payout("settled"), _bank("settled", amount=None, currency=None)).outcome == "agreed"
    assert classify(_payout("settled"), _bank("settled", n=2)).kind == "duplicate_at_bank"
    assert classify(None, _bank("settled")).kind == "unknown_to_payops"


async def test_bank_report_pages_and_filters(bank) -> None:
    async with httpx.AsyncClient(base_url=bank.url) as http:
        start = datetime.now(timezone.utc)
        refs = [f"ref-{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
        for i, ref in enumerate(refs):
            r = await http.post("/v1/payments", headers={"Idempotency-Key": ref}, json={
                "reference": ref, "amount_minor": 100 + i, "currency": "EUR", "rail": "sepa" if i < 3 else "wire",
                "beneficiary": {"name": "J", "iban": "DE89370400440532013000"}})
            assert r.status_code == 201
        seen, cursor = [], None
        while True:
            params = {"since": start.isoformat(), "limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/v1/payments", params=params)).json()
            assert len(page["payments"]) <= 2
            seen += [p["reference"] for p in page["payments"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == refs  # oldest first, every page, nothing twice
        wire = (await http.get("/v1/payments", params={"since": start.isoformat(), "rail": "wire"})).json()
        assert [p["reference"] for p in wire["payments"]] == refs[3:]
        later = (await http.get("/v1/payments", params={"since": (start + timedelta(hours=1)).isoformat()})).json()
        assert later == {"payments": [], "next_cursor": None}
        assert (await http.get("/v1/payments", params={"since": "yesterday"})).status_code == 422

    from connectors.rails import RailConnector

    connector = RailConnector(name="bank_sepa", rail="sepa", base_url=bank.url)
    try:
        records = await connector.list_payments(start)
    finally:
        await connector.aclose()
    assert [r.reference for r in records] == refs[:3]
    assert [r.amount_minor for r in records] == [100, 101, 102] and {r.status for r in records} <= {"accepted", "settled"}


async def _run_cli(settings, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYOPS_")}
    env.update(PAYOPS_DATABASE_URL=settings.database_url, PAYOPS_SANDBOX_BANK_URL=settings.sandbox_bank_url,
               PAYOPS_BANK_WEBHOOK_SECRET=settings.bank_webhook_secret)
    # not subprocess.run: the sandbox bank answers from this test's event loop
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from cli.main import app; app()", "ledger", "check", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode, out.decode(), err.decode()


async def _settled_payout(temporal_client, settings, sessionmaker, merchant: str, amount: int) -> str:
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, amount_minor=amount)
    handle = await temporal_client.start_workflow(
        PayoutWorkflow.run, params, id=payout_workflow_id(params.payout_id), task_queue=settings.temporal_task_queue)
    assert (await handle.result()).status == "settled"
    return params.payout_id


async def test_disagreements_made_on_purpose_are_reported_recorded_and_alerted(
    temporal_client, worker, settings, sessionmaker, bank,
) -> None:
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    agreed = await _settled_payout(temporal_client, settings, sessionmaker, merchant, 10_001)
    returned_there = await _settled_payout(temporal_client, settings, sessionmaker, merchant, 10_002)
    failed_here = await _settled_payout(temporal_client, settings, sessionmaker, merchant, 10_003)

    # 1. everything agrees: exit 0
    code, out, err = await _run_cli(settings, "--against-bank", "--json", "--confirm-seconds", "0.2")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["ledger"]["ok"] and report["bank"]["status"] == "ok"
    assert report["bank"]["agreed"] == 3 and report["bank"]["discrepancies"] == []

    # 2. make payops and the bank disagree, four ways
    async with httpx.AsyncClient(base_url=bank.url) as http:
        # the bank returns a payout after payops's workflow finished watching: settled here, returned there
        assert (await http.post(f"/_sandbox/return/{returned_there}", json={"return_code": "R03"})).status_code == 200
        # a payment payops never made
        stranger = f"po_stranger_{uuid.uuid4().hex[:8]}"
        r = await http.post("/v1/payments", headers={"Idempotency-Key": stranger}, json={
            "reference": stranger, "amount_minor": 777, "currency": "EUR", "rail": "sepa",
            "beneficiary": {"name": "X", "iban": "DE89370400440532013000"}})
        assert r.status_code == 201
    # payops marks a settled payout failed (what the reference-conflict bug did)
    missing = await create_payout_row(sessionmaker, settings, merchant_id=merchant, amount_minor=10_004)
    async with sessionmaker() as session, session.begin():
        await session.execute(update(payouts).where(payouts.c.id == failed_here).values(status="failed"))
        # and one payops believes submitted that never reached the bank
        await session.execute(update(payouts).where(payouts.c.id == missing.payout_id).values(
            status="submitted", connector="bank_sepa_instant", rail="sepa_instant"))

    code, out, err = await _run_cli(settings, "--against-bank", "--json", "--days", "1", "--confirm-seconds", "0.2")
    assert code == 1, out + err
    bank_report = json.loads(out)["bank"]
    found = {d["reference"]: d["kind"] for d in bank_report["discrepancies"]}
    assert found == {
        returned_there: "returned_there_settled_here",
        failed_here: "paid_there_failed_here",
        stranger: "unknown_to_payops",
        missing.payout_id: "missing_at_bank",
    }, bank_report
    assert bank_report["agreed"] == 1 and bank_report["status"] == "discrepancies"
    assert agreed not in found

    code, text_out, _ = await _run_cli(settings, "--against-bank", "--confirm-seconds", "0")
    assert code == 1 and "returned_there_settled_here" in text_out and "bank DISCREPANCIES" in text_out

    async with sessionmaker() as session:
        run = (await session.execute(select(bank_reconciliation_runs).where(
            bank_reconciliation_runs.c.id == bank_report["run_id"]))).mappings().one()
        assert run["status"] == "discrepancies" and run["requested_by"] == "cli"
        rows = (await session.execute(select(bank_discrepancies.c.reference, bank_discrepancies.c.kind,
                                             bank_discrepancies.c.severity).where(
            bank_discrepancies.c.run_id == run["id"]))).all()
        assert {r.reference: r.kind for r in rows} == found and {r.severity for r in rows} == {"critical"}
        alerted = (await session.execute(select(alerts.c.dedupe_key, alerts.c.occurrences).where(
            alerts.c.rule == "bank_discrepancy"))).all()
    # one open alert per reference and kind; the third run saw them again
    assert {a.dedupe_key for a in alerted} == {f"bank_discrepancy:{ref}:{kind}" for ref, kind in found.items()}
    assert {a.occurrences for a in alerted} == {2}

    # 3. the scheduled job sees the same
    result = await temporal_client.execute_workflow(
        BankReconciliationWorkflow.run, BankReconciliationInput(days=1, confirm_seconds=0.1, requested_by="test"),
        id=f"bank-reconciliation-{uuid.uuid4().hex[:8]}", task_queue=settings.temporal_task_queue)
    assert result.status == "discrepancies" and result.discrepancies == 4 and result.agreed == 1, result


async def test_a_disagreement_that_heals_before_the_second_look_is_not_reported(
    temporal_client, worker, settings, sessionmaker, bank,
) -> None:
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    payout_id = await _settled_payout(temporal_client, settings, sessionmaker, merchant, 5_000)
    async with sessionmaker() as session, session.begin():  # payops lagging behind a failure...
        await session.execute(update(payouts).where(payouts.c.id == payout_id).values(status="returned"))
    registry = worker_registry(settings)
    try:
        first = await compare_with_bank(sessionmaker, registry, since=datetime.now(timezone.utc) - timedelta(hours=1))
        assert [(c.reference, c.kind) for c in first.candidates] == [(payout_id, "settled_there_returned_here")]
        async with httpx.AsyncClient(base_url=bank.url) as http:  # ...until the bank's return lands
            assert (await http.post(f"/_sandbox/return/{payout_id}", json={})).status_code == 200
        confirmed, errors = await confirm_discrepancies(sessionmaker, registry, first.candidates)
    finally:
        await registry.aclose()
    assert confirmed == [] and errors == []


def worker_registry(settings):
    from connectors.registry import build_registry

    return build_registry(settings)
