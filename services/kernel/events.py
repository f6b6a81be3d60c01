"""Every event and command on the bus, in one place (services add theirs here)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import msgspec

from .messages import Command, Event

__all__ = ["ConfigChanged", "SeatsChanged", "TenantCreated"]


class TenantCreated(Event, kw_only=True, frozen=True):
    domain = "tenant"
    name = "created"
    company: str
    seats: int


class SeatsChanged(Event, kw_only=True, frozen=True):
    domain = "seats"
    name = "changed"
    purchased: int
    delta: int


class ConfigChanged(Event, kw_only=True, frozen=True):
    """A tenant's configuration object changed; services holding a copy reload it."""

    domain = "config"
    name = "changed"
    kind: Literal["site", "agent", "queue", "number", "key", "flow", "trunk"]
    op: Literal["created", "updated", "deleted"]
    object_id: uuid.UUID


# media
# Calls are named by `call_id`, the platform's id for one call leg (not the SIP Call-ID).
# Commands go to sb.<tenant>.cmd.media.<name> and are idempotent by their `id`.


CallDirection = Literal["inbound", "outbound"]
DtmfSource = Literal["rfc4733", "inband", "info", "datachannel"]


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
    reason: Literal["done", "interrupted", "stopped", "error"] = "done"
    digit: str | None = None
    error: str | None = None


class CallCollected(Event, kw_only=True, frozen=True):
    domain = "call"
    name = "collected"
    call_id: uuid.UUID
    collect_id: uuid.UUID
    digits: str
    reason: Literal["max_digits", "terminator", "inter_digit_timeout", "first_digit_timeout", "stopped"]


class CallHeld(Event, kw_only=True, frozen=True):
    domain = "call"
    name = "held"
    call_id: uuid.UUID
    held: bool  # False when the call is resumed
    by: Literal["remote", "local"]


class CallQuality(Event, kw_only=True, frozen=True):
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
    final: bool = False


class CallEnded(Event, kw_only=True, frozen=True):
    domain = "call"
    name = "ended"
    call_id: uuid.UUID
    cause: str  # normal_clearing, remote_bye, cancelled, no_answer, rejected, media_timeout, error, ...
    duration: float  # seconds from answer to end, 0 if never answered
    sip_status: int | None = None


class MediaCommand(Command, kw_only=True, frozen=True):
    service = "media"
    call_id: uuid.UUID


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


__all__ += [
    "CallAnswered",
    "CallArrived",
    "CallCollected",
    "CallDtmf",
    "CallEnded",
    "CallHeld",
    "CallPlayFinished",
    "CallQuality",
    "MediaAnswer",
    "MediaCollect",
    "MediaCommand",
    "MediaHangup",
    "MediaHold",
    "MediaOriginate",
    "MediaPlay",
    "MediaStop",
    "MediaUnhold",
]


# ivr
# The IVR commands media (the Media* commands above, plus MediaRecord and MediaTransfer below) and routing
# (Routing* below), and publishes ivr.* analytics events. Routing's contact.* events below are what the IVR
# listens to while a caller waits in a queue; a contact's id is the call's `call_id`.

IvrOutcome = Literal["self_served", "transferred", "callback", "abandoned", "failed"]


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


class CallRecordFinished(Event, kw_only=True, frozen=True):
    domain = "call"
    name = "record_finished"
    call_id: uuid.UUID
    record_id: uuid.UUID | None = None  # the MediaRecord command
    file: str = ""
    seconds: float = 0.0
    error: str | None = None


class RoutingCommand(Command, kw_only=True, frozen=True):
    service = "routing"
    call_id: uuid.UUID  # the contact


class RoutingEnqueue(RoutingCommand, kw_only=True, frozen=True):
    """Put the contact in a queue. `attributes` carry everything the IVR learned (screen pop), including
    ivr.path, ivr.digits and ivr.seconds."""

    name = "enqueue"
    queue: str  # the queue's name in the flow
    queue_id: uuid.UUID | None = None  # filled in by the IVR adapter from the tenant's queues
    priority: int | None = None
    skills: dict[str, int] = {}
    attributes: dict[str, str] = {}
    preferred_agent_id: str | None = None


