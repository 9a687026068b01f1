"""Pieces every resource's schemas share: decimal amounts, currencies, problem documents."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.money import CURRENCY_EXPONENTS


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
        "(USD 2, XOF 0, BHD 3). Never a float.",
        examples=["1000.50"],
        max_length=40,
    ),
]


class Problem(BaseModel):
    """RFC 9457 problem details: what every error response looks like."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["idempotency_key_reused"])
    title: str
    status: int
    detail: str
    instance: str


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entry documenting problem-details errors."""
    return {s: {"model": Problem, "content": {"application/problem+json": {}}} for s in statuses}


class BalanceOut(BaseModel):
    currency: str
    available: str = Field(description="decimal string in major units")
    held: str = Field(description="decimal string in major units")
    available_minor: int
    held_minor: int
