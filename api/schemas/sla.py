"""SLA API models: the rules keyed by rail, connector, country and priority, and a resolution."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.sla.service import MAX_TARGET_BUSINESS_DAYS, MAX_TARGET_SECONDS

PriorityKey = Literal["batch", "standard", "instant", "priority"]
_COUNTRY = r"^[A-Za-z]{2}$"


class SlaRuleOut(BaseModel):
    id: int
    rail: str | None = Field(description="null = any rail")
    connector: str | None = Field(description="null = any connector")
    country: str | None = Field(description="the beneficiary's country (ISO 3166 alpha-2); null = any")
    priority: str | None = Field(description="the payout's priority; null = any")
    target_seconds: int | None = Field(description="target = routing time + this many seconds")
    target_business_days: int | None = Field(
        description="target = this many business days after the rail's next cutoff (T+0 = the cutoff)")
    enabled: bool
    description: str | None = None
    specificity: int = Field(description="how many of the four keys the rule sets: more wins")
    created_by: str
    updated_by: str | None = None
    created_at: datetime
    updated_at: datetime


class SlaRuleIn(BaseModel):
    """A new rule: any of the four keys (omitted or null = any), and exactly one target."""

    model_config = ConfigDict(extra="forbid")

    rail: str | None = Field(default=None, max_length=32)
    connector: str | None = Field(default=None, max_length=64)
    country: str | None = Field(default=None, pattern=_COUNTRY)
    priority: PriorityKey | None = None
    target_seconds: int | None = Field(default=None, ge=1, le=MAX_TARGET_SECONDS)
    target_business_days: int | None = Field(default=None, ge=0, le=MAX_TARGET_BUSINESS_DAYS)
    enabled: bool = True
    description: str | None = Field(default=None, max_length=500)


class SlaRulePatch(BaseModel):
    """Only the fields given change (null for a key = any); setting one target clears the other."""

    model_config = ConfigDict(extra="forbid")

    rail: str | None = Field(default=None, max_length=32)
    connector: str | None = Field(default=None, max_length=64)
    country: str | None = Field(default=None, pattern=_COUNTRY)
    priority: PriorityKey | None = None
    target_seconds: int | None = Field(default=None, ge=1, le=MAX_TARGET_SECONDS)
    target_business_days: int | None = Field(default=None, ge=0, le=MAX_TARGET_BUSINESS_DAYS)
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=500)


class SlaRuleVerdict(BaseModel):
    rule_id: int
    verdict: Literal["applies", "outranked", "no_match", "disabled"]
    why: str
    specificity: int


class SlaResolution(BaseModel):
    rail: str
    connector: str | None
    country: str | None
    priority: str | None
    rule: SlaRuleOut | None = Field(description="the rule that applies; null = the rail's own settlement terms")
    why: str
    precedence: str = Field(description="the precedence rule, in words")
    rules: list[SlaRuleVerdict] = Field(description="every rule, most specific first, with its verdict")


class SlaRuleChange(BaseModel):
    id: int
    rule_id: int
    change: Literal["created", "updated", "deleted"]
    actor: str
    before: dict | None
    after: dict | None
    created_at: datetime