class RoutingCancel(RoutingCommand, kw_only=True, frozen=True):
    name = "cancel"
    reason: str = "abandoned"


class RoutingCallback(RoutingCommand, kw_only=True, frozen=True):
    """Call the customer back at `number`; with keep_place the contact keeps its place in the queue
    (virtual hold) and is called when it reaches the front."""

    name = "callback"
    queue: str
    queue_id: uuid.UUID | None = None
    number: str
    keep_place: bool = False
    attributes: dict[str, str] = {}


class RoutingTask(RoutingCommand, kw_only=True, frozen=True):
    """A non-call task for a queue, e.g. a voicemail to listen to and return."""

    name = "task"
    queue: str
    queue_id: uuid.UUID | None = None
    kind: Literal["voicemail"] = "voicemail"
    file: str = ""
    seconds: float = 0.0
    attributes: dict[str, str] = {}


class ContactQueued(Event, kw_only=True, frozen=True):
    domain = "contact"
    name = "queued"
    call_id: uuid.UUID
    queue: str = ""
    position: int = 0
    expected_wait_s: float | None = None
    attributes: dict[str, str] = {}  # the contact's attributes (the IVR's screen pop)


class ContactPositionChanged(Event, kw_only=True, frozen=True):
    domain = "contact"
    name = "position_changed"
    call_id: uuid.UUID
    position: int
    expected_wait_s: float | None = None


class ContactAccepted(Event, kw_only=True, frozen=True):
    domain = "contact"
    name = "accepted"
    call_id: uuid.UUID
    agent_id: str = ""


class IvrNodeEntered(Event, kw_only=True, frozen=True):
    domain = "ivr"
    name = "node_entered"
    call_id: uuid.UUID
    flow: str
    version: int
    node: str


class IvrNodeExited(Event, kw_only=True, frozen=True):
    domain = "ivr"
    name = "node_exited"
    call_id: uuid.UUID
    flow: str
    version: int
    node: str
    digits: str = ""
    seconds: float = 0.0
    result: str = ""  # the way out: a digit's target, "timeout", "invalid", "error", ...


class IvrCompleted(Event, kw_only=True, frozen=True):
    domain = "ivr"
    name = "completed"
    call_id: uuid.UUID
    flow: str
    version: int
    outcome: IvrOutcome
    seconds: float = 0.0
    path: list[str] = []
    attributes: dict[str, str] = {}


__all__ += [
    "CallRecordFinished",
    "ContactAccepted",
    "ContactPositionChanged",
    "ContactQueued",
    "IvrCompleted",
    "IvrNodeEntered",
    "IvrNodeExited",
    "MediaRecord",
    "MediaTransfer",
    "RoutingCallback",
    "RoutingCancel",
    "RoutingCommand",
    "RoutingEnqueue",
    "RoutingTask",
]


# media II
# WebRTC signalling between browsers (through the API's websocket /v1/ws) and the media worker that holds
# the leg. A leg is named by `leg_id`, chosen by the API per offer; `agent_id` is the token's subject.


class MediaWebRtcOffer(Command, kw_only=True, frozen=True):
    """A browser's SDP offer; the reply's data carries {"sdp": answer}."""

    service = "media"
    name = "webrtc_offer"
    leg_id: uuid.UUID
    agent_id: str
    sdp: str
    call_id: uuid.UUID | None = None


class MediaWebRtcAnswer(Command, kw_only=True, frozen=True):
    """A browser's SDP answer to an offer the media worker sent (outbound to the agent)."""

    service = "media"
    name = "webrtc_answer"
    leg_id: uuid.UUID
    agent_id: str
    sdp: str


class MediaWebRtcIce(Command, kw_only=True, frozen=True):
    """A trickled ICE candidate from the browser ("" ends them)."""

    service = "media"
    name = "webrtc_ice"
    leg_id: uuid.UUID
    agent_id: str
    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


