"""A payout request as payops accepts it, field for field: the single payout API and the bulk
payouts (each item) validate with the same model. The beneficiary is a union tagged by its
`type`, which is the payout's method; clients may leave `type` out and it is taken from `method`."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from schwifty import BIC, IBAN

from core.payouts.models import Method, Priority
from core.platform.money import MoneyError, parse_amount
from core.platform.schema_types import Currency, DecimalAmount
from core.rails.sepa import sepa_problem

_Name = Annotated[str, Field(min_length=1, max_length=140, description="beneficiary's name as the bank knows it")]


# Validating an IBAN or a BIC (schwifty: registry lookups, length and checksum) is a pure
# function of the string and costs more than the rest of a payout's validation: the last few
# thousand answers are kept per process (payroll and bulk payouts repeat beneficiaries).
# Invalid values raise and are not cached.
@lru_cache(maxsize=4096)
def _iban(value: str) -> str:
    try:
        return IBAN(value).compact
    except Exception as exc:  # noqa: BLE001 — schwifty raises several InvalidIBAN/InvalidChecksum types
        raise ValueError(f"not a valid IBAN: {exc}") from None


@lru_cache(maxsize=4096)
def _bic(value: str) -> str:
    try:
        return str(BIC(value))
    except Exception as exc:  # noqa: BLE001 — schwifty's BIC errors have several types
        raise ValueError(f"not a valid BIC: {exc}") from None


IbanStr = Annotated[str, Field(max_length=42, examples=["DE89370400440532013000"]), AfterValidator(_iban)]
BicStr = Annotated[str, Field(max_length=11, examples=["COBADEFFXXX"]), AfterValidator(_bic)]


def aba_checksum_ok(routing: str) -> bool:
    d = [int(c) for c in routing]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8])) % 10 == 0


class _Beneficiary(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SepaBeneficiary(_Beneficiary):
    type: Literal["sepa"] = "sepa"
    name: _Name
    iban: IbanStr
    bic: BicStr

    @model_validator(mode="after")
    def _in_sepa(self) -> "SepaBeneficiary":
        problem = sepa_problem(self.iban, self.bic)
        if problem:
            raise ValueError(problem)
        return self


class AchBeneficiary(_Beneficiary):
    type: Literal["ach"] = "ach"
    name: _Name
    routing_number: str = Field(pattern=r"^[0-9]{9}$", examples=["021000021"])
    account_number: str = Field(pattern=r"^[0-9]{4,17}$", examples=["000123456789"])
    account_type: Literal["checking", "savings"] = "checking"

    @field_validator("routing_number")
    @classmethod
    def _aba(cls, v: str) -> str:
        if not aba_checksum_ok(v):
            raise ValueError("routing number fails the ABA checksum")
        return v


class WireBeneficiary(_Beneficiary):
    type: Literal["wire"] = "wire"
    name: _Name
    bic: BicStr
    iban: IbanStr | None = None
    account_number: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{4,34}$")

    @model_validator(mode="after")
    def _one_account(self) -> "WireBeneficiary":
        if not self.iban and not self.account_number:
            raise ValueError("a wire beneficiary needs an iban or an account_number")
        return self


class FasterPaymentsBeneficiary(_Beneficiary):
    type: Literal["faster_payments"] = "faster_payments"
    name: _Name
    sort_code: str = Field(examples=["040004"])
    account_number: str = Field(pattern=r"^[0-9]{8}$", examples=["12345678"])

    @field_validator("sort_code", mode="before")
    @classmethod
    def _sort_code(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.replace("-", "").strip()
            if not re.fullmatch(r"[0-9]{6}", v):
                raise ValueError("sort code must be 6 digits (dashes allowed: 04-00-04)")
        return v


class MobileMoneyBeneficiary(_Beneficiary):
    type: Literal["mobile_money"] = "mobile_money"
    name: _Name
    phone: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164", examples=["+221771234567"])
    operator: Literal["orange", "mtn", "wave", "moov", "airtel"]


Beneficiary = Annotated[
    SepaBeneficiary | AchBeneficiary | WireBeneficiary | FasterPaymentsBeneficiary | MobileMoneyBeneficiary,
    Field(discriminator="type"),
]


class PayoutCreate(BaseModel):
    """A payout request. `merchant_id` is for platform roles only; merchant users pay out as themselves."""

    model_config = ConfigDict(extra="forbid")

    merchant_id: str | None = Field(default=None, max_length=64)
    currency: Currency
    amount: DecimalAmount
    method: Method
    priority: Priority = Priority.STANDARD
    beneficiary: Beneficiary
    description: str | None = Field(default=None, max_length=140)
    metadata: dict[Annotated[str, Field(min_length=1, max_length=40)], Annotated[str, Field(max_length=500)]] = Field(
        default_factory=dict, max_length=20, description="up to 20 string keys and values, echoed back"
    )

    @model_validator(mode="before")
    @classmethod
    def _beneficiary_type_from_method(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("beneficiary"), dict) and "type" not in data["beneficiary"]:
            data = {**data, "beneficiary": {**data["beneficiary"], "type": data.get("method")}}
        return data

    @field_validator("amount")
    @classmethod
    def _amount_fits_currency(cls, v: str, info: ValidationInfo) -> str:
        currency = info.data.get("currency")
        if currency is None:  # the currency's own error is reported
            return v
        try:
            parse_amount(v, currency)
        except MoneyError as exc:
            raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _beneficiary_matches_method(self) -> "PayoutCreate":
        if self.beneficiary.type != self.method.value:
            raise ValueError(f"beneficiary type {self.beneficiary.type!r} does not match method {self.method.value!r}")
        return self
