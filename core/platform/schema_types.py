"""Pydantic field types for money at the edges: an ISO 4217 currency payops supports and a decimal
amount string (never a float). The API's schemas and core's request models share them."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from core.platform.money import CURRENCY_EXPONENTS


def _known_currency(value: str) -> str:
    if value not in CURRENCY_EXPONENTS:
        raise ValueError(f"unsupported currency {value!r}; supported: {', '.join(sorted(CURRENCY_EXPONENTS))}")
    return value


Currency = Annotated[
    str,
    Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code", examples=["EUR"]),
    AfterValidator(_known_currency),
]

DecimalAmount = Annotated[
    str,
    Field(
        description="A positive decimal string in major units, with at most the currency's decimals "
        "(USD 2, XOF 0, BHD 3), at most 10^14 minor units (1000000000000.00 EUR). Never a float.",
        examples=["1000.50"],
        max_length=40,
    ),
]