class WebRtcSignal(Event, kw_only=True, frozen=True):
    """Media to one agent's browser: an offer (a call for the agent), a leg's state, or its end. The API
    pushes it to that agent's websocket sessions."""

    domain = "webrtc"
    name = "signal"
    agent_id: str
    leg_id: uuid.UUID
    kind: Literal["offer", "state", "ended"]
    sdp: str | None = None
    state: str | None = None
    call_id: uuid.UUID | None = None  # the call the leg was offered for (its own leg id when none)


__all__ += ["MediaWebRtcAnswer", "MediaWebRtcIce", "MediaWebRtcOffer", "WebRtcSignal"]


# routing
# The ACD (services/routing). Besides the IVR's Routing* commands and Contact* events above (reused: a
# contact's id is its `call_id`), agents' desktops and operators send the commands below to
# sb.<tenant>.cmd.routing.<name>; all are idempotent by their `id`. Agent, queue and site ids are the
# control-plane ids. Events carry the routing engine's output number in their id (de-duplicated on replay).


class RoutingAgentCommand(Command, kw_only=True, frozen=True):
    service = "routing"
    agent_id: uuid.UUID


class RoutingAgentLogin(RoutingAgentCommand, kw_only=True, frozen=True):
    """Log in (refused with code no_seats when every purchased seat is in use)."""

    name = "agent_login"
    away_reason: str | None = None


class RoutingAgentLogout(RoutingAgentCommand, kw_only=True, frozen=True):
    name = "agent_logout"
    force: bool = False


class RoutingSetState(RoutingAgentCommand, kw_only=True, frozen=True):
    name = "set_state"
    state: Literal["available", "away"]
    reason: str | None = None


class RoutingAccept(RoutingAgentCommand, kw_only=True, frozen=True):
    name = "accept"
    offer_id: str


class RoutingReject(RoutingAgentCommand, kw_only=True, frozen=True):
    name = "reject"
    offer_id: str
    away_reason: str | None = None


class RoutingWrapUpDone(RoutingAgentCommand, kw_only=True, frozen=True):
    name = "wrap_up_done"
    call_id: uuid.UUID | None = None


class RoutingAgentStatus(RoutingAgentCommand, kw_only=True, frozen=True):
    """Query: the agent's state (reply data {"agent_id", "state"})."""

    name = "agent_status"


class RoutingEnd(RoutingCommand, kw_only=True, frozen=True):
    """A connected contact finished (hang-up); its agent goes to wrap-up."""

    name = "end"


class RoutingTransfer(RoutingCommand, kw_only=True, frozen=True):
    name = "transfer_to_queue"
    queue_id: uuid.UUID
    agent_id: uuid.UUID | None = None  # a transfer to this agent: offered to them first, for `window_s`
    window_s: float | None = None


class RoutingSetVirtualHold(RoutingCommand, kw_only=True, frozen=True):
    name = "set_virtual_hold"
    on: bool


class RoutingPosition(RoutingCommand, kw_only=True, frozen=True):
    """Query: the contact's state, position and expected wait."""

    name = "position"


class RoutingQueueStatus(Command, kw_only=True, frozen=True):
    """Query: waiting, longest wait, agents by state, expected wait of a queue."""

    service = "routing"
    name = "queue_status"
    queue_id: uuid.UUID


class RoutingSiteCommand(Command, kw_only=True, frozen=True):
    service = "routing"
    site_id: uuid.UUID


class RoutingDrainSite(RoutingSiteCommand, kw_only=True, frozen=True):
    name = "drain_site"


class RoutingLoseSite(RoutingSiteCommand, kw_only=True, frozen=True):
    name = "lose_site"


class RoutingRestoreSite(RoutingSiteCommand, kw_only=True, frozen=True):
    name = "restore_site"


class AgentStateChanged(Event, kw_only=True, frozen=True):
    domain = "agent"
    name = "state_changed"
    agent_id: str
    old: str
    new: str
    reason: str | None = None


class ContactOffered(Event, kw_only=True, frozen=True):
    domain = "contact"
    name = "offered"
    call_id: uuid.UUID
    queue_id: str
    agent_id: str
    offer_id: str
    expires_at: float


