"""payops against the bank: does each payout's state agree with the bank's record of it?

The ledger check proves payops agrees with itself; this proves it agrees with the bank. A run
reads every connector's payments of the last N days (the bank's report, `list_payments`; a bank
without one is asked by reference, `poll_status`, payout by payout) and payops's payouts of the
same window, and classifies each reference:

- agreed: both say the same thing (including "never reached the bank" for a payout that failed
  before it, and "no payment" for one still waiting for its cutoff);
- in flight: payops has not concluded yet (submitting, submitted, retrying) and the bank's answer
  is one payops is still on its way to;
- a discrepancy: the two contradict each other, e.g. paid there and failed here (the beneficiary
  paid and the merchant refunded), returned there and settled here (the merchant never credited),
  missing at the bank for a payout payops says was submitted, or a payment unknown to payops.

A webhook in flight or a poll about to land makes a contradiction that heals by itself within
seconds, so a candidate is a discrepancy only if a second look, `confirm_seconds` later (the
payout row read again, the bank asked by reference), still disagrees. Each confirmed one is a row
of `bank_discrepancies` and an alert (one open alert per reference and kind).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel, Field
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from connectors.base import BankConnector, BankPaymentRecord, ConnectorError, PermanentConnectorError
from connectors.registry import ConnectorRegistry
from core.alerts.store import upsert_alert
from core.platform.tables import bank_discrepancies, bank_reconciliation_runs, payouts

ALERT_RULE = "bank_discrepancy"

# payops statuses, by what they claim about the bank
NEVER_SENT = frozenset({"pending", "held", "rejected"})
ENDED_WITHOUT_PAYING = frozenset({"failed", "cancelled", "rejected"})
IN_FLIGHT = frozenset({"pending", "held", "routed", "submitting", "retrying", "submitted"})
CLAIMS_AT_BANK = frozenset({"submitted", "settled", "returned"})

# kind -> severity
KINDS: dict[str, str] = {
    "paid_there_failed_here": "critical",  # the beneficiary paid, the merchant refunded
    "returned_there_settled_here": "critical",  # the merchant never credited for the return
    "failed_there_settled_here": "critical",  # the merchant charged, the beneficiary not paid
    "settled_there_returned_here": "critical",  # the merchant credited for a return that never came
    "missing_at_bank": "critical",  # payops says the bank has it; the bank has no such payment
    "unknown_to_payops": "critical",  # a payment at the bank that is no payout of payops
    "amount_mismatch": "critical",  # the bank paid another amount or currency
    "duplicate_at_bank": "critical",  # several payments at the bank for one reference
    "at_bank_dlq_here": "high",  # the bank has the payment; payops parked it for an ops retry
    "status_mismatch": "medium",  # contradicting states whose money agrees (e.g. failed vs returned)
}


class BankDiscrepancy(BaseModel):
    reference: str
    payout_id: str | None = None
    connector: str | None = None
    kind: str
    severity: str
    payops_status: str | None = None
    bank_status: str | None = None
    payops_amount_minor: int | None = None
    bank_amount_minor: int | None = None
    currency: str | None = None
    bank_currency: str | None = None
    message: str
    bank_payment_ids: list[str] = Field(default_factory=list)


class BankComparison(BaseModel):
    """The first look: counts, and the candidate discrepancies a second look must confirm."""

    since: datetime
    until: datetime
    connectors_listed: list[str] = Field(default_factory=list)
    connectors_inquired: list[str] = Field(default_factory=list)
    payouts_checked: int = 0
    bank_payments_checked: int = 0
    agreed: int = 0
    in_flight: int = 0
    in_flight_references: list[str] = Field(default_factory=list)
    candidates: list[BankDiscrepancy] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


class BankReconciliationReport(BaseModel):
    run_id: str
    status: str  # ok | discrepancies | incomplete
    since: datetime
    until: datetime
    connectors_listed: list[str] = Field(default_factory=list)
    connectors_inquired: list[str] = Field(default_factory=list)
    payouts_checked: int = 0
    bank_payments_checked: int = 0
    agreed: int = 0
    in_flight: int = 0
    in_flight_references: list[str] = Field(default_factory=list)
    discrepancies: list[BankDiscrepancy] = Field(default_factory=list)
    healed: int = 0  # candidates the second look found in agreement
    errors: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# --- the two views ------------------------------------------------------------------------------


@dataclass
class PayoutView:
    id: str
    status: str
    amount_minor: int
    currency: str
    connector: str | None


@dataclass
class BankView:
    reference: str
    records: list[BankPaymentRecord] = field(default_factory=list)
    connectors: list[str] = field(default_factory=list)

    def add(self, record: BankPaymentRecord, connector: str) -> None:
        if connector not in self.connectors:
            self.connectors.append(connector)
        if all(r.payment_id != record.payment_id for r in self.records):
            self.records.append(record)
        else:  # the same payment seen through another connector: keep the freshest status
            self.records = [record if r.payment_id == record.payment_id else r for r in self.records]

    @property
    def payment_ids(self) -> list[str]:
        return [r.payment_id for r in self.records]


@dataclass
class Verdict:
    outcome: str  # agreed | in_flight | discrepancy
    kind: str | None = None
    message: str = ""


def classify(payout: PayoutView | None, bank: BankView | None) -> Verdict:
    """What payops's status and the bank's record of one reference say together."""
    record = bank.records[0] if bank and bank.records else None
    if payout is None:
        if record is None:
            return Verdict("agreed")
        return Verdict("discrepancy", "unknown_to_payops",
                       f"the bank has payment {record.payment_id} ({record.status}) for {bank.reference}, "
                       "which is no payout of payops")
    p = payout.status
    if bank is not None and len(bank.records) > 1:
        return Verdict("discrepancy", "duplicate_at_bank",
                       f"the bank has {len(bank.records)} payments for payout {payout.id}: {bank.payment_ids}")
    if record is None:
        if p in CLAIMS_AT_BANK:
            return Verdict("discrepancy", "missing_at_bank",
                           f"payout {payout.id} is {p} in payops but the bank has no payment for it")
        return Verdict("agreed" if p in ENDED_WITHOUT_PAYING else "in_flight")
    b = record.status
    if record.amount_minor is not None and (record.amount_minor, record.currency) != (payout.amount_minor,
                                                                                        payout.currency):
        return Verdict("discrepancy", "amount_mismatch",
                       f"payout {payout.id} is {payout.amount_minor} {payout.currency} in payops, "
                       f"{record.amount_minor} {record.currency} at the bank")
    if p in IN_FLIGHT:
        # payops is on its way (the row says submitting until the bank's answer is recorded)
        return Verdict("in_flight")
    if p == "dlq":
        if b == "failed":
            return Verdict("in_flight")
        return Verdict("discrepancy", "at_bank_dlq_here",
                       f"payout {payout.id} waits in dlq for an ops retry, but the bank has it {b}")
    if p in ENDED_WITHOUT_PAYING:
        if b in ("accepted", "settled"):
            return Verdict("discrepancy", "paid_there_failed_here",
                           f"payout {payout.id} is {p} in payops (hold reversed) but the bank has it {b}")
        if b == "returned":
            return Verdict("discrepancy", "status_mismatch",
                           f"payout {payout.id} is {p} in payops, returned at the bank")
        return Verdict("agreed")
    if p == "settled":
        if b == "settled":
            return Verdict("agreed")
        kind = {"returned": "returned_there_settled_here", "failed": "failed_there_settled_here"}.get(
            b, "status_mismatch")
        return Verdict("discrepancy", kind, f"payout {payout.id} is settled in payops, {b} at the bank")
    if p == "returned":
        if b == "returned":
            return Verdict("agreed")
        kind = "settled_there_returned_here" if b == "settled" else "status_mismatch"
        return Verdict("discrepancy", kind, f"payout {payout.id} is returned in payops, {b} at the bank")
    return Verdict("discrepancy", "status_mismatch", f"payout {payout.id} is {p} in payops, {b} at the bank")


def _discrepancy(verdict: Verdict, reference: str, payout: PayoutView | None, bank: BankView | None) -> BankDiscrepancy:
    record = bank.records[0] if bank and bank.records else None
    connector = (payout.connector if payout and payout.connector else None) or (bank.connectors[0] if bank else None)
    assert verdict.kind is not None
    return BankDiscrepancy(
        reference=reference, payout_id=payout.id if payout else None, connector=connector, kind=verdict.kind,
        severity=KINDS[verdict.kind], payops_status=payout.status if payout else None,
        bank_status=record.status if record else None,
        payops_amount_minor=payout.amount_minor if payout else None,
        bank_amount_minor=record.amount_minor if record else None,
        currency=(payout.currency if payout else None) or (record.currency if record else None),
        bank_currency=record.currency if record else None,
        message=verdict.message, bank_payment_ids=bank.payment_ids if bank else [],
    )


async def _payouts_by_id(session: AsyncSession, ids: Iterable[str]) -> dict[str, PayoutView]:
    wanted, out = list(ids), {}
    for i in range(0, len(wanted), 1000):
        rows = await session.execute(select(
            payouts.c.id, payouts.c.status, payouts.c.amount_minor, payouts.c.currency, payouts.c.connector,
        ).where(payouts.c.id.in_(wanted[i:i + 1000])))
        out.update({r.id: PayoutView(r.id, r.status, r.amount_minor, r.currency, r.connector) for r in rows})
    return out


async def _inquire(connector: BankConnector, reference: str) -> BankPaymentRecord | None:
    """The bank's answer by reference: its record, or None when it has no such payment."""
    try:
        status = await connector.poll_status(reference)
    except PermanentConnectorError as exc:
        if exc.code == "payment_not_found":
            return None
        raise
    return BankPaymentRecord(
        reference=reference, payment_id=status.payment_id, status=status.status,
        failure_code=status.failure_code, return_code=status.return_code,  # no amount: a status says none
    )


