"""Commands to media (sb.<tenant>.cmd.media.<name>), idempotent by their `id`."""

from __future__ import annotations

import uuid
from typing import Literal

from ..messages import Command

__all__ = [
    "MediaAnswer",
    "MediaBridge",
    "MediaCancelTransfer",
    "MediaCollect",
    "MediaCommand",
    "MediaCompleteTransfer",
    "MediaConsult",
    "MediaHangup",
    "MediaHold",
    "MediaMonitor",
    "MediaMute",
    "MediaOriginate",
    "MediaPlay",
    "MediaRecord",
    "MediaRecordPause",
    "MediaRecordResume",
    "MediaRecordStart",
    "MediaSendDigits",
    "MediaStop",
    "MediaTransfer",
    "MediaUnbridge",
    "MediaUnhold",
    "MediaUnmonitor",
    "MediaUnmute",
    "MonitorModeName",
]

# Bridging: the media worker joins two of its legs (SIP calls or WebRTC legs; a WebRTC leg's call_id is its leg_id).
# Commands go to sb.<tenant>.cmd.media.<name> like the other media commands; the worker that holds
# `call_id` (and `other_call_id`) answers.

# Attended transfer and supervisor monitoring over the bridge (services/media/features/consult.py, monitor.py).
# The agent's leg names the transfer (`call_id`); its bridge partner is "the caller". For monitor, `call_id`
# is the supervisor's leg and `target_call_id` the agent's (the target's bridge partner is the caller).


class MediaCommand(Command, kw_only=True, frozen=True):
    service = "media"
    call_id: uuid.UUID

    @property
    def held_by(self) -> uuid.UUID | None:
        return self.call_id


class MediaAnswer(MediaCommand, kw_only=True, frozen=True):
    name = "answer"


class MediaPlay(MediaCommand, kw_only=True, frozen=True):
    """Play one prompt: `text` (espeak-ng), `file` (WAV, .ulaw/.alaw raw, under the data dir) or `tone`
    ("moh" for music on hold). `interruptible`: a digit stops it (and is kept for a following collect)."""

    name = "play"
    text: str | None = None
    voice: str = "en-us"
    rate: int = 160
    file: str | None = None
    tone: Literal["moh"] | None = None
    interruptible: bool = False
    loop: bool = False


class MediaCollect(MediaCommand, kw_only=True, frozen=True):
    name = "collect"
    min_digits: int = 1
    max_digits: int = 1
    terminator: str | None = "#"
    first_digit_timeout: float = 5.0
    inter_digit_timeout: float = 3.0
    # Optional prompt played first, interrupted by the first digit.
    text: str | None = None
    file: str | None = None
    voice: str = "en-us"


class MediaStop(MediaCommand, kw_only=True, frozen=True):
    name = "stop"


class MediaHold(MediaCommand, kw_only=True, frozen=True):
    name = "hold"


class MediaUnhold(MediaCommand, kw_only=True, frozen=True):
    name = "unhold"


class MediaHangup(MediaCommand, kw_only=True, frozen=True):
    name = "hangup"
    cause: str = "normal_clearing"


class MediaOriginate(MediaCommand, kw_only=True, frozen=True):
    """An outbound INVITE to `to` (E.164) through the tenant's trunk named `trunk` (or its only trunk);
    `call_id` is the id the new call will carry."""

    name = "originate"
    to: str  # an E.164 number (through the trunk), or a sip: URI dialled directly (an agent's phone)
    caller_id: str = ""
    trunk: str | None = None
    timeout: float = 30.0
    # Originate on the worker that holds this call (so the two can be bridged); any worker otherwise.
    near_call_id: uuid.UUID | None = None

    @property
    def held_by(self) -> uuid.UUID | None:
        return self.near_call_id  # `call_id` is the new call's: nobody holds it yet


