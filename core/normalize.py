"""Provider records → the unified transaction: minor units, a unified status, UTC timestamps.

A record that cannot be money or cannot be placed in time is not guessed at: it becomes a
`Rejected` with the reason, which the sync quarantines and counts, and the sync goes on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from core.money import CURRENCY_EXPONENTS

# Provider status spellings → the unified status. Anything else is quarantined, not guessed.
STATUS_MAP: dict[str, str] = {
    **dict.fromkeys(("success", "successful", "succeeded", "completed", "complete", "paid", "approved"), "success"),
    **dict.fromkeys(("fail", "failed", "failure", "declined", "rejected", "error", "expired", "cancelled",
                     "canceled"), "failed"),
    **dict.fromkeys(("pending", "processing", "in_progress", "new", "created", "initiated", "awaiting"), "pending"),
    **dict.fromkeys(("refund", "refunded", "chargeback", "reversed", "returned"), "refunded"),
}


@dataclass(slots=True)
class NormalizedTransaction:
    source: str
    source_id: str
    client_operation_id: str | None
    merchant_id: str | None
    project: str | None
    amount_minor: int
    currency: str
    fee_minor: int
    status: str
    original_status: str | None
    payer_email: str | None
    payer_name: str | None
    payer_id: str | None
    utr: str | None
    occurred_at: datetime
    source_updated_at: datetime | None
    raw_json: str
    data_hash: str


@dataclass(slots=True)
class Rejected:
    source: str
    source_id: str | None
    reason: str
    raw_json: str
    data_hash: str


class InvalidRecord(ValueError):
    pass


def canonical_json(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(raw_json: str) -> str:
    return hashlib.sha256(raw_json.encode()).hexdigest()


def to_minor(value: Any, currency: str, *, field: str = "amount", allow_zero: bool = False) -> int:
    if currency not in CURRENCY_EXPONENTS:
        raise InvalidRecord(f"unsupported currency {currency!r}")
    if value is None or isinstance(value, bool):
        raise InvalidRecord(f"{field} is missing")
    text = str(value).strip().replace(",", "").lstrip("₹$€").strip()
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise InvalidRecord(f"{field} {value!r} is not a number") from None
    if not amount.is_finite():
        raise InvalidRecord(f"{field} {value!r} is not a number")
    exp = CURRENCY_EXPONENTS[currency]
    scaled = amount.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise InvalidRecord(f"{field} {value!r} has more than {exp} decimal places for {currency}")
    minor = int(scaled)
    if minor < 0 or (minor == 0 and not allow_zero):
        raise InvalidRecord(f"{field} {value!r} must be positive")
    return minor


def to_utc(value: Any, *, field: str, assume: tzinfo = timezone.utc) -> datetime:
    if not value:
        raise InvalidRecord(f"{field} is missing")
    text = str(value).strip()
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            ts = datetime.strptime(text, "%d-%m-%Y %H:%M:%S")
        except ValueError:
            raise InvalidRecord(f"{field} {value!r} is not a timestamp") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=assume)
    return ts.astimezone(timezone.utc)


def unified_status(original: Any) -> str:
    status = STATUS_MAP.get(str(original or "").strip().lower())
    if status is None:
        raise InvalidRecord(f"unknown status {original!r}")
    return status


def _text(value: Any, limit: int) -> str | None:
    if value is None or value == "":
        return None
    return str(value)[:limit]


def normalize_vima(op: dict[str, Any], *, source: str = "vima") -> NormalizedTransaction | Rejected:
    raw_json = canonical_json(op)
    data_hash = content_hash(raw_json)
    source_id = _text(op.get("operation_id"), 128)
    try:
        if source_id is None:
            raise InvalidRecord("operation_id is missing")
        currency = str(op.get("complete_currency") or "").upper()
        amount = to_minor(op.get("complete_amount"), currency, field="complete_amount")
        fee = to_minor(op.get("fee_amount") or 0, currency, field="fee_amount", allow_zero=True)
        return NormalizedTransaction(
            source=source,
            source_id=source_id,
            client_operation_id=_text(op.get("client_operation_id"), 128),
            merchant_id=None,
            project=_text(op.get("project"), 64),
            amount_minor=amount,
            currency=currency,
            fee_minor=fee,
            status=unified_status(op.get("current_status")),
            original_status=_text(op.get("current_status"), 64),
            payer_email=_text(op.get("payer_email"), 320),
            payer_name=_text(op.get("payer_name"), 200),
            payer_id=_text(op.get("payer_id"), 128),
            utr=_text(op.get("utr") or op.get("rrn"), 64),
            occurred_at=to_utc(op.get("created_at"), field="created_at"),
            source_updated_at=to_utc(op["updated_at"], field="updated_at") if op.get("updated_at") else None,
            raw_json=raw_json,
            data_hash=data_hash,
        )
    except InvalidRecord as exc:
        return Rejected(source=source, source_id=source_id, reason=str(exc), raw_json=raw_json, data_hash=data_hash)


def normalize_payshack(
    row: dict[str, Any], *, project: str | None, local_tz: str | tzinfo = "Asia/Kolkata", source: str = "payshack",
) -> NormalizedTransaction | Rejected:
    """A PayShack row: Order ID (= Vima's client_operation_id), Transaction ID, UTR, Amount,
    Paid Amount, Status, Date (portal-local time, no offset). INR only.

    The amount is what was paid when the portal reports a paid amount, else the order amount:
    that is the money that moved, and what reconciliation compares against Vima's complete_amount.
    """
    raw_json = canonical_json(row)
    data_hash = content_hash(raw_json)
    source_id = _text(row.get("transaction_id"), 128)
    tz = ZoneInfo(local_tz) if isinstance(local_tz, str) else local_tz
    try:
        if source_id is None:
            raise InvalidRecord("transaction_id is missing")
        currency = str(row.get("currency") or "INR").upper()
        paid = row.get("paid_amount")
        paid_minor = to_minor(paid, currency, field="paid_amount", allow_zero=True) if paid not in (None, "") else 0
        amount = paid_minor or to_minor(row.get("amount"), currency, field="amount")
        return NormalizedTransaction(
            source=source,
            source_id=source_id,
            client_operation_id=_text(row.get("order_id"), 128),
            merchant_id=None,
            project=project,
            amount_minor=amount,
            currency=currency,
            fee_minor=0,
            status=unified_status(row.get("status")),
            original_status=_text(row.get("status"), 64),
            payer_email=_text(row.get("customer_email"), 320),
            payer_name=_text(row.get("customer_name"), 200),
            payer_id=_text(row.get("customer_vpa"), 128),
            utr=_text(row.get("utr"), 64),
            occurred_at=to_utc(row.get("date"), field="date", assume=tz),
            source_updated_at=None,
            raw_json=raw_json,
            data_hash=data_hash,
        )
    except InvalidRecord as exc:
        return Rejected(source=source, source_id=source_id, reason=str(exc), raw_json=raw_json, data_hash=data_hash)
