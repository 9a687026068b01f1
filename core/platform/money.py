"""Money: integer minor units plus an ISO 4217 currency. No floats anywhere money flows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# ISO 4217 minor-unit exponents for the currencies payops moves.
CURRENCY_EXPONENTS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "INR": 2,
    "CAD": 2,
    "AUD": 2,
    "CHF": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "NGN": 2,
    "KES": 2,
    "GHS": 2,
    "ZAR": 2,
    "XOF": 0,
    "XAF": 0,
    "JPY": 0,
    "KRW": 0,
    "BHD": 3,
    "KWD": 3,
    "OMR": 3,
    "JOD": 3,
    "TND": 3,
}

# The largest amount payops stores: PostgreSQL bigint (int64), in minor units.
MAX_AMOUNT_MINOR = 2**63 - 1
# The largest amount one payment may move (a payout, a bulk item, a funding, a withdrawal): 10^14
# minor units, a trillion euros or a hundred billion dinars. Far below bigint, so that what adds
# such amounts up stays within it: an amount plus its fee, a balance, a batch's total (10,000
# items) and the hourly rollups. At 2^63 - 1 itself a payout was accepted whose hold could never
# be placed, and a funding filled the treasury account so no later one could post (500s).
MAX_PAYMENT_MINOR = 10**14

# ASCII digits only, the whole string (no trailing newline, no other scripts' digits)
_DECIMAL_RE = re.compile(r"(0|[1-9][0-9]{0,18})(\.[0-9]+)?")


class MoneyError(ValueError):
    """An amount or currency that cannot be money: the message says why, for the API user."""


def exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise MoneyError(f"unsupported currency {currency!r}") from None


def parse_amount(value: str, currency: str) -> int:
    """'1000.50' USD -> 100050. Rejects floats' spellings, signs, and too many decimals."""
    exp = exponent(currency)
    if not isinstance(value, str) or not _DECIMAL_RE.fullmatch(value):
        raise MoneyError(f"amount must be a positive decimal string like '1000.50', got {value!r}")
    try:
        dec = Decimal(value)
    except InvalidOperation:
        raise MoneyError(f"amount {value!r} is not a decimal number") from None
    fraction = value.partition(".")[2]
    if len(fraction) > exp:
        raise MoneyError(
            f"{currency} has {exp} decimal place{'s' if exp != 1 else ''}; "
            f"amount {value!r} has {len(fraction)}"
        )
    minor = int(dec.scaleb(exp))
    if minor <= 0:
        raise MoneyError("amount must be greater than zero")
    if minor > MAX_PAYMENT_MINOR:
        raise MoneyError(f"amount {value!r} is too large (at most {format_amount(MAX_PAYMENT_MINOR, currency)})")
    return minor


def format_amount(amount_minor: int, currency: str) -> str:
    """100050 USD -> '1000.50'; 1500 XOF -> '1500'; -5 USD -> '-0.05'."""
    exp = exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**exp) if exp else (abs(amount_minor), 0)
    return f"{sign}{whole}.{frac:0{exp}d}" if exp else f"{sign}{whole}"


@dataclass(frozen=True, slots=True)
class Money:
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount_minor, int) or isinstance(self.amount_minor, bool):
            raise MoneyError("amount_minor must be an integer")
        exponent(self.currency)

    def __str__(self) -> str:
        return f"{format_amount(self.amount_minor, self.currency)} {self.currency}"
