"""Bank notifications: durable first, then delivered, and reconciled when nobody is listening.

Intake (api/routers/bank_webhooks.py) writes each signed notification to `bank_notifications`
(unique by the bank's event id, whichever connector URL it came to) and only then answers 2xx;
if PostgreSQL cannot take it the answer is 503, so the bank retries. Redis plays no part.

Delivery signals the payout's workflow. When the workflow has ended (a payout payops failed,
cancelled, or settled past its return window) the notification is reconciled against the
payout's stored status instead of being dropped: agreeing notifications are recorded as
`consistent`; a contradicting one (the bank settled a payout payops failed, returned one payops
thinks settled, failed one payops settled) is a `contradiction` with a discrepancy code and a
critical alert, and stays open until ops repair it with `repair()`
(`POST /api/v1/bank-notifications/{id}/repair`), which posts the ledger entries that make payops
agree with the bank and moves the payout to the bank's state.

A notification that could not be delivered (Temporal down, a payout whose workflow has not
started yet) stays undelivered; the `bank-notification-sweeper` Schedule redelivers it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from core.alerts import service as alert_service
from core.ledger import service as ledger
from core.platform.errors import InvalidState, NotFound, ServiceUnavailable
from core.platform.names import payout_workflow_id
from core.payouts.models import BankNotificationSignal, PayoutStatus
from core.payouts.store import get_payout_row, transition
from core.platform.tables import bank_notifications

log = logging.getLogger("payops.bank_notifications")

S = PayoutStatus
ENDED_BADLY = frozenset({S.FAILED, S.CANCELLED, S.REJECTED})

# discrepancy code -> (what the bank says, what payops says, the repair)
DISCREPANCIES: dict[str, dict[str, str]] = {
    "paid_at_bank_failed_here": {
        "summary": "the bank settled a payout payops marked {payout_status}: the beneficiary was paid "
                   "and the merchant refunded",
        "repair": "debit the merchant's available balance by amount + fee (the settlement payops reversed) "
                  "and mark the payout settled; refused while the merchant's available funds are short",
    },
    "returned_at_bank_settled_here": {
        "summary": "the bank returned a payout payops still shows {payout_status}: the merchant was never credited",
        "repair": "post the return (amount back to the merchant's available balance) and mark the payout returned",
    },
    "failed_at_bank_settled_here": {
        "summary": "the bank failed a payout payops marked {payout_status}: the merchant was charged for a "
                   "payment that was never made",
        "repair": "reverse the settlement (amount + fee back to the merchant's available balance) and mark "
                  "the payout failed",
    },
}


def classify(kind: str, payout_status: str) -> tuple[str, str | None]:
    """(outcome, discrepancy) for a notification of `kind` about a payout whose workflow has ended."""
    if kind == "payment.settled":
        if payout_status in (S.SETTLED, S.RETURNED):
            return "consistent", None
        return "contradiction", "paid_at_bank_failed_here"
    if kind == "payment.returned":
        if payout_status == S.SETTLED:
            return "contradiction", "returned_at_bank_settled_here"
        return "consistent", None  # returned, or failed/cancelled: the merchant has its money either way
    if kind == "payment.failed":
        if payout_status in (S.SETTLED, S.RETURNED):
            return "contradiction", "failed_at_bank_settled_here"
        return "consistent", None
    return "consistent", None


@asynccontextmanager
async def _autocommit(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session whose statements each commit by themselves (AUTOCOMMIT: no BEGIN and COMMIT
    round trips), for the writes below that are ONE statement each: such a statement is atomic,
    and durable when it returns, as it was inside its own transaction. Not for several statements
    that must commit together (reconcile, repair)."""
    async with sessionmaker() as session:
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


# --- intake -------------------------------------------------------------------------------------


