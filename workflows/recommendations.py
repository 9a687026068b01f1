"""RecommendationWorkflow: one computation of the recommendations, started by the Temporal
Schedule `recommendations` (PAYOPS_RECOMMENDATION_EVERY_SECONDS)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from core.platform.names import RECOMMENDATION_WORKFLOW
    from activities.recommendations import RecommendationActivities, RecommendationRunInput


class RecommendationInput(BaseModel):
    pass


class RecommendationResult(BaseModel):
    expired: int
    computed: int
    opened: int
    refreshed: int
    suppressed: int


@workflow.defn(name=RECOMMENDATION_WORKFLOW)
class RecommendationWorkflow:
    @workflow.run
    async def run(self, params: RecommendationInput) -> RecommendationResult:
        # the next scheduled run is the real retry; a few quick ones cover a blip
        result = await workflow.execute_activity_method(
            RecommendationActivities.compute_recommendations,
            RecommendationRunInput(),
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        return RecommendationResult(**result.model_dump())
