"""IVR analytics: node visits and a flow's outcome."""

from __future__ import annotations

import uuid
from typing import Literal

import msgspec

from ..messages import Command, Event
from .media import MediaPlay
from .routing import RoutingEnqueue

__all__ = [
    "IvrCallbackRequested",
    "IvrCompleted",
    "IvrNodeEntered",
    "IvrNodeExited",
    "IvrOutcome",
    "IvrQueueWait",
    "IvrRun",
    "IvrSurveyAnswered",
]

# The IVR commands media (events.media) and routing (events.routing, a voicemail's task) and publishes these
# events; a flow's queue hands the caller back to the contact coordinator (`IvrCompleted.queue`).


IvrOutcome = Literal["self_served", "transferred", "callback", "abandoned", "failed"]


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


class IvrSurveyAnswered(Event, kw_only=True, frozen=True):
    """A survey question answered within its scale (reporting averages the answers, each scaled to 0-1)."""

    domain = "ivr"
    name = "survey_answered"
    call_id: uuid.UUID
    flow: str
    version: int
    node: str
    question: str  # the attribute the answer went into
    score: int
    min: int
    max: int


class IvrQueueWait(msgspec.Struct, kw_only=True, frozen=True):
    """A flow reached a queue (a queue node, or a transfer to a queue or an agent): the IVR's step ends and
    the contact coordinator puts the caller in line with these terms and keeps them company until an agent
    takes the call (docs/architecture.md, "One owner for the caller"). The commands are templates the
    coordinator sends with its own ids: `enqueue` carries the queue, priority, skills and every attribute
    with the screen pop; `music` is the node's music on hold; `callback_offer` the prompt played from
    `callback_after` seconds in line, offering a call back that keeps the caller's place on
    `callback_digit`. After `max_wait` seconds the flow continues at `on_timeout` (with `ivr.run`);
    `on_callback` is where it continues once a call back is agreed ("": a goodbye, then hang up).
    `fallback` is the flow's safe node, where it continues when routing refuses the enqueue or a wait ends
    with nowhere to go ("": none left, the caller hears an apology). Node names are in `scope` (a subflow's
    name, "" the main flow)."""

    enqueue: RoutingEnqueue
    music: MediaPlay
    language: str = "en"  # the tenant's: the position announcements
    announce_every: float | None = None
    callback_after: float | None = None
    callback_digit: str = "1"
    callback_offer: MediaPlay | None = None
    max_wait: float | None = None
    on_timeout: str = ""
    on_callback: str = ""
    fallback: str = ""
    scope: str = ""


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
    # The flow handed the caller to a queue (outcome `transferred`): the coordinator's wait from here.
    queue: IvrQueueWait | None = None


class IvrCallbackRequested(Event, kw_only=True, frozen=True):
    """The caller asked to be called back (the queue node's offer, or a callback node): the contact
    coordinator keeps the contact until the call back is made (docs/routing.md, "Callbacks"). `at`: a time
    the caller chose (epoch seconds; routing is asked only then), None for "when my turn comes"."""

    domain = "ivr"
    name = "callback_requested"
    call_id: uuid.UUID
    queue: str
    number: str
    keep_place: bool = True
    at: float | None = None


class IvrRun(Command, kw_only=True, frozen=True):
    """Run a tenant's flow (its current version) on a call the contact coordinator has answered: the flow
    of the number called (`flow_id`: the coordinator answers every routed call and runs the number's flow as
    a step of the contact), or one named `flow` (a closed queue's flow, a queue's post-call survey, an
    agent's transfer to a flow). `node` starts the flow at one of its main nodes instead of its start, with
    `attributes` as what it had learned (a queue node's `on_timeout` / `on_callback` continuing after the
    coordinator's wait, docs/architecture.md "One owner for the caller"). The reply says whether the flow
    started (`unknown_flow` when no such flow, `invalid` when neither or both are given, or no such node)."""

    service = "ivr"
    name = "run"
    call_id: uuid.UUID
    flow: str = ""
    flow_id: uuid.UUID | None = None
    caller: str = ""
    dialled: str = ""
    node: str = ""  # "": the flow's start
    scope: str = ""  # the subflow `node` is in ("": the main flow)
    attributes: dict[str, str] = {}  # what the flow had learned; caller and dialled win