# --- the first look -----------------------------------------------------------------------------


async def compare_with_bank(
    sessionmaker: async_sessionmaker[AsyncSession], registry: ConnectorRegistry, *, since: datetime,
    until: datetime | None = None, in_flight_sample: int = 50,
) -> BankComparison:
    until = until or datetime.now(timezone.utc)
    result = BankComparison(since=since, until=until)
    bank: dict[str, BankView] = {}
    unlisted: set[str] = set()
    for connector in registry:
        try:
            records = await connector.list_payments(since)
        except ConnectorError as exc:
            result.errors.append(f"{connector.name}: the payment report failed ({exc}); asked by reference instead")
            records = None
        if records is None:
            unlisted.add(connector.name)
            continue
        result.connectors_listed.append(connector.name)
        for record in records:
            bank.setdefault(record.reference, BankView(record.reference)).add(record, connector.name)

    async with sessionmaker() as session:
        rows = await session.execute(select(
            payouts.c.id, payouts.c.status, payouts.c.amount_minor, payouts.c.currency, payouts.c.connector,
        ).where(payouts.c.created_at >= since))
        ours = {r.id: PayoutView(r.id, r.status, r.amount_minor, r.currency, r.connector) for r in rows}
        ours.update(await _payouts_by_id(session, [ref for ref in bank if ref not in ours]))

    # Payouts whose connector has no report: ask the bank by reference (those that may have reached it).
    for payout in ours.values():
        if payout.connector not in unlisted or payout.status in NEVER_SENT or payout.id in bank:
            continue
        if payout.connector not in registry:
            result.errors.append(f"payout {payout.id}: connector {payout.connector} is not configured here")
            continue
        if payout.connector not in result.connectors_inquired:
            result.connectors_inquired.append(payout.connector)
        try:
            record = await _inquire(registry.get(payout.connector), payout.id)
        except ConnectorError as exc:
            result.errors.append(f"payout {payout.id}: the bank could not be asked ({exc})")
            continue
        if record is not None:
            bank.setdefault(payout.id, BankView(payout.id)).add(record, payout.connector)

    result.payouts_checked = sum(1 for ref in ours)
    result.bank_payments_checked = sum(len(v.records) for v in bank.values())
    for reference in sorted(set(ours) | set(bank)):
        payout, view = ours.get(reference), bank.get(reference)
        verdict = classify(payout, view)
        if verdict.outcome == "agreed":
            result.agreed += 1
        elif verdict.outcome == "in_flight":
            result.in_flight += 1
            if len(result.in_flight_references) < in_flight_sample:
                result.in_flight_references.append(reference)
        else:
            result.candidates.append(_discrepancy(verdict, reference, payout, view))
    return result


