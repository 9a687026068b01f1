"""Payout fees per rail: a fixed part in minor units plus basis points of the amount.

The fees in force live in the `rail_rules` table (seeded with these values by migration
0005_rails, changed through PUT /api/v1/rails/{rail}); this is the fallback for a rail the
table does not know.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeeRule:
    fixed_minor: int
    bps: int  # 1 bps = 0.01 %


FEE_RULES: dict[str, FeeRule] = {
    "ach": FeeRule(fixed_minor=25, bps=0),
    "sepa": FeeRule(fixed_minor=20, bps=0),
    "sepa_instant": FeeRule(fixed_minor=50, bps=5),
    "wire": FeeRule(fixed_minor=1500, bps=0),
    "faster_payments": FeeRule(fixed_minor=30, bps=0),
    "mobile_money": FeeRule(fixed_minor=0, bps=100),
}


def payout_fee(rail: str, amount_minor: int) -> int:
    """Fee in the payout's currency, rounded half up to the minor unit (integers only)."""
    rule = FEE_RULES[rail]
    return rule.fixed_minor + (amount_minor * rule.bps + 5_000) // 10_000


# --- the fee of the rail actually used --------------------------------------------------------

FEE_DIFFERENCE_REF = "fee-difference:{payout_id}"
