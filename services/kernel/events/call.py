"""Call facts from media: a call leg's arrival, answer, digits, prompts, bridge, recording and end."""

from __future__ import annotations

import uuid
from typing import Literal

from ..messages import Event

__all__ = [
    "CallAnswered",
    "CallArrived",
    "CallCollected",
    "CallDirection",
    "CallDtmf",
    "CallEnded",
    "CallHeld",
    "CallPlayFinished",
    "CallQuality",
    "CallRecordFinished",
    "CallRecording",
    "CallRefused",
    "CollectReason",
    "DtmfSource",
    "HeldBy",
    "PlayReason",
    "RecordingState",
]

# Calls are named by `call_id`, the platform's id for one call leg (not the SIP Call-ID).


CallDirection = Literal["inbound", "outbound"]


DtmfSource = Literal["rfc4733", "inband", "info", "datachannel"]
PlayReason = Literal["done", "interrupted", "stopped", "error"]
CollectReason = Literal["max_digits", "terminator", "inter_digit_timeout", "first_digit_timeout", "stopped"]
HeldBy = Literal["remote", "local"]
RecordingState = Literal["started", "paused", "resumed", "stopped"]


class CallArrived(Event, kw_only=True, frozen=True):
    domain = "call"
    name = "arrived"
    call_id: uuid.UUID
    direction: CallDirection = "inbound"
    from_uri: str = ""
    from_name: str = ""  # the From header's display name (the caller's name, if the network sent one)
    to_e164: str = ""
    number_id: uuid.UUID | None = None
    flow_id: uuid.UUID | None = None
    queue_id: uuid.UUID | None = None
    codec: str = ""


class CallRefused(Event, kw_only=True, frozen=True):
    """A call to a tenant's number that media turned away after admitting its source (trunk checks passed):
    tenant call limit, capacity, no media port, an offer it cannot answer. Nothing more follows."""

    domain = "call"
    name = "refused"
    call_id: uuid.UUID
    from_uri: str = ""
    from_name: str = ""
    to_e164: str = ""
    number_id: uuid.UUID | None = None
    status: int  # the SIP final response sent
    cause: str  # tenant_call_limit, capacity, no_media_port, bad_sdp, no_common_codec, bad_request


class CallAnswered(Event, kw_only=True, frozen=True):
    domain = "call"
    name = "answered"
    call_id: uuid.UUID


class CallDtmf(Event, kw_only=True, frozen=True):
    domain = "call"
    name = "dtmf"
    call_id: uuid.UUID
    digit: str
    source: DtmfSource


class CallPlayFinished(Event, kw_only=True, frozen=True):
    domain = "call"
    name = "play_finished"
    call_id: uuid.UUID
    play_id: uuid.UUID | None = None  # the play/collect command that started it
    reason: PlayReason = "done"
    digit: str | None = None
    error: str | None = None


class CallCollected(Event, kw_only=True, frozen=True):
    domain = "call"
    name = "collected"
    call_id: uuid.UUID
    collect_id: uuid.UUID
    digits: str
    reason: CollectReason


class CallHeld(Event, kw_only=True, frozen=True):
    domain = "call"
    name = "held"
    call_id: uuid.UUID
    held: bool  # False when the call is resumed
    by: HeldBy


class CallQuality(Event, kw_only=True, frozen=True):
    """A leg's quality figures when it ended (RTCP and the E-model MOS; a WebRTC leg's from getStats): a
    webhook a tenant subscribes to by its type (services/reporting/webhooks.py)."""

    domain = "call"
    name = "quality"
    call_id: uuid.UUID
    mos: float
    r: float
    jitter_ms: float
    loss_percent: float
    rtt_ms: float | None = None
    packets_received: int = 0
    packets_sent: int = 0


class CallEnded(Event, kw_only=True, frozen=True):
    domain = "call"
    name = "ended"
    call_id: uuid.UUID
    cause: str  # normal_clearing, remote_bye, cancelled, no_answer, rejected, media_timeout, error, ...
    duration: float  # seconds from answer to end, 0 if never answered
    sip_status: int | None = None


class CallRecordFinished(Event, kw_only=True, frozen=True):
    domain = "call"
    name = "record_finished"
    call_id: uuid.UUID
    record_id: uuid.UUID | None = None  # the MediaRecord command
    file: str = ""
    seconds: float = 0.0
    error: str | None = None


class CallRecording(Event, kw_only=True, frozen=True):
    """The recording tap's state; `spool` is the spool directory's name under the data dir."""

    domain = "call"
    name = "recording"
    call_id: uuid.UUID
    state: RecordingState
    spool: str
    # The segment being recorded (record_start's labels, passed on; None: the recording is `call_id`'s).
    recording_id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None
    segment: int = 0
    kind: Literal["talk", "consult"] = "talk"
    agent_id: str = ""
    consulted_agent_id: str = ""
