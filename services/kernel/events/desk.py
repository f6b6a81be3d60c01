"""The agent desk: commands from agents' desks to the contact coordinator and its pushes to them."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from ..messages import Command, Event

__all__ = [
    "DeskAccept",
    "DeskCommand",
    "DeskConsult",
    "DeskConsultCancel",
    "DeskConsultComplete",
    "DeskDial",
    "DeskDigits",
    "DeskHangup",
    "DeskHold",
    "DeskMute",
    "DeskPush",
    "DeskPushKind",
    "DeskRecordPause",
    "DeskReject",
    "DeskTransfer",
    "DeskWrapUp",
    "SupervisorMonitor",
]


DeskPushKind = Literal[
    "contact_offer",
    "contact_withdrawn",
    "contact_connected",
    "contact_ended",
    "consult",
    "monitor_notice",
]


class DeskPush(Event, kw_only=True, frozen=True):
    """A message for one agent's desk: `kind` is the websocket message type (docs/agent-protocol.md). On
    sb.<tenant>.evt.desk.push.<agent>: only the API process holding that agent's sockets receives it."""

    domain = "desk"
    name = "push"
    addressed = True
    agent_id: str
    kind: DeskPushKind
    body: dict[str, Any] = {}

    @property
    def addressee(self) -> str | None:
        return self.agent_id


class DeskCommand(Command, kw_only=True, frozen=True):
    service = "contacts"
    agent_id: uuid.UUID  # the token's agent: only the contact's own agent may act on it
    contact_id: uuid.UUID


class DeskDial(Command, kw_only=True, frozen=True):
    """An agent places a call (the desk's dial box, AgentSession.dial, the API's click-to-dial): a new
    outbound contact offered to that agent only; once accepted, the number is dialled through the tenant's
    trunk. Reply data {"contact_id", "to", "caller_id", "queue_id"}; refused with `forbidden` (the agent may
    not dial), `do_not_call`, `not_available` (the agent is not signed in and available), `invalid` (a
    number, caller ID or queue), `no_trunk`."""

    service = "contacts"
    name = "dial"
    agent_id: uuid.UUID
    to: str
    caller_id: str | None = None
    queue: str | None = None  # name or id; default: the tenant's first queue
    source: Literal["desk", "api"] = "desk"


class DeskAccept(DeskCommand, kw_only=True, frozen=True):
    """Take the offered contact: the coordinator forwards it to routing, which decides (the offer may have
    timed out or been withdrawn meanwhile); its reply is the agent's ack (`contact_id`, `queue_id`)."""

    name = "accept"
    offer_id: str


class DeskReject(DeskCommand, kw_only=True, frozen=True):
    """Decline the offered contact (back at the front of its queue; the agent goes away, `missed` unless
    `reason` says otherwise), forwarded to routing like `accept`."""

    name = "reject"
    offer_id: str
    reason: str | None = None


class DeskHold(DeskCommand, kw_only=True, frozen=True):
    name = "hold"
    on: bool


class DeskMute(DeskCommand, kw_only=True, frozen=True):
    name = "mute"
    on: bool


class DeskRecordPause(DeskCommand, kw_only=True, frozen=True):
    """Pause (`on`) or resume the call's recording: a card number is read out (docs/recording.md)."""

    name = "record_pause"
    on: bool


class DeskDigits(DeskCommand, kw_only=True, frozen=True):
    name = "dtmf"
    digits: str


class DeskTransfer(DeskCommand, kw_only=True, frozen=True):
    """Blind transfer to a queue (name or id) or to an agent (offered to them first, in the contact's queue
    unless `queue` is given), or to an IVR flow (by name: the agent leaves, the caller stays for it, e.g. a
    survey whose answers land on the contact)."""

    name = "transfer"
    queue: str | None = None
    to_agent_id: uuid.UUID | None = None
    note: str = ""
    flow: str | None = None


class DeskConsult(DeskCommand, kw_only=True, frozen=True):
    """Attended transfer, first step: the caller hears music while a second agent (`to_agent_id`, in the
    contact's queue unless `queue` is given) or anyone of `queue` is offered a consultation; once they answer,
    the two agents talk. Then `consult_complete` or `consult_cancel`."""

    name = "consult"
    queue: str | None = None
    to_agent_id: uuid.UUID | None = None
    note: str = ""


class DeskConsultComplete(DeskCommand, kw_only=True, frozen=True):
    """The caller is bridged to the consulted agent; the consulting agent goes to wrap-up."""

    name = "consult_complete"


class DeskConsultCancel(DeskCommand, kw_only=True, frozen=True):
    """The consultation ends (or stops ringing); the consulting agent is back with the caller."""

    name = "consult_cancel"


class DeskHangup(DeskCommand, kw_only=True, frozen=True):
    name = "hangup"


class DeskWrapUp(DeskCommand, kw_only=True, frozen=True):
    name = "wrap_up"
    disposition: str
    notes: str = ""


class SupervisorMonitor(Command, kw_only=True, frozen=True):
    """A supervisor steps into a connected contact: the coordinator names the agent's leg (it alone knows it)
    and asks media to join `leg_id` (the supervisor's answered leg, in the worker holding the call) with
    `mode`; mode "none" leaves. The API checked the supervisor's role and scope before sending it."""

    service = "contacts"
    name = "monitor"
    contact_id: uuid.UUID
    leg_id: uuid.UUID
    mode: Literal["listen", "whisper", "barge", "none"]
