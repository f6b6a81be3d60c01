"""The ACD's commands (sb.<tenant>.cmd.routing.<name>) and facts (agent states, queue stats, callbacks due)."""

from __future__ import annotations

import uuid
from typing import Literal

from ..messages import Command, Event

__all__ = [
    "AgentStateChanged",
    "QueueAlertCleared",
    "QueueAlertRaised",
    "QueueStats",
    "RoutingAccept",
    "RoutingAgentCommand",
    "RoutingAgentLinked",
    "RoutingAgentLogin",
    "RoutingAgentLogout",
    "RoutingAgentStatus",
    "RoutingAgentUnlinked",
    "RoutingAgentsPresent",
    "RoutingCallback",
    "RoutingCallbackDue",
    "RoutingCancel",
    "RoutingCommand",
    "RoutingDrainSite",
    "RoutingEnd",
    "RoutingEnqueue",
    "RoutingLoseSite",
    "RoutingPosition",
    "RoutingPrioritize",
    "RoutingQueueStatus",
    "RoutingReject",
    "RoutingRestoreSite",
    "RoutingSetState",
    "RoutingSetVirtualHold",
    "RoutingSiteCommand",
    "RoutingTask",
    "RoutingTransfer",
    "RoutingWrapUpDone",
]

# The ACD (services/routing). Besides the IVR's Routing* commands (a contact's id is its `call_id`), agents'
# desktops and operators send the commands below to
# sb.<tenant>.cmd.routing.<name>; all are idempotent by their `id`. Agent, queue and site ids are the
# control-plane ids. Events carry the routing engine's output number in their id (de-duplicated on replay).


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
    preferred_window_s: float | None = None  # default: the queue's preferred_agent_window_s
    # Only ever offered to the preferred agent (a consultation): refused (agent_not_in_queue) when that agent
    # is not signed in to the queue; whoever enqueued it cancels it when the agent does not take it.
    preferred_only: bool = False


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


class RoutingAgentCommand(Command, kw_only=True, frozen=True):
    service = "routing"
    agent_id: uuid.UUID


class RoutingAgentLogin(RoutingAgentCommand, kw_only=True, frozen=True):
    """Log in (refused with code no_seats when every purchased seat is in use). `session_id`: the socket
    the agent signs in through; routing then watches it (docs/agent-protocol.md, Reconnecting)."""

    name = "agent_login"
    away_reason: str | None = None
    session_id: str | None = None


class RoutingAgentLinked(RoutingAgentCommand, kw_only=True, frozen=True):
    """The agent's socket is open (again). Reply data: {"logged_in": false}, or {"logged_in": true,
    "resumed", "state", "reason", "offer_id", "contacts": [{"contact_id", "phase"}]}; `resumed`: the agent
    goes on as it was through this socket (it was lost, or it was linked through another socket)."""

    name = "agent_linked"
    session_id: str
    lease_s: float = 15.0  # how long this report holds without a renewal (services/api/presence.py)


class RoutingAgentUnlinked(RoutingAgentCommand, kw_only=True, frozen=True):
    """The agent's socket closed without a logout: its grace starts."""

    name = "agent_unlinked"
    session_id: str


class RoutingAgentsPresent(Command, kw_only=True, frozen=True):
    """One API process's open agent sockets in the tenant (agent id -> session ids), every few seconds; they
    hold for `lease_s` (three beats). Reply data: {"renewed": n, "signed_out": [agent ids reported here that
    routing has not signed in]}."""

    service = "routing"
    name = "agents_present"
    sessions: dict[str, list[str]]
    lease_s: float = 15.0


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


class RoutingPrioritize(RoutingCommand, kw_only=True, frozen=True):
    """A supervisor's hand on the line: the waiting contact to the front of its queue, or with `agent_id`
    offered to that agent now (a pull). Reply data: {contact_id, queue_id, position} or {..., agent_id,
    offer_id}."""

    name = "prioritize"
    agent_id: uuid.UUID | None = None


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


class RoutingCallbackDue(Event, kw_only=True, frozen=True):
    """A contact on virtual hold reached the front: call the customer back now."""

    domain = "routing"
    name = "callback_due"
    call_id: uuid.UUID
    queue_id: str
    expires_at: float


class QueueAlertRaised(Event, kw_only=True, frozen=True):
    """A queue crossed a threshold of the tenant's alert policy (docs/supervisor.md, "Alerts"): kind
    longest_wait, service_level, waiting or away; published once when crossed (reporting's alert watch)."""

    domain = "queue"
    name = "alert_raised"
    queue_id: str
    queue_name: str = ""
    kind: str
    value: float
    threshold: float
    message: str


class QueueAlertCleared(Event, kw_only=True, frozen=True):
    """A raised queue alert is no longer crossed."""

    domain = "queue"
    name = "alert_cleared"
    queue_id: str
    queue_name: str = ""
    kind: str


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
