"""The double-entry ledger: postings, merchant holds, and the invariant check.

Sign convention: an entry's `amount_minor` is positive for a debit and negative for a credit;
every journal transaction sums to zero per currency (checked here before writing, and again by
the database's deferred constraint trigger at commit). `ledger_accounts.balance_minor` is the
sum of the account's entries and is updated in the same transaction as the entries.

Liability accounts (a merchant's available and held funds) carry credit balances, so a
merchant's "natural" available balance is `-balance_minor` of `merchant:{id}:available`.

Every posting carries an idempotency reference: a second call with the same reference posts
nothing and returns the first result, so a retried activity never posts twice. The same
reference with different entries is a bug somewhere and raises `LedgerConflictError`.

Services take the `AsyncSession` explicitly and never commit: the caller owns the transaction.

Accounting of a payout:

    place_hold    merchant available Dr (amount+fee)  / merchant held Cr (amount+fee)
    settle_hold   merchant held Dr (amount+fee)       / bank:{connector}:clearing Cr (amount)
                                                        fees:revenue Cr (fee)
    reverse_hold  merchant held Dr (amount+fee)       / merchant available Cr (amount+fee)
    post_return   bank:{connector}:clearing Dr (amount) / merchant available Cr (amount)

A bank return after settlement gives the merchant back the payout amount only: the fee was
earned when the payout was executed, so it stays in fees:revenue (a refund of the fee, if ever
wanted, is an explicit `adjust_balance`).

The hold's split between amount and fee is kept in the metadata of its `hold:{payout_id}`
journal transaction (ledger_holds stores only the total held).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator
from sqlalchemy import select, text, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.platform.db import create_engine
from core.platform.money import MoneyError, exponent
from core.platform.tables import journal_entries, journal_transactions, ledger_accounts, ledger_holds

# --- account codes ----------------------------------------------------------------------

AccountKind = Literal["asset", "liability", "revenue", "expense", "equity"]

PAYOUTS_IN_FLIGHT = "payouts:in_flight"  # liability; reserved, the payout flow does not use it yet
FEES_REVENUE = "fees:revenue"  # revenue
TREASURY_FUNDING = "treasury:funding"  # asset: cash received from merchants' top-ups
ADJUSTMENTS = "adjustments"  # equity: ops adjustments


def merchant_available_account(merchant_id: str) -> str:
    """Liability: funds the merchant may pay out."""
    return f"merchant:{merchant_id}:available"


def merchant_held_account(merchant_id: str) -> str:
    """Liability: funds reserved for the merchant's payouts in progress."""
    return f"merchant:{merchant_id}:held"


def bank_clearing_account(connector: str) -> str:
    """Asset: what the bank owes / has been told to pay out; settlement credits it."""
    return f"bank:{connector}:clearing"


# Payout statuses after which no hold may stay active.
TERMINAL_PAYOUT_STATUSES: frozenset[str] = frozenset(
    {"settled", "paid", "failed", "cancelled", "rejected", "returned", "reversed"}
)

# journal_transactions.kind values this module posts
KIND_FUNDING = "funding"
KIND_HOLD = "hold"
KIND_SETTLEMENT = "settlement"
KIND_HOLD_REVERSAL = "hold_reversal"
KIND_RETURN = "return"
KIND_ADJUSTMENT = "adjustment"


def hold_ref(payout_id: str) -> str:
    return f"hold:{payout_id}"


def settle_ref(payout_id: str) -> str:
    return f"settle:{payout_id}"


def reverse_ref(payout_id: str) -> str:
    return f"reverse:{payout_id}"


def return_ref(payout_id: str) -> str:
    return f"return:{payout_id}"


# --- errors -----------------------------------------------------------------------------


class LedgerError(Exception):
    """Base of the ledger's domain errors; `code` is stable, for the API layer to map."""

    code: str = "ledger_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InsufficientFundsError(LedgerError):
    code = "insufficient_funds"

    def __init__(self, available: int, required: int, currency: str) -> None:
        super().__init__(
            f"insufficient available funds: {available} {currency} (minor units) available, "
            f"{required} required"
        )
        self.available = available
        self.required = required
        self.currency = currency


class LedgerConflictError(LedgerError):
    """The reference was already used for a different posting (or an account has another kind)."""

    code = "ledger_conflict"


class UnbalancedJournalError(LedgerError):
    code = "unbalanced_journal"


