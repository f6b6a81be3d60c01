"""The serialisable state of one call in a flow: where it is (scope, node, phase, what it waits for), what it
learned (attributes) and the path it took. Saved after every step, so another IVR process can resume it."""

from __future__ import annotations

import enum
import uuid

import msgspec

from services.kernel.events import IvrOutcome

__all__ = [
    "STATE_VERSION",
    "After",
    "AskAgain",
    "CallState",
    "Continue",
    "Finish",
    "Frame",
    "GoTo",
    "Phase",
    "Step",
    "decode_state",
    "encode_state",
    "next_id",
]

# 2: `after` is a tagged struct (version 1 wrote strings such as "next:menu"; decode_state reads both, so a
# call saved by an older process resumes in a newer one).
STATE_VERSION = 2


class Phase(enum.Enum):
    new = "new"  # not started (the call is not answered yet)
    playing = "playing"  # a prompt plays; `after` says what follows
    collecting = "collecting"  # digits are being collected
    lookup = "lookup"  # an HTTP data dip is out
    queued = "queued"  # (older IVRs) waiting in a queue: a saved call resumes by handing the caller back
    recording = "recording"  # a voicemail is being recorded
    transferring = "transferring"  # handed to routing or an outside number; waiting for it to take the call
    done = "done"


# What follows the prompt that is playing (CallState.after): a continuation saved with the call, so the
# process that hears "play finished" (perhaps another one, after a restart) knows what comes next.
class GoTo(msgspec.Struct, tag="next", kw_only=True):
    """Leave the node for another (a play node's next)."""

    node: str


class AskAgain(msgspec.Struct, tag="ask_again"):
    """An error prompt ended: the node asks its question again."""


class Continue(msgspec.Struct, tag="continue"):
    """The node's own prompt ended: the node's next step (record, transfer, hang up; nodes/__init__.py)."""


class Finish(msgspec.Struct, tag="finish", kw_only=True):
    """A goodbye ended: hang up with this outcome."""

    outcome: IvrOutcome
    result: str


After = GoTo | AskAgain | Continue | Finish


class Frame(msgspec.Struct, kw_only=True):
    scope: str  # "" is the main flow, otherwise a subflow's name
    next: str  # where to continue when the subflow returns


class Step(msgspec.Struct, kw_only=True):
    node: str
    scope: str = ""
    entered: float
    seconds: float | None = None  # None while the caller is still in the node
    digits: str = ""
    result: str = ""


class CallState(msgspec.Struct, kw_only=True):
    v: int = STATE_VERSION
    tenant_id: uuid.UUID
    call_id: uuid.UUID
    flow: str
    version: int  # the flow version the call started with; it keeps it to the end
    started_at: float
    scope: str = ""
    node: str = ""
    phase: Phase = Phase.new
    stack: list[Frame] = msgspec.field(default_factory=list)
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    tries: int = 0  # failed attempts in this node (menu, collect, callback)
    sub: int = 0  # position inside a node: survey question, callback step, menu variant + 1
    pending: uuid.UUID | None = None  # the command (play, collect, lookup, record) whose answer we wait for
    routing_id: uuid.UUID | None = None  # the enqueue/transfer command routing holds the caller by
    after: After | None = None  # what follows the current prompt
    deadline: float | None = None  # no answer by then: treat as timeout (never leave a caller in silence)
    language: str = "en"  # the tenant's: what the platform itself says (the coordinator's announcements)
    hops: int = 0  # nodes entered without the caller doing anything (a guard against silent loops)
    path: list[Step] = msgspec.field(default_factory=list)
    digits: str = ""
    outcome: IvrOutcome | None = None
    resumed: int = 0
    made: int = 0  # messages made so far: the next one's id is derived from the call and this count
    # The `ivr.run` that started this run of a flow on the call (None: saved by an older IVR). A call may
    # run several flows, or one flow again at a node (a queue's on_timeout): each run's ids are its own, so
    # the commands of a later run are never answered from media's reply cache as the earlier run's.
    run_id: uuid.UUID | None = None


def next_id(state: CallState) -> uuid.UUID:
    """The id of the call's next command or event: derived, never random, and saved with the state, so a
    step taken again after a restart sends the same ids (the reply caches answer them)."""
    state.made += 1
    return uuid.uuid5(state.run_id or state.call_id, f"m{state.made}")


def encode_state(state: CallState) -> bytes:
    return msgspec.json.encode(state)


def decode_state(data: bytes) -> CallState:
    raw = msgspec.json.decode(data)
    if raw.get("v", 1) == 1:
        raw["after"] = _after_v1(raw.get("after", ""))
        raw["v"] = STATE_VERSION
    return msgspec.convert(raw, CallState)


def _after_v1(text: str) -> dict[str, str] | None:
    """A version 1 continuation string as its tagged struct's JSON."""
    if text.startswith("next:"):
        return {"type": "next", "node": text[5:]}
    if text.startswith("finish:"):
        return {"type": "finish", "outcome": text[7:], "result": text[7:]}
    if text == "collect":
        return {"type": "ask_again"}
    if text in ("record", "transfer", "hangup"):
        return {"type": "continue"}
    return None
