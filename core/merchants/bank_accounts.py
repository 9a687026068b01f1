"""A merchant's own payout bank accounts: registration with checks per rail, the cool-off of a
new or changed account, ops review (APPROVE_BANK_ACCOUNT), and whether a withdrawal may go to one.

Checks per rail reuse the payout beneficiary validation (core/payouts/request.py), so an account
that registers is an account a payout accepts: SEPA an IBAN (mod-97 checksum, schwifty) and BIC in
the SEPA scheme; ACH a 9-digit routing number passing the ABA checksum and a 4-17 digit account;
Faster Payments a 6-digit sort code and 8-digit account; Mobile Money an E.164 phone and operator;
Wire a BIC and an IBAN or account number. The currency must be one the rail carries.

Activation (PAYOPS_BANK_ACCOUNT_ACTIVATION):
- `cool_off_or_approval` (default): an account that passes its checks is `verified` with
  `effective_at` = now + PAYOPS_BANK_ACCOUNT_COOL_OFF_HOURS; an approved APPROVE_BANK_ACCOUNT
  brings `effective_at` forward to its approval. The first account of a merchant cools off too:
  whoever holds a merchant_admin token could otherwise pay the balance out at once.
- `approval_only`: the account is `pending_verification` until an APPROVE_BANK_ACCOUNT approves it.

A change of account is a new account of the same rail and currency: the one it replaces stays
usable until the new one is effective; from then on the replaced one is `superseded` (refused).
Account details are encrypted at rest (FieldCipher, like a payout's beneficiary); reads show the
masked copy. Every registration and review is in the merchant's audit trail.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from core.merchants import store
from core.merchants.models import BankAccountStatus
from core.merchants.service import get_merchant
from core.payouts.request import Beneficiary
from core.payouts.routing import METHOD_CURRENCIES
from core.payouts.service import mask_beneficiary
from core.platform.crypto import FieldCipher
from core.platform.errors import Conflict, InvalidState, NotFound, Unprocessable, typed
from core.platform.settings import Settings

BankAccountInvalid = typed(Unprocessable, "bank_account_invalid", "The bank account failed its checks")
BankAccountCoolingOff = typed(Conflict, "bank_account_cooling_off", "The bank account is in its cool-off")
BankAccountNotVerified = typed(Conflict, "bank_account_not_verified", "The bank account is not verified")
BankAccountSuperseded = typed(Conflict, "bank_account_superseded", "The bank account was replaced")

_BENEFICIARY = TypeAdapter(Beneficiary)

# what passing validation proved, per rail (recorded on the account)
CHECKS = {
    "sepa": ["iban_mod97_checksum", "bic_format", "iban_country_in_sepa", "bic_country_matches_iban"],
    "ach": ["aba_routing_checksum", "account_number_format"],
    "wire": ["bic_format", "iban_mod97_checksum_or_account_number"],
    "faster_payments": ["sort_code_format", "account_number_format"],
    "mobile_money": ["e164_phone", "operator_known"],
}


@lru_cache(maxsize=4)
def _cipher(keys_spec: str) -> FieldCipher:
    return FieldCipher(keys_spec)


def validate_account(rail: str, currency: str, holder_name: str, details: dict) -> dict:
    """The account as a payout beneficiary (normalised: IBAN compact, BIC upper case, ...), or
    BankAccountInvalid naming each failing field. Pure: no I/O."""
    allowed = METHOD_CURRENCIES.get(rail)
    if allowed is None:
        raise BankAccountInvalid(f"unknown rail {rail!r}; one of {', '.join(sorted(METHOD_CURRENCIES))}")
    if currency not in allowed:
        raise BankAccountInvalid(f"rail {rail} does not carry {currency}; it carries {', '.join(sorted(allowed))}")
    raw = {k: v for k, v in details.items() if k not in ("type", "name")}
    try:
        beneficiary = _BENEFICIARY.validate_python({**raw, "type": rail, "name": holder_name})
    except ValidationError as exc:
        errors = [{"loc": ["body", "details", *[str(x) for x in e["loc"][1:]]], "msg": e["msg"], "type": e["type"]}
                  for e in exc.errors()]
        first = errors[0]
        where = ".".join(first["loc"][2:]) or "details"
        raise BankAccountInvalid(f"{where}: {first['msg']}", extra={"errors": errors}) from None
    return beneficiary.model_dump(mode="json", exclude_none=True)


def account_view(row: dict, now: datetime | None = None, *, superseded: bool = False) -> dict:
    now = now or datetime.now(timezone.utc)
    effective = row["effective_at"]
    usable = (row["status"] == BankAccountStatus.VERIFIED and effective is not None and effective <= now
              and not superseded)
    return {
        "id": row["id"],
        "merchant_id": row["merchant_id"],
        "rail": row["rail"],
        "currency": row["currency"],
        "details": row["details_masked"],
        "checks": row["checks"],
        "status": row["status"],
        "effective_at": effective,
        "cooling_off": row["status"] == BankAccountStatus.VERIFIED and (effective is None or effective > now),
        "superseded": superseded,
        "usable": usable,
        "replaces_id": row["replaces_id"],
        "verified_at": row["verified_at"],
        "reviewed_by": row["reviewed_by"],
        "review_reason": row["review_reason"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def superseded_ids(rows: list[dict], now: datetime) -> set[str]:
    """Accounts replaced by a later account of the same rail and currency that is effective now."""
    out: set[str] = set()
    latest_effective: dict[tuple[str, str], datetime] = {}
    for r in rows:
        if r["status"] == BankAccountStatus.VERIFIED and r["effective_at"] is not None and r["effective_at"] <= now:
            key = (r["rail"], r["currency"])
            if key not in latest_effective or r["created_at"] > latest_effective[key]:
                latest_effective[key] = r["created_at"]
    for r in rows:
        newest = latest_effective.get((r["rail"], r["currency"]))
        if newest is not None and r["created_at"] < newest:
            out.add(r["id"])
    return out


async def list_accounts(session: AsyncSession, merchant_id: str, now: datetime | None = None) -> list[dict]:
    await get_merchant(session, merchant_id)
    now = now or datetime.now(timezone.utc)
    rows = await store.list_bank_accounts(session, merchant_id)
    gone = superseded_ids(rows, now)
    return [account_view(r, now, superseded=r["id"] in gone) for r in reversed(rows)]


async def get_account(session: AsyncSession, merchant_id: str, account_id: str, now: datetime | None = None) -> dict:
    """One of the merchant's accounts (another merchant's is simply not found)."""
    now = now or datetime.now(timezone.utc)
    row = await store.get_bank_account(session, account_id)
    if row is None or row["merchant_id"] != merchant_id:
        raise NotFound(f"bank account {account_id} not found")
    same = await store.list_bank_accounts(session, merchant_id, rail=row["rail"], currency=row["currency"])
    return account_view(row, now, superseded=account_id in superseded_ids(same, now))


async def register_account(session: AsyncSession, settings: Settings, merchant_id: str, *, actor: str, rail: str,
                           currency: str, details: dict, holder_name: str | None = None,
                           now: datetime | None = None) -> dict:
    now = now or datetime.now(timezone.utc)
    merchant = await store.lock_merchant(session, merchant_id)  # NotFound; serialises a merchant's changes
    holder = holder_name or details.get("name") or merchant["company_name"] or merchant["name"]
    beneficiary = validate_account(rail, currency, holder, details)
    earlier = [r for r in await store.list_bank_accounts(session, merchant_id, rail=rail, currency=currency)
               if r["status"] != BankAccountStatus.REJECTED]
    replaces = earlier[-1]["id"] if earlier else None
    if settings.bank_account_activation == "approval_only":
        status, effective_at = BankAccountStatus.PENDING_VERIFICATION, None
    else:
        status, effective_at = BankAccountStatus.VERIFIED, now + timedelta(hours=settings.bank_account_cool_off_hours)
    row = await store.insert_bank_account(
        session, id=f"ba_{uuid.uuid4().hex}", merchant_id=merchant_id, rail=rail, currency=currency,
        details_encrypted=_cipher(settings.codec_keys).encrypt_json(beneficiary),
        details_masked=mask_beneficiary(beneficiary), checks=CHECKS[rail], status=status.value,
        effective_at=effective_at, replaces_id=replaces,
        verified_at=now if status == BankAccountStatus.VERIFIED else None, created_by=actor,
    )
    await store.append_audit(session, merchant_id, actor=actor,
                             event="bank_account_changed" if replaces else "bank_account_registered",
                             data={"account_id": row["id"], "rail": rail, "currency": currency,
                                   "details": row["details_masked"], "status": status.value,
                                   "effective_at": effective_at.isoformat() if effective_at else None,
                                   "replaces_id": replaces, "checks": CHECKS[rail]})
    return account_view(row, now)


async def review_account(session: AsyncSession, *, merchant_id: str, account_id: str, approve: bool, actor: str,
                         reason: str, action_id: str | None = None, now: datetime | None = None) -> dict:
    """An ops decision on an account (APPROVE_BANK_ACCOUNT's effect): approve makes it verified
    and effective now (ends its cool-off); reject makes it rejected. Idempotent."""
    now = now or datetime.now(timezone.utc)
    row = await store.get_bank_account(session, account_id, for_update=True)
    if row is None or row["merchant_id"] != merchant_id:
        raise NotFound(f"bank account {account_id} of merchant {merchant_id} not found")
    if approve:
        if row["status"] == BankAccountStatus.REJECTED:
            raise InvalidState(f"bank account {account_id} was rejected: register the account again")
        effective = row["effective_at"] if row["effective_at"] is not None and row["effective_at"] <= now else now
        changed = await store.review_bank_account(session, account_id, status=BankAccountStatus.VERIFIED.value,
                                                  effective_at=effective, verified=True, reviewed_by=actor,
                                                  reason=reason)
    else:
        changed = await store.review_bank_account(session, account_id, status=BankAccountStatus.REJECTED.value,
                                                  effective_at=None, verified=False, reviewed_by=actor, reason=reason)
    if (row["status"], row["effective_at"]) != (changed["status"], changed["effective_at"]):
        await store.append_audit(session, merchant_id, actor=actor,
                                 event="bank_account_approved" if approve else "bank_account_rejected",
                                 data={"account_id": account_id, "reason": reason, "action_id": action_id,
                                       "from_status": row["status"], "to_status": changed["status"],
                                       "effective_at": changed["effective_at"].isoformat()
                                       if changed["effective_at"] else None})
    return account_view(changed, now)


async def usable_account(session: AsyncSession, settings: Settings, merchant_id: str, account_id: str,
                         now: datetime | None = None) -> tuple[dict, dict]:
    """(the account's view, its details in clear) for a withdrawal, or the problem saying why not."""
    now = now or datetime.now(timezone.utc)
    view = await get_account(session, merchant_id, account_id, now)
    if view["status"] == BankAccountStatus.REJECTED:
        raise BankAccountNotVerified(f"bank account {account_id} was rejected by ops: {view['review_reason']}",
                                     extra={"account_status": view["status"]})
    if view["status"] != BankAccountStatus.VERIFIED:
        raise BankAccountNotVerified(f"bank account {account_id} is {view['status']}: it waits for an ops approval",
                                     extra={"account_status": view["status"]})
    if view["cooling_off"]:
        effective = view["effective_at"]
        raise BankAccountCoolingOff(
            f"bank account {account_id} is in its cool-off until {effective.isoformat()}: a new or changed "
            "account takes effect only then (or sooner with an ops approval)",
            extra={"effective_at": effective.isoformat(), "account_id": account_id})
    if view["superseded"]:
        raise BankAccountSuperseded(f"bank account {account_id} was replaced by a newer {view['rail']} "
                                    f"{view['currency']} account that is now in effect")
    return view, decrypt_details(settings, await account_row(session, account_id))


async def account_row(session: AsyncSession, account_id: str) -> dict:
    row = await store.get_bank_account(session, account_id)
    if row is None:
        raise NotFound(f"bank account {account_id} not found")
    return row


def decrypt_details(settings: Settings, row: dict) -> dict:
    return _cipher(settings.codec_keys).decrypt_json(row["details_encrypted"])
