"""When a payout schedule fires: daily at HH:MM, weekly on weekday(s) at HH:MM, or a cron string,
in an IANA time zone.

Every spec is normalised to one 5-field cron expression. That one string is what the Temporal
Schedule runs (`ScheduleSpec(cron_expressions=[...], time_zone_name=...)`) and what the preview
computes with croniter, so the preview and Temporal read the same expression (a test checks the
two agree through the Schedule's `next_action_times`).

Refused, with a 422 that says why: anything but 5 fields (no seconds, no `@daily` macros), the
non-standard `L W # ?`, an out-of-range value, and a day-of-month together with a day-of-week
(classic cron ORs the two, which readers seldom expect; use two schedules instead).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CRON_DOW = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_FIELD = re.compile(r"^[0-9A-Za-z*,/\-]+$")
_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
MAX_PREVIEW = 100
_NAMES = {3: ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 4: WEEKDAYS}


def _check_at(value: str) -> str:
    if not _HHMM.match(value):
        raise ValueError(f"'{value}' is not a time of day HH:MM (24 h, e.g. 09:30)")
    return value


class DailySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["daily"]
    at: str = Field(description="local time HH:MM (24 h)", examples=["09:00"])
    _at = field_validator("at")(_check_at)


class WeeklySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["weekly"]
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(min_length=1, max_length=7)
    at: str = Field(description="local time HH:MM (24 h)", examples=["09:00"])
    _at = field_validator("at")(_check_at)


class CronSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["cron"]
    cron: str = Field(max_length=200, description="5 fields: minute hour day-of-month month day-of-week",
                      examples=["0 9 * * mon-fri"])

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return validate_cron(value)


ScheduleSpecIn = Annotated[DailySpec | WeeklySpec | CronSpec, Field(discriminator="kind")]


def validate_cron(expression: str) -> str:
    """The expression with single spaces, or ValueError saying what is wrong."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields (minute hour day-of-month month day-of-week); "
                         f"'{expression}' has {len(fields)}")
    for position, (name, field) in enumerate(zip(_FIELD_NAMES, fields)):
        names = _NAMES.get(position, ())
        words = re.findall(r"[A-Za-z]+", field)
        if not _FIELD.match(field) or any(w.lower() not in names for w in words):
            raise ValueError(f"the {name} field '{field}' is not digits, * , - / "
                             f"{'or 3-letter names ' if names else ''}(L W # ? are not taken)")
    normal = " ".join(fields)
    if not croniter.is_valid(normal):
        raise ValueError(f"'{expression}' is not a valid cron expression (a value out of range?)")
    if fields[2] != "*" and fields[4] != "*":
        raise ValueError("a cron expression may restrict the day of month or the day of week, not both "
                         "(cron would run on either); use two schedules")
    try:
        croniter(normal, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"'{expression}' never fires (e.g. 31 February)") from None
    return normal


def check_time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory such as "America"
        raise ValueError(f"'{name}' is not an IANA time zone (e.g. Europe/Paris, UTC)") from None
    return name


def to_cron(spec: DailySpec | WeeklySpec | CronSpec) -> str:
    if isinstance(spec, CronSpec):
        return validate_cron(spec.cron)
    hour, minute = (int(x) for x in spec.at.split(":"))
    if isinstance(spec, DailySpec):
        return f"{minute} {hour} * * *"
    days = sorted({_CRON_DOW[d] for d in spec.weekdays})
    return f"{minute} {hour} * * {','.join(str(d) for d in days)}"


def describe(spec: DailySpec | WeeklySpec | CronSpec) -> str:
    """A human sentence for the console and the Temporal Schedule's memo."""
    if isinstance(spec, DailySpec):
        return f"daily at {spec.at}"
    if isinstance(spec, WeeklySpec):
        ordered = [d for d in WEEKDAYS if d in spec.weekdays]
        return f"weekly on {', '.join(d.capitalize() for d in ordered)} at {spec.at}"
    return f"cron {spec.cron}"


def next_fire_times(cron: str, time_zone: str, after: datetime, count: int) -> list[datetime]:
    """The next `count` fire times strictly after `after`, as aware datetimes in `time_zone`; fewer
    when the calendar runs out (year 9999)."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    zone = ZoneInfo(time_zone)
    it = croniter(cron, after.astimezone(zone))
    out: list[datetime] = []
    while len(out) < count:
        try:
            nxt = it.get_next(datetime)
        except (OverflowError, CroniterBadDateError):
            break
        if nxt > after:
            out.append(nxt.astimezone(zone))
    return out
