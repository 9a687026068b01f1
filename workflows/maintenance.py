"""Housekeeping on a Temporal Schedule: start the workflows of payouts whose start was lost
(a crash or a Temporal outage between the API's commit and its start_workflow call)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.platform.names import BANK_NOTIFICATION_SWEEP_WORKFLOW, PAYOUT_SWEEP_WORKFLOW
    from activities.payouts import PayoutActivities, SweepInput


class PayoutSweepInput(BaseModel):
    older_than_seconds: float = 30.0


class PayoutSweepResult(BaseModel):
    started: int


@workflow.defn(name=PAYOUT_SWEEP_WORKFLOW)
class PayoutSweepWorkflow:
    @workflow.run
    async def run(self, params: PayoutSweepInput) -> PayoutSweepResult:
        started = await workflow.execute_activity_method(
            PayoutActivities.sweep_unstarted_payouts,
            SweepInput(older_than_seconds=params.older_than_seconds),
            start_to_close_timeout=timedelta(minutes=5),
        )
        return PayoutSweepResult(started=started)


with workflow.unsafe.imports_passed_through():
    from activities.bank_notifications import BankNotificationActivities, RedeliverInput, RedeliverResult


class BankNotificationSweepInput(BaseModel):
    older_than_seconds: float = 10.0


@workflow.defn(name=BANK_NOTIFICATION_SWEEP_WORKFLOW)
class BankNotificationSweepWorkflow:
    """On a Schedule: deliver the bank notifications intake stored but could not deliver."""

    @workflow.run
    async def run(self, params: BankNotificationSweepInput) -> RedeliverResult:
        return await workflow.execute_activity_method(
            BankNotificationActivities.redeliver_bank_notifications,
            RedeliverInput(older_than_seconds=params.older_than_seconds),
            start_to_close_timeout=timedelta(minutes=5),
        )
