"""The merchant's settlement panel and withdrawals.

Panel: per currency, the available balance and the held one (the ledger's `get_balances`), the
held split by where its payouts are (`pending`: not at the bank yet; `in_flight`: submitted or
being submitted/retried) from the active holds, and for each rail carrying the currency its next
cutoff and the settlement date a payout made now would get (core/rails/rules.py, the same
calendars and cutoffs routing uses). Every instant is in UTC, like every other timestamp the API
serves; the rail's `timezone` says where its cutoff is local.

Withdraw: an ordinary payout of the merchant's own funds to one of its own usable bank accounts,
created by core/payouts/service.create_payout (same Idempotency-Key semantics, same
`PayoutWorkflow`); refused before anything is created when KYC is not verified, the account is
not usable (cool-off, not verified, superseded), or the available balance cannot pay amount + fee.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from core.ledger import service as ledger
from core.merchants import bank_accounts
from core.merchants.models import KycStatus
from core.merchants.service import get_merchant
from core.payouts import store as payout_store
from core.payouts.request import PayoutCreate
from core.payouts.routing import choose_rail
from core.payouts.service import create_payout
from core.platform.errors import Conflict, Unprocessable, typed
from core.platform.money import format_amount
from core.platform.settings import Settings
from core.rails import store as rail_store
from core.rails.rules import next_cutoff, settlement_target

KycNotVerified = typed(Conflict, "kyc_not_verified", "KYC is not verified")
InsufficientFunds = typed(Conflict, "insufficient_funds", "Insufficient available funds")
CurrencyMismatch = typed(Unprocessable, "currency_mismatch", "Currency does not match the account")

IN_FLIGHT_STATUSES = frozenset({"submitting", "retrying", "submitted"})  # as the dashboards group them


async def settlement_panel(session: AsyncSession, merchant_id: str, now: datetime | None = None) -> dict:
    now = now or datetime.now(timezone.utc)
    merchant = await get_merchant(session, merchant_id)
    balances = {b.currency: b for b in await ledger.get_balances(session, merchant_id)}
    split: dict[str, dict[str, int]] = {}
    for h in await payout_store.active_holds_by_status(session, merchant_id):
        group = "in_flight" if h["status"] in IN_FLIGHT_STATUSES else "pending"
        cur = split.setdefault(h["currency"], {"pending": 0, "in_flight": 0, "pending_payouts": 0,
                                                "in_flight_payouts": 0})
        cur[group] += h["held_minor"]
        cur[f"{group}_payouts"] += h["payouts"]
    accounts = await bank_accounts.list_accounts(session, merchant_id, now)
    currencies = sorted(set(balances) | set(split) | {a["currency"] for a in accounts} | {merchant["default_currency"]})
    rules = [r for r in await rail_store.load_rules(session) if r.enabled]
    calendars = await rail_store.load_calendars(session)
    out = []
    for currency in currencies:
        b = balances.get(currency)
        s = split.get(currency, {})
        available, held = (b.available_minor, b.held_minor) if b else (0, 0)
        rails = []
        for rule in rules:
            if currency not in rule.currencies:
                continue
            calendar = calendars.get(rule.calendar) or calendars["NONE"]
            cutoff = next_cutoff(rule, now, calendar)
            cutoff = cutoff and cutoff.astimezone(timezone.utc)
            target = settlement_target(rule, now, calendar).astimezone(timezone.utc)
            rails.append({"rail": rule.rail, "methods": rule.methods, "next_cutoff_at": cutoff,
                          "next_settlement_at": target, "calendar": rule.calendar, "timezone": rule.timezone,
                          "continuous": cutoff is None})
        rails.sort(key=lambda r: (r["next_settlement_at"], r["rail"]))
        out.append({
            "currency": currency,
            "available_minor": available, "available": format_amount(available, currency),
            "held_minor": held, "held": format_amount(held, currency),
            "pending_minor": s.get("pending", 0), "pending": format_amount(s.get("pending", 0), currency),
            "in_flight_minor": s.get("in_flight", 0), "in_flight": format_amount(s.get("in_flight", 0), currency),
            "pending_payouts": s.get("pending_payouts", 0), "in_flight_payouts": s.get("in_flight_payouts", 0),
            "next_settlement_at": rails[0]["next_settlement_at"] if rails else None,
            "rails": rails,
        })
    return {"merchant_id": merchant_id, "computed_at": now, "kyc_status": merchant["kyc_status"],
            "can_withdraw": merchant["kyc_status"] == KycStatus.VERIFIED, "currencies": out, "bank_accounts": accounts}


def withdrawal_request(account: dict, details: dict, amount_minor: int, currency: str, priority: str) -> dict:
    """The payout request a withdrawal makes, exactly as POST /api/v1/payouts would take it."""
    try:
        body = PayoutCreate.model_validate({
            "currency": currency, "amount": format_amount(amount_minor, currency), "method": account["rail"],
            "priority": priority, "beneficiary": {**details, "type": account["rail"]},
            "description": f"withdrawal to bank account {account['id']}",
            "metadata": {"kind": "withdrawal", "bank_account_id": account["id"]},
        })
    except ValueError as exc:
        raise Unprocessable(f"the withdrawal is not a valid payout: {exc}") from None
    return body.model_dump(mode="json", exclude={"merchant_id"})


async def withdraw(session: AsyncSession, temporal: Client | None, settings: Settings, *, merchant_id: str,
                   actor: str, idempotency_key: str, account_id: str, amount_minor: int, currency: str,
                   priority: str = "standard", now: datetime | None = None) -> tuple[int, dict]:
    """Returns (http status, the payout): 201 new, 200 a replay of the same key and body."""
    now = now or datetime.now(timezone.utc)
    merchant = await get_merchant(session, merchant_id)
    account = await bank_accounts.get_account(session, merchant_id, account_id, now)  # NotFound
    if currency != account["currency"]:
        raise CurrencyMismatch(f"bank account {account_id} is a {account['currency']} account, not {currency}")
    if await payout_store.payout_id_for_key(session, merchant_id, idempotency_key) is not None:
        # a replay: the key's payout answers (or the key is refused as reused), whatever changed since
        details = bank_accounts.decrypt_details(settings, await bank_accounts.account_row(session, account_id))
        request = withdrawal_request(account, details, amount_minor, currency, priority)
        return await create_payout(session, temporal, settings, merchant_id=merchant_id, actor=actor,
                                   idempotency_key=idempotency_key, request=request)
    if merchant["kyc_status"] != KycStatus.VERIFIED:
        raise KycNotVerified(
            f"merchant {merchant_id}'s KYC is {merchant['kyc_status']}, not verified: withdrawals are allowed "
            "only once ops have verified it", extra={"kyc_status": merchant["kyc_status"]})
    account, details = await bank_accounts.usable_account(session, settings, merchant_id, account_id, now)
    request = withdrawal_request(account, details, amount_minor, currency, priority)
    rail = choose_rail(account["rail"], currency, priority)
    rule = next((r for r in await rail_store.load_rules(session) if r.rail == rail), None)
    fee = rail_store.rule_fee(rail, amount_minor, rule.fee_fixed_minor if rule else None,
                              rule.fee_bps if rule else None)  # the fee create_payout will charge
    balances = {b.currency: b for b in await ledger.get_balances(session, merchant_id)}
    available = balances[currency].available_minor if currency in balances else 0
    if available < amount_minor + fee:
        raise InsufficientFunds(
            f"available {format_amount(available, currency)} {currency} cannot pay "
            f"{format_amount(amount_minor, currency)} + fee {format_amount(fee, currency)}",
            extra={"available_minor": available, "amount_minor": amount_minor, "fee_minor": fee})
    return await create_payout(session, temporal, settings, merchant_id=merchant_id, actor=actor,
                               idempotency_key=idempotency_key, request=request)
