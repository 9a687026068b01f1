"""Recommendation kinds, statuses and the arithmetic behind each figure.

Pure functions, no I/O: the service feeds them what the store read, tests feed them what they
generated. Every figure a recommendation shows (impact, confidence) comes from here, together
with the sentence that explains it, so the text and the number can never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RecommendationKind(StrEnum):
    CHEAPER_ROUTE = "cheaper_route"
    FLOAT_RUNWAY = "float_runway"
    FAILING_CONNECTOR = "failing_connector"
    BATCH_INSTEAD_OF_STANDARD = "batch_instead_of_standard"


class RecommendationStatus(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    DISMISSED = "dismissed"
    EXPIRED = "expired"


DAYS_PER_MONTH = 30  # "per month" means per 30 days, everywhere
SAMPLE_HALF_WEIGHT = 10  # a sample of 10 carries half the weight of an infinite one


@dataclass
class Draft:
    """A recommendation as computed, before it is stored (or refreshes the pending one)."""

    kind: RecommendationKind
    merchant_id: str | None
    dedupe_key: str
    title: str
    impact_minor: int
    currency: str
    impact_arithmetic: str
    confidence: float
    confidence_explanation: str
    evidence: dict[str, Any]
    action_type: str | None
    action_params: dict[str, Any] | None = field(default=None)


def per_month(amount_minor: int, window_days: float) -> int:
    """An amount observed over `window_days`, scaled to 30 days (integer, rounded half up)."""
    if window_days <= 0:
        raise ValueError("window_days must be positive")
    # in hundredths of a day so a fractional window (hours) stays exact enough
    hundredths = round(window_days * 100)
    return (amount_minor * DAYS_PER_MONTH * 100 * 2 + hundredths) // (2 * hundredths)


def coefficient_of_variation(values: list[float]) -> float:
    """Population standard deviation over the mean; 0 for no values or a zero mean."""
    if not values:
        return 0.0
    mean = sum(values) / len(values)
    if mean == 0:
        return 0.0
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) / mean


def confidence(sample_size: int, daily_values: list[float]) -> tuple[float, str]:
    """Confidence in 0..1: sample weight n/(n+10) times stability 1/(1+cv) of the daily values.

    A large sample with steady days gives a confidence near 1; few observations, or a volume that
    comes in bursts (a high coefficient of variation), lower it. Returns (value, explanation)."""
    n = max(0, sample_size)
    weight = n / (n + SAMPLE_HALF_WEIGHT)
    cv = coefficient_of_variation(daily_values)
    stability = 1 / (1 + cv)
    value = round(weight * stability, 3)
    text = (f"{n} observation(s): sample weight {n}/({n}+{SAMPLE_HALF_WEIGHT}) = {weight:.2f}; "
            f"day-to-day variation cv = {cv:.2f} over {len(daily_values)} day(s): stability 1/(1+{cv:.2f}) = "
            f"{stability:.2f}; confidence {weight:.2f} x {stability:.2f} = {value:.2f}")
    return value, text


def proportion_confidence(failures: int, total: int) -> tuple[float, str]:
    """Confidence that a connector's failure rate is real: sample weight n/(n+10) times
    1 - (standard error / rate), i.e. how far the observed rate stands above its own noise."""
    if total <= 0 or failures <= 0:
        return 0.0, "no failed payouts observed: nothing to be confident about"
    p = failures / total
    se = math.sqrt(p * (1 - p) / total)
    weight = total / (total + SAMPLE_HALF_WEIGHT)
    precision = max(0.0, 1 - se / p)
    value = round(weight * precision, 3)
    text = (f"{failures} of {total} payouts failed (rate {p:.1%}); sample weight {total}/({total}+"
            f"{SAMPLE_HALF_WEIGHT}) = {weight:.2f}; standard error {se:.3f}, precision 1 - se/rate = {precision:.2f}; "
            f"confidence {weight:.2f} x {precision:.2f} = {value:.2f}")
    return value, text


def runway_days(available_minor: int, outflow_minor: int, window_days: int) -> float | None:
    """Days the available balance lasts at the window's payout velocity; None with no outflow."""
    if outflow_minor <= 0:
        return None
    return available_minor * window_days / outflow_minor


def top_up_minor(available_minor: int, outflow_minor: int, window_days: int) -> int:
    """What brings the balance to a month of payouts at the observed velocity (never negative)."""
    return max(0, per_month(outflow_minor, window_days) - available_minor)
