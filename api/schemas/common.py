"""Pieces every resource's schemas share: decimal amounts, currencies, problem documents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.platform.schema_types import Currency as Currency, DecimalAmount as DecimalAmount  # re-exported


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
