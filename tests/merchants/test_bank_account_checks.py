"""The per-rail checks a payout bank account must pass (core/merchants/bank_accounts.validate_account),
as properties: accounts built with correct check digits pass, any single-digit change fails."""

from __future__ import annotations

import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from core.merchants.bank_accounts import BankAccountInvalid, validate_account

DIGITS = "0123456789"


def iban_of(country: str, bban: str) -> str:
    """ISO 13616: check digits 98 - (BBAN + country + "00" as digits) mod 97."""
    n = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - n % 97:02d}{bban}"


def aba_of(eight: str) -> str:
    d = [int(c) for c in eight]
    total = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5])
    return eight + str((10 - total % 10) % 10)


# country -> (BBAN length in digits, a BIC of that country)
SEPA_COUNTRIES = {"DE": (18, "COBADEFFXXX"), "AT": (16, "BKAUATWWXXX")}

countries = st.sampled_from(sorted(SEPA_COUNTRIES))


@st.composite
def bbans(draw):
    country = draw(countries)
    length, bic = SEPA_COUNTRIES[country]
    return country, draw(st.text(DIGITS, min_size=length, max_size=length)), bic


def one_digit_changed(draw, value: str, start: int) -> str:
    i = draw(st.integers(min_value=start, max_value=len(value) - 1))
    new = draw(st.sampled_from([d for d in DIGITS if d != value[i]]))
    return value[:i] + new + value[i + 1:]


@hsettings(max_examples=200, deadline=None)
@given(bbans())
def test_iban_with_correct_check_digits_passes(case):
    country, bban, bic = case
    iban = iban_of(country, bban)
    account = validate_account("sepa", "EUR", "Acme", {"iban": iban, "bic": bic})
    assert account["iban"] == iban and account["bic"] == bic and account["type"] == "sepa"


@hsettings(max_examples=200, deadline=None)
@given(st.data(), bbans())
def test_iban_with_one_digit_changed_fails(data, case):
    country, bban, bic = case
    iban = iban_of(country, bban)
    changed = one_digit_changed(data.draw, iban, 2)  # a check digit or a BBAN digit
    with pytest.raises(BankAccountInvalid, match="iban"):
        validate_account("sepa", "EUR", "Acme", {"iban": changed, "bic": bic})


@hsettings(max_examples=200, deadline=None)
@given(st.text(DIGITS, min_size=8, max_size=8), st.text(DIGITS, min_size=4, max_size=17))
def test_aba_routing_with_its_check_digit_passes(eight, account_number):
    routing = aba_of(eight)
    account = validate_account("ach", "USD", "Acme", {"routing_number": routing, "account_number": account_number})
    assert (account["routing_number"], account["account_number"]) == (routing, account_number)


@hsettings(max_examples=200, deadline=None)
@given(st.data(), st.text(DIGITS, min_size=8, max_size=8))
def test_aba_routing_with_one_digit_changed_fails(data, eight):
    changed = one_digit_changed(data.draw, aba_of(eight), 0)
    with pytest.raises(BankAccountInvalid, match="ABA checksum"):
        validate_account("ach", "USD", "Acme", {"routing_number": changed, "account_number": "123456"})


@hsettings(max_examples=200, deadline=None)
@given(st.sampled_from("123456789"), st.text(DIGITS, min_size=6, max_size=13))
def test_e164_phones_pass(first, rest):
    phone = f"+{first}{rest}"
    assert validate_account("mobile_money", "XOF", "Acme", {"phone": phone, "operator": "orange"})["phone"] == phone


@hsettings(max_examples=200, deadline=None)
@given(st.one_of(
    st.text(DIGITS, min_size=7, max_size=15).map(lambda s: s),  # no leading +
    st.text(DIGITS, min_size=6, max_size=13).map(lambda s: "+0" + s),  # country code cannot start with 0
    st.text(DIGITS, min_size=16, max_size=20).map(lambda s: "+1" + s),  # longer than 15 digits
    st.text(DIGITS, min_size=0, max_size=5).map(lambda s: "+1" + s),  # too short
))
def test_non_e164_phones_fail(phone):
    with pytest.raises(BankAccountInvalid, match="phone"):
        validate_account("mobile_money", "XOF", "Acme", {"phone": phone, "operator": "orange"})


def test_currency_the_rail_does_not_carry_and_unknown_rail():
    with pytest.raises(BankAccountInvalid, match="does not carry USD"):
        validate_account("sepa", "USD", "Acme", {"iban": "DE89370400440532013000", "bic": "COBADEFFXXX"})
    with pytest.raises(BankAccountInvalid, match="unknown rail"):
        validate_account("cheque", "USD", "Acme", {})


def test_a_sepa_iban_with_a_bic_of_another_country_fails():
    with pytest.raises(BankAccountInvalid, match="BIC .* is for country AT"):
        validate_account("sepa", "EUR", "Acme", {"iban": "DE89370400440532013000", "bic": "BKAUATWWXXX"})
