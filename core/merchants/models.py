"""Merchant domain types: KYC statuses, account types, payout bank account statuses.

Pure enums and pydantic models, safe to import from workflow code (the ops actions' params use them)."""

from __future__ import annotations

from enum import StrEnum


class KycStatus(StrEnum):
    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"
    NEEDS_INFO = "needs_info"


class AccountType(StrEnum):
    INDIVIDUAL = "individual"
    BUSINESS = "business"


class BankAccountStatus(StrEnum):
    PENDING_VERIFICATION = "pending_verification"  # passed its checks; waits for an ops approval
    VERIFIED = "verified"  # passed its checks (and, in approval_only mode, was approved)
    REJECTED = "rejected"  # ops refused it (APPROVE_BANK_ACCOUNT with approve=false)
