"""The payout as the API returns it and as webhook events carry it: one representation, in core,
that api/schemas/payouts.py reuses (so core never imports api)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from core.platform.money import format_amount
from core.platform.names import payout_workflow_id
from core.platform.settings import Settings
from core.platform.temporal import workflow_ui_url


class PayoutLinks(BaseModel):
    self: str
    events: str
    temporal_ui: str


class PayoutOut(BaseModel):
    id: str
    merchant_id: str
    status: str
    amount: str
    amount_minor: int
    currency: str
    fee: str
    fee_minor: int
    method: str
    priority: str
    rail: str | None
    connector: str | None = None
    settlement_target_at: datetime | None = Field(
        default=None, description="when the payout should have settled, from its rail's SLA rule and business days"
    )
    routing: dict | None = Field(
        default=None,
        description="the routing decision and its explanation: chosen rail/connector, every candidate with its "
        "cost, expected time and score or why it was excluded, overrides, failovers",
    )
    beneficiary: dict = Field(description="masked: type, name, last4 and the bank identifier; never the full account")
    description: str | None
    metadata: dict[str, str]
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    updated_at: datetime
    links: PayoutLinks


def payout_view(row: dict, settings: Settings) -> dict:
    """The payout as the API returns it (PayoutOut), from its row."""
    pid, currency = row["id"], row["currency"]
    return {
        "id": pid,
        "merchant_id": row["merchant_id"],
        "status": row["status"],
        "amount": format_amount(row["amount_minor"], currency),
        "amount_minor": row["amount_minor"],
        "currency": currency,
        "fee": format_amount(row["fee_minor"], currency),
        "fee_minor": row["fee_minor"],
        "method": row["method"],
        "priority": row["priority"],
        "rail": row["rail"],
        "connector": row.get("connector"),
        "settlement_target_at": row["settlement_target_at"].isoformat() if row.get("settlement_target_at") else None,
        "routing": row.get("routing"),
        "beneficiary": row["beneficiary_masked"],
        "description": row["description"],
        "metadata": row["metadata"] or {},
        "failure_code": row["failure_code"],
        "failure_message": row["failure_message"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "links": {
            "self": f"/api/v1/payouts/{pid}",
            "events": f"/api/v1/payouts/{pid}/events",
            "temporal_ui": workflow_ui_url(settings, payout_workflow_id(pid)),
        },
    }
