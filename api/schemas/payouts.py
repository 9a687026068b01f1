"""Payout request and response models.

The beneficiary is a union tagged by its `type`, which is the payout's method; clients may leave
`type` out and it is taken from `method`, so `{"method": "sepa", "beneficiary": {"name": ..., "iban":
..., "bic": ...}}` is enough. Validation errors name the field, e.g. `beneficiary.sepa.iban`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from core.payouts.models import PayoutState
from core.payouts.request import (  # re-exported: the API's request schemas are core's
    AchBeneficiary as AchBeneficiary,
    Beneficiary as Beneficiary,
    BicStr as BicStr,
    FasterPaymentsBeneficiary as FasterPaymentsBeneficiary,
    IbanStr as IbanStr,
    MobileMoneyBeneficiary as MobileMoneyBeneficiary,
    PayoutCreate as PayoutCreate,
    SepaBeneficiary as SepaBeneficiary,
    WireBeneficiary as WireBeneficiary,
    aba_checksum_ok as aba_checksum_ok,
)
from core.payouts.view import PayoutLinks as PayoutLinks, PayoutOut

WorkflowExecutionStatusName = Literal[
    "RUNNING", "COMPLETED", "TERMINATED", "CANCELED", "FAILED", "TIMED_OUT", "CONTINUED_AS_NEW"]


class PayoutDetail(PayoutOut):
    workflow: PayoutState | None = Field(
        default=None, description="live state from the payout workflow's `state` query"
    )
    workflow_error: str | None = Field(default=None, description="why `workflow` is null, when it is")
    workflow_status: WorkflowExecutionStatusName | None = Field(
        default=None,
        description="Temporal's execution status of the payout's workflow (its latest run), from a describe; null "
        "when it has no workflow or Temporal is unreachable. A closed workflow (anything but RUNNING) under a row "
        "that is not terminal was closed outside payops (Terminate, ...): the workflow reaper raises a critical "
        "alert, and `POST /api/v1/payouts/{id}/repair` is the way out (retry and cancel answer 409)",
    )
    repair_modes: list[Literal["compensate", "restart"]] | None = Field(
        default=None,
        description="when its workflow is closed and the payout is not terminal: the modes "
        "`POST /api/v1/payouts/{id}/repair` accepts for it (compensate is left out once the bank may have it); "
        "null otherwise",
    )


class PayoutPage(BaseModel):
    data: list[PayoutOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class PayoutEventOut(BaseModel):
    sequence: int
    actor: str
    from_status: str | None
    to_status: str
    reason: str | None
    data: dict
    created_at: datetime


class CancelBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class RetryBody(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


class OpsDecisionOut(BaseModel):
    accepted: bool
    status: str
    detail: str


class OpsResult(BaseModel):
    decision: OpsDecisionOut
    payout: PayoutOut


class StatusCurrencyStats(BaseModel):
    status: str
    currency: str
    count: int
    amount: str
    amount_minor: int
    fee_minor: int


class PayoutStats(BaseModel):
    merchant_id: str | None
    total_count: int
    by_status: dict[str, int]
    by_status_currency: list[StatusCurrencyStats]
    average_settlement_seconds: float | None = Field(description="mean of settled_at - created_at over settled payouts")