class InvalidJournalError(LedgerError):
    """A posting that cannot be written at all: no entries, a zero amount, an unknown currency."""

    code = "invalid_journal"


class HoldStateError(LedgerError):
    """The hold is in a state that does not allow the operation (settle a reversed hold, ...)."""

    code = "hold_state"


class HoldNotFoundError(HoldStateError):
    code = "hold_not_found"


class MerchantNotFoundError(LedgerError):
    code = "merchant_not_found"


# --- models -----------------------------------------------------------------------------


class Posting(BaseModel):
    """One journal entry to write: debit positive, credit negative."""

    model_config = ConfigDict(frozen=True)

    account_code: str = Field(min_length=1, max_length=200)
    kind: AccountKind
    currency: str = Field(min_length=3, max_length=3)
    amount_minor: StrictInt
    merchant_id: str | None = None  # inferred from a merchant:{id}:... code when omitted

    @model_validator(mode="after")
    def _merchant_of_code(self) -> Posting:
        parts = self.account_code.split(":")
        if self.merchant_id is None and len(parts) == 3 and parts[0] == "merchant":
            object.__setattr__(self, "merchant_id", parts[1])
        return self


class JournalResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    transaction_id: int
    created: bool  # False: the reference had been posted before; nothing was written


class Hold(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    payout_id: str
    merchant_id: str
    currency: str
    amount_minor: int  # the payout amount
    fee_minor: int
    total_minor: int  # amount + fee: what is held (ledger_holds.amount_minor)
    status: Literal["active", "released", "reversed"]
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class Balance(BaseModel):
    model_config = ConfigDict(frozen=True)

    currency: str
    available_minor: int
    held_minor: int


class LedgerCheckReport(BaseModel):
    ok: bool
    violations: list[str]
    transactions_checked: int
    accounts_checked: int
    holds_checked: int


# --- posting ----------------------------------------------------------------------------


def _validate_entries(entries: list[Posting]) -> None:
    if not entries:
        raise InvalidJournalError("a journal transaction needs at least one entry")
    totals: dict[str, int] = {}
    for e in entries:
        if e.amount_minor == 0:
            raise InvalidJournalError(f"entry on {e.account_code} has a zero amount")
        try:
            exponent(e.currency)
        except MoneyError as exc:
            raise InvalidJournalError(str(exc)) from None
        totals[e.currency] = totals.get(e.currency, 0) + e.amount_minor
    unbalanced = {c: t for c, t in totals.items() if t != 0}
    if unbalanced:
        detail = ", ".join(f"{c} {t:+d}" for c, t in sorted(unbalanced.items()))
        raise UnbalancedJournalError(f"journal entries do not sum to zero per currency: {detail}")


async def _ensure_account(session: AsyncSession, posting: Posting) -> int:
    """The account's id, creating it (with its kind) on first use."""
    row = (
        await session.execute(
            select(ledger_accounts.c.id, ledger_accounts.c.kind).where(
                ledger_accounts.c.code == posting.account_code,
                ledger_accounts.c.currency == posting.currency,
            )
        )
    ).first()
    if row is None:
        if posting.merchant_id is not None:
            exists = await session.scalar(
                text("SELECT 1 FROM merchants WHERE id = :m"), {"m": posting.merchant_id}
            )
            if exists is None:
                raise MerchantNotFoundError(f"merchant {posting.merchant_id!r} does not exist")
        await session.execute(
            pg_insert(ledger_accounts)
            .values(
                code=posting.account_code,
                currency=posting.currency,
                kind=posting.kind,
                merchant_id=posting.merchant_id,
            )
            .on_conflict_do_nothing(index_elements=["code", "currency"])
        )
        row = (
            await session.execute(
                select(ledger_accounts.c.id, ledger_accounts.c.kind).where(
                    ledger_accounts.c.code == posting.account_code,
                    ledger_accounts.c.currency == posting.currency,
                )
            )
        ).one()
    if row.kind != posting.kind:
        raise LedgerConflictError(
            f"account {posting.account_code} ({posting.currency}) is a {row.kind} account, "
            f"not {posting.kind}"
        )
    return row.id


def _entry_key(code: str, currency: str, amount: int) -> tuple[str, str, int]:
    return (code, currency, amount)


async def _existing_journal(
    session: AsyncSession, ref: str, kind: str, entries: list[Posting]
) -> JournalResult:
    """The result of an earlier posting of `ref`, provided it posted the same entries."""
    row = (
        await session.execute(
            select(journal_transactions.c.id, journal_transactions.c.kind).where(
                journal_transactions.c.idempotency_ref == ref
            )
        )
    ).one()
    stored = (
        await session.execute(
            text(
                "SELECT a.code, e.currency, e.amount_minor FROM journal_entries e "
                "JOIN ledger_accounts a ON a.id = e.account_id WHERE e.transaction_id = :t"
            ),
            {"t": row.id},
        )
    ).all()
    wanted = Counter(_entry_key(e.account_code, e.currency, e.amount_minor) for e in entries)
    have = Counter(_entry_key(r.code, r.currency, r.amount_minor) for r in stored)
    if row.kind != kind or wanted != have:
        raise LedgerConflictError(
            f"reference {ref!r} was already posted with different entries "
            f"(kind {row.kind!r}: {sorted(have.elements())})"
        )
    return JournalResult(transaction_id=row.id, created=False)


async def post_journal(
    session: AsyncSession,
    *,
    ref: str,
    kind: str,
    entries: list[Posting],
    description: str | None = None,
    merchant_id: str | None = None,
    payout_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    nonnegative: str | None = None,
) -> JournalResult:
    """Write one balanced journal transaction, once per `ref`.

    A replay with the same entries posts nothing and returns the first transaction's id
    (`created=False`); the same ref with different entries raises LedgerConflictError.
    `nonnegative` names an account (code, in the entries' currency) whose natural balance may
    not go below zero: if it would, InsufficientFundsError is raised and the caller's
    transaction must roll back (it is the last statement: nothing after it to undo by hand).

    The balance rows are the ledger's hot spots (one merchant's available and held accounts,
    a connector's clearing account, fee revenue: every payout touches some of them), so they are
    locked as late and as briefly as possible: everything else is written first, and the
    balances last, in one statement that locks them in account-id order (no deadlocks between
    postings). Callers write their own rows before posting, so the locks are held only from this
    statement to the commit.
    """
    _validate_entries(entries)
    account_ids = await _account_ids(session, entries)
    # ON CONFLICT waits for a concurrent, uncommitted posting of the same ref, then skips.
    tx_id = await session.scalar(
        pg_insert(journal_transactions)
        .values(
            idempotency_ref=ref,
            kind=kind,
            description=description,
            merchant_id=merchant_id,
            payout_id=payout_id,
            metadata=metadata or {},
        )
        .on_conflict_do_nothing(index_elements=["idempotency_ref"])
        .returning(journal_transactions.c.id)
    )
    if tx_id is None:
        return await _existing_journal(session, ref, kind, entries)

    await session.execute(
        journal_entries.insert(),
        [
            {
                "transaction_id": tx_id,
                "account_id": account_id,
                "amount_minor": e.amount_minor,
                "currency": e.currency,
            }
            for account_id, e in zip(account_ids, entries, strict=True)
        ],
    )
    deltas: dict[int, int] = {}
    for account_id, e in zip(account_ids, entries, strict=True):
        deltas[account_id] = deltas.get(account_id, 0) + e.amount_minor
    deltas = {a: d for a, d in deltas.items() if d}
    if deltas:
        ids = sorted(deltas)
        updated = {
            r.id: r.balance_minor
            for r in await session.execute(_APPLY_BALANCES, {"ids": ids, "deltas": [deltas[a] for a in ids]})
        }
        if nonnegative is not None:
            _check_nonnegative(nonnegative, entries, account_ids, deltas, updated)
    return JournalResult(transaction_id=tx_id, created=True)


# The postings' balance updates, in one statement. The uncorrelated count over `locked` is an
# InitPlan evaluated before the first row is updated: it takes every row lock in account-id order
# first (FOR NO KEY UPDATE: the journal entries' foreign-key checks, KEY SHARE, do not wait on it).
_APPLY_BALANCES = text(
    """
    WITH locked AS MATERIALIZED (
        SELECT id FROM ledger_accounts WHERE id = ANY(CAST(:ids AS bigint[])) ORDER BY id FOR NO KEY UPDATE
    )
    UPDATE ledger_accounts a SET balance_minor = a.balance_minor + d.delta
      FROM unnest(CAST(:ids AS bigint[]), CAST(:deltas AS bigint[])) AS d(id, delta)
     WHERE a.id = d.id AND (SELECT count(*) FROM locked) = cardinality(CAST(:ids AS bigint[]))
    RETURNING a.id, a.balance_minor
    """
)

_CREDIT_NORMAL = frozenset({"liability", "revenue", "equity"})


def _check_nonnegative(
    code: str, entries: list[Posting], account_ids: list[int], deltas: dict[int, int], updated: dict[int, int]
) -> None:
    for account_id, e in zip(account_ids, entries, strict=True):
        if e.account_code != code:
            continue
        sign = -1 if e.kind in _CREDIT_NORMAL else 1
        after = sign * updated[account_id]
        if after < 0:
            required = -sign * deltas[account_id]
            raise InsufficientFundsError(after + required, required, e.currency)
        return


async def _account_ids(session: AsyncSession, entries: list[Posting]) -> list[int]:
    """The entries' account ids in one read, creating (and checking the kind of) missing ones."""
    wanted = {(e.account_code, e.currency) for e in entries}
    rows = (
        await session.execute(
            select(ledger_accounts.c.id, ledger_accounts.c.kind, ledger_accounts.c.code, ledger_accounts.c.currency)
            .where(tuple_(ledger_accounts.c.code, ledger_accounts.c.currency).in_(sorted(wanted)))
        )
    ).all()
    found = {(r.code, r.currency): r for r in rows}
    ids = []
    for e in entries:
        row = found.get((e.account_code, e.currency))
        if row is None:
            ids.append(await _ensure_account(session, e))
            continue
        if row.kind != e.kind:
            raise LedgerConflictError(
                f"account {e.account_code} ({e.currency}) is a {row.kind} account, not {e.kind}"
            )
        ids.append(row.id)
    return ids


def _available(merchant_id: str, currency: str, amount: int) -> Posting:
    return Posting(
        account_code=merchant_available_account(merchant_id),
        kind="liability",
        currency=currency,
        amount_minor=amount,
        merchant_id=merchant_id,
    )


def _held(merchant_id: str, currency: str, amount: int) -> Posting:
    return Posting(
        account_code=merchant_held_account(merchant_id),
        kind="liability",
        currency=currency,
        amount_minor=amount,
        merchant_id=merchant_id,
    )


def _require_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidJournalError(
            f"{name} must be a positive integer of minor units, got {value!r}"
        )


async def _journal_exists(session: AsyncSession, ref: str) -> bool:
    found = await session.scalar(
        select(journal_transactions.c.id).where(journal_transactions.c.idempotency_ref == ref)
    )
    return found is not None


async def _lock_merchant_accounts(
    session: AsyncSession, merchant_id: str, currency: str
) -> int:
    """Lock the merchant's available and held accounts (those that exist) in id order, the
    order postings use; return the natural available balance (0 if there is no account yet).

    An adjustment reads the balance it judges under this lock; holds take the same row lock in
    their last statement (`post_journal(..., nonnegative=...)`) and check the funds there, so the
    two cannot both spend the same money.
    """
    available_code = merchant_available_account(merchant_id)
    rows = (
        await session.execute(
            text(
                "SELECT id, code, balance_minor FROM ledger_accounts "
                "WHERE currency = :cur AND code = ANY(:codes) ORDER BY id FOR NO KEY UPDATE"
            ),
            {"cur": currency, "codes": [available_code, merchant_held_account(merchant_id)]},
        )
    ).all()
    return next((-r.balance_minor for r in rows if r.code == available_code), 0)


async def fund_merchant(
    session: AsyncSession, merchant_id: str, amount_minor: int, currency: str, ref: str
) -> JournalResult:
    """A merchant's top-up: treasury:funding Dr / merchant available Cr."""
    _require_positive("amount_minor", amount_minor)
    return await post_journal(
        session,
        ref=ref,
        kind=KIND_FUNDING,
        entries=[
            Posting(
                account_code=TREASURY_FUNDING,
                kind="asset",
                currency=currency,
                amount_minor=amount_minor,
            ),
            _available(merchant_id, currency, -amount_minor),
        ],
        description=f"funding of merchant {merchant_id}",
        merchant_id=merchant_id,
    )


async def adjust_balance(
    session: AsyncSession,
    *,
    merchant_id: str,
    amount_minor: int,
    currency: str,
    ref: str,
    reason: str,
    actor: str,
) -> JournalResult:
    """An ops adjustment of the merchant's available balance; positive credits the merchant.

    Refuses (InsufficientFundsError, nothing written) to take available below zero.
    """
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool) or amount_minor == 0:
        raise InvalidJournalError(f"amount_minor must be a non-zero integer, got {amount_minor!r}")
    entries = [
        Posting(
            account_code=ADJUSTMENTS, kind="equity", currency=currency, amount_minor=amount_minor
        ),
        _available(merchant_id, currency, -amount_minor),
    ]
    if amount_minor < 0:
        available = await _lock_merchant_accounts(session, merchant_id, currency)
        # a replay of an adjustment that already happened must not be judged on today's balance
        if not await _journal_exists(session, ref) and available + amount_minor < 0:
            raise InsufficientFundsError(available, -amount_minor, currency)
    return await post_journal(
        session,
        ref=ref,
        kind=KIND_ADJUSTMENT,
        entries=entries,
        description=reason,
        merchant_id=merchant_id,
        metadata={"actor": actor, "reason": reason},
    )


