"""The double-entry ledger against real PostgreSQL: postings, holds, concurrency, the check."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.ledger import service as ledger
from core.platform.db import transaction
from core.ledger.service import (
    ADJUSTMENTS,
    FEES_REVENUE,
    TREASURY_FUNDING,
    HoldNotFoundError,
    HoldStateError,
    InsufficientFundsError,
    LedgerConflictError,
    Posting,
    UnbalancedJournalError,
    adjust_balance,
    bank_clearing_account,
    check_ledger,
    fund_merchant,
    get_balances,
    get_hold,
    merchant_available_account,
    merchant_held_account,
    place_hold,
    post_journal,
    post_return,
    reverse_hold,
    run_ledger_check,
    settle_hold,
)

Sessions = async_sessionmaker[AsyncSession]
EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)


# --- helpers ------------------------------------------------------------------------------


async def add_merchant(sessionmaker: Sessions, currency: str = "USD") -> str:
    merchant_id = f"m_{uuid.uuid4().hex[:10]}"
    async with transaction(sessionmaker) as s:
        await s.execute(
            text("INSERT INTO merchants (id, name, default_currency) VALUES (:id, :name, :c)"),
            {"id": merchant_id, "name": f"Merchant {merchant_id}", "c": currency},
        )
    return merchant_id


async def add_payout(
    sessionmaker: Sessions,
    merchant_id: str,
    *,
    amount_minor: int = 1000,
    fee_minor: int = 50,
    currency: str = "USD",
    status: str = "pending",
) -> str:
    payout_id = f"po_{uuid.uuid4().hex[:12]}"
    async with transaction(sessionmaker) as s:
        await s.execute(
            text(
                "INSERT INTO payouts (id, merchant_id, idempotency_key, amount_minor, currency, "
                "fee_minor, method, priority, status, beneficiary_encrypted, beneficiary_masked) "
                "VALUES (:id, :m, :key, :amount, :c, :fee, 'sepa', 'standard', :status, "
                ":enc, CAST(:masked AS jsonb))"
            ),
            {
                "id": payout_id,
                "m": merchant_id,
                "key": uuid.uuid4().hex,
                "amount": amount_minor,
                "c": currency,
                "fee": fee_minor,
                "status": status,
                "enc": b"\x00encrypted",
                "masked": json.dumps({"iban": "DE89 **** 3000"}),
            },
        )
    return payout_id


async def set_payout_status(sessionmaker: Sessions, payout_id: str, status: str) -> None:
    async with transaction(sessionmaker) as s:
        await s.execute(
            text("UPDATE payouts SET status = :s WHERE id = :id"), {"s": status, "id": payout_id}
        )


async def account_balance(sessionmaker: Sessions, code: str, currency: str = "USD") -> int:
    """Raw balance_minor (debit positive); 0 if the account does not exist."""
    async with sessionmaker() as s:
        value = await s.scalar(
            text("SELECT balance_minor FROM ledger_accounts WHERE code = :c AND currency = :cur"),
            {"c": code, "cur": currency},
        )
    return value or 0


async def available(sessionmaker: Sessions, merchant_id: str, currency: str = "USD") -> int:
    return -(await account_balance(sessionmaker, merchant_available_account(merchant_id), currency))


async def held(sessionmaker: Sessions, merchant_id: str, currency: str = "USD") -> int:
    return -(await account_balance(sessionmaker, merchant_held_account(merchant_id), currency))


async def table_counts(sessionmaker: Sessions) -> dict[str, int]:
    async with sessionmaker() as s:
        row = (
            await s.execute(
                text(
                    "SELECT (SELECT count(*) FROM journal_transactions) AS tx, "
                    "(SELECT count(*) FROM journal_entries) AS entries, "
                    "(SELECT count(*) FROM ledger_accounts) AS accounts, "
                    "(SELECT count(*) FROM ledger_holds) AS holds, "
                    "(SELECT coalesce(sum(abs(balance_minor)), 0) FROM ledger_accounts) AS money"
                )
            )
        ).one()
    return dict(row._mapping)


async def funded_merchant(sessionmaker: Sessions, amount_minor: int, currency: str = "USD") -> str:
    merchant_id = await add_merchant(sessionmaker, currency)
    async with transaction(sessionmaker) as s:
        await fund_merchant(s, merchant_id, amount_minor, currency, f"fund:{merchant_id}:1")
    return merchant_id


async def assert_ledger_ok(sessionmaker: Sessions) -> None:
    async with sessionmaker() as s:
        report = await check_ledger(s)
    assert report.ok, report.violations


def posting(code: str, kind: str, currency: str, amount_minor: int) -> Posting:
    return Posting(account_code=code, kind=kind, currency=currency, amount_minor=amount_minor)


def violation_kinds(report: ledger.LedgerCheckReport) -> set[str]:
    return {v.split(":", 1)[0] for v in report.violations}


# --- posting ------------------------------------------------------------------------------


async def test_balanced_posting_writes_entries_and_balances(sessionmaker: Sessions) -> None:
    merchant_id = await add_merchant(sessionmaker)
    async with transaction(sessionmaker) as s:
        result = await fund_merchant(s, merchant_id, 10_000, "USD", "fund-1")
    assert result.created

    assert await account_balance(sessionmaker, TREASURY_FUNDING) == 10_000
    assert await available(sessionmaker, merchant_id) == 10_000
    async with sessionmaker() as s:
        rows = (
            await s.execute(
                text(
                    "SELECT a.code, a.kind, a.merchant_id, e.amount_minor FROM journal_entries e "
                    "JOIN ledger_accounts a ON a.id = e.account_id WHERE e.transaction_id = :t "
                    "ORDER BY e.amount_minor"
                ),
                {"t": result.transaction_id},
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (merchant_available_account(merchant_id), "liability", merchant_id, -10_000),
        (TREASURY_FUNDING, "asset", None, 10_000),
    ]
    async with sessionmaker() as s:
        assert await get_balances(s, merchant_id) == [
            ledger.Balance(currency="USD", available_minor=10_000, held_minor=0)
        ]
    await assert_ledger_ok(sessionmaker)


async def test_multi_currency_posting_balances_per_currency(sessionmaker: Sessions) -> None:
    merchant_id = await add_merchant(sessionmaker)
    async with transaction(sessionmaker) as s:
        await fund_merchant(s, merchant_id, 500, "EUR", "fund-eur")
        await fund_merchant(s, merchant_id, 1500, "XOF", "fund-xof")
    async with sessionmaker() as s:
        assert await get_balances(s, merchant_id) == [
            ledger.Balance(currency="EUR", available_minor=500, held_minor=0),
            ledger.Balance(currency="XOF", available_minor=1500, held_minor=0),
        ]
    # balanced per currency, not overall: +100 USD / -100 EUR is refused
    async with sessionmaker() as s:
        with pytest.raises(UnbalancedJournalError):
            await post_journal(
                s,
                ref="fx",
                kind="fx",
                entries=[
                    posting(ADJUSTMENTS, "equity", "USD", 100),
                    posting(ADJUSTMENTS, "equity", "EUR", -100),
                ],
            )


async def test_unbalanced_posting_refused_before_writing(sessionmaker: Sessions) -> None:
    before = await table_counts(sessionmaker)
    async with transaction(sessionmaker) as s:
        with pytest.raises(UnbalancedJournalError) as info:
            await post_journal(
                s,
                ref="bad-1",
                kind="test",
                entries=[
                    posting(TREASURY_FUNDING, "asset", "USD", 100),
                    posting(FEES_REVENUE, "revenue", "USD", -99),
                ],
            )
    assert info.value.code == "unbalanced_journal"
    assert await table_counts(sessionmaker) == before


async def test_unbalanced_rows_refused_by_database_at_commit(sessionmaker: Sessions) -> None:
    # a bug that bypasses post_journal: the deferred constraint trigger refuses it at commit
    async with transaction(sessionmaker) as s:
        await fund_merchant(s, await add_merchant(sessionmaker), 100, "USD", "fund-raw")
    before = await table_counts(sessionmaker)
    async with sessionmaker() as s:
        await s.begin()
        account_id = await s.scalar(
            text("SELECT id FROM ledger_accounts WHERE code = :c"), {"c": TREASURY_FUNDING}
        )
        tx_id = await s.scalar(
            text(
                "INSERT INTO journal_transactions (idempotency_ref, kind) "
                "VALUES ('raw-unbalanced', 'test') RETURNING id"
            )
        )
        await s.execute(
            text(
                "INSERT INTO journal_entries (transaction_id, account_id, amount_minor, currency) "
                "VALUES (:t, :a, 100, 'USD')"
            ),
            {"t": tx_id, "a": account_id},
        )
        # the insert itself succeeds: the check is deferred to commit
        with pytest.raises(DBAPIError, match="unbalanced"):
            await s.commit()
    assert await table_counts(sessionmaker) == before


async def test_idempotent_replay_posts_nothing(sessionmaker: Sessions) -> None:
    merchant_id = await add_merchant(sessionmaker)
    async with transaction(sessionmaker) as s:
        first = await fund_merchant(s, merchant_id, 2_500, "USD", "topup-42")
    before = await table_counts(sessionmaker)
    async with transaction(sessionmaker) as s:
        second = await fund_merchant(s, merchant_id, 2_500, "USD", "topup-42")
    assert first.created and not second.created
    assert second.transaction_id == first.transaction_id
    assert await table_counts(sessionmaker) == before
    assert await available(sessionmaker, merchant_id) == 2_500


async def test_same_ref_different_entries_conflicts(sessionmaker: Sessions) -> None:
    merchant_id = await add_merchant(sessionmaker)
    async with transaction(sessionmaker) as s:
        await fund_merchant(s, merchant_id, 2_500, "USD", "topup-7")
    async with sessionmaker() as s:
        with pytest.raises(LedgerConflictError) as info:
            await fund_merchant(s, merchant_id, 2_600, "USD", "topup-7")
    assert info.value.code == "ledger_conflict"
    assert await available(sessionmaker, merchant_id) == 2_500


async def test_concurrent_replays_post_once(sessionmaker: Sessions) -> None:
    merchant_id = await add_merchant(sessionmaker)

    async def fund() -> ledger.JournalResult:
        async with transaction(sessionmaker) as s:
            return await fund_merchant(s, merchant_id, 300, "USD", "topup-race")

    results = await asyncio.gather(*(fund() for _ in range(8)))
    assert sum(r.created for r in results) == 1
    assert len({r.transaction_id for r in results}) == 1
    assert await available(sessionmaker, merchant_id) == 300


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE journal_entries SET amount_minor = amount_minor * 2",
        "DELETE FROM journal_entries",
        "UPDATE journal_transactions SET kind = 'edited'",
        "DELETE FROM journal_transactions",
        "TRUNCATE journal_entries",
    ],
)
async def test_journal_is_append_only(sessionmaker: Sessions, statement: str) -> None:
    async with transaction(sessionmaker) as s:
        await fund_merchant(s, await add_merchant(sessionmaker), 100, "USD", "fund-ao")
    async with sessionmaker() as s:
        with pytest.raises(DBAPIError, match="append-only"):
            async with s.begin():
                await s.execute(text(statement))
    await assert_ledger_ok(sessionmaker)


# --- holds --------------------------------------------------------------------------------


async def test_fund_hold_settle_moves_exactly_amount_plus_fee(sessionmaker: Sessions) -> None:
    merchant_id = await funded_merchant(sessionmaker, 10_000)
    payout_id = await add_payout(sessionmaker, merchant_id, amount_minor=1_000, fee_minor=25)

    async with transaction(sessionmaker) as s:
        hold = await place_hold(
            s,
            payout_id=payout_id,
            merchant_id=merchant_id,
            amount_minor=1_000,
            fee_minor=25,
            currency="USD",
            expires_at=EXPIRES,
        )
    assert (hold.status, hold.amount_minor, hold.fee_minor, hold.total_minor) == (
        "active",
        1_000,
        25,
        1_025,
    )
    assert hold.expires_at == EXPIRES
    assert await available(sessionmaker, merchant_id) == 10_000 - 1_025
    assert await held(sessionmaker, merchant_id) == 1_025
    await assert_ledger_ok(sessionmaker)

    async with transaction(sessionmaker) as s:
        settled = await settle_hold(s, payout_id=payout_id, connector="sandbox")
        await s.execute(
            text("UPDATE payouts SET status = 'settled' WHERE id = :id"), {"id": payout_id}
        )
    assert settled.status == "released"
    assert await available(sessionmaker, merchant_id) == 10_000 - 1_025
    assert await held(sessionmaker, merchant_id) == 0
    assert await account_balance(sessionmaker, bank_clearing_account("sandbox")) == -1_000
    assert await account_balance(sessionmaker, FEES_REVENUE) == -25  # revenue: credit balance
    async with sessionmaker() as s:
        assert await get_balances(s, merchant_id) == [
            ledger.Balance(currency="USD", available_minor=8_975, held_minor=0)
        ]

    # settling again (a retried activity) posts nothing
    before = await table_counts(sessionmaker)
    async with transaction(sessionmaker) as s:
        again = await settle_hold(s, payout_id=payout_id, connector="sandbox")
    assert again.status == "released"
    assert await table_counts(sessionmaker) == before
    # ... but a replay naming another connector is a conflict, not a silent no-op
    async with sessionmaker() as s:
        with pytest.raises(LedgerConflictError):
            await settle_hold(s, payout_id=payout_id, connector="other-bank")
    await assert_ledger_ok(sessionmaker)


async def test_settle_without_fee(sessionmaker: Sessions) -> None:
    merchant_id = await funded_merchant(sessionmaker, 500)
    payout_id = await add_payout(sessionmaker, merchant_id, amount_minor=500, fee_minor=0)
    async with transaction(sessionmaker) as s:
        await place_hold(
            s, payout_id=payout_id, merchant_id=merchant_id, amount_minor=500, fee_minor=0,
            currency="USD", expires_at=None,
        )
        await settle_hold(s, payout_id=payout_id, connector="sandbox")
    assert await account_balance(sessionmaker, FEES_REVENUE) == 0
    assert await account_balance(sessionmaker, bank_clearing_account("sandbox")) == -500
    assert await available(sessionmaker, merchant_id) == 0


async def test_hold_then_reverse_restores_available(sessionmaker: Sessions) -> None:
    merchant_id = await funded_merchant(sessionmaker, 5_000)
    payout_id = await add_payout(sessionmaker, merchant_id, amount_minor=4_000, fee_minor=100)
    async with transaction(sessionmaker) as s:
        await place_hold(
            s, payout_id=payout_id, merchant_id=merchant_id, amount_minor=4_000, fee_minor=100,
            currency="USD", expires_at=EXPIRES,
        )
    assert await available(sessionmaker, merchant_id) == 900

    async with transaction(sessionmaker) as s:
        reversed_ = await reverse_hold(s, payout_id=payout_id, reason="closed account")
    assert reversed_.status == "reversed"
    assert await available(sessionmaker, merchant_id) == 5_000
    assert await held(sessionmaker, merchant_id) == 0

    before = await table_counts(sessionmaker)
    async with transaction(sessionmaker) as s:
        again = await reverse_hold(s, payout_id=payout_id, reason="retried activity")
    assert again.status == "reversed"
    assert await table_counts(sessionmaker) == before
    await set_payout_status(sessionmaker, payout_id, "failed")
    await assert_ledger_ok(sessionmaker)


async def test_place_hold_is_idempotent_per_payout(sessionmaker: Sessions) -> None:
    merchant_id = await funded_merchant(sessionmaker, 1_000)
    payout_id = await add_payout(sessionmaker, merchant_id, amount_minor=600, fee_minor=0)
    args = dict(
        payout_id=payout_id, merchant_id=merchant_id, amount_minor=600, fee_minor=0,
        currency="USD", expires_at=EXPIRES,
    )
    async with transaction(sessionmaker) as s:
        first = await place_hold(s, **args)
    # the second call would not fit in what is left (400), but it is the same hold
    async with transaction(sessionmaker) as s:
        second = await place_hold(s, **args)
    assert second == first
    assert await available(sessionmaker, merchant_id) == 400
    async with sessionmaker() as s:
        with pytest.raises(LedgerConflictError):
            await place_hold(s, **{**args, "amount_minor": 300})
    async with sessionmaker() as s:
        assert await get_hold(s, payout_id) == first
        assert await get_hold(s, "po_missing") is None


async def test_insufficient_funds_writes_nothing(sessionmaker: Sessions) -> None:
    merchant_id = await funded_merchant(sessionmaker, 1_000)
    payout_id = await add_payout(sessionmaker, merchant_id, amount_minor=990, fee_minor=20)
    before = await table_counts(sessionmaker)
    async with transaction(sessionmaker) as s:
        with pytest.raises(InsufficientFundsError) as info:
            await place_hold(
                s, payout_id=payout_id, merchant_id=merchant_id, amount_minor=990, fee_minor=20,
                currency="USD", expires_at=EXPIRES,
            )
    err = info.value
    assert (err.code, err.available, err.required, err.currency) == (
        "insufficient_funds", 1_000, 1_010, "USD",
    )
    assert await table_counts(sessionmaker) == before
    async with sessionmaker() as s:
        assert await get_hold(s, payout_id) is None


async def test_hold_in_a_currency_never_funded(sessionmaker: Sessions) -> None:
    merchant_id = await funded_merchant(sessionmaker, 1_000, "USD")
    before = await table_counts(sessionmaker)
    async with sessionmaker() as s:
        with pytest.raises(InsufficientFundsError) as info:
            await place_hold(
                s, payout_id="po_eur", merchant_id=merchant_id, amount_minor=1, fee_minor=0,
                currency="EUR", expires_at=None,
            )
    assert info.value.available == 0
    assert await table_counts(sessionmaker) == before


async def test_concurrent_holds_never_overspend(sessionmaker: Sessions) -> None:
    amount, fee = 700, 30
    merchant_id = await funded_merchant(sessionmaker, 7 * (amount + fee))
    payout_ids = [
        await add_payout(sessionmaker, merchant_id, amount_minor=amount, fee_minor=fee)
        for _ in range(20)
    ]
    done = asyncio.Event()
    seen: list[int] = []

    async def watch() -> None:
        while not done.is_set():
            seen.append(await available(sessionmaker, merchant_id))
            await asyncio.sleep(0.002)

    async def hold(payout_id: str) -> ledger.Hold | InsufficientFundsError:
        try:
            async with transaction(sessionmaker) as s:
                return await place_hold(
                    s, payout_id=payout_id, merchant_id=merchant_id, amount_minor=amount,
                    fee_minor=fee, currency="USD", expires_at=EXPIRES,
                )
        except InsufficientFundsError as exc:
            return exc

    watcher = asyncio.create_task(watch())
    results = await asyncio.gather(*(hold(p) for p in payout_ids))
    done.set()
    await watcher

    holds = [r for r in results if isinstance(r, ledger.Hold)]
    refused = [r for r in results if isinstance(r, InsufficientFundsError)]
    assert len(holds) == 7 and len(refused) == 13
    assert seen and min(seen) >= 0
    assert await available(sessionmaker, merchant_id) == 0
    assert await held(sessionmaker, merchant_id) == 7 * (amount + fee)
    async with sessionmaker() as s:
        assert await s.scalar(text("SELECT count(*) FROM ledger_holds")) == 7
        hold_postings = "SELECT count(*) FROM journal_transactions WHERE kind = 'hold'"
        assert await s.scalar(text(hold_postings)) == 7
    await assert_ledger_ok(sessionmaker)


async def test_settle_after_reverse_is_refused(sessionmaker: Sessions) -> None:
    merchant_id = await funded_merchant(sessionmaker, 1_000)
    payout_id = await add_payout(sessionmaker, merchant_id, amount_minor=500, fee_minor=10)
    async with transaction(sessionmaker) as s:
        await place_hold(
            s, payout_id=payout_id, merchant_id=merchant_id, amount_minor=500, fee_minor=10,
            currency="USD", expires_at=EXPIRES,
        )
        await reverse_hold(s, payout_id=payout_id, reason="cancelled by merchant")
    async with sessionmaker() as s:
        with pytest.raises(HoldStateError) as info:
            await settle_hold(s, payout_id=payout_id, connector="sandbox")
    assert info.value.code == "hold_state"
    assert await available(sessionmaker, merchant_id) == 1_000


async def test_reverse_after_settle_is_refused(sessionmaker: Sessions) -> None:
    merchant_id = await funded_merchant(sessionmaker, 1_000)
    payout_id = await add_payout(sessionmaker, merchant_id, amount_minor=500, fee_minor=10)
    async with transaction(sessionmaker) as s:
        await place_hold(
            s, payout_id=payout_id, merchant_id=merchant_id, amount_minor=500, fee_minor=10,
            currency="USD", expires_at=EXPIRES,
        )
        await settle_hold(s, payout_id=payout_id, connector="sandbox")
    async with sessionmaker() as s:
        with pytest.raises(HoldStateError):
            await reverse_hold(s, payout_id=payout_id, reason="too late")
        with pytest.raises(HoldNotFoundError) as info:
            await settle_hold(s, payout_id="po_unknown", connector="sandbox")
    assert info.value.code == "hold_not_found"


async def test_return_after_settlement(sessionmaker: Sessions) -> None:
    merchant_id = await funded_merchant(sessionmaker, 2_000)
    payout_id = await add_payout(sessionmaker, merchant_id, amount_minor=1_500, fee_minor=40)
    async with transaction(sessionmaker) as s:
        await place_hold(
            s, payout_id=payout_id, merchant_id=merchant_id, amount_minor=1_500, fee_minor=40,
            currency="USD", expires_at=EXPIRES,
        )
    # a return before settlement is refused
    async with sessionmaker() as s:
        with pytest.raises(HoldStateError):
            await post_return(s, payout_id=payout_id, connector="sandbox", return_code="R01")
    async with transaction(sessionmaker) as s:
        await settle_hold(s, payout_id=payout_id, connector="sandbox")
    assert await available(sessionmaker, merchant_id) == 460

    async with transaction(sessionmaker) as s:
        first = await post_return(s, payout_id=payout_id, connector="sandbox", return_code="R01")
    assert first.created
    # the amount comes back; the fee stays earned
    assert await available(sessionmaker, merchant_id) == 460 + 1_500
    assert await account_balance(sessionmaker, bank_clearing_account("sandbox")) == 0
    assert await account_balance(sessionmaker, FEES_REVENUE) == -40

    async with transaction(sessionmaker) as s:
        again = await post_return(s, payout_id=payout_id, connector="sandbox", return_code="R01")
    assert not again.created and again.transaction_id == first.transaction_id
    assert await available(sessionmaker, merchant_id) == 1_960
    await set_payout_status(sessionmaker, payout_id, "returned")
    await assert_ledger_ok(sessionmaker)


async def test_adjust_balance(sessionmaker: Sessions) -> None:
    merchant_id = await funded_merchant(sessionmaker, 1_000)
    async with transaction(sessionmaker) as s:
        await adjust_balance(
            s, merchant_id=merchant_id, amount_minor=250, currency="USD", ref="adj-1",
            reason="goodwill credit", actor="ops:alice",
        )
    assert await available(sessionmaker, merchant_id) == 1_250
    assert await account_balance(sessionmaker, ADJUSTMENTS) == 250

    async with transaction(sessionmaker) as s:
        await adjust_balance(
            s, merchant_id=merchant_id, amount_minor=-1_250, currency="USD", ref="adj-2",
            reason="chargeback", actor="ops:bob",
        )
    assert await available(sessionmaker, merchant_id) == 0
    # a replay is judged on what it posted, not on today's (now empty) balance
    async with transaction(sessionmaker) as s:
        replay = await adjust_balance(
            s, merchant_id=merchant_id, amount_minor=-1_250, currency="USD", ref="adj-2",
            reason="chargeback", actor="ops:bob",
        )
    assert not replay.created

    before = await table_counts(sessionmaker)
    async with sessionmaker() as s:
        with pytest.raises(InsufficientFundsError):
            await adjust_balance(
                s, merchant_id=merchant_id, amount_minor=-1, currency="USD", ref="adj-3",
                reason="overdraw", actor="ops:bob",
            )
    assert await table_counts(sessionmaker) == before
    await assert_ledger_ok(sessionmaker)


async def test_funding_an_unknown_merchant(sessionmaker: Sessions) -> None:
    async with sessionmaker() as s:
        with pytest.raises(ledger.MerchantNotFoundError):
            await fund_merchant(s, "m_nobody", 100, "USD", "fund-nobody")


# --- the invariant check ------------------------------------------------------------------


async def healthy_ledger(sessionmaker: Sessions) -> tuple[str, list[str]]:
    """A merchant with one settled, one reversed, one returned and two active payouts."""
    merchant_id = await funded_merchant(sessionmaker, 10_000)
    payout_ids = [await add_payout(sessionmaker, merchant_id) for _ in range(5)]
    async with transaction(sessionmaker) as s:
        for p in payout_ids:
            await place_hold(
                s, payout_id=p, merchant_id=merchant_id, amount_minor=1_000, fee_minor=50,
                currency="USD", expires_at=EXPIRES,
            )
        await settle_hold(s, payout_id=payout_ids[0], connector="sandbox")
        await reverse_hold(s, payout_id=payout_ids[1], reason="failed")
        await settle_hold(s, payout_id=payout_ids[2], connector="sandbox")
        await post_return(s, payout_id=payout_ids[2], connector="sandbox", return_code="R03")
    for p, status in zip(payout_ids[:3], ["settled", "failed", "returned"], strict=True):
        await set_payout_status(sessionmaker, p, status)
    return merchant_id, payout_ids


async def test_check_ledger_ok_on_healthy_ledger(sessionmaker: Sessions, database_url: str) -> None:
    await healthy_ledger(sessionmaker)
    async with sessionmaker() as s:
        report = await check_ledger(s)
    assert report.ok, report.violations
    assert report.violations == []
    assert report.transactions_checked == 1 + 5 + 2 + 1 + 1
    assert report.holds_checked == 5
    assert report.accounts_checked == 5  # treasury, available, held, clearing, fees
    assert await run_ledger_check(database_url) == report


async def test_check_reports_balance_mismatch(sessionmaker: Sessions) -> None:
    merchant_id, _ = await healthy_ledger(sessionmaker)
    async with transaction(sessionmaker) as s:
        await s.execute(
            text("UPDATE ledger_accounts SET balance_minor = balance_minor + 1 WHERE code = :c"),
            {"c": FEES_REVENUE},
        )
    async with sessionmaker() as s:
        report = await check_ledger(s)
    assert not report.ok
    assert violation_kinds(report) == {"balance_mismatch"}
    assert FEES_REVENUE in report.violations[0]


async def test_check_reports_unbalanced_transaction(sessionmaker: Sessions) -> None:
    await healthy_ledger(sessionmaker)
    # the database refuses to commit one, so look at it from inside its own transaction
    async with sessionmaker() as s:
        await s.begin()
        account_id = await s.scalar(
            text("SELECT id FROM ledger_accounts WHERE code = :c"), {"c": TREASURY_FUNDING}
        )
        tx_id = await s.scalar(
            text(
                "INSERT INTO journal_transactions (idempotency_ref, kind) "
                "VALUES ('raw-1', 'test') RETURNING id"
            )
        )
        await s.execute(
            text(
                "INSERT INTO journal_entries (transaction_id, account_id, amount_minor, currency) "
                "VALUES (:t, :a, 7, 'USD')"
            ),
            {"t": tx_id, "a": account_id},
        )
        await s.execute(
            text("UPDATE ledger_accounts SET balance_minor = balance_minor + 7 WHERE id = :a"),
            {"a": account_id},
        )
        report = await check_ledger(s)
        await s.rollback()
    assert violation_kinds(report) == {"unbalanced_transaction"}
    assert "raw-1" in report.violations[0] and "7" in report.violations[0]


async def test_check_reports_active_hold_on_terminal_or_missing_payout(
    sessionmaker: Sessions,
) -> None:
    merchant_id, payout_ids = await healthy_ledger(sessionmaker)
    # payout 3 is still active in the ledger, but the payout says settled
    await set_payout_status(sessionmaker, payout_ids[3], "settled")
    # and a hold for a payout that does not exist at all
    async with transaction(sessionmaker) as s:
        await place_hold(
            s, payout_id="po_ghost", merchant_id=merchant_id, amount_minor=10, fee_minor=0,
            currency="USD", expires_at=None,
        )
    async with sessionmaker() as s:
        report = await check_ledger(s)
    assert violation_kinds(report) == {"orphan_hold"}
    assert len(report.violations) == 2
    text_ = "\n".join(report.violations)
    assert f"payout {payout_ids[3]}: the payout is settled" in text_
    assert "payout po_ghost: the payout does not exist" in text_

    # the terminal set is a parameter
    async with sessionmaker() as s:
        narrow = await check_ledger(s, terminal_statuses=frozenset({"paid"}))
    assert len(narrow.violations) == 1 and "po_ghost" in narrow.violations[0]


async def test_check_reports_held_mismatch(sessionmaker: Sessions) -> None:
    _, payout_ids = await healthy_ledger(sessionmaker)
    # a hold marked reversed without its reversal posting
    async with transaction(sessionmaker) as s:
        await s.execute(
            text("UPDATE ledger_holds SET status = 'reversed' WHERE payout_id = :p"),
            {"p": payout_ids[4]},
        )
    async with sessionmaker() as s:
        report = await check_ledger(s)
    assert violation_kinds(report) == {"held_mismatch"}
    assert "2100" in report.violations[0] and "1050" in report.violations[0]


async def test_check_reports_negative_balance(sessionmaker: Sessions) -> None:
    merchant_id = await add_merchant(sessionmaker)
    # post_journal is the raw tool: it does not guard balances, the hold/adjust services do
    async with transaction(sessionmaker) as s:
        await post_journal(
            s,
            ref="overdraw",
            kind="test",
            entries=[
                Posting(
                    account_code=merchant_available_account(merchant_id), kind="liability",
                    currency="USD", amount_minor=300, merchant_id=merchant_id,
                ),
                Posting(account_code=ADJUSTMENTS, kind="equity", currency="USD", amount_minor=-300),
            ],
        )
    async with sessionmaker() as s:
        report = await check_ledger(s)
    assert violation_kinds(report) == {"negative_balance"}
    assert "-300" in report.violations[0]


def test_error_codes() -> None:
    assert ledger.LedgerError("x").code == "ledger_error"
    assert InsufficientFundsError(1, 2, "USD").code == "insufficient_funds"
    assert LedgerConflictError("x").code == "ledger_conflict"
    assert UnbalancedJournalError("x").code == "unbalanced_journal"
    assert HoldStateError("x").code == "hold_state"
    errors = (InsufficientFundsError, LedgerConflictError, UnbalancedJournalError, HoldStateError)
    for cls in errors:
        assert issubclass(cls, ledger.LedgerError)


async def test_mixed_concurrent_operations_keep_the_ledger_consistent(
    sessionmaker: Sessions,
) -> None:
    """Holds, settlements, reversals, returns and top-ups of two merchants racing each other
    (and retried twice each) neither deadlock nor break an invariant."""
    merchants = [await funded_merchant(sessionmaker, 6_000) for _ in range(2)]
    payouts = {
        m: [await add_payout(sessionmaker, m, amount_minor=500, fee_minor=20) for _ in range(10)]
        for m in merchants
    }

    async def run(op, **kwargs):
        async with transaction(sessionmaker) as s:
            return await op(s, **kwargs)

    async def hold(m: str, p: str):
        return await run(
            place_hold, payout_id=p, merchant_id=m, amount_minor=500, fee_minor=20,
            currency="USD", expires_at=EXPIRES,
        )

    async def fund(s: AsyncSession, *, m: str, ref: str):
        return await fund_merchant(s, m, 1_000, "USD", ref)

    await asyncio.gather(*(hold(m, p) for m in merchants for p in payouts[m] for _ in range(2)))
    ops = []
    for m in merchants:
        for i, p in enumerate(payouts[m]):
            op = (
                (settle_hold, {"payout_id": p, "connector": "sandbox"})
                if i % 2 == 0
                else (reverse_hold, {"payout_id": p, "reason": "failed"})
            )
            ops += [run(op[0], **op[1]), run(op[0], **op[1])]
        ops += [run(fund, m=m, ref=f"top-{m}-{i}") for i in range(5)]
    await asyncio.gather(*ops)
    await asyncio.gather(
        *(
            run(post_return, payout_id=p, connector="sandbox", return_code="R01")
            for m in merchants
            for p in payouts[m][:4:2]
        )
    )

    for m in merchants:
        for i, p in enumerate(payouts[m]):
            await set_payout_status(sessionmaker, p, "settled" if i % 2 == 0 else "failed")
        # 6000 + 5 top-ups - 5 settled (520 each) + 2 returns (500 each)
        assert await available(sessionmaker, m) == 6_000 + 5_000 - 5 * 520 + 2 * 500
        assert await held(sessionmaker, m) == 0
    assert await account_balance(sessionmaker, FEES_REVENUE) == -(2 * 5 * 20)
    await assert_ledger_ok(sessionmaker)


def test_posting_infers_the_merchant_of_a_merchant_account() -> None:
    posting = Posting(
        account_code=merchant_held_account("m_1"), kind="liability", currency="USD", amount_minor=5
    )
    assert posting.merchant_id == "m_1"
    assert Posting(
        account_code=FEES_REVENUE, kind="revenue", currency="USD", amount_minor=5
    ).merchant_id is None


async def test_list_expired_holds(sessionmaker: Sessions) -> None:
    merchant_id = await funded_merchant(sessionmaker, 1_000)
    now = datetime.now(UTC)
    expired, fresh, no_expiry = [await add_payout(sessionmaker, merchant_id) for _ in range(3)]
    async with transaction(sessionmaker) as s:
        for p, expires_at in (
            (expired, now - timedelta(minutes=1)),
            (fresh, now + timedelta(hours=1)),
            (no_expiry, None),
        ):
            await place_hold(
                s, payout_id=p, merchant_id=merchant_id, amount_minor=100, fee_minor=0,
                currency="USD", expires_at=expires_at,
            )
    async with sessionmaker() as s:
        assert [h.payout_id for h in await ledger.list_expired_holds(s)] == [expired]
        later = await ledger.list_expired_holds(s, now=now + timedelta(hours=2))
        assert [h.payout_id for h in later] == [expired, fresh]
