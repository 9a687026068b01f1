"""BankReconciliationWorkflow: payops's payouts of the last N days against each connector's record
of them, started by a Temporal Schedule (workers/schedules.py). A first look finds candidate
disagreements; after a durable timer a second look confirms those that did not heal (a webhook or
poll in flight) and records each as a discrepancy and an alert."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from core.platform.names import BANK_RECONCILIATION_WORKFLOW
    from activities.bank_reconciliation import BankCompareInput, BankConfirmInput, BankReconciliationActivities


class BankReconciliationInput(BaseModel):
    days: float = 3.0
    confirm_seconds: float = 15.0
    requested_by: str | None = "schedule"


class BankReconciliationResult(BaseModel):
    run_id: str
    status: str  # ok | discrepancies | incomplete
    payouts_checked: int
    agreed: int
    in_flight: int
    discrepancies: int
    healed: int


ACTIVITY = dict(
    start_to_close_timeout=timedelta(minutes=10),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=5),
)


@workflow.defn(name=BANK_RECONCILIATION_WORKFLOW)
class BankReconciliationWorkflow:
    @workflow.run
    async def run(self, params: BankReconciliationInput) -> BankReconciliationResult:
        run_id = f"bankrec_{workflow.uuid4().hex[:20]}"
        comparison = await workflow.execute_activity_method(
            BankReconciliationActivities.compare_payouts_with_bank,
            BankCompareInput(since=workflow.now() - timedelta(days=params.days)),
            **ACTIVITY,
        )
        if comparison.candidates and params.confirm_seconds > 0:
            await workflow.sleep(timedelta(seconds=params.confirm_seconds))
        report = await workflow.execute_activity_method(
            BankReconciliationActivities.confirm_bank_discrepancies,
            BankConfirmInput(run_id=run_id, comparison=comparison, requested_by=params.requested_by),
            **ACTIVITY,
        )
        return BankReconciliationResult(
            run_id=report.run_id, status=report.status, payouts_checked=report.payouts_checked,
            agreed=report.agreed, in_flight=report.in_flight, discrepancies=len(report.discrepancies),
            healed=report.healed,
        )