# --- holds ------------------------------------------------------------------------------

_HOLD_QUERY = text(
    """
    SELECT h.id, h.payout_id, h.merchant_id, h.currency, h.amount_minor AS total_minor,
           h.status, h.expires_at, h.created_at, h.updated_at,
           (jt.metadata ->> 'fee_minor')::bigint AS fee_minor
      FROM ledger_holds h
      LEFT JOIN journal_transactions jt ON jt.idempotency_ref = :ref
     WHERE h.payout_id = :payout_id
    """
)


def _hold_from_row(row: Any) -> Hold:
    fee = row.fee_minor or 0
    return Hold(
        id=row.id,
        payout_id=row.payout_id,
        merchant_id=row.merchant_id,
        currency=row.currency,
        amount_minor=row.total_minor - fee,
        fee_minor=fee,
        total_minor=row.total_minor,
        status=row.status,
        expires_at=row.expires_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def get_hold(session: AsyncSession, payout_id: str) -> Hold | None:
    row = (
        await session.execute(_HOLD_QUERY, {"payout_id": payout_id, "ref": hold_ref(payout_id)})
    ).first()
    return _hold_from_row(row) if row is not None else None


async def _lock_hold(session: AsyncSession, payout_id: str) -> Hold:
    row = (
        await session.execute(
            text(_HOLD_QUERY.text + " FOR UPDATE OF h"), {"payout_id": payout_id, "ref": hold_ref(payout_id)}
        )
    ).first()
    if row is None:
        raise HoldNotFoundError(f"no hold for payout {payout_id!r}")
    return _hold_from_row(row)


async def _set_hold_status(session: AsyncSession, hold: Hold, status: str) -> Hold:
    updated_at = await session.scalar(
        ledger_holds.update()
        .where(ledger_holds.c.id == hold.id)
        .values(status=status, updated_at=text("now()"))
        .returning(ledger_holds.c.updated_at)
    )
    return hold.model_copy(update={"status": status, "updated_at": updated_at})


async def place_hold(
    session: AsyncSession,
    *,
    payout_id: str,
    merchant_id: str,
    amount_minor: int,
    fee_minor: int,
    currency: str,
    expires_at: datetime | None,
) -> Hold:
    """Reserve amount + fee of the merchant's available funds for a payout (once per payout).

    Insufficient available funds raise InsufficientFundsError and write nothing. A repeat call
    returns the existing hold, whatever its status; one with other terms raises
    LedgerConflictError.
    """
    _require_positive("amount_minor", amount_minor)
    if not isinstance(fee_minor, int) or isinstance(fee_minor, bool) or fee_minor < 0:
        raise InvalidJournalError(f"fee_minor must be a non-negative integer, got {fee_minor!r}")
    try:
        exponent(currency)
    except MoneyError as exc:
        raise InvalidJournalError(str(exc)) from None
    total = amount_minor + fee_minor

    existing = await get_hold(session, payout_id)
    if existing is not None:
        _same_hold_terms(existing, merchant_id, currency, amount_minor, fee_minor)
        return existing
    # a savepoint: refused for lack of funds, nothing stays written even if the caller commits
    async with session.begin_nested():
        # a concurrent hold for the same payout: this insert waits for it to commit, then skips
        inserted = (
            await session.execute(
                pg_insert(ledger_holds)
                .values(
                    payout_id=payout_id,
                    merchant_id=merchant_id,
                    amount_minor=total,
                    currency=currency,
                    status="active",
                    expires_at=expires_at,
                )
                .on_conflict_do_nothing(index_elements=["payout_id"])
                .returning(ledger_holds)
            )
        ).first()
        if inserted is None:
            existing = await get_hold(session, payout_id)
            assert existing is not None
            _same_hold_terms(existing, merchant_id, currency, amount_minor, fee_minor)
            return existing
        # last: the merchant's balances, locked only from here to the commit; the available funds
        # are checked on the locked row (two concurrent holds cannot both spend the same money)
        await post_journal(
            session,
            ref=hold_ref(payout_id),
            kind=KIND_HOLD,
            entries=[_available(merchant_id, currency, total), _held(merchant_id, currency, -total)],
            description=f"hold for payout {payout_id}",
            merchant_id=merchant_id,
            payout_id=payout_id,
            metadata={"amount_minor": amount_minor, "fee_minor": fee_minor},
            nonnegative=merchant_available_account(merchant_id),
        )
    return Hold(
        id=inserted.id,
        payout_id=payout_id,
        merchant_id=merchant_id,
        currency=currency,
        amount_minor=amount_minor,
        fee_minor=fee_minor,
        total_minor=total,
        status="active",
        expires_at=inserted.expires_at,
        created_at=inserted.created_at,
        updated_at=inserted.updated_at,
    )


def _same_hold_terms(existing: Hold, merchant_id: str, currency: str, amount_minor: int, fee_minor: int) -> None:
    if (existing.merchant_id, existing.currency, existing.amount_minor, existing.fee_minor) != (
        merchant_id,
        currency,
        amount_minor,
        fee_minor,
    ):
        raise LedgerConflictError(
            f"payout {existing.payout_id!r} already has a hold with other terms: "
            f"{existing.merchant_id} {existing.amount_minor}+{existing.fee_minor} "
            f"{existing.currency}"
        )


def _settlement_entries(hold: Hold, connector: str) -> list[Posting]:
    entries = [
        _held(hold.merchant_id, hold.currency, hold.total_minor),
        Posting(
            account_code=bank_clearing_account(connector),
            kind="asset",
            currency=hold.currency,
            amount_minor=-hold.amount_minor,
        ),
    ]
    if hold.fee_minor:
        entries.append(
            Posting(
                account_code=FEES_REVENUE,
                kind="revenue",
                currency=hold.currency,
                amount_minor=-hold.fee_minor,
            )
        )
    return entries


async def settle_hold(session: AsyncSession, *, payout_id: str, connector: str) -> Hold:
    """Release the hold into the final entries: the amount to the bank's clearing account,
    the fee to revenue. Idempotent; a reversed hold raises HoldStateError."""
    hold = await _lock_hold(session, payout_id)
    if hold.status == "reversed":
        raise HoldStateError(f"the hold for payout {payout_id!r} was reversed; it cannot settle")
    if hold.status == "active":
        hold = await _set_hold_status(session, hold, "released")
    # also on a replay: a replay naming another connector is a conflict, not a silent no-op
    await post_journal(
        session,
        ref=settle_ref(payout_id),
        kind=KIND_SETTLEMENT,
        entries=_settlement_entries(hold, connector),
        description=f"settlement of payout {payout_id} via {connector}",
        merchant_id=hold.merchant_id,
        payout_id=payout_id,
        metadata={"connector": connector},
    )
    return hold


async def reverse_hold(session: AsyncSession, *, payout_id: str, reason: str) -> Hold:
    """Return the held funds to available. Idempotent; a released hold raises HoldStateError."""
    hold = await _lock_hold(session, payout_id)
    if hold.status == "released":
        raise HoldStateError(f"the hold for payout {payout_id!r} was settled; it cannot reverse")
    if hold.status == "active":
        hold = await _set_hold_status(session, hold, "reversed")
    await post_journal(
        session,
        ref=reverse_ref(payout_id),
        kind=KIND_HOLD_REVERSAL,
        entries=[
            _held(hold.merchant_id, hold.currency, hold.total_minor),
            _available(hold.merchant_id, hold.currency, -hold.total_minor),
        ],
        description=reason,
        merchant_id=hold.merchant_id,
        payout_id=payout_id,
        metadata={"reason": reason},
    )
    return hold


async def post_return(
    session: AsyncSession, *, payout_id: str, connector: str, return_code: str
) -> JournalResult:
    """A bank return after settlement: the payout amount goes back to the merchant's
    available funds. The fee stays earned (see the module docstring). Only for a settled
    (released) hold; idempotent per payout."""
    hold = await _lock_hold(session, payout_id)
    if hold.status != "released":
        raise HoldStateError(
            f"the hold for payout {payout_id!r} is {hold.status}; only a settled payout can return"
        )
    return await post_journal(
        session,
        ref=return_ref(payout_id),
        kind=KIND_RETURN,
        entries=[
            Posting(
                account_code=bank_clearing_account(connector),
                kind="asset",
                currency=hold.currency,
                amount_minor=hold.amount_minor,
            ),
            _available(hold.merchant_id, hold.currency, -hold.amount_minor),
        ],
        description=f"return {return_code} of payout {payout_id} via {connector}",
        merchant_id=hold.merchant_id,
        payout_id=payout_id,
        metadata={"connector": connector, "return_code": return_code},
    )


async def list_expired_holds(
    session: AsyncSession, *, now: datetime | None = None, limit: int = 500
) -> list[Hold]:
    """Active holds past their expiry (oldest first), for a sweeper to reverse."""
    payout_ids = (
        await session.scalars(
            select(ledger_holds.c.payout_id)
            .where(
                ledger_holds.c.status == "active",
                ledger_holds.c.expires_at.is_not(None),
                ledger_holds.c.expires_at <= (now if now is not None else text("now()")),
            )
            .order_by(ledger_holds.c.expires_at)
            .limit(limit)
        )
    ).all()
    holds = [await get_hold(session, p) for p in payout_ids]
    return [h for h in holds if h is not None]


# --- balances ---------------------------------------------------------------------------


async def get_balances(session: AsyncSession, merchant_id: str) -> list[Balance]:
    """The merchant's natural-sign available and held balances, one per currency."""
    rows = (
        await session.execute(
            text(
                """
                SELECT currency,
                       coalesce(-sum(balance_minor) FILTER (WHERE code = :available), 0)
                           AS available,
                       coalesce(-sum(balance_minor) FILTER (WHERE code = :held), 0) AS held
                  FROM ledger_accounts
                 WHERE code IN (:available, :held)
                 GROUP BY currency
                 ORDER BY currency
                """
            ),
            {
                "available": merchant_available_account(merchant_id),
                "held": merchant_held_account(merchant_id),
            },
        )
    ).all()
    return [
        Balance(currency=r.currency, available_minor=int(r.available), held_minor=int(r.held))
        for r in rows
    ]


# --- the invariant check ----------------------------------------------------------------

_VIOLATION_LIMIT = 100  # per kind: enough to act on, bounded on a badly broken ledger

_CHECKS: list[tuple[str, str]] = [
    (
        "unbalanced_transaction",
        """
        SELECT format('journal transaction %s (%s) sums to %s in %s',
                      t.id, t.idempotency_ref, s.total, s.currency)
          FROM (SELECT transaction_id, currency, sum(amount_minor) AS total
                  FROM journal_entries GROUP BY transaction_id, currency
                HAVING sum(amount_minor) <> 0) s
          JOIN journal_transactions t ON t.id = s.transaction_id
         ORDER BY t.id LIMIT :limit
        """,
    ),
    (
        "empty_transaction",
        """
        SELECT format('journal transaction %s (%s) has no entries', t.id, t.idempotency_ref)
          FROM journal_transactions t
         WHERE NOT EXISTS (SELECT 1 FROM journal_entries e WHERE e.transaction_id = t.id)
         ORDER BY t.id LIMIT :limit
        """,
    ),
    (
        "currency_mismatch",
        """
        SELECT format('journal entry %s is in %s but account %s is in %s',
                      e.id, e.currency, a.code, a.currency)
          FROM journal_entries e JOIN ledger_accounts a ON a.id = e.account_id
         WHERE e.currency <> a.currency
         ORDER BY e.id LIMIT :limit
        """,
    ),
    (
        "balance_mismatch",
        """
        SELECT format('account %s (%s) has balance_minor %s but its entries sum to %s',
                      a.code, a.currency, a.balance_minor, coalesce(s.total, 0))
          FROM ledger_accounts a
          LEFT JOIN (SELECT account_id, sum(amount_minor) AS total
                       FROM journal_entries GROUP BY account_id) s ON s.account_id = a.id
         WHERE a.balance_minor <> coalesce(s.total, 0)
         ORDER BY a.id LIMIT :limit
        """,
    ),
    (
        "orphan_hold",
        """
        SELECT CASE WHEN p.id IS NULL
                    THEN format('active hold %s for payout %s: the payout does not exist',
                                h.id, h.payout_id)
                    ELSE format('active hold %s for payout %s: the payout is %s',
                                h.id, h.payout_id, p.status)
               END
          FROM ledger_holds h LEFT JOIN payouts p ON p.id = h.payout_id
         WHERE h.status = 'active' AND (p.id IS NULL OR p.status = ANY(:terminal))
         ORDER BY h.id LIMIT :limit
        """,
    ),
    (
        "held_mismatch",
        """
        SELECT format('merchant %s holds %s %s on its held account but %s in active holds',
                      coalesce(a.merchant_id, h.merchant_id), coalesce(a.held, 0),
                      coalesce(a.currency, h.currency), coalesce(h.total, 0))
          FROM (SELECT merchant_id, currency, -balance_minor AS held
                  FROM ledger_accounts
                 WHERE merchant_id IS NOT NULL
                   AND code = :held_prefix || merchant_id || :held_suffix) a
          FULL JOIN (SELECT merchant_id, currency, sum(amount_minor) AS total
                       FROM ledger_holds WHERE status = 'active'
                      GROUP BY merchant_id, currency) h
            ON h.merchant_id = a.merchant_id AND h.currency = a.currency
         WHERE coalesce(a.held, 0) <> coalesce(h.total, 0)
         ORDER BY 1 LIMIT :limit
        """,
    ),
    (
        "negative_balance",
        """
        SELECT format('merchant account %s (%s) has a negative balance: %s',
                      code, currency, -balance_minor)
          FROM ledger_accounts
         WHERE kind = 'liability' AND merchant_id IS NOT NULL AND balance_minor > 0
         ORDER BY id LIMIT :limit
        """,
    ),
]


async def check_ledger(
    session: AsyncSession, *, terminal_statuses: frozenset[str] = TERMINAL_PAYOUT_STATUSES
) -> LedgerCheckReport:
    """Prove the ledger's invariants with set-based SQL. Each violation reads
    "<kind>: <detail>", kinds: unbalanced_transaction, empty_transaction, currency_mismatch,
    balance_mismatch, orphan_hold (active hold whose payout is missing or terminal),
    held_mismatch (held account vs active holds), negative_balance (a merchant's natural
    balance below zero).

    Run it in a REPEATABLE READ transaction (as run_ledger_check does) for one consistent
    snapshot while postings continue.
    """
    params = {
        "limit": _VIOLATION_LIMIT,
        "terminal": sorted(terminal_statuses),
        "held_prefix": "merchant:",
        "held_suffix": ":held",
    }
    violations: list[str] = []
    for name, sql in _CHECKS:
        stmt = text(sql)
        bind = {k: v for k, v in params.items() if f":{k}" in sql}
        for (detail,) in (await session.execute(stmt, bind)).all():
            violations.append(f"{name}: {detail}")
    counts = (
        await session.execute(
            text(
                "SELECT (SELECT count(*) FROM journal_transactions) AS transactions, "
                "(SELECT count(*) FROM ledger_accounts) AS accounts, "
                "(SELECT count(*) FROM ledger_holds) AS holds"
            )
        )
    ).one()
    return LedgerCheckReport(
        ok=not violations,
        violations=violations,
        transactions_checked=counts.transactions,
        accounts_checked=counts.accounts,
        holds_checked=counts.holds,
    )


async def run_ledger_check(database_url: str) -> LedgerCheckReport:
    """`payops ledger check`: the invariant check on its own engine, in one read-only snapshot."""
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        snapshot = engine.execution_options(isolation_level="REPEATABLE READ")
        async with AsyncSession(snapshot) as session:
            await session.execute(text("SET TRANSACTION READ ONLY"))
            report = await check_ledger(session)
            await session.rollback()
            return report
    finally:
        await engine.dispose()