async def record(sessionmaker: async_sessionmaker[AsyncSession], connector: str, notification) -> tuple[dict, bool]:
    """Make the notification durable. Returns (row, created); created is False for a repeat of an
    event id already stored (from any connector's URL). ServiceUnavailable when PostgreSQL
    cannot take it: the caller answers 503 and the bank retries."""
    payload = notification.model_dump(mode="json")
    try:
        async with _autocommit(sessionmaker) as session:
            row = (await session.execute(
                pg_insert(bank_notifications)
                .values(connector=connector, event_id=notification.event_id, type=notification.type,
                        reference=notification.reference, bank_status=notification.status, payload=payload)
                .on_conflict_do_nothing(index_elements=["event_id"])
                .returning(*bank_notifications.c)
            )).mappings().first()
            if row is not None:
                return dict(row), True
            existing = (await session.execute(
                select(bank_notifications).where(bank_notifications.c.event_id == notification.event_id)
            )).mappings().one()
            return dict(existing), False
    except (SQLAlchemyError, OSError) as exc:
        log.warning("bank notification %s from %s not stored: %s", notification.event_id, connector, exc)
        raise ServiceUnavailable(
            "the notification could not be stored; retry it", extra={"headers": {"Retry-After": "5"}}
        ) from None


# --- delivery -----------------------------------------------------------------------------------


def _signal(row: dict) -> BankNotificationSignal:
    p = row["payload"]
    return BankNotificationSignal(
        event_id=row["event_id"], type=row["type"], status=row["bank_status"],
        bank_payment_id=p.get("payment_id"), failure_code=p.get("failure_code"), return_code=p.get("return_code"),
    )


async def _mark(session: AsyncSession, notification_id: int, **values: Any) -> dict:
    return dict((await session.execute(
        update(bank_notifications).where(bank_notifications.c.id == notification_id)
        .values(delivery_attempts=bank_notifications.c.delivery_attempts + 1, **values)
        .returning(*bank_notifications.c)
    )).mappings().one())


