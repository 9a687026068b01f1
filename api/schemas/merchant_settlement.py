"""Merchant profile/KYC, payout bank accounts, the settlement panel and withdrawals."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Currency
from core.platform.money import MAX_PAYMENT_MINOR
from core.merchants.models import AccountType, BankAccountStatus, KycStatus
from core.payouts.models import Method


class KycChangeOut(BaseModel):
    from_status: KycStatus | None
    to_status: KycStatus
    actor: str = Field(description="who decided: the ops action's creator and approvers")
    reason: str | None
    action_id: str | None = Field(description="the SET_KYC_STATUS ops action that made the change")
    at: datetime


class ProfileOut(BaseModel):
    merchant_id: str
    name: str
    company_name: str = Field(description="the legal name (the merchant's name until set)")
    country: str | None
    account_type: AccountType
    default_currency: str
    kyc_status: KycStatus
    kyc_updated_at: datetime | None
    frozen: bool
    kyc_history: list[KycChangeOut] = Field(description="every KYC status change, oldest first")
    created_at: datetime
    updated_at: datetime


class ProfileUpdate(BaseModel):
    """Profile fields a merchant_admin may change (only those given). KYC status is not one: ops
    change it with a SET_KYC_STATUS ops action."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    company_name: str | None = Field(default=None, min_length=1, max_length=200)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    account_type: AccountType | None = None


class BankAccountCreate(BaseModel):
    """A payout bank account of the merchant's own. `details` are the rail's beneficiary fields
    (as in POST /api/v1/payouts): sepa `iban`+`bic`; ach `routing_number`+`account_number`
    (+`account_type`); wire `bic` + `iban` or `account_number`; faster_payments `sort_code`+
    `account_number`; mobile_money `phone` (E.164) + `operator`. `holder_name` defaults to the
    company name."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    rail: Method
    currency: Currency
    holder_name: str | None = Field(default=None, min_length=1, max_length=140)
    details: dict[str, Any] = Field(examples=[{"iban": "DE89370400440532013000", "bic": "COBADEFFXXX"}])


class BankAccountOut(BaseModel):
    id: str
    merchant_id: str
    rail: str
    currency: str
    details: dict = Field(description="masked: type, name, last4, bank ids")
    checks: list[str] = Field(description="the checks it passed at registration")
    status: BankAccountStatus
    effective_at: datetime | None = Field(description="when a withdrawal may first go to it (end of the cool-off)")
    cooling_off: bool
    superseded: bool = Field(description="replaced by a newer account of the same rail and currency now in effect")
    usable: bool = Field(description="a withdrawal may go to it now")
    replaces_id: str | None
    verified_at: datetime | None
    reviewed_by: str | None
    review_reason: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime


class RailSettlementOut(BaseModel):
    rail: str
    methods: list[str]
    next_cutoff_at: datetime | None = Field(description="null for a 24/7 rail")
    next_settlement_at: datetime = Field(description="when a payout made now on this rail should settle")
    calendar: str
    timezone: str
    continuous: bool


class CurrencySettlementOut(BaseModel):
    currency: str
    available_minor: int
    available: str
    held_minor: int = Field(description="pending + in flight")
    held: str
    pending_minor: int = Field(description="held for payouts not at the bank yet")
    pending: str
    in_flight_minor: int = Field(description="held for payouts submitted (or being submitted) to the bank")
    in_flight: str
    pending_payouts: int
    in_flight_payouts: int
    next_settlement_at: datetime | None
    rails: list[RailSettlementOut]


class SettlementOut(BaseModel):
    merchant_id: str
    computed_at: datetime
    kyc_status: KycStatus
    can_withdraw: bool = Field(description="KYC verified (an account must also be usable)")
    currencies: list[CurrencySettlementOut]
    bank_accounts: list[BankAccountOut]


class WithdrawalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: str = Field(min_length=1, max_length=64)
    # strict: a JSON integer only (not true, "1000" or 1000.0, which lax parsing would take)
    amount_minor: int = Field(gt=0, le=MAX_PAYMENT_MINOR, strict=True, description="minor units of `currency`")
    currency: Currency
    priority: Literal["standard", "instant"] = Field(
        default="standard", description="standard waits for the rail's cutoff; instant goes at once where the rail can")
