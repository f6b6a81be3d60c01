"""Per-call media logic, sans-IO: prompts, digit collection, hold and the events they produce.

The SIP and RTP adapters feed it what happened (`digit`, `answered`, `next_frame` once per 20 ms,
`tick` at `next_deadline()`) and the NATS adapter its commands; every method returns the events to
publish. Audio is 8 kHz linear int16 numpy arrays; encoding to G.711 is the RTP adapter's job.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from services.kernel.events import (
    CallAnswered,
    CallCollected,
    CallDtmf,
    CallEnded,
    CallHeld,
    CallPlayFinished,
    CollectReason,
    DtmfSource,
    HeldBy,
    PlayReason,
)
from services.kernel.messages import Event, Stamp
from services.media.features.voicemail import Recording

FRAME = 160  # samples per 20 ms at 8 kHz
Samples = npt.NDArray[np.int16]
# Two RFC 4733 / in-band / INFO reports of one key press arrive within this window: report it once.
DUPLICATE_DIGIT_S = 0.12
# A key pressed while nothing listens (no prompt, no collection: the IVR is still starting, e.g. a web caller
# whose keypad is up the moment its call connects) is the next collection's first key if that collection
# starts this soon after; later, it was meant for no menu (a caller pressing keys at an agent).
TYPE_AHEAD_S = 8.0


class CallState(enum.Enum):
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


class CallInput(enum.Enum):
    ANSWER = "answer"
    END = "end"


# A call's life: the only moves its state makes (Call._set_state).
CALL_TABLE: dict[CallState, dict[CallInput, CallState]] = {
    CallState.RINGING: {CallInput.ANSWER: CallState.ANSWERED, CallInput.END: CallState.ENDED},
    CallState.ANSWERED: {CallInput.END: CallState.ENDED},
    CallState.ENDED: {},
}


@dataclass(slots=True)
class Playback:
    play_id: uuid.UUID | None
    samples: Samples
    interruptible: bool
    loop: bool = False
    position: int = 0
    # Set by collect(): the prompt belongs to this collection and only starts its timer when done.
    for_collect: bool = False


@dataclass(slots=True)
class Collection:
    collect_id: uuid.UUID
    min_digits: int
    max_digits: int
    terminator: str | None
    first_digit_timeout: float
    inter_digit_timeout: float
    deadline: float | None  # None while its prompt plays
    digits: str = ""


@dataclass(slots=True)
class Call:
    call_id: uuid.UUID
    tenant_id: uuid.UUID
    created_at: float
    state: CallState = CallState.RINGING
    answered_at: float | None = None
    ended_at: float | None = None
    held_by_us: bool = False
    held_by_them: bool = False
    playback: Playback | None = None
    collection: Collection | None = None
    # After the apology (or `hangup after play`), the adapter releases the call.
    hangup_after_play: bool = False
    hangup_requested: bool = False
    _moh: Samples | None = None
    _last_digit: tuple[str, float] = ("", -1.0)
    # The digit that interrupted a prompt while no collection ran: the next collect takes it as its
    # first key (MediaPlay's promise). Dropped by a non-interruptible play, hold and the call's end.
    pending_digit: str | None = None
    # When the pending digit was pressed with nothing listening (None: it interrupted a prompt).
    typed_at: float | None = None
    history: list[str] = field(default_factory=list)
    # The `record` command (voicemail): fed the caller's frames once its beep has played.
    recording: Recording | None = None
    # Events made so far: the next one's id is derived from the call and this count (never random).
    emitted: int = 0

    def _stamp(self, now: float) -> Stamp:
        """tenant_id, id and ts for the call's next event: ids from the call id, time from the input."""
        self.emitted += 1
        return {"tenant_id": self.tenant_id, "id": uuid.uuid5(self.call_id, f"e{self.emitted}"), "ts": now}

    # --- life cycle ---

    def _set_state(self, event: CallInput) -> bool:
        """Move through CALL_TABLE; False (nothing changes) where the table has no such move: a second
        answer or end is a no-op, not an error (both sides may hang up at once)."""
        new = CALL_TABLE[self.state].get(event)
        if new is None:
            return False
        self.state = new
        return True

    def answered(self, now: float) -> list[Event]:
        if not self._set_state(CallInput.ANSWER):
            return []
        self.answered_at = now
        return [CallAnswered(**self._stamp(now), call_id=self.call_id)]

    def end(self, cause: str, now: float, *, sip_status: int | None = None) -> list[Event]:
        if CallInput.END not in CALL_TABLE[self.state]:
            return []
        self.pending_digit = None
        events: list[Event] = []
        if self.recording is not None:
            events += self.recording.finish("hangup", now)
            self.recording = None
        if self.playback is not None and self.playback.play_id is not None:
            events.append(self._play_finished(self.playback, "stopped", now))
        self.playback = None
        if self.collection is not None:
            events.append(self._collected("stopped", now))
        self._set_state(CallInput.END)
        self.ended_at = now
        duration = round(now - self.answered_at, 3) if self.answered_at is not None else 0.0
        events.append(
            CallEnded(
                **self._stamp(now),
                call_id=self.call_id,
                cause=cause,
                duration=duration,
                sip_status=sip_status,
            )
        )
        return events

    # --- prompts ---

    def play(
        self,
        samples: Samples,
        *,
        play_id: uuid.UUID | None,
        now: float,
        interruptible: bool = False,
        loop: bool = False,
    ) -> list[Event]:
        events = self.stop_playback("stopped", now)
        if not interruptible:
            self.pending_digit = None
        self.playback = Playback(play_id, samples, interruptible, loop)
        return events

    def stop_playback(self, reason: PlayReason, now: float) -> list[Event]:
        playback, self.playback = self.playback, None
        if playback is None or playback.play_id is None:
            return []
        return [self._play_finished(playback, reason, now)]

    def stop(self, now: float) -> list[Event]:
        """The `stop` command: ends the prompt, any collection and any recording (kept as it is)."""
        events = self.stop_playback("stopped", now) + self.stop_recording("stopped", now)
        if self.collection is not None:
            events.append(self._collected("stopped", now))
        return events

    def hold(self, held: bool, *, by: HeldBy, now: float, moh: Samples | None = None) -> list[Event]:
        if held:
            self.pending_digit = None
        if by == "local":
            if self.held_by_us == held:
                return []
            self.held_by_us = held
            self._moh = moh if held else None
        else:
            if self.held_by_them == held:
                return []
            self.held_by_them = held
        return [CallHeld(**self._stamp(now), call_id=self.call_id, held=held, by=by)]

    @property
    def next_moh_active(self) -> bool:
        """Music on hold plays (we hold the call and have music)."""
        return self.held_by_us and self._moh is not None

    def next_frame(self, now: float) -> tuple[Samples | None, list[Event]]:
        """The next 20 ms to send (None: silence) and the events the frame caused (a prompt ended)."""
        if self.state is not CallState.ANSWERED:
            return None, []
        if self.held_by_us and self._moh is not None:
            return self._moh_frame(now), []
        playback = self.playback
        if playback is None:
            return None, []
        start = playback.position
        chunk = playback.samples[start : start + FRAME]
        playback.position += FRAME
        if playback.position >= len(playback.samples):
            if playback.loop and len(playback.samples):
                playback.position = 0
            else:
                return _pad(chunk), self._playback_done(playback, now)
        return _pad(chunk), []

    def _moh_frame(self, now: float) -> Samples:
        moh = self._moh
        assert moh is not None
        start = int(now * 8000) % max(1, len(moh) - FRAME)
        return _pad(moh[start : start + FRAME])

    def _playback_done(self, playback: Playback, now: float) -> list[Event]:
        self.playback = None
        events: list[Event] = []
        if playback.play_id is not None:
            events.append(self._play_finished(playback, "done", now))
        if playback.for_collect and self.collection is not None and self.collection.deadline is None:
            self.collection.deadline = now + self.collection.first_digit_timeout
        if self.hangup_after_play:
            self.hangup_requested = True
        return events

    # --- recording ---

    def record(self, recording: Recording, beep: Samples | None, now: float) -> list[Event]:
        """Start a recording (after the beep, if any); a running one is stopped and reported first."""
        events: list[Event] = self.stop_playback("stopped", now)
        if self.collection is not None:
            events.append(self._collected("stopped", now))
        if self.recording is not None:
            events += self.recording.finish("replaced", now)
        self.pending_digit = None
        self.recording = recording
        if beep is not None:
            self.playback = Playback(None, beep, interruptible=False)
        return events

    def heard(self, samples: Samples | None, now: float) -> list[Event]:
        """One 20 ms frame from the caller (None: nothing arrived this tick)."""
        recording = self.recording
        if recording is None or self.state is not CallState.ANSWERED or self.playback is not None:
            return []  # the beep (or a prompt) still plays: the message starts after it
        events: list[Event] = list(recording.heard(samples, now))
        if recording.done:
            self.recording = None
        return events

    def stop_recording(self, reason: str, now: float) -> list[Event]:
        recording, self.recording = self.recording, None
        return list(recording.finish(reason, now)) if recording is not None else []

    # --- digits ---

    def collect(
        self,
        *,
        collect_id: uuid.UUID,
        min_digits: int,
        max_digits: int,
        terminator: str | None,
        first_digit_timeout: float,
        inter_digit_timeout: float,
        now: float,
        prompt: Samples | None = None,
    ) -> list[Event]:
        events: list[Event] = []
        if self.collection is not None:
            events.append(self._collected("stopped", now))
        typed_ahead, self.pending_digit = self.pending_digit, None
        if self.typed_at is not None and now - self.typed_at > TYPE_AHEAD_S:
            typed_ahead = None
        self.typed_at = None
        if typed_ahead is not None:
            prompt = None  # the caller already answered: the prompt would only make them wait
        self.collection = Collection(
            collect_id,
            max(0, min_digits),
            max(1, max_digits),
            terminator or None,
            first_digit_timeout,
            inter_digit_timeout,
            None if prompt is not None else now + first_digit_timeout,
        )
        if prompt is not None:
            events += self.play(prompt, play_id=collect_id, now=now, interruptible=True)
            assert self.playback is not None
            self.playback.for_collect = True
        if typed_ahead is not None:
            events += self._collect_digit(typed_ahead, now)
        return events

    def digit(self, digit: str, source: DtmfSource, now: float) -> list[Event]:
        last, at = self._last_digit
        if digit == last and now - at < DUPLICATE_DIGIT_S:
            return []  # the same press reported by a second detector (e.g. in-band and RFC 4733)
        self._last_digit = (digit, now)
        self.history.append(digit)
        events: list[Event] = [CallDtmf(**self._stamp(now), call_id=self.call_id, digit=digit, source=source)]
        if self.recording is not None:
            # Any key ends the message (MediaRecord names no terminator); the key is not a menu choice.
            return events + self.stop_recording("digit", now)
        playback = self.playback
        if playback is not None and playback.interruptible:
            self.playback = None
            if playback.play_id is not None:
                events.append(self._play_finished(playback, "interrupted", now, digit))
            if self.collection is None:
                self.pending_digit, self.typed_at = digit, None
        elif playback is None and self.collection is None:
            self.pending_digit, self.typed_at = digit, now
        return events + self._collect_digit(digit, now)

    def _collect_digit(self, digit: str, now: float) -> list[Event]:
        events: list[Event] = []
        collection = self.collection
        if collection is None:
            return events
        if collection.terminator is not None and digit == collection.terminator:
            if len(collection.digits) >= collection.min_digits:
                events.append(self._collected("terminator", now))
            return events
        collection.digits += digit
        if len(collection.digits) >= collection.max_digits:
            events.append(self._collected("max_digits", now))
        else:
            collection.deadline = now + collection.inter_digit_timeout
        return events

    def next_deadline(self) -> float | None:
        return self.collection.deadline if self.collection is not None else None

    def tick(self, now: float) -> list[Event]:
        collection = self.collection
        if collection is None or collection.deadline is None or now < collection.deadline:
            return []
        return [self._collected("inter_digit_timeout" if collection.digits else "first_digit_timeout", now)]

    def _collected(self, reason: CollectReason, now: float) -> CallCollected:
        collection = self.collection
        assert collection is not None
        self.collection = None
        return CallCollected(
            **self._stamp(now),
            call_id=self.call_id,
            collect_id=collection.collect_id,
            digits=collection.digits,
            reason=reason,
        )

    def _play_finished(
        self, playback: Playback, reason: PlayReason, now: float, digit: str | None = None
    ) -> CallPlayFinished:
        return CallPlayFinished(
            **self._stamp(now),
            call_id=self.call_id,
            play_id=playback.play_id,
            reason=reason,
            digit=digit,
        )


def _pad(chunk: Samples) -> Samples:
    if len(chunk) == FRAME:
        return chunk
    out = np.zeros(FRAME, dtype=np.int16)
    out[: len(chunk)] = chunk
    return out
