"""The demo's payments as both providers see them: one underlying set, a function of (seed, time).

The Vima collector and the PayShack portal are separate simulators (separate processes under
`payops up`). For reconciliation to find what it finds in real life, a payment the payer made
must show up on both sides under the same key (Vima's ``client_operation_id`` = PayShack's
``order_id``), with the same amount and status, except for a realistic few. Both simulators draw
from this module, which needs no coordination between them: payment ``k`` happens at
``k * interval + jitter(k)`` seconds after the Unix epoch, and everything about it comes from a
random generator seeded with ``(seed, k)``. So two processes started with the same seed reveal the
same payments for the same span of time.

What differs between the two sides is decided per block of ``block`` consecutive payments: in each
block, one payment of each kind below (at positions drawn from the block's seed), the rest agree.
So every day holds a few of each discrepancy the reconciliation reports and the match rate of a
whole block is ``1 - 7 / (block + 1)`` (98.6 % at the default 500: about 14 of each discrepancy a day).

- ``missing_right``  only Vima has it (the portal never listed it);
- ``missing_left``   only PayShack has it (the collector lost it);
- ``amount``         PayShack's paid amount is short of the order (an underpayment);
- ``status``         the two sides settle it differently (success on one, failed on the other);
- ``duplicate``      PayShack lists it twice (a retried payment, a second transaction id);
- ``rekeyed``        PayShack shows the order id re-typed (upper case): two "missing" halves that
                     reconciliation pairs as a probable match (same amount, payer, a few seconds apart).

PayShack is an Indian gateway: the shared payments are in INR. This module shares no code with
payops's product packages (sandbox rule); the simulators only read it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

DEFAULT_SEED = 22
DEFAULT_INTERVAL_SECONDS = 12.0  # one payment every 12 s on average: 7,200 a day
DEFAULT_BLOCK = 500  # 98.6 % matched: above the default alert threshold (98 %)
FATES = ("missing_right", "missing_left", "amount", "status", "duplicate", "rekeyed")
PROJECTS = ("91game", "starbet", "luckyjet")
FIRST = ("Aarav", "Diya", "Rahul", "Priya", "Vikram", "Ananya", "Kabir", "Ishaan", "Meera", "Arjun")
LAST = ("Sharma", "Patel", "Singh", "Gupta", "Rao", "Iyer", "Khan", "Nair", "Reddy", "Das")
METHODS = ("upi", "upi", "upi", "card", "netbanking")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Payment:
    """One payment as it happened. Times are UTC; ``settles_at`` is when it leaves pending (None:
    it stays pending). ``vima_status`` / ``payshack_status`` are the final statuses each side
    reports (``success`` | ``fail`` | ``pending``)."""

    index: int
    at: datetime
    key: str
    project: str
    amount_minor: int  # INR paise
    fee_minor: int
    method: str
    payer_name: str
    payer_email: str
    payer_vpa: str
    settles_at: datetime | None
    vima_status: str
    payshack_status: str
    fate: str | None  # None: both sides agree; else one of FATES
    portal_delay_seconds: int  # PayShack stamps it this many seconds after Vima
    paid_short_minor: int  # fate "amount": how much less PayShack reports as paid
    utr: str

    @property
    def on_vima(self) -> bool:
        return self.fate != "missing_left"

    @property
    def on_payshack(self) -> bool:
        return self.fate != "missing_right"

    @property
    def payshack_key(self) -> str:
        return self.key.upper() if self.fate == "rekeyed" else self.key

    @property
    def payshack_at(self) -> datetime:
        return self.at + timedelta(seconds=self.portal_delay_seconds)

    def payshack_rows(self) -> int:
        """How many rows PayShack lists for it (a duplicate: two)."""
        return 0 if not self.on_payshack else 2 if self.fate == "duplicate" else 1

    def status_at(self, side: str, when: datetime) -> str:
        if self.settles_at is None or when < self.settles_at:
            return "pending"
        return self.vima_status if side == "vima" else self.payshack_status


class World:
    """The payments of a seed. ``between(start, end)`` lists those that happened in [start, end),
    in time order; the same arguments give the same payments in any process."""

    def __init__(self, seed: int = DEFAULT_SEED, *, interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
                 block: int = DEFAULT_BLOCK) -> None:
        if interval_seconds <= 0 or block < len(FATES):
            raise ValueError("interval_seconds must be positive and block at least the number of fates")
        self.seed, self.interval, self.block = seed, float(interval_seconds), int(block)
        self._fates: dict[int, dict[int, str]] = {}

    def _fate(self, index: int) -> str | None:
        b, position = divmod(index, self.block)
        fates = self._fates.get(b)
        if fates is None:
            rng = random.Random(f"{self.seed}:block:{b}")
            fates = dict(zip(rng.sample(range(self.block), len(FATES)), FATES))
            if len(self._fates) > 4096:
                self._fates.clear()
            self._fates[b] = fates
        return fates.get(position)

    def payment(self, index: int) -> Payment:
        rng = random.Random(f"{self.seed}:{index}")
        at = EPOCH + timedelta(seconds=int(index * self.interval + rng.random() * self.interval))
        fate = self._fate(index)
        project = rng.choice(PROJECTS)
        amount = rng.randint(100, 50_000) * 100
        first, last = rng.choice(FIRST), rng.choice(LAST)
        outcome = rng.choices(("success", "fail", "pending"), (82, 14, 4))[0]
        settles_at = None if outcome == "pending" else at + timedelta(seconds=rng.randint(20, 600))
        vima_status = payshack_status = outcome
        if fate == "status":
            settles_at = settles_at or at + timedelta(seconds=rng.randint(20, 600))
            vima_status, payshack_status = rng.choice((("success", "fail"), ("fail", "success")))
        elif fate == "amount":
            settles_at = settles_at or at + timedelta(seconds=rng.randint(20, 600))
            vima_status = payshack_status = "success"
        short = rng.randint(1, min(500, amount // 100 - 1)) * 100 if fate == "amount" else 0
        return Payment(
            index=index, at=at, key=f"{project[:3]}-{index:010d}-{rng.getrandbits(24):06x}", project=project,
            amount_minor=amount, fee_minor=amount * 2 // 100, method=rng.choice(METHODS),
            payer_name=f"{first} {last}", payer_email=f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@example.com",
            payer_vpa=f"{first.lower()}{rng.randint(1, 99)}@upi", settles_at=settles_at, vima_status=vima_status,
            payshack_status=payshack_status, fate=fate, portal_delay_seconds=rng.randint(0, 4), paid_short_minor=short,
            utr=f"{rng.randint(100000000000, 999999999999)}",
        )

    def between(self, start: datetime, end: datetime) -> list[Payment]:
        first = max(0, math.floor((start - EPOCH).total_seconds() / self.interval) - 1)
        last = math.ceil((end - EPOCH).total_seconds() / self.interval) + 1
        out = [p for p in (self.payment(k) for k in range(first, last)) if start <= p.at < end]
        out.sort(key=lambda p: (p.at, p.index))
        return out