# --- the second look ----------------------------------------------------------------------------


async def confirm_discrepancies(
    sessionmaker: async_sessionmaker[AsyncSession], registry: ConnectorRegistry, candidates: list[BankDiscrepancy],
) -> tuple[list[BankDiscrepancy], list[str]]:
    """Read each candidate's payout again and ask the bank by reference: what still disagrees."""
    if not candidates:
        return [], []
    async with sessionmaker() as session:
        ours = await _payouts_by_id(session, [c.reference for c in candidates])
    confirmed, errors = [], []
    for c in candidates:
        payout = ours.get(c.reference)
        names = [n for n in [payout.connector if payout else None, c.connector] if n and n in registry]
        if not names:
            errors.append(f"{c.reference}: no configured connector to ask the bank again")
            confirmed.append(c)  # cannot be healed by a second look
            continue
        try:
            view = BankView(c.reference)
            if c.kind == "duplicate_at_bank":
                view = None  # a status inquiry shows one payment; the report showed several
            else:
                record = await _inquire(registry.get(names[0]), c.reference)
                if record is not None:
                    if record.amount_minor is None and c.kind == "amount_mismatch":  # the report's amount
                        record = record.model_copy(update={"amount_minor": c.bank_amount_minor,
                                                           "currency": c.bank_currency})
                    view.add(record, names[0])
        except ConnectorError as exc:
            errors.append(f"{c.reference}: the bank could not be asked again ({exc})")
            continue
        if view is None:
            if payout is not None:
                c = c.model_copy(update={"payops_status": payout.status})
            confirmed.append(c)
            continue
        verdict = classify(payout, view)
        if verdict.outcome == "discrepancy":
            confirmed.append(_discrepancy(verdict, c.reference, payout, view))
    return confirmed, errors