class ContactAssigned(Event, kw_only=True, frozen=True):
    """The agent accepted: bridge the contact's media to the agent."""

    domain = "contact"
    name = "assigned"
    call_id: uuid.UUID
    queue_id: str
    agent_id: str
    offer_id: str


class ContactRejected(Event, kw_only=True, frozen=True):
    """An offer ended without an accept (reason rejected, no_answer, withdrawn): stop ringing."""

    domain = "contact"
    name = "rejected"
    call_id: uuid.UUID
    queue_id: str
    agent_id: str
    offer_id: str
    reason: str


class ContactRequeued(Event, kw_only=True, frozen=True):
    domain = "contact"
    name = "requeued"
    call_id: uuid.UUID
    queue_id: str
    position: int
    reason: str


class ContactAbandoned(Event, kw_only=True, frozen=True):
    domain = "contact"
    name = "abandoned"
    call_id: uuid.UUID
    queue_id: str
    waited_s: float
    reason: str
    agent_id: str | None = None


class ContactOverflowed(Event, kw_only=True, frozen=True):
    """The contact moved: to another queue (kind overflow or transfer) or to every site (site_spill)."""

    domain = "contact"
    name = "overflowed"
    call_id: uuid.UUID
    kind: Literal["overflow", "transfer", "site_spill"]
    from_queue_id: str
    to_queue_id: str
    reason: str


class ContactEnded(Event, kw_only=True, frozen=True):
    domain = "contact"
    name = "ended"
    call_id: uuid.UUID
    queue_id: str
    agent_id: str
    talk_s: float


class ContactWrappedUp(Event, kw_only=True, frozen=True):
    domain = "contact"
    name = "wrapped_up"
    call_id: uuid.UUID
    queue_id: str
    agent_id: str
    handle_s: float


class RoutingCallbackDue(Event, kw_only=True, frozen=True):
    """A contact on virtual hold reached the front: call the customer back now."""

    domain = "routing"
    name = "callback_due"
    call_id: uuid.UUID
    queue_id: str
    expires_at: float


class QueueStats(Event, kw_only=True, frozen=True):
    domain = "queue"
    name = "stats"
    queue_id: str
    waiting: int
    on_virtual_hold: int = 0
    longest_wait_s: float
    agents: dict[str, int] = {}
    ready: int = 0
    expected_wait_s: float | None = None


__all__ += [
    "AgentStateChanged",
    "ContactAbandoned",
    "ContactAssigned",
    "ContactEnded",
    "ContactOffered",
    "ContactOverflowed",
    "ContactRejected",
    "ContactRequeued",
    "ContactWrappedUp",
    "QueueStats",
    "RoutingAccept",
    "RoutingAgentCommand",
    "RoutingAgentLogin",
    "RoutingAgentLogout",
    "RoutingAgentStatus",
    "RoutingCallbackDue",
    "RoutingDrainSite",
    "RoutingEnd",
    "RoutingLoseSite",
    "RoutingPosition",
    "RoutingQueueStatus",
    "RoutingReject",
    "RoutingRestoreSite",
    "RoutingSetState",
    "RoutingSetVirtualHold",
    "RoutingSiteCommand",
    "RoutingTransfer",
    "RoutingWrapUpDone",
]


# media II wiring
# The media worker joins two of its legs (SIP calls or WebRTC legs; a WebRTC leg's call_id is its leg_id).
# Commands go to sb.<tenant>.cmd.media.<name> like the other media commands; the worker that holds
# `call_id` (and `other_call_id`) answers.


class MediaBridge(MediaCommand, kw_only=True, frozen=True):
    """Join `call_id` and `other_call_id` both ways (each must be held by the same worker)."""

    name = "bridge"
    other_call_id: uuid.UUID


class MediaUnbridge(MediaCommand, kw_only=True, frozen=True):
    """Separate `call_id` from whatever it is bridged to; both legs stay up."""

    name = "unbridge"


class CallBridged(Event, kw_only=True, frozen=True):
    domain = "call"
    name = "bridged"
    call_id: uuid.UUID
    other_call_id: uuid.UUID
    # How audio crosses: "passthrough" (same G.711 law, payload untouched), "translate" (PCMU<->PCMA
    # by table), "pcm" (decoded samples: a WebRTC leg, whose codec aiortc runs).
    path: Literal["passthrough", "translate", "pcm"]


