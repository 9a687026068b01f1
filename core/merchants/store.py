"""Reads and writes of the merchant profile, KYC history, merchant audit trail and payout bank
accounts (merchants' own columns, `merchant_kyc_history`, `merchant_audit`, `merchant_bank_accounts`).

Callers own the transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.platform.errors import NotFound
from core.platform.tables import merchant_audit, merchant_bank_accounts, merchant_kyc_history, merchants

PROFILE_FIELDS = ("company_name", "country", "account_type")


# --- profile and KYC ------------------------------------------------------------------------


async def lock_merchant(session: AsyncSession, merchant_id: str) -> dict:
    """The merchant's row, locked against other profile/KYC/bank-account changes. FOR NO KEY
    UPDATE: the foreign-key checks of its payouts and holds (FOR KEY SHARE) are not blocked."""
    row = (await session.execute(
        select(merchants).where(merchants.c.id == merchant_id).with_for_update(key_share=True)  # FOR NO KEY UPDATE
    )).mappings().first()
    if row is None:
        raise NotFound(f"merchant {merchant_id} not found")
    return dict(row)


async def update_profile(session: AsyncSession, merchant_id: str, changes: dict) -> dict:
    row = (await session.execute(
        update(merchants).where(merchants.c.id == merchant_id)
        .values(**changes, updated_at=func.now()).returning(*merchants.c))).mappings().first()
    if row is None:
        raise NotFound(f"merchant {merchant_id} not found")
    return dict(row)


async def kyc_change_of_action(session: AsyncSession, action_id: str) -> dict | None:
    row = (await session.execute(
        select(merchant_kyc_history).where(merchant_kyc_history.c.action_id == action_id))).mappings().first()
    return dict(row) if row else None


async def set_kyc_status(session: AsyncSession, merchant_id: str, *, from_status: str | None, to_status: str,
                         actor: str, reason: str | None, action_id: str | None) -> dict:
    """Set the status and append its history row (the caller locked the merchant)."""
    await session.execute(update(merchants).where(merchants.c.id == merchant_id)
                          .values(kyc_status=to_status, kyc_updated_at=func.now(), updated_at=func.now()))
    row = (await session.execute(
        merchant_kyc_history.insert().values(
            merchant_id=merchant_id, from_status=from_status, to_status=to_status, actor=actor, reason=reason,
            action_id=action_id,
        ).returning(*merchant_kyc_history.c))).mappings().one()
    return dict(row)


async def kyc_history(session: AsyncSession, merchant_id: str) -> list[dict]:
    rows = await session.execute(select(merchant_kyc_history).where(merchant_kyc_history.c.merchant_id == merchant_id)
                                 .order_by(merchant_kyc_history.c.id))
    return [dict(r) for r in rows.mappings().all()]


async def append_audit(session: AsyncSession, merchant_id: str, *, actor: str, event: str, data: dict) -> None:
    await session.execute(merchant_audit.insert().values(merchant_id=merchant_id, actor=actor, event=event, data=data))


async def audit_trail(session: AsyncSession, merchant_id: str, limit: int = 200) -> list[dict]:
    rows = await session.execute(select(merchant_audit).where(merchant_audit.c.merchant_id == merchant_id)
                                 .order_by(merchant_audit.c.id.desc()).limit(limit))
    return [dict(r) for r in rows.mappings().all()]


# --- payout bank accounts -------------------------------------------------------------------


async def insert_bank_account(session: AsyncSession, **values) -> dict:
    row = (await session.execute(
        merchant_bank_accounts.insert().values(**values).returning(*merchant_bank_accounts.c))).mappings().one()
    return dict(row)


async def get_bank_account(session: AsyncSession, account_id: str, *, for_update: bool = False) -> dict | None:
    stmt = select(merchant_bank_accounts).where(merchant_bank_accounts.c.id == account_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).mappings().first()
    return dict(row) if row else None


async def list_bank_accounts(session: AsyncSession, merchant_id: str, *, rail: str | None = None,
                             currency: str | None = None) -> list[dict]:
    """A merchant's accounts, oldest first (optionally of one rail and currency)."""
    stmt = select(merchant_bank_accounts).where(merchant_bank_accounts.c.merchant_id == merchant_id)
    if rail is not None:
        stmt = stmt.where(merchant_bank_accounts.c.rail == rail)
    if currency is not None:
        stmt = stmt.where(merchant_bank_accounts.c.currency == currency)
    rows = await session.execute(stmt.order_by(merchant_bank_accounts.c.created_at, merchant_bank_accounts.c.id))
    return [dict(r) for r in rows.mappings().all()]


async def review_bank_account(session: AsyncSession, account_id: str, *, status: str, effective_at: datetime | None,
                              verified: bool, reviewed_by: str, reason: str | None) -> dict:
    values: dict = {"status": status, "effective_at": effective_at, "reviewed_by": reviewed_by,
                    "review_reason": reason, "updated_at": func.now()}
    if verified:
        values["verified_at"] = func.coalesce(merchant_bank_accounts.c.verified_at, func.now())
    row = (await session.execute(
        update(merchant_bank_accounts).where(merchant_bank_accounts.c.id == account_id).values(**values)
        .returning(*merchant_bank_accounts.c))).mappings().one()
    return dict(row)