# --- recording ----------------------------------------------------------------------------------

async def record_bank_reconciliation(
    sessionmaker: async_sessionmaker[AsyncSession], run_id: str, comparison: BankComparison,
    confirmed: list[BankDiscrepancy], confirm_errors: list[str], *, requested_by: str | None,
) -> BankReconciliationReport:
    """One run row, a row per confirmed discrepancy and an alert for each; idempotent on run_id."""
    errors = [*comparison.errors, *confirm_errors]
    status = "discrepancies" if confirmed else ("incomplete" if errors else "ok")
    report = BankReconciliationReport(
        run_id=run_id, status=status, since=comparison.since, until=comparison.until,
        connectors_listed=comparison.connectors_listed, connectors_inquired=comparison.connectors_inquired,
        payouts_checked=comparison.payouts_checked, bank_payments_checked=comparison.bank_payments_checked,
        agreed=comparison.agreed, in_flight=comparison.in_flight,
        in_flight_references=comparison.in_flight_references, discrepancies=confirmed,
        healed=len(comparison.candidates) - len(confirmed), errors=errors,
    )
    summary = report.model_dump(mode="json", include={
        "connectors_listed", "connectors_inquired", "payouts_checked", "bank_payments_checked", "agreed",
        "in_flight", "in_flight_references", "healed"})
    summary["discrepancies"] = len(confirmed)
    async with sessionmaker() as session, session.begin():
        if await session.scalar(select(bank_reconciliation_runs.c.id).where(bank_reconciliation_runs.c.id == run_id)):
            return report  # an activity retried after its commit
        await session.execute(insert(bank_reconciliation_runs).values(
            id=run_id, since=comparison.since, until=comparison.until, status=status, requested_by=requested_by,
            summary=summary, errors=errors))
        if confirmed:
            await session.execute(insert(bank_discrepancies), [{
                "run_id": run_id, "reference": d.reference, "payout_id": d.payout_id, "connector": d.connector,
                "kind": d.kind, "severity": d.severity, "payops_status": d.payops_status,
                "bank_status": d.bank_status, "payops_amount_minor": d.payops_amount_minor,
                "bank_amount_minor": d.bank_amount_minor, "currency": d.currency, "message": d.message,
                "details": {"bank_payment_ids": d.bank_payment_ids, "bank_currency": d.bank_currency},
            } for d in confirmed])
        for d in confirmed:
            await upsert_alert(
                session, rule=ALERT_RULE, severity=d.severity, dedupe_key=f"{ALERT_RULE}:{d.reference}:{d.kind}",
                message=f"payops and the bank disagree ({d.kind}): {d.message}",
                data={"run_id": run_id, **d.model_dump(mode="json")},
            )
    return report


def new_run_id() -> str:
    return f"bankrec_{uuid.uuid4().hex[:20]}"


async def run_bank_reconciliation(
    sessionmaker: async_sessionmaker[AsyncSession], registry: ConnectorRegistry, *, days: float,
    confirm_seconds: float, requested_by: str | None = None,
    sleep: Callable[[float], Awaitable[object]] | None = None,
) -> BankReconciliationReport:
    """The whole run in this process (`payops ledger check --against-bank`); the scheduled
    BankReconciliationWorkflow runs the same steps as activities around a durable timer."""
    since = datetime.now(timezone.utc) - timedelta(days=days)
    comparison = await compare_with_bank(sessionmaker, registry, since=since)
    if comparison.candidates and confirm_seconds > 0:
        await (sleep or asyncio.sleep)(confirm_seconds)
    confirmed, errors = await confirm_discrepancies(sessionmaker, registry, comparison.candidates)
    return await record_bank_reconciliation(sessionmaker, new_run_id(), comparison, confirmed, errors,
                                            requested_by=requested_by)
