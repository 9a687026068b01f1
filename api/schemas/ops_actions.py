"""Ops action request and response models."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.ops_actions.models import ActionType, ApprovalTally, OpsActionState, RiskLevel


class OpsActionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: ActionType
    params: dict[str, Any] = Field(description="the type's params; see GET /ops/action-types for each schema")
    risk_level: RiskLevel | None = Field(
        default=None, description="defaults to the type's risk level; may be raised, never lowered"
    )
    reason: str | None = Field(default=None, max_length=1000)
    expires_in_seconds: float | None = Field(
        default=None, ge=60, le=30 * 24 * 3600, description="undecided after this long, it expires (default 24 h)"
    )


class VoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(default=None, max_length=1000)


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000)
    risk_level: RiskLevel | None = None


class ApprovalOut(BaseModel):
    approver: str
    roles: list[str]
    decision: str
    comment: str | None = None
    at: datetime


class OpsActionOut(BaseModel):
    id: str
    type: str
    target: dict
    target_label: str
    params: dict
    risk_level: str
    required_approvals: int
    status: str
    reason: str | None = None
    created_by: str
    expires_at: datetime | None = None
    executed_at: datetime | None = None
    result: dict | None = None
    error: str | None = None
    rollback_of: str | None = None
    created_at: datetime
    updated_at: datetime
    links: dict[str, str]


class OpsActionDetail(OpsActionOut):
    approvals: list[ApprovalOut]
    rollbacks: list[str] = Field(default_factory=list, description="ids of the actions rolling this one back")
    workflow: OpsActionState | None = None
    workflow_error: str | None = None


class OpsActionPage(BaseModel):
    data: list[OpsActionOut]


# the running tally `approve` / `reject` return: the workflow's ApprovalTally, published under
# this schema name (no docstring: the OpenAPI document stays as it was)
class TallyOut(ApprovalTally):
    pass


class ActionTypeOut(BaseModel):
    type: str
    description: str
    default_risk: str
    required_approvals: int
    execution: str = Field(description="automatic once approved, or explicit (POST .../execute)")
    inverse: str | None = Field(description="the action type a rollback creates; null: cannot be rolled back")
    params_schema: dict


class GrantRequest(BaseModel):
    """Ask payops for a grant: proof of your verified identity for ONE decision on ONE workflow,
    to paste into an Update or Signal sent with Temporal's CLI or UI."""

    model_config = ConfigDict(extra="forbid")

    scope: Literal["payout", "ops_action"]
    id: str = Field(min_length=1, max_length=64, description="the payout id or ops action id")
    decision: Literal["retry", "cancel", "approve", "reject"] = Field(
        description="payout: retry | cancel; ops_action: approve | reject")
    ttl_seconds: int | None = Field(default=None, ge=10, le=3600,
                                    description="capped at PAYOPS_OPS_GRANT_TTL_SECONDS (default 300)")


class GrantOut(BaseModel):
    grant: str = Field(description='put it in the Update/Signal input as "grant"')
    expires_at: datetime
    scope: str
    id: str
    decision: str
    actor: str = Field(description="your verified subject: the one the audit trail will name")
    roles: list[str]
    workflow_id: str
    example: str = Field(description="a copy-paste `temporal workflow update execute` command using it")


class PlanPayout(BaseModel):
    payout_id: str
    merchant_id: str | None = None
    status: str | None = None
    amount_minor: int | None = None
    fee_minor: int | None = None
    currency: str | None = None
    rail: str | None = None
    connector: str | None = None
    held_minor: int | None = Field(default=None, description="its active hold (amount + fee), if any")
    effect: str = Field(description="wait | cancel | proceed | retry | refused | not_found | fail | restart | unchanged")
    detail: str | None = None


class PlanAmount(BaseModel):
    effect: str = Field(description="stays_held | released_to_available | to_bank | credited | debited | payouts_created")
    currency: str
    amount_minor: int
    account: str


class PlanControl(BaseModel):
    kind: str
    target: str
    change: str = Field(description="activate | deactivate")
    control_ids: list[int] = Field(description="the active controls a deactivate ends")


class PlanRoute(BaseModel):
    target: str
    from_connector: str | None = Field(description="the override in force now; null: routing decides")
    to_connector: str | None = Field(description="null: routing decides again")
    until: str | None = None


class OpsActionPlan(BaseModel):
    """What executing the action would do, computed at `computed_at` from the same selections its
    execution uses. Read-only."""

    action_id: str
    type: str
    status: str
    computed_at: datetime
    summary: str
    would_refuse: str | None = Field(description="why execution would fail now; null: it would go ahead")
    payouts: list[PlanPayout]
    amounts: list[PlanAmount]
    controls: list[PlanControl]
    routes: list[PlanRoute]
    merchants: list[dict[str, Any]]
    notes: list[str]