class MediaRecord(MediaCommand, kw_only=True, frozen=True):
    """Record the caller (after a beep) into `file` under the data dir, up to `max_seconds` or silence;
    media answers with call.record_finished."""

    name = "record"
    file: str
    max_seconds: float = 120.0
    beep: bool = True


class MediaTransfer(MediaCommand, kw_only=True, frozen=True):
    """Hand the call to an outside number (blind transfer: REFER, or a bridged outbound leg)."""

    name = "transfer"
    to: str
    caller_id: str = ""


class MediaBridge(MediaCommand, kw_only=True, frozen=True):
    """Join `call_id` and `other_call_id` both ways (each must be held by the same worker)."""

    name = "bridge"
    other_call_id: uuid.UUID


class MediaUnbridge(MediaCommand, kw_only=True, frozen=True):
    """Separate `call_id` from whatever it is bridged to; both legs stay up."""

    name = "unbridge"


class MediaMute(MediaCommand, kw_only=True, frozen=True):
    """The other side of `call_id`'s bridge stops hearing `call_id` (it hears silence)."""

    name = "mute"


class MediaUnmute(MediaCommand, kw_only=True, frozen=True):
    name = "unmute"


class MediaRecordStart(MediaCommand, kw_only=True, frozen=True):
    """Tap `call_id`'s bridge into the local spool (two channels, G.711: the bridge's first side left).

    A conversation recorded in segments (a transfer's next agent, a consultation) names each segment:
    `recording_id` (None: `call_id`), the `contact_id` it belongs to, its number, kind and agents. Media
    does not interpret them: they travel on `call.recording` to the recording service, which links the
    segments of one contact (docs/recording.md)."""

    name = "record_start"
    recording_id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None
    segment: int = 0
    kind: Literal["talk", "consult"] = "talk"
    agent_id: str = ""  # talk: the agent on the right channel; consult: the first agent (left)
    consulted_agent_id: str = ""  # consult: the agent consulted (right)


class MediaRecordPause(MediaCommand, kw_only=True, frozen=True):
    name = "record_pause"


class MediaRecordResume(MediaCommand, kw_only=True, frozen=True):
    name = "record_resume"


MonitorModeName = Literal["listen", "whisper", "barge", "none"]


class MediaConsult(MediaCommand, kw_only=True, frozen=True):
    """The agent (`call_id`, bridged to a caller) consults: the caller hears music, the agent is bridged to
    `other_call_id` (a leg in the same worker) or to `to` (an outside number, through the tenant's trunk).
    Exactly one of `to` / `other_call_id`. The reply comes once the consult leg is bridged."""

    name = "consult"
    to: str | None = None
    other_call_id: uuid.UUID | None = None
    caller_id: str = ""
    trunk: str | None = None
    timeout: float = 30.0


class MediaCompleteTransfer(MediaCommand, kw_only=True, frozen=True):
    """The caller is bridged to the consult target; the agent's leg is released (not hung up)."""

    name = "complete_transfer"


class MediaCancelTransfer(MediaCommand, kw_only=True, frozen=True):
    """The consult leg is hung up (if media originated it) or unbridged; the agent is back with the caller."""

    name = "cancel_transfer"


class MediaMonitor(MediaCommand, kw_only=True, frozen=True):
    """The supervisor's leg (`call_id`) joins the bridge of the agent's leg `target_call_id`; another
    `monitor` changes the mode, mode "none" leaves (like `unmonitor`)."""

    name = "monitor"
    target_call_id: uuid.UUID
    mode: MonitorModeName = "listen"


class MediaUnmonitor(MediaCommand, kw_only=True, frozen=True):
    """The supervisor's leg (`call_id`) leaves the bridge it monitors."""

    name = "unmonitor"


class MediaSendDigits(MediaCommand, kw_only=True, frozen=True):
    """Play DTMF digits to the call (in-band tones, 100 ms each with 60 ms gaps): an agent reaching an
    extension or a menu on the caller's side."""

    name = "send_digits"
    digits: str