async def deliver(sessionmaker: async_sessionmaker[AsyncSession], temporal: Client | None, row: dict) -> dict:
    """Try once to get a stored notification to its payout. Returns the updated row; an
    undelivered one (delivered_at null) is left for the sweeper. Never raises for a dependency
    that is down: the notification is already durable."""
    if row["delivered_at"] is not None:
        return row
    if temporal is None:
        return await _note_failure(sessionmaker, row, "Temporal is not reachable")
    try:
        await temporal.get_workflow_handle(payout_workflow_id(row["reference"])).signal(
            "bank_notification", _signal(row)
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            return await _note_failure(sessionmaker, row, f"signal failed: {exc.status.name if exc.status else ''} {exc.message}")
        return await reconcile(sessionmaker, row)
    except Exception as exc:  # noqa: BLE001 — a connection error of any kind: the sweeper retries
        return await _note_failure(sessionmaker, row, f"signal failed: {type(exc).__name__}: {exc}")
    try:
        async with _autocommit(sessionmaker) as session:
            return await _mark(session, row["id"], delivered_at=datetime.now(timezone.utc), outcome="signalled",
                               last_error=None)
    except (SQLAlchemyError, OSError) as exc:  # delivered, not marked: a redelivery is deduplicated by the workflow
        log.warning("bank notification %s delivered but not marked: %s", row["event_id"], exc)
        return row


async def _note_failure(sessionmaker: async_sessionmaker[AsyncSession], row: dict, error: str) -> dict:
    log.info("bank notification %s not delivered yet: %s", row["event_id"], error)
    try:
        async with _autocommit(sessionmaker) as session:
            return await _mark(session, row["id"], last_error=error[:2000])
    except (SQLAlchemyError, OSError):
        return row


async def reconcile(sessionmaker: async_sessionmaker[AsyncSession], row: dict) -> dict:
    """The payout's workflow has ended (or never existed): compare the bank's word with the
    payout's stored status, record the outcome, and raise a critical alert on a contradiction."""
    async with sessionmaker() as session, session.begin():
        try:
            payout = await get_payout_row(session, row["reference"])
        except NotFound:
            payout = None
        if payout is None:
            alert = await alert_service.raise_alert(
                session, rule="bank_notification_unknown_payout", severity="high",
                scope=f"reference:{row['reference']}",
                message=f"{row['connector']} sent {row['type']} for {row['reference']}, which payops does not know",
                data={"bank_notification_id": row["id"], "reference": row["reference"], "connector": row["connector"]},
            )
            return await _mark(session, row["id"], delivered_at=datetime.now(timezone.utc), outcome="unknown_payout",
                               discrepancy="unknown_payout", alert_id=alert["id"], last_error=None)
        status = payout["status"]
        if status not in (S.SETTLED, S.RETURNED, *ENDED_BADLY):
            # no workflow yet (its start was lost; the payout sweeper starts it): deliver later
            return await _mark(session, row["id"], payout_status=status,
                               last_error=f"payout {row['reference']} is {status} and its workflow is not running")
        outcome, discrepancy = classify(row["type"], status)
        values: dict[str, Any] = {"delivered_at": datetime.now(timezone.utc), "outcome": outcome,
                                  "payout_status": status, "discrepancy": discrepancy, "last_error": None}
        if discrepancy is not None:
            spec = DISCREPANCIES[discrepancy]
            summary = spec["summary"].format(payout_status=status)
            alert = await alert_service.raise_alert(
                session, rule="bank_notification_contradiction", severity="critical",
                scope=f"payout:{payout['id']}",
                message=f"payout {payout['id']}: {summary}",
                data={"bank_notification_id": row["id"], "payout_id": payout["id"],
                      "merchant_id": payout["merchant_id"], "discrepancy": discrepancy,
                      "bank_says": row["type"], "payops_says": status,
                      "amount_minor": payout["amount_minor"], "currency": payout["currency"],
                      "repair": {"description": spec["repair"],
                                 "endpoint": f"POST /api/v1/bank-notifications/{row['id']}/repair"}},
            )
            values["alert_id"] = alert["id"]
            log.error("bank notification %s contradicts payout %s (%s): alert %s",
                      row["event_id"], payout["id"], discrepancy, alert["id"])
        return await _mark(session, row["id"], **values)


async def redeliver_pending(
    sessionmaker: async_sessionmaker[AsyncSession], temporal: Client, *, older_than_seconds: float, limit: int = 500
) -> dict[str, int]:
    """The sweeper: deliver notifications still undelivered after `older_than_seconds`."""
    async with sessionmaker() as session:
        rows = [dict(r) for r in (await session.execute(
            select(bank_notifications)
            .where(bank_notifications.c.delivered_at.is_(None),
                   bank_notifications.c.received_at < text("now() - make_interval(secs => :age)"))
            .order_by(bank_notifications.c.received_at).limit(limit),
            {"age": older_than_seconds},
        )).mappings()]
    delivered = 0
    for row in rows:
        if (await deliver(sessionmaker, temporal, row))["delivered_at"] is not None:
            delivered += 1
    return {"pending": len(rows), "delivered": delivered}


# --- reads and repair ---------------------------------------------------------------------------


async def list_notifications(
    session: AsyncSession, *, reference: str | None, open_discrepancies: bool, undelivered: bool, limit: int
) -> list[dict]:
    stmt = select(bank_notifications).order_by(bank_notifications.c.id.desc()).limit(limit)
    if reference is not None:
        stmt = stmt.where(bank_notifications.c.reference == reference)
    if open_discrepancies:
        stmt = stmt.where(bank_notifications.c.discrepancy.is_not(None), bank_notifications.c.repaired_at.is_(None))
    if undelivered:
        stmt = stmt.where(bank_notifications.c.delivered_at.is_(None))
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


async def get_notification(session: AsyncSession, notification_id: int, *, for_update: bool = False) -> dict:
    stmt = select(bank_notifications).where(bank_notifications.c.id == notification_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).mappings().first()
    if row is None:
        raise NotFound(f"bank notification {notification_id} not found")
    return dict(row)


def _available(payout: dict, amount: int) -> ledger.Posting:
    return ledger.Posting(account_code=ledger.merchant_available_account(payout["merchant_id"]), kind="liability",
                          currency=payout["currency"], amount_minor=amount)


def _clearing(payout: dict, amount: int) -> ledger.Posting:
    return ledger.Posting(account_code=ledger.bank_clearing_account(payout["connector"] or ""), kind="asset",
                          currency=payout["currency"], amount_minor=amount)


def _fees(payout: dict, amount: int) -> ledger.Posting:
    return ledger.Posting(account_code=ledger.FEES_REVENUE, kind="revenue", currency=payout["currency"],
                          amount_minor=amount)


async def repair(session: AsyncSession, notification_id: int, *, actor: str, reason: str) -> dict:
    """Make payops agree with the bank for one contradicting notification: the ledger entries
    and the payout's status, audited, and the alert resolved. Idempotent; raises InvalidState
    for a notification with nothing to repair, InsufficientFundsError (via the ledger) when the
    merchant cannot cover a settlement payops had reversed."""
    row = await get_notification(session, notification_id, for_update=True)
    if row["repaired_at"] is not None:
        return row
    code = row["discrepancy"]
    if code not in DISCREPANCIES:
        raise InvalidState(f"bank notification {notification_id} has no repairable discrepancy ({code or 'none'})")
    payout = await get_payout_row(session, row["reference"], for_update=True)
    pid, total, amount, fee = payout["id"], payout["amount_minor"] + payout["fee_minor"], payout["amount_minor"], payout["fee_minor"]
    meta = {"bank_notification_id": notification_id, "actor": actor, "reason": reason, "discrepancy": code}
    if code == "paid_at_bank_failed_here":
        if payout["status"] not in ENDED_BADLY:
            raise InvalidState(f"payout {pid} is {payout['status']} now; nothing to repair")
        entries = [_available(payout, total), _clearing(payout, -amount)] + ([_fees(payout, -fee)] if fee else [])
        to_status, event_key = S.SETTLED, f"repair:{notification_id}"
        post = dict(ref=f"repair:settle:{pid}", kind=ledger.KIND_SETTLEMENT, entries=entries,
                    nonnegative=ledger.merchant_available_account(payout["merchant_id"]))
        extra = {"settled_at": datetime.now(timezone.utc), "failure_code": None, "failure_message": None}
    elif code == "returned_at_bank_settled_here":
        if payout["status"] != S.SETTLED:
            raise InvalidState(f"payout {pid} is {payout['status']} now; nothing to repair")
        return_code = row["payload"].get("return_code") or "R00"
        entries = [_clearing(payout, amount), _available(payout, -amount)]
        to_status, event_key = S.RETURNED, f"repair:{notification_id}"
        post = dict(ref=ledger.return_ref(pid), kind=ledger.KIND_RETURN, entries=entries)
        extra = {"failure_code": return_code, "failure_message": "returned by the bank (repaired from its notification)"}
    else:  # failed_at_bank_settled_here
        if payout["status"] not in (S.SETTLED, S.RETURNED):
            raise InvalidState(f"payout {pid} is {payout['status']} now; nothing to repair")
        already_returned = payout["status"] == S.RETURNED
        back = fee if already_returned else total  # a return already gave the amount back
        entries = [_available(payout, -back)] + ([] if already_returned else [_clearing(payout, amount)]) + (
            [_fees(payout, fee)] if fee else [])
        to_status, event_key = S.FAILED, f"repair:{notification_id}"
        post = dict(ref=f"repair:unsettle:{pid}", kind=ledger.KIND_RETURN, entries=entries)
        extra = {"failure_code": row["payload"].get("failure_code") or "bank_failed",
                 "failure_message": "failed by the bank (repaired from its notification)"}
    await transition(session, payout_id=pid, to_status=to_status, event_key=event_key, actor=actor,
                     reason=f"repair of bank notification {notification_id}: {reason}",
                     data={"discrepancy": code, "bank_notification_id": notification_id},
                     extra_columns=extra)
    if row["alert_id"] is not None:
        await alert_service.resolve(session, row["alert_id"], actor=actor, merchant_id=None)
    repair_info = {"to_status": to_status, "journal_ref": post["ref"], "reason": reason}
    updated = dict((await session.execute(
        update(bank_notifications).where(bank_notifications.c.id == notification_id)
        .values(repaired_at=datetime.now(timezone.utc), repaired_by=actor, repair=repair_info)
        .returning(*bank_notifications.c)
    )).mappings().one())
    # the ledger last: its balance rows stay locked only to the commit
    await ledger.post_journal(session, description=f"repair of payout {pid} from bank notification {notification_id}",
                              merchant_id=payout["merchant_id"], payout_id=pid, metadata=meta, **post)
    return updated


def public(row: dict) -> dict:
    """The API's view of a stored notification."""
    out = {k: row[k] for k in ("id", "connector", "event_id", "type", "reference", "bank_status", "received_at",
                               "delivered_at", "delivery_attempts", "last_error", "outcome", "payout_status",
                               "discrepancy", "alert_id", "repaired_at", "repaired_by", "repair")}
    out["payload"] = row["payload"] if isinstance(row["payload"], dict) else json.loads(row["payload"])
    return out
