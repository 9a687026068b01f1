"""Merchant and funding request/response models."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from api.schemas.common import BalanceOut, Currency, DecimalAmount
from core.platform.money import MoneyError, parse_amount


class MerchantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str | None = Field(
        default=None, pattern=r"^mer_[A-Za-z0-9_]{1,60}$", description='defaults to "mer_" + a random hex id'
    )
    name: str = Field(min_length=1, max_length=200)
    default_currency: Currency
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2", examples=["FR"])
    metadata: dict[str, str] = Field(default_factory=dict, max_length=20)


class MerchantOut(BaseModel):
    id: str
    name: str
    default_currency: str
    country: str | None
    metadata: dict
    frozen: bool = Field(description="an active merchant_freeze control stops its new payouts")
    created_at: datetime
    updated_at: datetime


class FundingCreate(BaseModel):
    """Credit the merchant's available balance (a top-up received by treasury)."""

    model_config = ConfigDict(extra="forbid")

    currency: Currency
    amount: DecimalAmount
    reference: str | None = Field(default=None, max_length=140, description="your reference for this top-up")
    description: str | None = Field(default=None, max_length=500)

    @field_validator("amount")
    @classmethod
    def _amount_fits_currency(cls, v: str, info: ValidationInfo) -> str:
        currency = info.data.get("currency")
        if currency is not None:
            try:
                parse_amount(v, currency)
            except MoneyError as exc:
                raise ValueError(str(exc)) from None
        return v


class FundingOut(BaseModel):
    merchant_id: str
    funding_ref: str
    journal_transaction_id: int | None = None
    amount: str
    amount_minor: int
    currency: str
    balances: list[BalanceOut]
