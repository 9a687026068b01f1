"""Merchants: creation, lookup, freeze status, funding (idempotent) and balances.

Functions take the session explicitly and raise core.platform.errors types; the caller owns the
transaction (the API's session dependency commits on success).
"""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import case, exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.platform import idempotency
from core.ledger import service as ledger
from core.platform.errors import Conflict, IdempotencyKeyReused, NotFound, PayopsError, Unprocessable
from core.platform.money import format_amount
from core.platform.settings import Settings
from core.platform.tables import controls, merchants

FUNDING_SCOPE = "merchants.fund"


def frozen_clause(merchant_id_col):
    """EXISTS an active freeze of the merchant (a column or a bound id)."""
    return exists().where(
        controls.c.kind == "merchant_freeze", controls.c.target == merchant_id_col, controls.c.active.is_(True)
    )


async def create_merchant(
    session: AsyncSession,
    *,
    name: str,
    default_currency: str,
    country: str | None,
    metadata: dict | None = None,
    merchant_id: str | None = None,
) -> dict:
    merchant_id = merchant_id or f"mer_{uuid.uuid4().hex}"
    row = (
        await session.execute(
            insert(merchants)
            .values(
                id=merchant_id, name=name, default_currency=default_currency, country=country,
                metadata=metadata or {},
            )
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(*merchants.c)
        )
    ).mappings().first()
    if row is None:
        raise Conflict(f"merchant {merchant_id} already exists")
    return {**row, "frozen": False}


async def get_merchant(session: AsyncSession, merchant_id: str) -> dict:
    row = (
        await session.execute(
            select(*merchants.c, frozen_clause(merchants.c.id).label("frozen")).where(merchants.c.id == merchant_id)
        )
    ).mappings().first()
    if row is None:
        raise NotFound(f"merchant {merchant_id} not found")
    return dict(row)


def balance_views(balances: list[ledger.Balance]) -> list[dict]:
    return [
        {
            "currency": b.currency,
            "available": format_amount(b.available_minor, b.currency),
            "held": format_amount(b.held_minor, b.currency),
            "available_minor": b.available_minor,
            "held_minor": b.held_minor,
        }
        for b in balances
    ]


async def get_balances(session: AsyncSession, merchant_id: str) -> list[dict]:
    await get_merchant(session, merchant_id)  # 404 for an unknown merchant, not an empty list
    return balance_views(await ledger.get_balances(session, merchant_id))


def _ledger_error(exc: ledger.LedgerError) -> PayopsError:
    if isinstance(exc, ledger.MerchantNotFoundError):
        return NotFound(exc.message)
    if isinstance(exc, ledger.LedgerConflictError):
        return Conflict(exc.message)
    return Unprocessable(exc.message)


async def fund_merchant(
    session: AsyncSession,
    settings: Settings,
    *,
    merchant_id: str,
    idempotency_key: str,
    amount_minor: int,
    currency: str,
    request: dict,
) -> tuple[int, dict]:
    """Credit the merchant's available balance once per Idempotency-Key.

    Returns (http status, response body): 201 for a new funding, 200 with the original body for
    a replay. The journal reference is derived from the key, so even a lost idempotency row
    could never post the same top-up twice.
    """
    await get_merchant(session, merchant_id)
    claim = await idempotency.claim_key(
        session,
        merchant_id=merchant_id,
        scope=FUNDING_SCOPE,
        key=idempotency_key,
        request_fingerprint=idempotency.fingerprint({"merchant_id": merchant_id, "body": request}),
        ttl_hours=settings.idempotency_ttl_hours,
    )
    if not claim.is_new:
        return 200, claim.response_body or {}
    ref = funding_reference(merchant_id, idempotency_key)
    try:
        result = await ledger.fund_merchant(session, merchant_id, amount_minor, currency, ref)
    except ledger.LedgerError as exc:
        raise _ledger_error(exc) from exc
    if not result.created:  # the key's record expired, but its top-up is on the ledger for good
        raise IdempotencyKeyReused(f"this Idempotency-Key already funded {merchant_id}; use a new key")
    body = {
        "merchant_id": merchant_id,
        "funding_ref": ref,
        "journal_transaction_id": result.transaction_id,
        "amount": format_amount(amount_minor, currency),
        "amount_minor": amount_minor,
        "currency": currency,
        "balances": balance_views(await ledger.get_balances(session, merchant_id)),
    }
    await idempotency.store_response(
        session, merchant_id=merchant_id, scope=FUNDING_SCOPE, key=idempotency_key,
        resource_id=str(result.transaction_id), status=201, body=body,
    )
    return 201, body


def funding_reference(merchant_id: str, idempotency_key: str) -> str:
    """The journal reference of a top-up (journal_transactions.idempotency_ref is 255 chars):
    the key itself while it fits (the references already on the ledger stay the same), else a
    SHA-256 of it: a key of up to 255 characters never overflows the column."""
    ref = f"funding:{merchant_id}:{idempotency_key}"
    if len(ref) <= 255:
        return ref
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
    return f"funding:{merchant_id}:sha256:{digest}"


async def merchants_first_with_prefix(session: AsyncSession, prefix: str, limit: int) -> list:
    """(id, name) of up to `limit` merchants, those whose id starts with `prefix` first, then by
    creation (the console's demo sign-in list)."""
    is_prefixed = merchants.c.id.startswith(prefix)
    return list((await session.execute(
        select(merchants.c.id, merchants.c.name)
        .order_by(case((is_prefixed, 0), else_=1), merchants.c.created_at, merchants.c.id)
        .limit(limit)
    )).all())
