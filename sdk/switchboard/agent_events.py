"""Typed messages of the agent protocol (docs/agent-protocol.md, websocket `/v1/ws`, version 1), as the
server sends them, plus the few events `AgentSession` adds itself (`recorded`).

Decoding is lenient where the protocol may grow (unknown fields are ignored, numbers need not be exact
types), and a message of a type this SDK does not know yet becomes `Unknown`, never an exception: an
older SDK keeps working against a newer server.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "PROTOCOL_VERSION",
    "Ack",
    "AgentEvent",
    "AgentState",
    "Answered",
    "CallerInfo",
    "ConsultInfo",
    "ConsultUpdate",
    "ContactConnected",
    "ContactEnded",
    "ContactOffer",
    "ContactWithdrawn",
    "Disconnected",
    "ErrorMessage",
    "IceServerInfo",
    "IvrInfo",
    "LegAnswer",
    "LegEnded",
    "LegOffer",
    "LegState",
    "MonitorNotice",
    "OfferContext",
    "OfferHistory",
    "PastContact",
    "Pong",
    "QueueRef",
    "Ready",
    "Reconnected",
    "Recorded",
    "Session",
    "SessionContact",
    "TransferInfo",
    "Unknown",
    "VoicemailInfo",
    "Waited",
    "decode_event",
]

PROTOCOL_VERSION = 1


class AgentEvent(msgspec.Struct, kw_only=True, tag_field="type"):
    """Base of every event; `type` is the protocol's message type (the struct's tag)."""


class IceServerInfo(msgspec.Struct, kw_only=True):
    urls: str | list[str]
    username: str | None = None
    credential: str | None = None


class Ready(AgentEvent, kw_only=True, tag="ready"):
    agent_id: str
    tenant_id: str
    expires_at: float
    ice_servers: list[IceServerInfo] = []


class Ack(AgentEvent, kw_only=True, tag="ack"):
    """A command's success; `data` holds the command's result fields (e.g. `{"state": "available"}`)."""

    ref: str
    data: dict[str, Any] = {}


class ErrorMessage(AgentEvent, kw_only=True, tag="error"):
    code: str
    reason: str = ""
    ref: str | None = None


class AgentState(AgentEvent, kw_only=True, tag="agent_state"):
    """Presence changed: offline, away, available, busy, wrap_up, ..."""

    state: str
    reason: str | None = None


# The offer's context ---------------------------------------------------------------------------------


class CallerInfo(msgspec.Struct, kw_only=True):
    number: str = ""
    name: str = ""  # empty when unknown


class QueueRef(msgspec.Struct, kw_only=True):
    id: str = ""
    name: str = ""


class IvrInfo(msgspec.Struct, kw_only=True):
    flow: str = ""
    path: list[str] = []
    digits: str = ""


class Waited(msgspec.Struct, kw_only=True):
    ivr_s: float = 0.0
    queue_s: float = 0.0


class PastContact(msgspec.Struct, kw_only=True):
    contact_id: str = ""
    at: str = ""
    queue: str = ""
    outcome: str = ""
    disposition: str | None = None


class OfferHistory(msgspec.Struct, kw_only=True):
    today: int = 0
    last: list[PastContact] = []


class TransferInfo(msgspec.Struct, kw_only=True):
    from_agent_id: str | None = None
    note: str = ""


class VoicemailInfo(msgspec.Struct, kw_only=True):
    """A voicemail offered like a call: fetch the message (audio/wav) from `url` with the agent's token."""

    seconds: float = 0.0
    url: str = ""
    of: str = ""  # the call it was left on


class ConsultInfo(msgspec.Struct, kw_only=True):
    from_agent_id: str | None = None
    note: str = ""


class OfferContext(msgspec.Struct, kw_only=True):
    """What the agent sees when the contact rings (the screen pop)."""

    caller: CallerInfo = msgspec.field(default_factory=CallerInfo)
    dialled: str = ""
    queue: QueueRef | None = None
    attributes: dict[str, Any] = {}
    ivr: IvrInfo | None = None  # None for a number routed straight to a queue
    waited: Waited = msgspec.field(default_factory=Waited)
    history: OfferHistory = msgspec.field(default_factory=OfferHistory)
    transfer: TransferInfo | None = None  # only for a transferred contact
    consult: ConsultInfo | None = None  # only for a consultation (attended transfer) offered to this agent
    voicemail: VoicemailInfo | None = None  # only for a voicemail task


class ContactOffer(AgentEvent, kw_only=True, tag="contact_offer"):
    contact_id: str
    offer_id: str
    expires_at: float | str | None = None
    # "phone": the agent's desk phone rings and its pick-up answers (no leg here); "none": a voicemail
    audio: str = "webrtc"
    task: str | None = None  # "voicemail": a message to listen to (context.voicemail), not a call
    context: OfferContext = msgspec.field(default_factory=OfferContext)
    # The call the audio leg joins, when it is not `contact_id` (a consultation: the caller's call; a
    # callback: the customer's call); None: an agent-first callback, whose customer is dialled after the
    # accept (the leg names the contact instead); absent: the contact's own call.
    call_id: str | msgspec.UnsetType | None = msgspec.UNSET
    outbound: bool = False  # the agent's own outbound call: its client accepts it


