"""callback: the caller leaves a number (their own, confirmed, or one they key in) and, when the node allows
it, a time; routing calls them back (now) or the contact coordinator hands it to routing at that time.

`sub` is the node's step: 0 confirm the caller's number, 1 key in a number, 2 choose a time."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from switchboard.flowdef.flow import Callback, Prompt

from services.kernel.announcements import CALLBACK_DONE
from services.kernel.events import IvrCallbackRequested, RoutingCallback

from ..call import Call, screen_pop
from ..state import next_id

__all__ = ["CALLBACK_DONE", "SCHEDULE_PROMPT", "answered", "callback_requested", "next_time", "run"]

SCHEDULE_PROMPT = (
    "To be called back as soon as possible, press the pound key. To choose a time, enter it as four digits, "
    "hours then minutes, for example 1 4 3 0 for half past two in the afternoon, then press the pound key."
)
_CONFIRM, _KEY_IN, _SCHEDULE = 0, 1, 2


def next_time(digits: str, now: float, timezone: str | None) -> float | None:
    """The next HH:MM (four digits, 24-hour clock) in `timezone` after `now`, as epoch seconds; None when the
    digits are not a time of day."""
    if not re.fullmatch(r"\d{4}", digits):
        return None
    hour, minute = int(digits[:2]), int(digits[2:])
    if hour > 23 or minute > 59:
        return None
    local = datetime.fromtimestamp(now, ZoneInfo(timezone or "UTC"))
    at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at.timestamp() <= now:
        at = (local + timedelta(days=1)).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return at.timestamp()


def callback_requested(
    call: Call, queue: str, number: str, keep_place: bool, at: float | None, now: float
) -> IvrCallbackRequested:
    s = call.state
    return IvrCallbackRequested(
        tenant_id=s.tenant_id,
        call_id=s.call_id,
        queue=queue,
        number=number,
        keep_place=keep_place,
        at=at,
        id=next_id(s),
        ts=now,
    )


def run(call: Call, node: Callback, now: float) -> None:
    s = call.state
    caller = s.attributes.get("caller", "")
    if s.sub == _SCHEDULE:
        prompt = call.prompt(node.schedule_prompt) or Prompt(say=SCHEDULE_PROMPT)
        call.collect(prompt, now, min_digits=1, max_digits=4, terminator="#", first=8.0, inter=4.0)
        return
    if s.sub == _CONFIRM and caller:
        spoken = " ".join(caller.lstrip("+"))
        prompt = call.prompt(node.confirm_prompt) or Prompt(
            say=f"We will call you back at {spoken}. Press 1 to confirm, or 2 to enter another number."
        )
        call.collect(prompt, now)
    else:
        s.sub = _KEY_IN
        prompt = call.prompt(node.capture_prompt) or Prompt(
            say="Please enter the number to call you back on, then press the pound key."
        )
        call.collect(prompt, now, min_digits=7, max_digits=15, terminator="#", first=8.0, inter=4.0)


def answered(call: Call, node: Callback, digits: str, now: float) -> None:
    s = call.state
    if s.sub == _CONFIRM:
        if digits == "1":
            _number(call, node, s.attributes.get("caller", ""), now)
            return
        if digits == "2":
            s.sub = _KEY_IN
            run(call, node, now)
            return
    elif s.sub == _KEY_IN and re.fullmatch(r"\d{7,15}", digits):
        _number(call, node, "+" + digits, now)
        return
    elif s.sub == _SCHEDULE:
        if digits == "":  # pound alone: as soon as possible
            _schedule(call, node, None, now)
            return
        at = next_time(digits, now, call.flow.timezone)
        if at is not None:
            _schedule(call, node, at, now)
            return
    call.retry(node, None, bool(digits), now)


def _number(call: Call, node: Callback, number: str, now: float) -> None:
    s = call.state
    s.attributes["callback_number"] = number
    if node.schedule:
        s.sub = _SCHEDULE
        s.tries = 0
        run(call, node, now)
        return
    _schedule(call, node, None, now)


def _schedule(call: Call, node: Callback, at: float | None, now: float) -> None:
    s = call.state
    number = s.attributes["callback_number"]
    call.emit(callback_requested(call, node.queue, number, node.keep_place, at, now))
    if at is not None:
        # Routing hears of it at that time (from the contact coordinator), not now.
        s.attributes["callback_at"] = str(int(at))
    else:
        call.emit(
            RoutingCallback(
                tenant_id=s.tenant_id,
                call_id=s.call_id,
                queue=node.queue,
                number=number,
                keep_place=node.keep_place,
                attributes={**s.attributes, **screen_pop(s)},
                id=next_id(s),
                ts=now,
            )
        )
    s.attributes["callback"] = "requested"
    call.go(node.next, "scheduled", now)
