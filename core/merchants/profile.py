"""A merchant's profile (company name, country, account type) and KYC status with its history.

The profile's fields are the merchant's to edit (merchant_admin; audited in `merchant_audit`).
The KYC status is not: ops change it only through a SET_KYC_STATUS ops action (multi-signature,
executed by activities/ops_actions.py through `set_kyc_status`), each change a row of
`merchant_kyc_history`. A merchant whose KYC is not verified cannot withdraw.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from core.merchants import store
from core.merchants.models import KycStatus
from core.merchants.service import get_merchant
from core.platform.errors import InvalidState, Unprocessable


def profile_view(row: dict, history: list[dict]) -> dict:
    return {
        "merchant_id": row["id"],
        "name": row["name"],
        "company_name": row["company_name"] or row["name"],
        "country": row["country"],
        "account_type": row["account_type"],
        "default_currency": row["default_currency"],
        "kyc_status": row["kyc_status"],
        "kyc_updated_at": row["kyc_updated_at"],
        "frozen": bool(row.get("frozen", False)),
        "kyc_history": [
            {"from_status": h["from_status"], "to_status": h["to_status"], "actor": h["actor"], "reason": h["reason"],
             "action_id": h["action_id"], "at": h["created_at"]}
            for h in history
        ],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


async def get_profile(session: AsyncSession, merchant_id: str) -> dict:
    row = await get_merchant(session, merchant_id)  # NotFound
    return profile_view(row, await store.kyc_history(session, merchant_id))


async def update_profile(session: AsyncSession, merchant_id: str, *, actor: str, changes: dict) -> dict:
    """Change profile fields (only those given); the audit entry records each field's before and after."""
    changes = {k: v for k, v in changes.items() if k in store.PROFILE_FIELDS}
    if not changes:
        raise Unprocessable("nothing to change: give company_name, country or account_type")
    before = await store.lock_merchant(session, merchant_id)
    diff = {k: {"from": before[k], "to": v} for k, v in changes.items() if before[k] != v}
    if diff:
        await store.update_profile(session, merchant_id, changes)
        await store.append_audit(session, merchant_id, actor=actor, event="profile_updated", data={"changes": diff})
    return await get_profile(session, merchant_id)


async def check_kyc_change(session: AsyncSession, merchant_id: str, to_status: str) -> str:
    """The current status; InvalidState when the change would change nothing (refused at creation)."""
    current = (await get_merchant(session, merchant_id))["kyc_status"]
    if current == to_status:
        raise InvalidState(f"merchant {merchant_id}'s KYC status is already {to_status}")
    return current


async def set_kyc_status(session: AsyncSession, merchant_id: str, *, to_status: str, actor: str, reason: str,
                         action_id: str | None) -> dict:
    """Apply a KYC change (an ops action's effect). Idempotent per action: a retried execution
    returns the change it made before. Returns the history row."""
    KycStatus(to_status)
    if action_id is not None:
        earlier = await store.kyc_change_of_action(session, action_id)
        if earlier is not None:
            return earlier
    row = await store.lock_merchant(session, merchant_id)
    return await store.set_kyc_status(session, merchant_id, from_status=row["kyc_status"], to_status=to_status,
                                      actor=actor, reason=reason, action_id=action_id)
