"""Branch conditions and calendars, evaluated with a given `now` (epoch seconds) and time zone; and the
`{name}` templates in prompts and attribute values. Pure functions: no clock of their own."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from switchboard.flowdef.flow import Calendar, Condition, Flow, Weekday

__all__ = ["calendar_open", "evaluate", "is_holiday", "render"]

_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.\-]*)\}")


def render(text: str, values: dict[str, str]) -> str:
    """`{name}` -> the value of attribute `name` (empty when unknown)."""
    return _TEMPLATE.sub(lambda m: values.get(m.group(1), ""), text)


def _local(flow: Flow, cal: Calendar, now: float) -> datetime:
    return datetime.fromtimestamp(now, ZoneInfo(cal.timezone or flow.timezone or "UTC"))


def is_holiday(flow: Flow, name: str, now: float) -> bool:
    cal = flow.calendars[name]
    return _local(flow, cal, now).date().isoformat() in cal.holidays


def calendar_open(flow: Flow, name: str, now: float) -> bool:
    """Within the calendar's hours for the local weekday, and not one of its holidays."""
    cal = flow.calendars[name]
    local = _local(flow, cal, now)
    if local.date().isoformat() in cal.holidays:
        return False
    hhmm = local.strftime("%H:%M")
    for span in cal.hours.get(_DAYS[local.weekday()], []):
        start, end = span.split("-")
        if start <= hhmm < end:
            return True
    return False


def evaluate(flow: Flow, cond: Condition, attributes: dict[str, str], now: float) -> bool:
    """Every test given holds. `attributes` includes `caller` and `dialled`."""
    ok = True
    if cond.attribute is not None:
        value = attributes.get(cond.attribute)
        if cond.present is not None:
            ok = ok and ((value is not None and value != "") == cond.present)
        if cond.equals is not None:
            ok = ok and value == cond.equals
        if cond.one_of is not None:
            ok = ok and value in cond.one_of
        if cond.matches is not None:
            ok = ok and value is not None and re.search(cond.matches, value) is not None
        if cond.present is None and cond.equals is None and cond.one_of is None and cond.matches is None:
            ok = ok and bool(value)
    if cond.caller is not None:
        ok = ok and re.search(cond.caller, attributes.get("caller", "")) is not None
    if cond.dialled is not None:
        ok = ok and re.search(cond.dialled, attributes.get("dialled", "")) is not None
    if cond.open is not None:
        ok = ok and calendar_open(flow, cond.open, now)
    if cond.holiday is not None:
        ok = ok and is_holiday(flow, cond.holiday, now)
    return ok != cond.negate
