"""Provider records → the unified transaction: minor units, a unified status, UTC timestamps.

A record that cannot be money or cannot be placed in time is not guessed at: it becomes a
`Rejected` with the reason, which the sync quarantines and counts, and the sync goes on. So does
a record that could not be stored as it is: a NUL character or an unpaired surrogate anywhere in
it, an amount beyond int64, or a text longer than its column (nothing is silently truncated).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from core.platform.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR
from core.transactions.countries import payer_country

# Longest text kept per field (the columns' sizes); a longer value is quarantined, not cut.
NAME_MAX = 1000  # payer names are stored whole (text column since migration 0013)
_THOUSANDS_RE = re.compile(r"^[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?$")

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
    # the provider's version of the record (Vima: operation_update_id); an older one never
    # replaces a newer one
    source_version: int | None = None
    # ISO 3166-1 alpha-2 (Vima's payer_country); an invalid value is stored as None and flagged
    payer_country: str | None = None
    payer_country_invalid: bool = False


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
    return hashlib.sha256(raw_json.encode("utf-8", "surrogatepass")).hexdigest()


def _unstorable(value: str) -> str | None:
    if "\x00" in value:
        return "a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "an unpaired surrogate"
    return None


def check_storable(record: Any, path: str = "") -> None:
    """PostgreSQL text and jsonb cannot hold NUL characters or unpaired surrogates, nor jsonb a
    NaN or an infinity: a record that has one anywhere (keys included) is refused with the
    field's path."""
    if isinstance(record, str):
        if (what := _unstorable(record)) is not None:
            raise InvalidRecord(f"{path or 'value'} contains {what}")
    elif isinstance(record, float):
        if record != record or record in (float("inf"), float("-inf")):  # JSON (jsonb) has no NaN
            raise InvalidRecord(f"{path or 'value'} is not a finite number")
    elif isinstance(record, dict):
        for key, value in record.items():
            name = f"{path}.{key}" if path else str(key)
            if (what := _unstorable(str(key))) is not None:
                raise InvalidRecord(f"a field name contains {what}")
            check_storable(value, name)
    elif isinstance(record, (list, tuple)):
        for i, value in enumerate(record):
            check_storable(value, f"{path}[{i}]")


def _storable_copy(value: Any) -> Any:
    """The record with NUL characters and unpaired surrogates made visible (\\u0000, U+FFFD),
    so a quarantined record can be kept in jsonb with its defect readable."""
    if isinstance(value, str):
        if _unstorable(value) is None:
            return value
        return value.replace("\x00", "\\u0000").encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    if isinstance(value, dict):
        return {_storable_copy(str(k)): _storable_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable_copy(v) for v in value]
    return value


def rejected_from(row: NormalizedTransaction, reason: str) -> Rejected:
    """A normalized record the database refused after all, as a quarantine entry."""
    return _rejected(row.source, row.source_id, reason, json.loads(row.raw_json), row.data_hash)


def _rejected(source: str, source_id: str | None, reason: str, record: dict[str, Any], data_hash: str) -> Rejected:
    label = None if source_id is None else _storable_copy(source_id)[:128]
    return Rejected(source=source, source_id=label, reason=reason, raw_json=canonical_json(_storable_copy(record)),
                    data_hash=data_hash)


def to_minor(value: Any, currency: str, *, field: str = "amount", allow_zero: bool = False) -> int:
    if currency not in CURRENCY_EXPONENTS:
        raise InvalidRecord(f"unsupported currency {currency!r}")
    if value is None or isinstance(value, bool):
        raise InvalidRecord(f"{field} is missing")
    text = str(value).strip().lstrip("₹$€").strip()
    if "," in text:
        # thousands separators only ("1,500.00"); a decimal comma ("3771,91") is refused, never
        # read as 100 times the amount
        if not _THOUSANDS_RE.match(text):
            raise InvalidRecord(f"{field} {value!r} is not a decimal number with a '.' decimal point")
        text = text.replace(",", "")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise InvalidRecord(f"{field} {value!r} is not a number") from None
    if not amount.is_finite():
        raise InvalidRecord(f"{field} {value!r} is not a number")
    exp = CURRENCY_EXPONENTS[currency]
    if amount.adjusted() > 18:  # beyond int64 whatever the exponent (and no huge int() below)
        raise InvalidRecord(f"{field} {value!r} is too large")
    scaled = amount.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise InvalidRecord(f"{field} {value!r} has more than {exp} decimal places for {currency}")
    minor = int(scaled)
    if minor > MAX_AMOUNT_MINOR:
        raise InvalidRecord(f"{field} {value!r} is too large")
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
    try:
        return ts.astimezone(timezone.utc)
    except OverflowError:  # year 1 or 9999 pushed past the calendar by its offset
        raise InvalidRecord(f"{field} {value!r} is out of range") from None


