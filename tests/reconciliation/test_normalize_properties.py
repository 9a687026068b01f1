"""The provider normaliser as properties (issue 16, item 4): a well-formed record is read
exactly (amount in minor units in every exponent, status, instant, every text kept whole); any
record at all gives a stored-ready transaction or a quarantine entry that can be stored, never an
exception. Deterministic (derandomize=True), at least 200 examples each.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.platform.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR, format_amount
from core.transactions.normalize import (
    NAME_MAX,
    STATUS_MAP,
    NormalizedTransaction,
    Rejected,
    canonical_json,
    content_hash,
    normalize_payshack,
    normalize_vima,
)

PROPERTY = settings(max_examples=300, derandomize=True, deadline=None, database=None)

currencies = st.sampled_from(sorted(CURRENCY_EXPONENTS))
minors = st.one_of(st.integers(1, 10**9), st.integers(1, MAX_AMOUNT_MINOR), st.just(MAX_AMOUNT_MINOR))
# storable text: no NUL, no unpaired surrogates (what PostgreSQL text can hold)
clean_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=40)
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31),
                        timezones=st.just(timezone.utc))
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
# anything a provider might send in a field
anything = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=20), st.text(st.characters(), max_size=5).map(lambda t: t + "\x00"),
    st.sampled_from(["\ud800", "1e999999", "-1.00", "3771,91", "1,500.00", "NaN", "Infinity", "0", "not-a-date",
                     "2026-01-01T00:00:00+03:00", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)
FIELDS = ("operation_id", "operation_update_id", "client_operation_id", "project", "complete_amount",
          "complete_currency", "fee_amount", "current_status", "payer_email", "payer_name", "payer_id", "utr",
          "created_at", "updated_at", "reference_id")


def amount_text(minor: int, currency: str, grouped: bool) -> str:
    text = format_amount(minor, currency)
    if not grouped:
        return text
    whole, dot, fraction = text.partition(".")
    return f"{int(whole):,}{dot}{fraction}"


def spelled(status: str, variant: int) -> str:
    return [status, status.upper(), status.title(), f"  {status} "][variant]


@st.composite
def vima_ops(draw):
    currency = draw(currencies)
    minor = draw(minors)
    fee = draw(st.integers(0, minor))
    status = draw(st.sampled_from(sorted(STATUS_MAP)))
    created = draw(instants)
    updated = created + draw(st.timedeltas(timedelta(0), timedelta(days=30)))
    op = {
        "operation_id": draw(st.one_of(st.integers(1, 2**62), clean_text)),
        "operation_update_id": draw(st.integers(0, MAX_AMOUNT_MINOR)),
        "complete_amount": amount_text(minor, currency, draw(st.booleans())),
        "complete_currency": draw(st.sampled_from([currency, currency.lower()])),
        "fee_amount": amount_text(fee, currency, False) if fee else draw(st.sampled_from([None, "0", 0])),
        "current_status": spelled(status, draw(st.integers(0, 3))),
        "created_at": created.astimezone(draw(offsets)).isoformat(),
        "updated_at": updated.astimezone(draw(offsets)).isoformat(),
        "payer_name": draw(st.one_of(clean_text, st.text(min_size=201, max_size=NAME_MAX).filter(
            lambda t: "\x00" not in t and t.encode("utf-8", "surrogatepass").decode("utf-8", "ignore") == t))),
        "payer_email": draw(clean_text),
        "project": draw(clean_text),
        "payer_id": draw(clean_text),
        "utr": draw(clean_text),
        "client_operation_id": draw(clean_text),
    }
    return op, minor, fee, STATUS_MAP[status], created


@PROPERTY
@given(case=vima_ops())
def test_a_well_formed_vima_record_is_read_exactly(case):
    op, minor, fee, status, created = case
    row = normalize_vima(op)
    assert isinstance(row, NormalizedTransaction), row.reason
    assert (row.amount_minor, row.fee_minor, row.currency) == (minor, fee, op["complete_currency"].upper())
    assert row.status == status and row.original_status == op["current_status"]
    assert row.occurred_at == created and row.occurred_at.utcoffset() == timedelta(0)
    assert row.source_updated_at is not None and row.source_updated_at >= row.occurred_at
    assert row.source_version == op["operation_update_id"]
    assert row.source_id == str(op["operation_id"])
    # every text whole: nothing cut to a column's size
    for field, attr in (("payer_name", "payer_name"), ("payer_email", "payer_email"), ("project", "project"),
                        ("payer_id", "payer_id"), ("utr", "utr"), ("client_operation_id", "client_operation_id")):
        assert getattr(row, attr) == op[field]
    assert json.loads(row.raw_json) == json.loads(json.dumps(op))
    assert row.data_hash == content_hash(canonical_json(op))


@PROPERTY
@given(op=st.dictionaries(st.sampled_from(FIELDS), anything, max_size=len(FIELDS)))
@example(op={"operation_id": 1, "complete_amount": "3771,91", "complete_currency": "EUR", "current_status": "success",
             "created_at": "2026-01-01T00:00:00Z"})
@example(op={"operation_id": 1, "complete_amount": "9223372036854775.808", "complete_currency": "KWD",
             "current_status": "success", "created_at": "2026-01-01T00:00:00Z"})
@example(op={"operation_id": "a\ud800", "complete_amount": "1", "complete_currency": "JPY",
             "current_status": "paid", "created_at": "2026-01-01T00:00:00Z"})
@example(op={"operation_id": 1, "complete_amount": "1", "complete_currency": "JPY", "current_status": "paid",
             "created_at": "0001-01-01T00:00:00+05:00"})
def test_any_vima_record_is_either_storable_or_quarantined_with_a_reason(op):
    row = normalize_vima(op)  # never raises
    if isinstance(row, Rejected):
        assert row.reason
        assert_storable_json(row.raw_json)
        assert row.source_id is None or (len(row.source_id) <= 128 and storable(row.source_id))
        return
    assert 1 <= row.amount_minor <= MAX_AMOUNT_MINOR and 0 <= row.fee_minor <= MAX_AMOUNT_MINOR
    assert row.status in {"success", "failed", "pending", "refunded"}
    assert row.occurred_at.utcoffset() == timedelta(0)
    for value, limit in ((row.source_id, 128), (row.client_operation_id, 128), (row.project, 64),
                         (row.original_status, 64), (row.payer_email, 320), (row.payer_name, NAME_MAX),
                         (row.payer_id, 128), (row.utr, 64)):
        assert value is None or (len(value) <= limit and storable(value))
    assert_storable_json(row.raw_json)


def storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def assert_storable_json(raw: str) -> None:
    """What PostgreSQL jsonb accepts: strict JSON (no NaN), UTF-8, no NUL in any string."""
    def refuse(constant: str):
        raise AssertionError(f"{constant} in JSON")

    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for k, v in value.items():
                yield k
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)

    assert storable(raw)
    assert all(storable(s) for s in strings(json.loads(raw, parse_constant=refuse)))


@PROPERTY
@given(currency=currencies, minor=minors, decimals=st.integers(1, 2))
def test_a_decimal_comma_is_refused_never_read_as_a_bigger_amount(currency, minor, decimals):
    whole = minor // 100 + 1
    text = f"{whole}," + str(minor % 10**decimals).zfill(decimals)
    row = normalize_vima({"operation_id": 1, "complete_amount": text, "complete_currency": currency,
                          "current_status": "success", "created_at": "2026-01-01T00:00:00Z"})
    assert isinstance(row, Rejected) and "decimal point" in row.reason


@PROPERTY
@given(minor=st.integers(1, 10**15), local=st.datetimes(min_value=datetime(2000, 1, 1),
                                                          max_value=datetime(2099, 12, 31)),
       status=st.sampled_from(["SUCCESS", "FAILED", "PENDING", "REFUNDED"]), paid=st.booleans(),
       name=st.one_of(st.none(), clean_text, st.text("ab ", min_size=201, max_size=400)))
def test_a_payshack_row_is_read_exactly_in_portal_time(minor, local, status, paid, name):
    local = local.replace(microsecond=0)
    row = normalize_payshack({
        "transaction_id": "PSK1", "order_id": "91g-1", "amount": amount_text(minor, "INR", True),
        "paid_amount": amount_text(minor, "INR", True) if paid else "0.00", "status": status,
        "date": local.strftime("%Y-%m-%d %H:%M:%S"), "customer_name": name,
    }, project="91game", local_tz="Asia/Kolkata")
    assert isinstance(row, NormalizedTransaction), row.reason
    assert row.amount_minor == minor and row.currency == "INR"
    assert row.occurred_at == local.replace(tzinfo=ZoneInfo("Asia/Kolkata")).astimezone(timezone.utc)
    assert row.payer_name == (name or None)
    assert row.status == STATUS_MAP[status.lower()]