class ConsultUpdate(AgentEvent, kw_only=True, tag="consult"):
    """An attended transfer's step: for the consulting agent `talking` (with `to_agent_id`) or `cancelled`
    (with `reason`: rejected, no_answer, cancelled, target_left, ...); for the consulted agent `completed`
    (the caller is now theirs)."""

    contact_id: str
    state: str
    reason: str = ""
    to_agent_id: str | None = None


class ContactWithdrawn(AgentEvent, kw_only=True, tag="contact_withdrawn"):
    contact_id: str
    offer_id: str | None = None
    reason: str = ""


class ContactConnected(AgentEvent, kw_only=True, tag="contact_connected"):
    contact_id: str
    leg_id: str | None = None
    consult: bool = False  # bridged to the consulting agent, not (yet) to the caller


class ContactEnded(AgentEvent, kw_only=True, tag="contact_ended"):
    contact_id: str
    cause: str = ""
    duration: float = 0.0
    by: str = ""
    wrap_up: bool = False  # handed on by attended transfer: wrap it up all the same


# WebRTC leg signalling ---------------------------------------------------------------------------------


class LegAnswer(AgentEvent, kw_only=True, tag="answer"):
    leg_id: str
    sdp: str
    ref: str | None = None
    call_id: str | None = None


class LegOffer(AgentEvent, kw_only=True, tag="offer"):
    """A server-side offer for a leg (answer it with `answer`); AgentSession does not use these."""

    leg_id: str
    sdp: str
    call_id: str | None = None


class LegState(AgentEvent, kw_only=True, tag="state"):
    leg_id: str
    state: str


class LegEnded(AgentEvent, kw_only=True, tag="ended"):
    leg_id: str


class Pong(AgentEvent, kw_only=True, tag="pong"):
    ref: str | None = None


# Made by the SDK -----------------------------------------------------------------------------------------


class Answered(AgentEvent, kw_only=True, tag="answered"):
    """The session accepted an offer by itself (`auto_answer`), once its audio leg was connected."""

    contact_id: str
    offer_id: str


class Recorded(AgentEvent, kw_only=True, tag="recorded"):
    """A contact's recording is complete: `seconds` of 16-bit mono audio at `rate` in `path`."""

    contact_id: str
    path: str
    seconds: float
    rate: int


class SessionContact(msgspec.Struct, kw_only=True):
    contact_id: str
    phase: str  # offered, connected, wrap_up


class Session(AgentEvent, kw_only=True, tag="session"):
    """After every `ready`: whether the agent is still signed in and what it has (a reconnect within the
    tenant's grace resumes as it was: `resumed` is true, the same contacts, the same presence)."""

    logged_in: bool
    resumed: bool = False
    state: str | None = None
    reason: str | None = None
    offer_id: str | None = None
    contacts: list[SessionContact] = []


class Disconnected(AgentEvent, kw_only=True, tag="disconnected"):
    """The socket dropped; `AgentSession` reconnects with back-off (the contacts' audio goes on)."""

    code: int | None = None
    reason: str = ""


class Reconnected(AgentEvent, kw_only=True, tag="reconnected"):
    """The socket is back after `seconds` and `attempts` tries; a `session` event follows."""

    seconds: float
    attempts: int


class MonitorNotice(AgentEvent, kw_only=True, tag="monitor_notice"):
    """A supervisor listens to, whispers to, barged into or left one of this agent's contacts; sent only
    when the tenant's `monitor_notice` setting is agent or both. `mode`: listen, whisper, barge or none
    (left); `previous`: the mode before."""

    contact_id: str
    mode: str
    previous: str = "none"


class Unknown(AgentEvent, kw_only=True, tag="unknown"):
    """A message of a type this SDK does not know (or could not read): `kind` and the raw fields."""

    kind: str
    data: dict[str, Any] = {}


_SERVER_EVENTS: dict[str, type[AgentEvent]] = {
    str(cls.__struct_config__.tag): cls
    for cls in (
        Ready,
        ErrorMessage,
        AgentState,
        ContactOffer,
        ContactWithdrawn,
        ContactConnected,
        ContactEnded,
        ConsultUpdate,
        MonitorNotice,
        LegAnswer,
        LegOffer,
        LegState,
        LegEnded,
        Pong,
        Session,
    )
}


def decode_event(raw: str | bytes) -> AgentEvent:
    """One server message as a typed event; `Unknown` for anything this SDK cannot type (never raises for
    a JSON object; raises msgspec.DecodeError for text that is not one)."""
    data = msgspec.json.decode(raw)
    if not isinstance(data, dict):
        raise msgspec.DecodeError("a protocol message is a JSON object")
    kind = data.get("type")
    fields = {k: v for k, v in data.items() if k not in ("v", "type")}
    if kind == "ack":
        ref = fields.pop("ref", None)
        return Ack(ref=str(ref) if ref is not None else "", data=fields)
    cls = _SERVER_EVENTS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return Unknown(kind=str(kind), data=fields)
    try:
        return msgspec.convert(fields, cls, strict=False)
    except msgspec.ValidationError:
        if cls is ContactOffer:
            # An offer whose context this SDK cannot read still rings: keep the offer, drop the context.
            try:
                return msgspec.convert({k: v for k, v in fields.items() if k != "context"}, cls, strict=False)
            except msgspec.ValidationError:
                pass
        return Unknown(kind=str(kind), data=fields)