def unified_status(original: Any) -> str:
    status = STATUS_MAP.get(str(original or "").strip().lower())
    if status is None:
        raise InvalidRecord(f"unknown status {original!r}")
    return status


def _text(value: Any, limit: int, field: str = "value") -> str | None:
    """The text as it is, or the record is refused: never cut to fit."""
    if value is None or value == "":
        return None
    text = str(value)
    if len(text) > limit:
        raise InvalidRecord(f"{field} is {len(text)} characters long; at most {limit} can be stored")
    return text


def _version(value: Any, field: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidRecord(f"{field} {value!r} is not an integer")
    try:
        version = int(str(value).strip())
    except ValueError:
        raise InvalidRecord(f"{field} {value!r} is not an integer") from None
    if not 0 <= version <= MAX_AMOUNT_MINOR:
        raise InvalidRecord(f"{field} {value!r} is out of range")
    return version


def _source_id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def normalize_vima(op: dict[str, Any], *, source: str = "vima") -> NormalizedTransaction | Rejected:
    raw_json = canonical_json(op)
    data_hash = content_hash(raw_json)
    source_id = _source_id(op.get("operation_id"))
    try:
        check_storable(op)
        if source_id is None:
            raise InvalidRecord("operation_id is missing")
        _text(source_id, 128, "operation_id")
        currency = str(op.get("complete_currency") or "").upper()
        amount = to_minor(op.get("complete_amount"), currency, field="complete_amount")
        fee = to_minor(op.get("fee_amount") or 0, currency, field="fee_amount", allow_zero=True)
        country, country_invalid = payer_country(op.get("payer_country"))
        return NormalizedTransaction(
            source=source,
            source_id=source_id,
            client_operation_id=_text(op.get("client_operation_id"), 128, "client_operation_id"),
            merchant_id=None,
            project=_text(op.get("project"), 64, "project"),
            amount_minor=amount,
            currency=currency,
            fee_minor=fee,
            status=unified_status(op.get("current_status")),
            original_status=_text(op.get("current_status"), 64, "current_status"),
            payer_email=_text(op.get("payer_email"), 320, "payer_email"),
            payer_name=_text(op.get("payer_name"), NAME_MAX, "payer_name"),
            payer_id=_text(op.get("payer_id"), 128, "payer_id"),
            utr=_text(op.get("utr") or op.get("rrn"), 64, "utr"),
            occurred_at=to_utc(op.get("created_at"), field="created_at"),
            source_updated_at=to_utc(op["updated_at"], field="updated_at") if op.get("updated_at") else None,
            raw_json=raw_json,
            data_hash=data_hash,
            source_version=_version(op.get("operation_update_id"), "operation_update_id"),
            payer_country=country,
            payer_country_invalid=country_invalid,
        )
    except InvalidRecord as exc:
        return _rejected(source, source_id, str(exc), op, data_hash)


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
    source_id = _source_id(row.get("transaction_id"))
    tz = ZoneInfo(local_tz) if isinstance(local_tz, str) else local_tz
    try:
        check_storable(row)
        if source_id is None:
            raise InvalidRecord("transaction_id is missing")
        _text(source_id, 128, "transaction_id")
        currency = str(row.get("currency") or "INR").upper()
        paid = row.get("paid_amount")
        paid_minor = to_minor(paid, currency, field="paid_amount", allow_zero=True) if paid not in (None, "") else 0
        amount = paid_minor or to_minor(row.get("amount"), currency, field="amount")
        return NormalizedTransaction(
            source=source,
            source_id=source_id,
            client_operation_id=_text(row.get("order_id"), 128, "order_id"),
            merchant_id=None,
            project=project,
            amount_minor=amount,
            currency=currency,
            fee_minor=0,
            status=unified_status(row.get("status")),
            original_status=_text(row.get("status"), 64, "status"),
            payer_email=_text(row.get("customer_email"), 320, "customer_email"),
            payer_name=_text(row.get("customer_name"), NAME_MAX, "customer_name"),
            payer_id=_text(row.get("customer_vpa"), 128, "customer_vpa"),
            utr=_text(row.get("utr"), 64, "utr"),
            occurred_at=to_utc(row.get("date"), field="date", assume=tz),
            source_updated_at=None,
            raw_json=raw_json,
            data_hash=data_hash,
        )
    except InvalidRecord as exc:
        return _rejected(source, source_id, str(exc), row, data_hash)
