"""payops against the bank as activities: the first look (both views compared) and the second
look (candidates asked again, confirmed ones recorded and alerted). See core/reconciliation/bank.py."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from connectors.registry import ConnectorRegistry
from core.reconciliation.bank import (
    BankComparison,
    BankReconciliationReport,
    compare_with_bank,
    confirm_discrepancies,
    record_bank_reconciliation,
)


class BankCompareInput(BaseModel):
    since: datetime


class BankConfirmInput(BaseModel):
    run_id: str
    comparison: BankComparison
    requested_by: str | None = None


class BankReconciliationActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], connectors: ConnectorRegistry) -> None:
        self._sessionmaker = sessionmaker
        self._connectors = connectors

    @activity.defn(name="compare_payouts_with_bank")
    async def compare_payouts_with_bank(self, params: BankCompareInput) -> BankComparison:
        return await compare_with_bank(self._sessionmaker, self._connectors, since=params.since)

    @activity.defn(name="confirm_bank_discrepancies")
    async def confirm_bank_discrepancies(self, params: BankConfirmInput) -> BankReconciliationReport:
        confirmed, errors = await confirm_discrepancies(self._sessionmaker, self._connectors,
                                                        params.comparison.candidates)
        return await record_bank_reconciliation(self._sessionmaker, params.run_id, params.comparison, confirmed,
                                                errors, requested_by=params.requested_by)
