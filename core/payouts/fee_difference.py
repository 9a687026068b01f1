"""A payout's fee follows the rail it went out on: the difference to the fee held is posted once."""

from __future__ import annotations

from sqlalchemy import select, update

from core.alerts.service import raise_alert
from core.ledger import service as ledger
from core.payouts.routing import choose_rail
from core.payouts.store import event_insert, event_key_seen
from core.platform.tables import journal_transactions, payouts, rail_rules
from core.rails.fees import FEE_DIFFERENCE_REF
from core.rails.store import rule_fee


async def post_rail_fee_difference(session, payout_id: str) -> dict | None:
    """When a payout went out on another rail than the one its fee was computed for (routing's
    fallback, e.g. SEPA -> wire because of an open breaker, or a failover), charge the used rail's
    fee: post the difference between the used rail's fee (rail_rules, as routing costed it) and
    the fee held, as one balanced journal (merchant available <-> fee revenue), once per payout
    (ref `fee-difference:<payout id>`), with an audit event explaining it; the payout's fee_minor
    becomes the used rail's fee. Called when the bank settled it, in its own transaction before
    the settlement's (so the settled event carries the fee charged).

    None when there is no difference. Raises ledger.InsufficientFundsError (nothing written, the
    difference explained in its `fee_difference`) when the merchant's available balance cannot pay
    a higher fee: the caller records that with `record_unpaid_fee_difference`."""

    row = (await session.execute(select(payouts).where(payouts.c.id == payout_id))).mappings().one()
    hold = await ledger.get_hold(session, payout_id)
    used_rail = row["rail"]
    if hold is None or hold.status == "reversed" or not used_rail:
        return None
    fee_rail = choose_rail(row["method"], row["currency"], row["priority"])  # what creation charged
    if used_rail == fee_rail:
        return None
    rule = (await session.execute(select(rail_rules.c.fee_fixed_minor, rail_rules.c.fee_bps)
                                  .where(rail_rules.c.rail == used_rail))).first()
    used_fee = rule_fee(used_rail, row["amount_minor"], rule.fee_fixed_minor if rule else None,
                        rule.fee_bps if rule else None)
    difference = used_fee - hold.fee_minor
    if difference == 0:
        return None
    merchant, currency = row["merchant_id"], row["currency"]
    explained = {
        "charged_rail": fee_rail, "used_rail": used_rail, "charged_fee_minor": hold.fee_minor,
        "used_fee_minor": used_fee, "difference_minor": difference,
    }
    reason = (f"fee follows the rail used: {used_rail} ({used_fee} minor) instead of {fee_rail} "
              f"({hold.fee_minor} minor held); difference {difference:+d} minor {currency}")
    # the payout's own rows first, the ledger last (its balance rows locked until the commit only)
    posted_before = await session.scalar(
        select(journal_transactions.c.id).where(
            journal_transactions.c.idempotency_ref == FEE_DIFFERENCE_REF.format(payout_id=payout_id)))
    if posted_before is None:
        await session.execute(update(payouts).where(payouts.c.id == payout_id).values(fee_minor=used_fee))
        await session.execute(event_insert(
            payout_id=payout_id, actor="workflow", from_status=row["status"], to_status=row["status"],
            reason=reason, data={**explained, "event_key": "fee-difference"},
        ))
    try:
        await ledger.post_journal(
            session,
            ref=FEE_DIFFERENCE_REF.format(payout_id=payout_id),
            kind=ledger.KIND_ADJUSTMENT,
            entries=[
                ledger.Posting(account_code=ledger.merchant_available_account(merchant), kind="liability",
                               currency=currency, amount_minor=difference, merchant_id=merchant),
                ledger.Posting(account_code=ledger.FEES_REVENUE, kind="revenue", currency=currency,
                               amount_minor=-difference),
            ],
            description=reason,
            merchant_id=merchant,
            payout_id=payout_id,
            metadata=explained,
            nonnegative=ledger.merchant_available_account(merchant) if difference > 0 else None,
        )
    except ledger.InsufficientFundsError as exc:
        exc.fee_difference = {**explained, "merchant_id": merchant, "currency": currency}  # type: ignore[attr-defined]
        raise
    return explained


FEE_DIFFERENCE_UNPAID_RULE = "fee_difference_unpaid"


async def record_unpaid_fee_difference(session, payout_id: str, explained: dict, detail: str) -> dict:
    """The used rail's higher fee could not be charged (the merchant's available balance is too
    low): the payout settles with the fee held, and this leaves it visible: one audit event on the
    payout (`fee-difference-unpaid`, once) and one high alert per payout for finance to collect
    the difference by hand. Returns the alert."""


    event_key = "fee-difference-unpaid"
    status, seen = (await session.execute(select(payouts.c.status, event_key_seen(payout_id, event_key))
                                          .where(payouts.c.id == payout_id))).one()
    difference, currency = explained.get("difference_minor"), explained.get("currency")
    reason = (f"fee not charged: the rail used, {explained.get('used_rail')}, costs {explained.get('used_fee_minor')} "
              f"minor but {explained.get('charged_fee_minor')} was held ({explained.get('charged_rail')}); the "
              f"merchant's available balance cannot pay the difference {difference:+d} minor {currency}: {detail}")
    if not seen:
        await session.execute(event_insert(payout_id=payout_id, actor="workflow", from_status=status,
                                           to_status=status, reason=reason,
                                           data={**explained, "event_key": event_key}))
    return await raise_alert(session, rule=FEE_DIFFERENCE_UNPAID_RULE, severity="high", scope=payout_id,
                             message=f"payout {payout_id}: {reason}",
                             data={**explained, "payout_id": payout_id})