class CallUnbridged(Event, kw_only=True, frozen=True):
    domain = "call"
    name = "unbridged"
    call_id: uuid.UUID
    other_call_id: uuid.UUID
    reason: Literal["unbridge", "ended", "shutdown"]


__all__ += ["CallBridged", "CallUnbridged", "MediaBridge", "MediaUnbridge"]


class MediaMute(MediaCommand, kw_only=True, frozen=True):
    """The other side of `call_id`'s bridge stops hearing `call_id` (it hears silence)."""

    name = "mute"


class MediaUnmute(MediaCommand, kw_only=True, frozen=True):
    name = "unmute"


class MediaRecordStart(MediaCommand, kw_only=True, frozen=True):
    """Tap `call_id`'s bridge into the local spool (caller and agent channels, G.711)."""

    name = "record_start"


class MediaRecordPause(MediaCommand, kw_only=True, frozen=True):
    name = "record_pause"


class MediaRecordResume(MediaCommand, kw_only=True, frozen=True):
    name = "record_resume"


class CallMuted(Event, kw_only=True, frozen=True):
    domain = "call"
    name = "muted"
    call_id: uuid.UUID
    muted: bool


class CallRecording(Event, kw_only=True, frozen=True):
    """The recording tap's state; `spool` is the spool directory's name under the data dir."""

    domain = "call"
    name = "recording"
    call_id: uuid.UUID
    state: Literal["started", "paused", "resumed", "stopped"]
    spool: str


__all__ += [
    "CallMuted",
    "CallRecording",
    "MediaMute",
    "MediaRecordPause",
    "MediaRecordResume",
    "MediaRecordStart",
    "MediaUnmute",
]


# media II transfers and monitor
# Attended transfer and supervisor monitoring over the bridge (services/media/consult.py, monitor.py).
# The agent's leg names the transfer (`call_id`); its bridge partner is "the caller". For monitor, `call_id`
# is the supervisor's leg and `target_call_id` the agent's (the target's bridge partner is the caller).

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


class CallTransfer(Event, kw_only=True, frozen=True):
    """An attended transfer's step; `call_id` is the agent's leg."""

    domain = "call"
    name = "transfer"
    call_id: uuid.UUID
    caller_call_id: uuid.UUID
    target_call_id: uuid.UUID
    state: Literal["consulting", "completed", "cancelled"]
    # command, failed (the consult never got through), caller_ended, target_ended, agent_ended
    reason: str = "command"


class CallMonitored(Event, kw_only=True, frozen=True):
    """A supervisor joined, changed mode on, or left ("none") a bridge; `call_id` is the supervisor's leg."""

    domain = "call"
    name = "monitored"
    call_id: uuid.UUID
    target_call_id: uuid.UUID  # the agent
    caller_call_id: uuid.UUID  # the agent's bridge partner
    mode: MonitorModeName
    # Why a supervisor left: command, ended (a leg ended), unbridged (the bridge was separated).
    reason: str = "command"


__all__ += [
    "CallMonitored",
    "CallTransfer",
    "MediaCancelTransfer",
    "MediaCompleteTransfer",
    "MediaConsult",
    "MediaMonitor",
    "MediaUnmonitor",
]


# media sharding
# (worker registration and the loss of a worker)
# Media workers behind one SIP front (services/media/front.py, docs/media.md "Sharding"). Each worker keeps
# a MediaWorkerRegistration in the JetStream KV bucket `sb_media_workers` (key: its worker id), refreshed
# every second and at once when its calls change; the front dispatches new calls by it and, when a worker
# is lost, ends that worker's calls (`call.ended`, cause `media_worker_lost`) and publishes
# MediaWorkerLost on sb.sys.media.worker_lost. These are platform records, not tenant events.


class MediaWorkerCall(msgspec.Struct, kw_only=True, frozen=True):
    """One live call of a worker: what the front needs to end it if the worker dies."""

    tenant_id: uuid.UUID
    call_id: uuid.UUID
    sip_call_id: str = ""  # the SIP dialog's Call-ID (empty for WebRTC legs)
    answered_at: float | None = None  # wall clock; None while ringing


