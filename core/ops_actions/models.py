"""Ops action domain types shared by the API, the OpsActionWorkflow and its activities.

Pure pydantic models, enums and the action-type catalog: no I/O, safe to import from workflow
code. Each action type has a typed params schema, a plain description of its effect, a default
risk level (the creator may raise it, never lower it), whether it executes as soon as it is
approved or waits for an explicit execute, and an inverse for rollback where that makes sense.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.merchants.models import KycStatus
from core.platform.roles import Permission, Role, permissions_of


class ActionType(StrEnum):
    FREEZE_MERCHANT = "FREEZE_MERCHANT"
    UNFREEZE_MERCHANT = "UNFREEZE_MERCHANT"
    PAUSE_PAYOUTS = "PAUSE_PAYOUTS"
    RESUME_PAYOUTS = "RESUME_PAYOUTS"
    ROUTE_OVERRIDE = "ROUTE_OVERRIDE"
    CLEAR_ROUTE_OVERRIDE = "CLEAR_ROUTE_OVERRIDE"
    RETRY_PAYOUTS = "RETRY_PAYOUTS"
    CANCEL_PAYOUT = "CANCEL_PAYOUT"
    ADJUST_BALANCE = "ADJUST_BALANCE"
    REPAIR_PAYOUT = "REPAIR_PAYOUT"
    APPROVE_BULK_PAYOUT = "APPROVE_BULK_PAYOUT"
    SET_KYC_STATUS = "SET_KYC_STATUS"
    APPROVE_BANK_ACCOUNT = "APPROVE_BANK_ACCOUNT"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


RISK_ORDER = [RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH, RiskLevel.CRITICAL]
REQUIRED_APPROVALS = {RiskLevel.LOW: 1, RiskLevel.MEDIUM: 2, RiskLevel.HIGH: 3, RiskLevel.CRITICAL: 3}


def risk_at_least(risk: str, floor: str) -> bool:
    return RISK_ORDER.index(RiskLevel(risk)) >= RISK_ORDER.index(RiskLevel(floor))


def required_approvals(risk: str) -> int:
    return REQUIRED_APPROVALS[RiskLevel(risk)]


def requires_admin(risk: str) -> bool:
    """A critical action needs an ops_admin among its approvers."""
    return RiskLevel(risk) == RiskLevel.CRITICAL


class ActionStatus(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"  # approved; waiting for an explicit execute (manual types)
    EXECUTING = "executing"
    EXECUTED = "executed"
    FAILED = "failed"  # execution failed; `error` says why
    REJECTED = "rejected"
    EXPIRED = "expired"


OPEN_STATUSES = frozenset({ActionStatus.PENDING_APPROVAL, ActionStatus.APPROVED, ActionStatus.EXECUTING})
TERMINAL_ACTION_STATUSES = frozenset(
    {ActionStatus.EXECUTED, ActionStatus.FAILED, ActionStatus.REJECTED, ActionStatus.EXPIRED}
)


def can_approve(roles: list[str] | frozenset[str]) -> bool:
    known = frozenset(Role(r) for r in roles if r in Role._value2member_map_)
    return Permission.OPS_ACTIONS_APPROVE in permissions_of(known)


def can_execute(roles: list[str] | frozenset[str]) -> bool:
    known = frozenset(Role(r) for r in roles if r in Role._value2member_map_)
    return Permission.OPS_ACTIONS_CREATE in permissions_of(known)


# --- params schemas ---------------------------------------------------------------------------


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


_Id = Field(min_length=1, max_length=64)


class FreezeMerchantParams(_Params):
    merchant_id: str = _Id
    cancel_queued: bool = Field(
        default=False, description="also cancel the merchant's payouts not yet submitted (holds reversed)"
    )


class UnfreezeMerchantParams(_Params):
    merchant_id: str = _Id


class _RailOrConnector(_Params):
    rail: str | None = Field(default=None, min_length=1, max_length=32)
    connector: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.rail is None) == (self.connector is None):
            raise ValueError("give exactly one of rail or connector")
        return self

    @property
    def control(self) -> tuple[str, str]:
        """(controls.kind, controls.target)"""
        return ("rail_pause", self.rail) if self.rail else ("connector_pause", self.connector)  # type: ignore[return-value]


class PausePayoutsParams(_RailOrConnector):
    pass


class ResumePayoutsParams(_RailOrConnector):
    pass


class _OverrideScope(_Params):
    merchant_id: str | None = Field(default=None, min_length=1, max_length=64)
    rail: str | None = Field(default=None, min_length=1, max_length=32)

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.merchant_id is None) == (self.rail is None):
            raise ValueError("give exactly one of merchant_id or rail")
        return self

    @property
    def control_target(self) -> str:
        return f"merchant:{self.merchant_id}" if self.merchant_id else f"rail:{self.rail}"


class RouteOverrideParams(_OverrideScope):
    connector: str = Field(min_length=1, max_length=64)
    until: datetime = Field(description="when the override ends (ISO 8601 with a timezone)")

    @field_validator("until")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("until needs a timezone")
        return v


class ClearRouteOverrideParams(_OverrideScope):
    pass


class DlqFilter(_Params):
    merchant_id: str | None = None
    rail: str | None = None
    connector: str | None = None
    limit: int = Field(default=100, ge=1, le=500)


class RetryPayoutsParams(_Params):
    payout_ids: list[str] | None = Field(default=None, min_length=1, max_length=500)
    filter: DlqFilter | None = Field(default=None, description="retry the dlq payouts matching this filter")

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.payout_ids is None) == (self.filter is None):
            raise ValueError("give exactly one of payout_ids or filter")
        return self


class CancelPayoutParams(_Params):
    payout_id: str = _Id
    reason: str = Field(min_length=1, max_length=500)


class RepairPayoutParams(_Params):
    """The repair of a payout whose workflow closed under it (the workflow reaper's alert)."""

    payout_id: str = _Id
    mode: Literal["compensate", "restart"] = Field(
        description="compensate: reverse its active hold and mark it failed; restart: a new run of its workflow")
    reason: str = Field(min_length=1, max_length=500)


class ApproveBulkPayoutParams(_Params):
    """Release a bulk payout above PAYOPS_BULK_PAYOUT_APPROVAL_THRESHOLD_MINOR (created by the batch)."""

    bulk_payout_id: str = _Id
    merchant_id: str = _Id


class AdjustBalanceParams(_Params):
    merchant_id: str = _Id
    amount_minor: int = Field(description="minor units; positive credits the merchant, negative debits")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    reason: str = Field(min_length=1, max_length=500)

    @field_validator("amount_minor")
    @classmethod
    def _nonzero(cls, v: int) -> int:
        if v == 0:
            raise ValueError("amount_minor must not be zero")
        return v


class SetKycStatusParams(_Params):
    """Change a merchant's KYC status (the only way ops change it); recorded in its KYC history."""

    merchant_id: str = _Id
    status: KycStatus
    reason: str = Field(min_length=1, max_length=500)


class ApproveBankAccountParams(_Params):
    """Decide on a merchant's payout bank account: approve ends its cool-off now (or verifies it
    when PAYOPS_BANK_ACCOUNT_ACTIVATION=approval_only); approve=false rejects it."""

    merchant_id: str = _Id
    account_id: str = _Id
    approve: bool = True
    reason: str = Field(min_length=1, max_length=500)


# --- the catalog --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionSpec:
    type: ActionType
    params: type[_Params]
    description: str
    default_risk: RiskLevel
    auto_execute: bool  # False: once approved, waits for an explicit execute by an ops user
    # target (what the action is about) and conflict key (two open actions with the same key
    # are refused) from validated params; None = no conflict with anything
    target: Callable[[Any], dict]
    conflict_key: Callable[[Any], str | None]
    inverse: Callable[[Any], tuple[ActionType, dict]] | None = None


def _merchant(p) -> dict:
    return {"kind": "merchant", "id": p.merchant_id}


def _rail_or_connector(p) -> dict:
    kind, target = p.control
    return {"kind": "rail" if kind == "rail_pause" else "connector", "id": target}


def _override_target(p) -> dict:
    kind, _, ident = p.control_target.partition(":")
    return {"kind": kind, "id": ident}


SPECS: dict[ActionType, ActionSpec] = {
    s.type: s
    for s in [
        ActionSpec(
            ActionType.FREEZE_MERCHANT, FreezeMerchantParams,
            "Freeze a merchant: new payouts are refused, and its queued payouts that have not reached "
            "the bank wait until it is unfrozen (or are cancelled, holds reversed, with cancel_queued).",
            RiskLevel.MEDIUM, True, _merchant, lambda p: f"merchant_freeze:{p.merchant_id}",
            lambda p: (ActionType.UNFREEZE_MERCHANT, {"merchant_id": p.merchant_id}),
        ),
        ActionSpec(
            ActionType.UNFREEZE_MERCHANT, UnfreezeMerchantParams,
            "Lift a merchant's freeze: it may create payouts again and its waiting payouts go on to the bank.",
            RiskLevel.MEDIUM, True, _merchant, lambda p: f"merchant_freeze:{p.merchant_id}",
            lambda p: (ActionType.FREEZE_MERCHANT, {"merchant_id": p.merchant_id}),
        ),
        ActionSpec(
            ActionType.PAUSE_PAYOUTS, PausePayoutsParams,
            "Pause a rail or a connector: payouts on it wait before submission until it is resumed.",
            RiskLevel.HIGH, True, _rail_or_connector, lambda p: ":".join(p.control),
            lambda p: (ActionType.RESUME_PAYOUTS, p.model_dump(exclude_none=True)),
        ),
        ActionSpec(
            ActionType.RESUME_PAYOUTS, ResumePayoutsParams,
            "Resume a paused rail or connector: its waiting payouts go on to the bank.",
            RiskLevel.MEDIUM, True, _rail_or_connector, lambda p: ":".join(p.control),
            lambda p: (ActionType.PAUSE_PAYOUTS, p.model_dump(exclude_none=True)),
        ),
        ActionSpec(
            ActionType.ROUTE_OVERRIDE, RouteOverrideParams,
            "Force a connector for a merchant's or a rail's payouts until a given time. Stored as a "
            "route_override control, which payout routing honours (core/payouts/routing.py).",
            RiskLevel.MEDIUM, True, _override_target, lambda p: f"route_override:{p.control_target}",
            lambda p: (ActionType.CLEAR_ROUTE_OVERRIDE, p.model_dump(exclude_none=True, include={"merchant_id", "rail"})),
        ),
        ActionSpec(
            ActionType.CLEAR_ROUTE_OVERRIDE, ClearRouteOverrideParams,
            "End a route override before its time.",
            RiskLevel.LOW, True, _override_target, lambda p: f"route_override:{p.control_target}",
        ),
        ActionSpec(
            ActionType.RETRY_PAYOUTS, RetryPayoutsParams,
            "Send payouts parked in dlq back to the bank with a fresh retry budget: a list of payout ids, "
            "or the dlq payouts matching a filter at execution time. Reports the outcome per payout.",
            RiskLevel.LOW, False,
            lambda p: {"kind": "payouts", "ids": p.payout_ids} if p.payout_ids else
            {"kind": "dlq_filter", **p.filter.model_dump(exclude_none=True)},
            lambda p: None,
        ),
        ActionSpec(
            ActionType.CANCEL_PAYOUT, CancelPayoutParams,
            "Cancel one payout that has not reached the bank; its hold is reversed.",
            RiskLevel.LOW, True, lambda p: {"kind": "payout", "id": p.payout_id},
            lambda p: f"payout:{p.payout_id}",
        ),
        ActionSpec(
            ActionType.REPAIR_PAYOUT, RepairPayoutParams,
            "Repair a payout whose workflow closed under it (terminated): compensate reverses its active "
            "hold and marks it failed; restart starts a new run of its workflow. Refused while its "
            "workflow runs.",
            RiskLevel.MEDIUM, True, lambda p: {"kind": "payout", "id": p.payout_id},
            lambda p: f"payout:{p.payout_id}",
        ),
        ActionSpec(
            ActionType.APPROVE_BULK_PAYOUT, ApproveBulkPayoutParams,
            "Release a bulk payout whose total is above the approval threshold: its payouts are created "
            "and started once approved (none exists before). Created by POST /api/v1/bulk-payouts.",
            RiskLevel.MEDIUM, True, lambda p: {"kind": "bulk_payout", "id": p.bulk_payout_id},
            lambda p: f"bulk_payout:{p.bulk_payout_id}",
        ),
        ActionSpec(
            ActionType.ADJUST_BALANCE, AdjustBalanceParams,
            "Post a ledger adjustment to a merchant's available balance with a reason (positive credits). "
            "At least high risk; executed by an explicit execute once approved.",
            RiskLevel.HIGH, False, _merchant, lambda p: None,
            lambda p: (ActionType.ADJUST_BALANCE, {**p.model_dump(), "amount_minor": -p.amount_minor,
                                                   "reason": f"rollback: {p.reason}"[:500]}),
        ),
        ActionSpec(
            ActionType.SET_KYC_STATUS, SetKycStatusParams,
            "Set a merchant's KYC status (pending, verified, rejected, needs_info) with a reason; the change "
            "is appended to the merchant's KYC history. Only a verified merchant may withdraw.",
            RiskLevel.MEDIUM, True, _merchant, lambda p: f"kyc:{p.merchant_id}",
        ),
        ActionSpec(
            ActionType.APPROVE_BANK_ACCOUNT, ApproveBankAccountParams,
            "Approve a merchant's payout bank account (it takes effect now instead of after its cool-off) "
            "or reject it (approve=false): withdrawals can then never go to it.",
            RiskLevel.MEDIUM, True, lambda p: {"kind": "bank_account", "id": p.account_id},
            lambda p: f"bank_account:{p.account_id}",
        ),
    ]
}


def target_label(target: dict) -> str:
    """"merchant:mer_1", "rail:sepa", ... — what the list filter `target` matches."""
    if "id" in target:
        return f"{target['kind']}:{target['id']}"
    return str(target.get("kind"))


# --- workflow input / state ---------------------------------------------------------------------


class OpsActionInput(BaseModel):
    action_id: str
    action_type: str
    target: dict
    params: dict
    risk_level: str
    required_approvals: int
    requires_admin: bool = False
    auto_execute: bool = True
    created_by: str
    created_at: datetime
    reason: str | None = None
    expires_in_seconds: float = 24 * 3600
    # how long an approved manual action waits for its execute before it expires
    execute_window_seconds: float = 24 * 3600
    rejections_to_reject: int = 1  # a rejection ends the action (configurable)
    rollback_of: str | None = None


class OpsActionResult(BaseModel):
    action_id: str
    status: str
    result: dict | None = None
    error: str | None = None


class Vote(BaseModel):
    actor: str
    roles: list[str]
    comment: str | None = None
    at: datetime | None = None


class OpsActionState(BaseModel):
    """What the `state` Query returns."""

    action_id: str
    action_type: str
    status: str
    risk_level: str
    required_approvals: int
    requires_admin: bool
    auto_execute: bool
    created_by: str
    expires_at: datetime | None = None
    approvals: list[Vote] = Field(default_factory=list)
    rejections: list[Vote] = Field(default_factory=list)
    executed_by: str | None = None
    result: dict | None = None
    error: str | None = None
    step: str = ""


class ApprovalRequest(BaseModel):
    """An `approve` or `reject` Update (or Signal).

    `actor` and `roles` are only what the sender typed: a vote counts for the subject and roles
    of its `grant` (core/ops_actions/grants.py), which payops signs for every API vote and issues to ops
    users on request (POST /api/v1/ops/grants); without a valid grant the vote is refused."""

    actor: str = Field(min_length=1)
    roles: list[str] = Field(default_factory=list)
    comment: str | None = Field(default=None, max_length=1000)
    grant: str | None = Field(default=None, max_length=4000)


class ApprovalTally(BaseModel):
    """What `approve` / `reject` return: the running tally."""

    action_id: str
    status: str
    approvals: int
    required: int
    remaining: int
    admin_approved: bool
    approvers: list[str]
    rejections: int


class ExecuteRequest(BaseModel):
    actor: str = Field(min_length=1)
    roles: list[str]


# Types of ApplicationError the approve/reject/execute validators raise (the API maps them).
ERR_SELF_APPROVAL = "self_approval"
ERR_DUPLICATE_APPROVAL = "duplicate_approval"
ERR_NOT_APPROVER = "not_an_approver"
ERR_ADMIN_REQUIRED = "admin_approval_required"
ERR_DECIDED = "action_decided"
ERR_NOT_EXECUTABLE = "not_executable"
ERR_EXECUTION_FAILED = "ExecutionFailed"
ERR_UNVERIFIED = "unverified_identity"  # no grant, or one that does not verify
ERR_BAD_INPUT = "bad_input"  # a signal / update payload that does not parse


# --- activity inputs / results -----------------------------------------------------------------


class StepInput(BaseModel):
    """Record a status change of an action: the row, an audit entry (once per event_key), a publish."""

    action_id: str
    event_key: str
    event: str
    actor: str = "workflow"
    to_status: str | None = None
    data: dict = Field(default_factory=dict)
    result: dict | None = None
    error: str | None = None
    executed: bool = False


class ApprovalRecordInput(BaseModel):
    action_id: str
    decision: str  # approve | reject
    actor: str
    roles: list[str]
    comment: str | None = None


class RefusalInput(BaseModel):
    """A refused or unparsable vote / signal: an audit entry (once per event_key) and an alert."""

    action_id: str | None = None  # the ops action it was sent to (None: a payout's signal)
    payout_id: str | None = None
    event_key: str
    signal_or_update: str  # e.g. "approve_signal", "approve"
    claimed_actor: str | None = None
    verified_actor: str | None = None
    error_type: str
    reason: str
    raw: str | None = None  # the unparsable input, truncated


class ExecuteActionInput(BaseModel):
    action_id: str
    action_type: str
    params: dict
    actor: str


class ExecuteActionResult(BaseModel):
    result: dict = Field(default_factory=dict)


class StepResult(BaseModel):
    status: str
    applied: bool
