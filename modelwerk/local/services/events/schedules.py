"""EventBridge schedule expressions: ``rate(value unit)`` and the six-field ``cron(min hour dom month dow year)``.

Cron follows EventBridge's rules: day-of-month and day-of-week, one of which is ``?``; days of the week 1-7 from
Sunday (or SUN-SAT); ``*``, lists, ranges, ``/`` steps, ``L`` (last day of the month; ``5L`` the last Thursday),
``W`` (nearest weekday; ``LW``) and ``#`` (``6#3`` the third Friday). Times are UTC.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)")
_CRON = re.compile(r"cron\(([^)]*)\)")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {name: i for i, name in enumerate(calendar.month_abbr) if name} | {
    name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
#: How far ahead a cron expression is searched for its next time.
_HORIZON_DAYS = 366 * 5


class ScheduleError(ValueError):
    """An expression EventBridge would refuse."""


def _values(field: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int]:
    """The values of one cron field (lists, ranges, steps, names)."""
    result: set[int] = set()
    for part in field.split(","):
        part = part.strip().upper()
        for name, number in (names or {}).items():
            part = re.sub(rf"\b{name.upper()}\b", str(number), part)
        base, _, step = part.partition("/")
        if base in ("*", ""):
            start, end = low, high
        elif "-" in base:
            start, end = (int(v) for v in base.split("-", 1))
        else:
            start = int(base)
            end = high if step else start
        if not (low <= start <= high and low <= end <= high):
            raise ScheduleError(f"{part!r} is outside {low}-{high}")
        result.update(range(start, end + 1, int(step) if step else 1))
    return result


@dataclass(frozen=True)
class Schedule:
    expression: str

    def __post_init__(self) -> None:
        self.next_after(datetime(2024, 1, 1, tzinfo=timezone.utc))  # refuses an expression that does not parse

    def next_after(self, moment: datetime) -> datetime:
        """The first time strictly after ``moment`` at which the schedule fires (a rate: one period later)."""
        rate = _RATE.fullmatch(self.expression.strip())
        if rate:
            value, unit = int(rate.group(1)), rate.group(2).rstrip("s")
            if value < 1 or (value == 1) != (not rate.group(2).endswith("s")):
                raise ScheduleError(f"{self.expression}: a rate of 1 takes a singular unit, more a plural one")
            return moment + timedelta(seconds=value * _UNITS[unit])
        cron = _CRON.fullmatch(self.expression.strip())
        if not cron:
            raise ScheduleError(f"{self.expression!r} is neither rate(...) nor cron(...)")
        return _next_cron(cron.group(1).split(), moment)


def _next_cron(fields: list[str], moment: datetime) -> datetime:
    if len(fields) != 6:
        raise ScheduleError(f"cron takes six fields (minutes hours day-of-month month day-of-week year), got "
                            f"{len(fields)}")
    minute_f, hour_f, dom_f, month_f, dow_f, year_f = fields
    if (dom_f == "?") == (dow_f == "?"):
        raise ScheduleError("exactly one of day-of-month and day-of-week must be '?'")
    minutes, hours = _values(minute_f, 0, 59), _values(hour_f, 0, 23)
    months, years = _values(month_f, 1, 12, _MONTHS), _values(year_f, 1970, 2199)
    start = (moment + timedelta(minutes=1)).replace(second=0, microsecond=0)
    day = start.date()
    for _ in range(_HORIZON_DAYS):
        if day.year in years and day.month in months and _day_matches(day, dom_f, dow_f):
            for hour in sorted(hours):
                for minute in sorted(minutes):
                    candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)
                    if candidate >= start:
                        return candidate
        day += timedelta(days=1)
    raise ScheduleError(f"cron({' '.join(fields)}) never fires in the next {_HORIZON_DAYS // 366} years")


def _day_matches(day: date, dom_f: str, dow_f: str) -> bool:
    last = calendar.monthrange(day.year, day.month)[1]
    if dow_f == "?":
        field = dom_f.upper()
        if field == "L":
            return day.day == last
        if field.endswith("W"):
            target = last if field == "LW" else min(int(field[:-1]), last)
            return day.day == _nearest_weekday(day.year, day.month, target)
        return day.day in _values(dom_f, 1, 31)
    weekday = (day.isoweekday() % 7) + 1  # Sunday 1 ... Saturday 7
    field = dow_f.upper()
    for name, number in _DAYS.items():
        field = field.replace(name, str(number))
    if field.endswith("L") and field != "L":
        return weekday == int(field[:-1]) and day.day + 7 > last
    if "#" in field:
        wanted, nth = (int(v) for v in field.split("#", 1))
        return weekday == wanted and (day.day - 1) // 7 + 1 == nth
    if field == "L":
        return weekday == 7
    return weekday in _values(field, 1, 7)


def _nearest_weekday(year: int, month: int, target: int) -> int:
    """The weekday (Mon-Fri) of the month nearest to ``target``, never crossing into another month."""
    last = calendar.monthrange(year, month)[1]
    weekday = calendar.weekday(year, month, target)  # Monday 0
    if weekday < 5:
        return target
    if weekday == 5:  # Saturday: Friday before, or Monday after on the 1st
        return target - 1 if target > 1 else target + 2
    return target + 1 if target < last else target - 2  # Sunday
