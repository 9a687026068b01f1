"""Bulk payout request and response models (POST /api/v1/bulk-payouts).

Items are taken as plain objects so that each is validated on its own (the single payout's
schema, PayoutCreate, plus `reference`) and reported per line instead of failing the request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["all_or_nothing", "partial"]


class BulkPayoutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merchant_id: str | None = Field(default=None, max_length=64, description="platform roles only")
    mode: Mode = Field(description="all_or_nothing: any invalid item -> nothing is created (422 with the "
                                   "report); partial: the valid items go ahead")
    items: list[dict[str, Any]] = Field(
        min_length=1, max_length=10_000,
        description="each a payout as POST /payouts takes it, plus `reference` (unique per merchant: "
                    "it is the payout's idempotency key)",
        json_schema_extra={"examples": [[{
            "reference": "payroll-2026-12-0001", "amount": "1250.00", "currency": "EUR", "method": "sepa",
            "beneficiary": {"name": "Jane Doe", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"}}]]},
    )


class ItemError(BaseModel):
    code: str = Field(description="invalid | duplicate_reference")
    field: str | None = Field(description="the item's field, e.g. beneficiary.sepa.iban")
    reason: str
    existing_payout_id: str | None = None


class ItemReport(BaseModel):
    line: int = Field(description="1-based position of the item (CSV: the data row)")
    reference: str | None
    status: Literal["accepted", "rejected", "valid"]
    payout_id: str | None
    error: ItemError | None


class Total(BaseModel):
    currency: str
    amount: str
    amount_minor: int


class Approval(BaseModel):
    required: bool
    action_id: str | None
    action_status: str | None


class Intake(BaseModel):
    started: int = Field(description="payout workflows started so far")
    total: int
    completed_at: str | None


class Progress(BaseModel):
    terminal: int = Field(description="payouts in a terminal status (settled, returned, failed, cancelled, rejected)")
    total: int
    fraction: float


class BulkPayoutLinks(BaseModel):
    self: str
    items: str
    approval: str | None


class BulkPayoutOut(BaseModel):
    id: str
    merchant_id: str
    mode: Mode
    source: Literal["json", "csv", "schedule"]
    status: str = Field(description="awaiting_approval | approval_rejected | approval_expired | approval_failed | "
                                    "failed | processing | completed")
    approval: Approval
    item_count: int
    accepted_count: int
    rejected_count: int
    totals: list[Total]
    payouts_by_status: dict[str, int]
    intake: Intake
    progress: Progress
    failure_reason: str | None
    created_by: str
    created_at: str
    released_at: str | None
    links: BulkPayoutLinks


class BulkPayoutReport(BulkPayoutOut):
    items: list[ItemReport]


class BulkPayoutPage(BaseModel):
    data: list[BulkPayoutOut]
    next_cursor: str | None


class ItemPage(BaseModel):
    data: list[ItemReport]
    next_after_line: int | None
