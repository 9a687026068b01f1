"""Recommendation responses (what the OpenAPI document shows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class RecommendationImpact(BaseModel):
    amount_minor: int = Field(description="estimated impact per month, in minor units of `currency`")
    currency: str
    per: str = Field(description='always "month" (30 days)')
    arithmetic: str = Field(description="how amount_minor was computed, in words and numbers")


class SuggestedAction(BaseModel):
    type: str = Field(description="an ops action type (GET /api/v1/ops/action-types)")
    params: dict[str, Any]


class RecommendationLinks(BaseModel):
    self: str
    action: str | None


class RecommendationOut(BaseModel):
    id: str
    kind: str = Field(description="cheaper_route | batch_instead_of_standard | float_runway | failing_connector")
    merchant_id: str | None = Field(description="null for a platform-wide one (a connector)")
    status: str = Field(description="pending | applied | dismissed | expired")
    title: str
    impact: RecommendationImpact
    confidence: float = Field(ge=0, le=1)
    confidence_explanation: str
    evidence: dict[str, Any]
    suggested_action: SuggestedAction | None = Field(description="null: informational, nothing to apply")
    action_id: str | None = Field(description="the ops action Apply created")
    decided_by: str | None
    decided_at: datetime | None
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
    links: RecommendationLinks


class RecommendationPage(BaseModel):
    data: list[RecommendationOut]
    next_cursor: str | None
