"""A merchant's profile and KYC, payout bank accounts, settlement panel and withdrawals.

Merchant users reach only their own merchant (another merchant's is a 404). Changing the profile
takes merchant_admin (or merchants:manage); registering a bank account and withdrawing take
merchant_admin of the merchant itself. Ops change the KYC status and approve accounts through
ops actions (SET_KYC_STATUS, APPROVE_BANK_ACCOUNT), never here."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import Authenticated, BalancesRead, OptionalTemporal, Session, SettingsDep
from api.routers.payouts import IdempotencyKey
from api.schemas.common import problems
from api.schemas.merchant_settlement import (
    BankAccountCreate,
    BankAccountOut,
    ProfileOut,
    ProfileUpdate,
    SettlementOut,
    WithdrawalCreate,
)
from api.schemas.payouts import PayoutOut
from core.merchants import bank_accounts, profile, settlement
from core.platform.auth_tokens import Principal
from core.platform.errors import Forbidden, NotFound
from core.platform.roles import Permission, Role

router = APIRouter(prefix="/merchants", tags=["merchant settlement"])


def _readable(principal: Principal, merchant_id: str) -> None:
    # not only merchant users: an agent (role `agent`) reads no merchant's data either
    if not principal.is_platform_user and principal.merchant_id != merchant_id:
        raise NotFound(f"merchant {merchant_id} not found")


def _merchant_admin(principal: Principal, merchant_id: str) -> None:
    """merchant_admin of this very merchant: a viewer is 403, another merchant's user 404."""
    _readable(principal, merchant_id)
    if Role.MERCHANT_ADMIN not in principal.roles or principal.merchant_id != merchant_id:
        raise Forbidden("only the merchant's merchant_admin may do this")


@router.get("/{merchant_id}/profile", response_model=ProfileOut, responses=problems(401, 404))
async def get_profile(merchant_id: str, principal: Authenticated, session: Session):
    """Company name, country, account type, KYC status and the history of its changes."""
    _readable(principal, merchant_id)
    return await profile.get_profile(session, merchant_id)


@router.patch("/{merchant_id}/profile", response_model=ProfileOut, responses=problems(401, 403, 404, 422))
async def update_profile(merchant_id: str, body: ProfileUpdate, principal: Authenticated, session: Session):
    """Change company name, country or account type (merchant_admin, or ops with merchants:manage).
    Audited with each field's before and after. The KYC status changes only by a SET_KYC_STATUS ops action."""
    _readable(principal, merchant_id)
    if not (Role.MERCHANT_ADMIN in principal.roles or Permission.MERCHANTS_MANAGE in principal.permissions):
        raise Forbidden("only a merchant_admin (or ops with merchants:manage) may change the profile")
    return await profile.update_profile(session, merchant_id, actor=principal.sub,
                                        changes=body.model_dump(exclude_none=True, mode="json"))


@router.get("/{merchant_id}/bank-accounts", response_model=list[BankAccountOut], responses=problems(401, 403, 404))
async def list_bank_accounts(merchant_id: str, principal: BalancesRead, session: Session):
    """The merchant's payout bank accounts, newest first, masked, with status and cool-off."""
    _readable(principal, merchant_id)
    return await bank_accounts.list_accounts(session, merchant_id)


@router.post("/{merchant_id}/bank-accounts", response_model=BankAccountOut, status_code=201,
             responses=problems(401, 403, 404, 422))
async def register_bank_account(merchant_id: str, body: BankAccountCreate, principal: Authenticated,
                                session: Session, settings: SettingsDep):
    """Register a payout bank account (merchant_admin). Checked per rail (IBAN mod-97 and BIC for
    SEPA, ABA routing checksum for ACH, E.164 for mobile money, ...): a failing check is a 422
    `bank_account_invalid` naming the field. It takes effect after the cool-off
    (PAYOPS_BANK_ACCOUNT_COOL_OFF_HOURS) or an APPROVE_BANK_ACCOUNT ops action; a new account of
    the same rail and currency replaces the current one only then."""
    _merchant_admin(principal, merchant_id)
    return await bank_accounts.register_account(
        session, settings, merchant_id, actor=principal.sub, rail=body.rail.value, currency=body.currency,
        details=body.details, holder_name=body.holder_name)


@router.get("/{merchant_id}/bank-accounts/{account_id}", response_model=BankAccountOut,
            responses=problems(401, 403, 404))
async def get_bank_account(merchant_id: str, account_id: str, principal: BalancesRead, session: Session):
    _readable(principal, merchant_id)
    return await bank_accounts.get_account(session, merchant_id, account_id)


@router.get("/{merchant_id}/settlement", response_model=SettlementOut, responses=problems(401, 403, 404))
async def get_settlement(merchant_id: str, principal: BalancesRead, session: Session):
    """Per currency: available, held (pending + in flight), and each rail's next cutoff and
    settlement date from its calendar; plus the bank accounts and whether KYC allows a withdrawal."""
    _readable(principal, merchant_id)
    return await settlement.settlement_panel(session, merchant_id)


@router.post(
    "/{merchant_id}/withdrawals",
    response_model=PayoutOut,
    status_code=201,
    responses={200: {"model": PayoutOut, "description": "a replay: the original payout"},
               **problems(400, 401, 403, 404, 409, 422)},
)
async def withdraw(merchant_id: str, body: WithdrawalCreate, principal: Authenticated, key: IdempotencyKey,
                   response: Response, session: Session, temporal: OptionalTemporal, settings: SettingsDep):
    """Pay the merchant's own funds out to one of its bank accounts (merchant_admin only): an
    ordinary payout (same `PayoutWorkflow`, same Idempotency-Key rules as POST /api/v1/payouts).
    Refused (409) with `kyc_not_verified` (and `kyc_status`), `bank_account_cooling_off` (and
    `effective_at`), `bank_account_not_verified`, `bank_account_superseded` or
    `insufficient_funds`; 422 `currency_mismatch` for another currency than the account's."""
    _merchant_admin(principal, merchant_id)
    status, payload = await settlement.withdraw(
        session, temporal, settings, merchant_id=merchant_id, actor=principal.sub, idempotency_key=key,
        account_id=body.account_id, amount_minor=body.amount_minor, currency=body.currency,
        priority=body.priority)
    response.status_code = status
    return payload
