# Time-of-day rules: is a queue open at `now` (epoch seconds) in its own time zone? Pure, no clock.
from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

__all__ = ["WEEKDAYS", "Schedule", "is_open", "validate_schedule"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """Opening hours in a named IANA time zone.

    `hours` maps a weekday ("mon".."sun") to [start, end) windows as "HH:MM" strings ("24:00" ends the
    day); a weekday that is absent is closed all day. `closed_dates` ("YYYY-MM-DD", local) are holidays.
    """

    tz: str
    hours: dict[str, list[tuple[str, str]]] = msgspec.field(default_factory=dict)
    closed_dates: list[str] = msgspec.field(default_factory=list)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _minutes(hhmm: str) -> int:
    m = _HHMM.match(hhmm)
    if m is None:
        raise ValueError(hhmm)
    minutes = int(m.group(1)) * 60 + int(m.group(2))
    if minutes > 24 * 60:
        raise ValueError(hhmm)
    return minutes


def validate_schedule(s: Schedule) -> str | None:
    try:
        _zone(s.tz)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {s.tz!r}"
    for day, windows in s.hours.items():
        if day not in WEEKDAYS:
            return f"schedule weekday {day!r} is not one of {', '.join(WEEKDAYS)}"
        for start, end in windows:
            try:
                a, b = _minutes(start), _minutes(end)
            except ValueError:
                return f"schedule window {start}-{end} on {day}: times are HH:MM (00:00-24:00)"
            if a >= b:
                return f"schedule window {start}-{end} on {day}: start must be before end"
    for date in s.closed_dates:
        try:
            dt.date.fromisoformat(date)
        except ValueError:
            return f"closed date {date!r} is not YYYY-MM-DD"
    return None


def is_open(s: Schedule | None, now: float) -> bool:
    """True if the queue takes contacts at `now`; no schedule means always open."""
    if s is None:
        return True
    local = dt.datetime.fromtimestamp(now, _zone(s.tz))
    if local.date().isoformat() in s.closed_dates:
        return False
    minute = local.hour * 60 + local.minute
    for start, end in s.hours.get(WEEKDAYS[local.weekday()], ()):
        if _minutes(start) <= minute < _minutes(end):
            return True
    return False
