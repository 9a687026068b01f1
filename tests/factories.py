"""Test data: merchants, funding and payout rows written the way the product writes them."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.ledger import service as ledger
from core.platform.crypto import FieldCipher
from core.rails.fees import payout_fee
from core.payouts.models import PayoutWorkflowInput
from core.payouts.routing import choose_rail
from core.platform.settings import Settings
from core.platform.tables import merchants, payouts, rail_rules

GOOD_IBAN = "DE89370400440532013000"


async def leave_wire_the_only_fallback_for_eur(sm: async_sessionmaker[AsyncSession]) -> None:
    """Disables the `sepa` rail, so that a `priority` EUR payout whose SEPA Instant is out of reach
    falls back to wire whatever the date. Routing takes the fastest rail for `priority`, and wire
    (15:00 New York, same day) is faster than SEPA (18:00 Paris, next TARGET day) except from
    15:00 New York on the eve of a US-only holiday to 15:00 New York on the holiday (Thanksgiving,
    Juneteenth, ..., weekends before a Monday one), when routing rightly takes SEPA: about 5 % of
    the hours of a year, so tests about the wire fallback must not depend on today's date."""
    async with sm() as session, session.begin():
        await session.execute(update(rail_rules).where(rail_rules.c.rail == "sepa").values(enabled=False))


async def create_merchant(sm: async_sessionmaker[AsyncSession], *, currency: str = "EUR", funded_minor: int = 0) -> str:
    merchant_id = f"mer_{uuid.uuid4().hex[:12]}"
    async with sm() as session, session.begin():
        await session.execute(insert(merchants).values(id=merchant_id, name="Test Merchant", default_currency=currency))
        if funded_minor:
            await ledger.fund_merchant(session, merchant_id, funded_minor, currency, f"funding:{merchant_id}:seed")
    return merchant_id


def sepa_beneficiary(account_tail: str | None = None) -> dict:
    # The sandbox keys its test behaviours on the account identifier's last 4 digits.
    iban = GOOD_IBAN if account_tail is None else GOOD_IBAN[:-4] + account_tail
    return {"type": "sepa", "name": "Jane Doe", "iban": iban, "bic": "COBADEFFXXX"}


async def create_payout_row(
    sm: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    merchant_id: str,
    amount_minor: int = 10_000,
    currency: str = "EUR",
    method: str = "sepa",
    priority: str = "instant",  # submits now; a standard payout waits for its rail's cutoff
    beneficiary: dict | None = None,
) -> PayoutWorkflowInput:
    payout_id = f"po_{uuid.uuid4().hex}"
    beneficiary = beneficiary or sepa_beneficiary()
    fee = payout_fee(choose_rail(method, currency, priority), amount_minor)
    now = datetime.now(timezone.utc)
    async with sm() as session, session.begin():
        await session.execute(
            insert(payouts).values(
                id=payout_id, merchant_id=merchant_id, idempotency_key=uuid.uuid4().hex,
                amount_minor=amount_minor, currency=currency, fee_minor=fee, method=method,
                priority=priority, status="pending",
                beneficiary_encrypted=FieldCipher(settings.codec_keys).encrypt_json(beneficiary),
                beneficiary_masked={"name": beneficiary["name"]}, created_at=now,
            )
        )
    return PayoutWorkflowInput(
        payout_id=payout_id, merchant_id=merchant_id, amount_minor=amount_minor, fee_minor=fee,
        currency=currency, method=method, priority=priority, created_at=now,
        retry_initial_seconds=0.05, retry_max_interval_seconds=1.0, retry_max_attempts=3,
        settlement_poll_seconds=0.3, return_window_seconds=0.5, dlq_expiry_seconds=3600,
    )
