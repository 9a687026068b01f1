"""Money parsing and formatting, as properties over every currency exponent (issue 16, item 4).

Deterministic (derandomize=True) and at least 200 examples each. What they found in
core/platform/money.py: a trailing newline was accepted ('100\\n' parsed, `$` matches before it), the
largest int64 amount of a 0-exponent currency could be formatted but not parsed back, and a
3-exponent amount above int64 was parsed into a number no column can hold.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.platform.money import (CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR, MAX_PAYMENT_MINOR, Money, MoneyError,
                                 format_amount, parse_amount)

PROPERTY = settings(max_examples=300, derandomize=True, deadline=None, database=None)

currencies = st.sampled_from(sorted(CURRENCY_EXPONENTS))
# every exponent payops knows, each with a currency that has it
by_exponent = st.sampled_from(sorted({exp: cur for cur, exp in CURRENCY_EXPONENTS.items()}.items()))
amounts = st.one_of(  # what one payment may move (parse_amount's range)
    st.integers(1, MAX_PAYMENT_MINOR),
    st.integers(1, 10**6),
    st.sampled_from([1, 9, 10, 99, 100, 101, 999, 1000, 1001, 10**13, MAX_PAYMENT_MINOR - 1, MAX_PAYMENT_MINOR]),
)


def test_every_exponent_is_covered():
    assert {exp for exp in CURRENCY_EXPONENTS.values()} == {0, 2, 3}


@PROPERTY
@given(currency=currencies, minor=amounts)
def test_format_then_parse_round_trips(currency, minor):
    text = format_amount(minor, currency)
    assert parse_amount(text, currency) == minor
    exp = CURRENCY_EXPONENTS[currency]
    # the text is the canonical decimal: exactly `exp` decimals, no leading zeros, no sign
    whole, _, fraction = text.partition(".")
    assert len(fraction) == exp and (bool(fraction) == (exp > 0))
    assert whole == "0" or not whole.startswith("0")
    assert Decimal(text) == Decimal(minor).scaleb(-exp)


@PROPERTY
@given(pair=by_exponent, minor=amounts)
def test_negative_amounts_format_with_a_sign_and_are_not_parsed(pair, minor):
    _, currency = pair
    text = format_amount(-minor, currency)
    assert text == "-" + format_amount(minor, currency)
    with pytest.raises(MoneyError):
        parse_amount(text, currency)


@PROPERTY
@given(pair=by_exponent, minor=st.one_of(st.integers(MAX_PAYMENT_MINOR + 1, MAX_AMOUNT_MINOR),
                                         st.integers(MAX_AMOUNT_MINOR + 1, 2**80)))
@example(pair=(2, "EUR"), minor=MAX_PAYMENT_MINOR + 1)
@example(pair=(2, "EUR"), minor=MAX_AMOUNT_MINOR)  # accepted once: its hold could never be placed
def test_amounts_beyond_one_payments_limit_are_refused(pair, minor):
    _, currency = pair
    with pytest.raises(MoneyError, match="too large|positive decimal"):
        parse_amount(format_amount(minor, currency), currency)


def test_the_payment_limit_leaves_room_for_sums_within_bigint():
    """Amount + fee, a 10,000-item batch's total, balances and rollups add such amounts up."""
    assert MAX_PAYMENT_MINOR * 10_000 * 2 < MAX_AMOUNT_MINOR


@PROPERTY
@given(currency=currencies, text=st.one_of(
    st.text(max_size=30),
    st.from_regex(r"[0-9]{1,22}(\.[0-9]{0,4})?", fullmatch=True),
))
@example(currency="USD", text="100\n")
@example(currency="KWD", text="9223372036854775.808")
@example(currency="JPY", text="9223372036854775807")
def test_parse_accepts_exactly_the_canonical_positive_decimals(currency, text):
    """Any string: a MoneyError, or an amount in 1..MAX_PAYMENT_MINOR that is the string's exact value."""
    exp = CURRENCY_EXPONENTS[currency]
    try:
        minor = parse_amount(text, currency)
    except MoneyError:
        whole, dot, fraction = text.partition(".")
        valid_shape = (
            whole.isascii() and whole.isdigit() and (whole == "0" or not whole.startswith("0"))
            and (not dot or (fraction.isascii() and fraction.isdigit()))
        )
        if valid_shape and len(fraction) <= exp:
            value = Decimal(text).scaleb(exp)
            assert value <= 0 or value > MAX_PAYMENT_MINOR  # refused only for its size
        return
    assert 1 <= minor <= MAX_PAYMENT_MINOR
    assert Decimal(minor).scaleb(-exp) == Decimal(text)
    assert text == text.strip() and text.isascii()


@PROPERTY
@given(currency=currencies, minor=amounts, affix=st.sampled_from(
    ["+{}", "-{}", " {}", "{} ", "{}\n", "\t{}", "0{}", "{}e0", "{}.", ".{}", "{},", "{}_0", "{}\x00"]))
def test_non_canonical_spellings_are_refused(currency, minor, affix):
    with pytest.raises(MoneyError):
        parse_amount(affix.format(format_amount(minor, currency)), currency)


@PROPERTY
@given(currency=currencies, minor=amounts,
       digits=st.sampled_from(["٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "０１２３４５６７８９"]))
def test_digits_of_other_scripts_are_refused(currency, minor, digits):
    text = format_amount(minor, currency).translate(str.maketrans("0123456789", digits))
    with pytest.raises(MoneyError):
        parse_amount(text, currency)


@PROPERTY
@given(currency=currencies, minor=amounts, extra=st.integers(1, 3))
def test_more_decimals_than_the_currency_has_are_refused(currency, minor, extra):
    exp = CURRENCY_EXPONENTS[currency]
    text = format_amount(minor, currency) + ("" if exp else ".") + "0" * extra
    with pytest.raises(MoneyError):
        parse_amount(text, currency)


@PROPERTY
@given(currency=currencies, minor=st.integers(-MAX_AMOUNT_MINOR, MAX_AMOUNT_MINOR))
def test_money_prints_its_formatted_amount_and_currency(currency, minor):
    assert str(Money(minor, currency)) == f"{format_amount(minor, currency)} {currency}"
