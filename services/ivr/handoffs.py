"""Node kinds that hand the caller on or wait on others: lookups, queues (music, announcements, callback
offer), callbacks, voicemail, transfers and surveys."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import msgspec
from switchboard.flowdef.flow import (
    Callback,
    Lookup,
    Prompt,
    QueueNode,
    Survey,
    Transfer,
    Voicemail,
)

from services.kernel.announcements import position_play
from services.kernel.events import (
    CallRecordFinished,
    IvrCallbackRequested,
    MediaPlay,
    MediaTransfer,
    RoutingCallback,
    RoutingEnqueue,
    RoutingTask,
)

from .conditions import render
from .lookup import SIGNATURE_HEADER, TIMESTAMP_HEADER, LookupRequest, LookupResult, result_attributes, sign
from .state import Phase, next_id
from .steps import CALLBACK_DONE, QUEUE_CALLBACK, VOICEMAIL_DONE, Steps, screen_pop

SCHEDULE_PROMPT = (
    "To be called back as soon as possible, press the pound key. To choose a time, enter it as four digits, "
    "hours then minutes, for example 1 4 3 0 for half past two in the afternoon, then press the pound key."
)


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


__all__ = ["Handoffs"]


class Handoffs(Steps):
    def _lookup(self, node: Lookup, now: float, out: list[Any]) -> None:
        s = self.state
        values = {k: render(v, s.attributes) for k, v in node.send.items()}
        url = node.url
        if node.method == "GET":
            payload = urlencode(values).encode()
            url = f"{url}{'&' if '?' in url else '?'}{payload.decode()}" if values else url
            body = b""
        else:
            payload = body = msgspec.json.encode(values)
        ts = int(now)
        headers = {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(self.lookup_secret, ts, payload)}
        if node.method == "POST":
            headers["Content-Type"] = "application/json"
        request = LookupRequest(
            id=next_id(s),
            call_id=s.call_id,
            node=s.node,
            method=node.method,
            url=url,
            headers=headers,
            body=body,
            timeout=node.timeout,
        )
        out.append(request)
        s.phase = Phase.lookup
        s.pending = request.id
        s.deadline = now + node.timeout

    def _lookup_done(self, result: LookupResult, now: float, out: list[Any]) -> None:
        s = self.state
        s.pending = None
        s.deadline = None
        node = self._node()
        assert isinstance(node, Lookup)
        found = result_attributes(result, node.results, node.prefix)
        if found is None:
            s.attributes[f"{node.prefix}lookup_error"] = result.error or f"status {result.status}"
            self._go(node.on_error, "error", now, out)
            return
        s.attributes.update(found)
        self._go(node.next, "ok", now, out)

    def _enqueue_command(self, queue: str, now: float, **extra: Any) -> RoutingEnqueue:
        s = self.state
        return RoutingEnqueue(
            tenant_id=s.tenant_id,
            call_id=s.call_id,
            queue=queue,
            attributes={**s.attributes, **screen_pop(s), **extra.pop("attributes", {})},
            id=next_id(s),
            ts=now,
            **extra,
        )

    def _enqueue(self, node: QueueNode, now: float, out: list[Any]) -> None:
        s = self.state
        attrs = {k: render(v, s.attributes) for k, v in node.attributes.items()}
        s.attributes.update(attrs)
        s.attributes["queue"] = node.queue
        self._exit("queued", now, out)  # time in the IVR ends here; the wait is routing's to measure
        cmd = self._enqueue_command(node.queue, now, priority=node.priority, skills=dict(node.skills))
        out.append(cmd)
        s.routing_id = cmd.id
        s.phase = Phase.queued
        s.announce_at = now + node.announce_every if node.announce_every else None
        s.offer_at = now + node.callback_after if node.callback_after is not None else None
        s.give_up_at = now + node.max_wait if node.max_wait is not None else None
        s.offered = False
        self._music(now, out)

    def _music(self, now: float, out: list[Any]) -> None:
        s = self.state
        node = self._node()
        assert isinstance(node, QueueNode)
        music = self._prompt(node.music)
        cmd = MediaPlay(
            tenant_id=s.tenant_id,
            call_id=s.call_id,
            tone=None if music else "moh",
            text=music.say if music else None,
            file=music.file if music else None,
            loop=True,
            id=next_id(s),
            ts=now,
        )
        out.append(cmd)
        s.pending = cmd.id

    def _announce(self, now: float, out: list[Any]) -> None:
        s = self.state
        node = self._node()
        assert isinstance(node, QueueNode)
        s.announce_at = now + node.announce_every if node.announce_every else None
        cmd = position_play(
            tenant_id=s.tenant_id,
            call_id=s.call_id,
            position=s.position,
            expected_wait_s=s.expected_wait_s,
            language=s.language,
            id=next_id(s),
            ts=now,
        )
        out.append(cmd)
        s.pending = cmd.id  # when it finishes, the music resumes

    def _offer_callback(self, now: float, out: list[Any]) -> None:
        s = self.state
        node = self._node()
        assert isinstance(node, QueueNode)
        s.offered = True
        prompt = self._prompt(node.callback_prompt) or Prompt(
            say=QUEUE_CALLBACK.format(digit=node.callback_digit)
        )
        cmd = MediaPlay(
            tenant_id=s.tenant_id,
            call_id=s.call_id,
            text=render(prompt.say, s.attributes) if prompt.say else None,
            file=prompt.file,
            interruptible=True,
            id=next_id(s),
            ts=now,
        )
        out.append(cmd)
        s.pending = cmd.id

    def _queue_digit(self, digit: str, now: float, out: list[Any]) -> None:
        s = self.state
        node = self._node()
        assert isinstance(node, QueueNode)
        self._record_digits(digit)
        if not s.offered or digit != node.callback_digit:
            return
        # The caller keeps their place: routing calls them back when they reach the front. The request is
        # published first: routing may find the contact due at once, and the coordinator must know why.
        out.append(self._callback_requested(node.queue, s.attributes.get("caller", ""), True, None, now))
        out.append(
            RoutingCallback(
                tenant_id=s.tenant_id,
                call_id=s.call_id,
                queue=node.queue,
                number=s.attributes.get("caller", ""),
                keep_place=True,
                attributes={**s.attributes, **screen_pop(s)},
                id=next_id(s),
                ts=now,
            )
        )
        s.attributes["callback"] = "requested"
        self._clear_queue_timers()
        s.phase = Phase.playing
        if node.on_callback:
            self._enter(node.on_callback, now, out)
        else:
            self._say(CALLBACK_DONE, "finish:callback", now, out)

    def _callback_requested(
        self, queue: str, number: str, keep_place: bool, at: float | None, now: float
    ) -> IvrCallbackRequested:
        s = self.state
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

    def _callback_step(self, node: Callback, now: float, out: list[Any]) -> None:
        s = self.state
        caller = s.attributes.get("caller", "")
        if s.sub == 2:
            prompt = self._prompt(node.schedule_prompt) or Prompt(say=SCHEDULE_PROMPT)
            self._collect(prompt, now, out, min_digits=1, max_digits=4, terminator="#", first=8.0, inter=4.0)
            return
        if s.sub == 0 and caller:
            spoken = " ".join(caller.lstrip("+"))
            prompt = self._prompt(node.confirm_prompt) or Prompt(
                say=f"We will call you back at {spoken}. Press 1 to confirm, or 2 to enter another number."
            )
            self._collect(prompt, now, out)
        else:
            s.sub = 1
            prompt = self._prompt(node.capture_prompt) or Prompt(
                say="Please enter the number to call you back on, then press the pound key."
            )
            self._collect(prompt, now, out, min_digits=7, max_digits=15, terminator="#", first=8.0, inter=4.0)

    def _callback_input(self, node: Callback, digits: str, now: float, out: list[Any]) -> None:
        s = self.state
        if s.sub == 0:
            if digits == "1":
                self._callback_number(node, s.attributes.get("caller", ""), now, out)
                return
            if digits == "2":
                s.sub = 1
                self._callback_step(node, now, out)
                return
        elif s.sub == 1 and re.fullmatch(r"\d{7,15}", digits):
            self._callback_number(node, "+" + digits, now, out)
            return
        elif s.sub == 2:
            if digits == "":  # pound alone: as soon as possible
                self._schedule_callback(node, None, now, out)
                return
            at = next_time(digits, now, self.flow.timezone)
            if at is not None:
                self._schedule_callback(node, at, now, out)
                return
        self._retry(node, None, bool(digits), now, out)

    def _callback_number(self, node: Callback, number: str, now: float, out: list[Any]) -> None:
        s = self.state
        s.attributes["callback_number"] = number
        if node.schedule:
            s.sub = 2
            s.tries = 0
            self._callback_step(node, now, out)
            return
        self._schedule_callback(node, None, now, out)

    def _schedule_callback(self, node: Callback, at: float | None, now: float, out: list[Any]) -> None:
        s = self.state
        number = s.attributes["callback_number"]
        out.append(self._callback_requested(node.queue, number, node.keep_place, at, now))
        if at is not None:
            # Routing hears of it at that time (from the contact coordinator), not now.
            s.attributes["callback_at"] = str(int(at))
        else:
            out.append(
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
        self._go(node.next, "scheduled", now, out)

    def _recorded(self, event: CallRecordFinished | None, now: float, out: list[Any]) -> None:
        s = self.state
        s.pending = None
        s.deadline = None
        node = self._node()
        assert isinstance(node, Voicemail)
        if event is not None and event.error is None and event.file:
            out.append(
                RoutingTask(
                    tenant_id=s.tenant_id,
                    # A task of its own (the caller's call ends soon): offered to an agent through the desk.
                    call_id=uuid.uuid5(s.call_id, "voicemail"),
                    queue=node.queue,
                    file=event.file,
                    seconds=event.seconds,
                    attributes={**s.attributes, **screen_pop(s), "voicemail_of": str(s.call_id)},
                    id=next_id(s),
                    ts=now,
                )
            )
            s.attributes["voicemail"] = event.file
        if node.next:
            self._go(node.next, "recorded", now, out)
        else:
            self._say(VOICEMAIL_DONE, "finish:self_served", now, out)

    def _transfer(self, node: Transfer, now: float, out: list[Any]) -> None:
        if node.prompt is not None:
            self._play(node.prompt, "transfer", now, out, interruptible=False)
        else:
            self._do_transfer(node, now, out)

    def _do_transfer(self, node: Transfer, now: float, out: list[Any]) -> None:
        s = self.state
        if node.to == "number":
            cmd: Any = MediaTransfer(
                tenant_id=s.tenant_id, call_id=s.call_id, to=node.target, id=next_id(s), ts=now
            )
        elif node.to == "agent":
            cmd = self._enqueue_command("", now, preferred_agent_id=node.target)
        else:
            cmd = self._enqueue_command(node.target, now)
        out.append(cmd)
        s.attributes["transfer"] = f"{node.to}:{node.target}"
        s.phase = Phase.transferring
        s.pending = None
        s.routing_id = cmd.id
        s.deadline = None
        if node.to == "number":
            self._finish("transferred", "transferred", now, out)
        else:
            self._exit("transferred", now, out)
            # Music until routing reports an agent took the call (ContactAccepted).
            out.append(
                MediaPlay(
                    tenant_id=s.tenant_id, call_id=s.call_id, tone="moh", loop=True, id=next_id(s), ts=now
                )
            )

    def _survey_ask(self, node: Survey, now: float, out: list[Any]) -> None:
        self._collect(node.questions[self.state.sub].prompt, now, out, first=node.timeout)