class MediaWorkerRegistration(msgspec.Struct, kw_only=True, frozen=True):
    v: int = 1
    worker_id: str
    site: str
    link_host: str  # where the front connects to exchange SIP with this worker
    link_port: int
    capacity: int  # calls before the worker sheds with 503 (SB_MEDIA_MAX_CALLS)
    active_calls: int
    calls: list[MediaWorkerCall] = msgspec.field(default_factory=list)
    state: Literal["up", "stopping"] = "up"
    pid: int = 0
    started_at: float = 0.0
    ts: float = 0.0  # the worker's wall clock at the put


class MediaWorkerLost(msgspec.Struct, kw_only=True, frozen=True):
    v: int = 1
    id: uuid.UUID
    ts: float
    worker_id: str
    site: str
    reason: Literal["link_closed", "registration_expired"]
    calls_ended: int
    pid: int = 0  # the lost incarnation: a worker that reads its own pid here stops at once (fenced)


__all__ += ["MediaWorkerCall", "MediaWorkerLost", "MediaWorkerRegistration"]


# contacts
# The contact coordinator (services/contacts): a contact's life from arrival to wrap-up, and the agent desk.
# A contact's id is its caller's `call_id`. Agents' desks (the API's websocket) send the Desk* commands to
# sb.<tenant>.cmd.contacts.<name>; the coordinator pushes what an agent must see as `desk.push` events.

ContactPhase = Literal[
    "arrived", "in_ivr", "queued", "offered", "connected", "wrap_up", "ended", "abandoned", "failed"
]


class ContactStateChanged(Event, kw_only=True, frozen=True):
    """One transition of a contact's life (docs/contacts.md)."""

    domain = "contact"
    name = "state_changed"
    call_id: uuid.UUID
    old: ContactPhase | None  # None for the first
    new: ContactPhase
    cause: str = ""
    agent_id: str | None = None
    queue_id: str | None = None


class DeskPush(Event, kw_only=True, frozen=True):
    """A message for one agent's desk: `kind` is the websocket message type (docs/agent-protocol.md)."""

    domain = "desk"
    name = "push"
    agent_id: str
    kind: Literal["contact_offer", "contact_withdrawn", "contact_connected", "contact_ended"]
    body: dict[str, Any] = {}


class MediaSendDigits(MediaCommand, kw_only=True, frozen=True):
    """Play DTMF digits to the call (in-band tones, 100 ms each with 60 ms gaps): an agent reaching an
    extension or a menu on the caller's side."""

    name = "send_digits"
    digits: str


class DeskCommand(Command, kw_only=True, frozen=True):
    service = "contacts"
    agent_id: uuid.UUID  # the token's agent: only the contact's own agent may act on it
    contact_id: uuid.UUID


class DeskHold(DeskCommand, kw_only=True, frozen=True):
    name = "hold"
    on: bool


class DeskMute(DeskCommand, kw_only=True, frozen=True):
    name = "mute"
    on: bool


class DeskDigits(DeskCommand, kw_only=True, frozen=True):
    name = "dtmf"
    digits: str


class DeskTransfer(DeskCommand, kw_only=True, frozen=True):
    """Blind transfer to a queue (name or id) or to an agent (offered to them first, in the contact's queue
    unless `queue` is given)."""

    name = "transfer"
    queue: str | None = None
    to_agent_id: uuid.UUID | None = None
    note: str = ""


class DeskHangup(DeskCommand, kw_only=True, frozen=True):
    name = "hangup"


class DeskWrapUp(DeskCommand, kw_only=True, frozen=True):
    name = "wrap_up"
    disposition: str
    notes: str = ""


__all__ += [
    "ContactPhase",
    "ContactStateChanged",
    "DeskCommand",
    "DeskDigits",
    "DeskHangup",
    "DeskHold",
    "DeskMute",
    "DeskPush",
    "DeskTransfer",
    "DeskWrapUp",
    "MediaSendDigits",
]


# widget and TURN
