"""IVR analytics: node visits and a flow's outcome."""

from __future__ import annotations

import uuid
from typing import Literal

from ..messages import Command, Event

__all__ = [
    "IvrCallbackRequested",
    "IvrCompleted",
    "IvrNodeEntered",
    "IvrNodeExited",
    "IvrOutcome",
    "IvrRun",
    "IvrSurveyAnswered",
]

# The IVR commands media (events.media) and routing (events.routing) and publishes these analytics events;
# routing's contact.* events (events.contact) are what it listens to while a caller waits in a queue.


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
    attributes: dict[str, str] = {}  # what the flow had learned; caller and dialled win
