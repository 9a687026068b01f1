"""Rails as data: the SLA and fee rule of each rail, business days, cutoffs, settlement targets.

Pure functions over a `RailRule` (a row of `rail_rules`) and a `BusinessCalendar` (a built-in
holiday calendar plus ops' overrides from `rail_calendar_days`). No I/O: the routing engine, the
activities and the API all compute cutoffs and targets the same way, from these.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, field_validator

# Built-in holiday calendars (from the `holidays` package). NONE is a 24/7 rail: every day works.
CALENDARS = {
    "FED": "US Federal Reserve (Fedwire / FedACH) holidays",
    "TARGET": "TARGET2 closing days (SEPA)",
    "GB": "England and Wales bank holidays",
    "NONE": "no holidays, weekends included (24/7 rails)",
}


class RailRule(BaseModel):
    rail: str
    description: str | None = None
    methods: list[str]
    currencies: list[str]
    countries: list[str] = Field(default_factory=list)  # [] = any country
    timezone: str
    cutoff_time: str | None = None  # "HH:MM" in `timezone`
    settlement_business_days: int | None = None
    settlement_seconds: int | None = None
    batch: bool = False
    calendar: str = "NONE"
    fee_fixed_minor: int = 0
    fee_bps: int = 0
    enabled: bool = True

    @field_validator("cutoff_time")
    @classmethod
    def _hhmm(cls, v: str | None) -> str | None:
        if v is not None:
            time.fromisoformat(v)
        return v

    @property
    def instant(self) -> bool:
        return self.settlement_seconds is not None and self.cutoff_time is None

    def fee(self, amount_minor: int) -> int:
        """Fixed part plus basis points of the amount, rounded half up (integers only)."""
        return self.fee_fixed_minor + (amount_minor * self.fee_bps + 5_000) // 10_000


@lru_cache(maxsize=16)
def _builtin_holidays(calendar: str):
    import holidays  # why: heavy (every country's calendar); loaded on a calendar's first use

    if calendar == "FED":
        return holidays.financial_holidays("XFED")
    if calendar == "TARGET":
        return holidays.financial_holidays("ECB")
    if calendar == "GB":
        return holidays.country_holidays("GB", subdiv="ENG")
    return None


def load_calendars(today: date) -> None:
    """Load every built-in calendar and its holidays of this year and the next, once per process:
    the `holidays` package imports its modules and computes a year on first use (0.2 s of CPU here,
    seconds on a busy machine), which a worker pays at start instead of in its first payout's routing."""
    for name in CALENDARS:
        builtin = _builtin_holidays(name)
        if builtin is not None:
            for year in (today.year, today.year + 1):
                _ = date(year, 1, 1) in builtin


class BusinessCalendar:
    """Business days of one calendar: weekdays that are not holidays, with ops' overrides."""

    def __init__(self, name: str, overrides: dict[date, bool] | None = None) -> None:
        self.name = name
        self.overrides = overrides or {}  # day -> is_holiday

    def is_business_day(self, day: date) -> bool:
        if day in self.overrides:
            return not self.overrides[day]
        if self.name == "NONE":
            return True
        if day.weekday() >= 5:
            return False
        builtin = _builtin_holidays(self.name)
        return builtin is None or day not in builtin

    def next_business_day(self, day: date, *, include_today: bool = False) -> date:
        d = day if include_today else day + timedelta(days=1)
        for _ in range(400):
            if self.is_business_day(d):
                return d
            d += timedelta(days=1)
        raise ValueError(f"calendar {self.name} has no business day within a year of {day}")

    def add_business_days(self, day: date, n: int) -> date:
        d = day
        for _ in range(n):
            d = self.next_business_day(d)
        return d


def _local_at(day: date, hhmm: str, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=tz)


def next_cutoff(rule: RailRule, at: datetime, calendar: BusinessCalendar) -> datetime | None:
    """The first cutoff strictly after `at` on a business day (None for a 24/7 rail).

    A payout at 16:59 New York makes the 17:00 ACH cutoff that day; at 17:00 or later it makes
    the next business day's."""
    if rule.cutoff_time is None:
        return None
    tz = ZoneInfo(rule.timezone)
    local = at.astimezone(tz)
    day = local.date()
    if calendar.is_business_day(day) and local < _local_at(day, rule.cutoff_time, tz):
        return _local_at(day, rule.cutoff_time, tz)
    return _local_at(calendar.next_business_day(day), rule.cutoff_time, tz)


def settlement_target(rule: RailRule, at: datetime, calendar: BusinessCalendar) -> datetime:
    """When a payout submitted (or queued) at `at` should have settled.

    Cutoff rails: `settlement_business_days` business days after the next cutoff's day, at the
    cutoff's local time (T+0 = the cutoff itself). 24/7 rails: `settlement_seconds` after `at`."""
    cutoff = next_cutoff(rule, at, calendar)
    if cutoff is None:
        return at + timedelta(seconds=rule.settlement_seconds or 0)
    tz = ZoneInfo(rule.timezone)
    day = calendar.add_business_days(cutoff.date(), rule.settlement_business_days or 0)
    return _local_at(day, rule.cutoff_time or "00:00", tz)


def expected_seconds(rule: RailRule, at: datetime, calendar: BusinessCalendar) -> float:
    return (settlement_target(rule, at, calendar) - at).total_seconds()


# --- where a beneficiary is ------------------------------------------------------------------

MOBILE_COUNTRY_CODES = {
    "+221": "SN", "+225": "CI", "+223": "ML", "+226": "BF", "+229": "BJ", "+228": "TG", "+227": "NE",
    "+245": "GW", "+237": "CM", "+233": "GH", "+254": "KE",
}


def beneficiary_country(method: str, beneficiary: dict) -> str | None:
    if beneficiary.get("iban"):
        return str(beneficiary["iban"])[:2].upper()
    if method == "ach" or beneficiary.get("routing_number"):
        return "US"
    if method == "faster_payments" or beneficiary.get("sort_code"):
        return "GB"
    phone = beneficiary.get("phone")
    if phone:
        for prefix, country in MOBILE_COUNTRY_CODES.items():
            if str(phone).startswith(prefix):
                return country
    bic = beneficiary.get("bic")
    if bic and len(bic) >= 6:
        return str(bic)[4:6].upper()
    return None
