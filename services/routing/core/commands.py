# What the core is asked to do: typed commands, each with an id that makes it idempotent, and the
# result of handling one. Queries (queue status, position) are plain engine methods, not commands.
from __future__ import annotations

from typing import Any, Literal

import msgspec

from .model import DEFAULT_LINK_LEASE_S, Channel, TenantConfig
from .outputs import Output

__all__ = [
    "Accept",
    "AgentLinked",
    "AgentLogin",
    "AgentLogout",
    "AgentUnlinked",
    "AgentsPresent",
    "AnyCommand",
    "Cancel",
    "Command",
    "Configure",
    "DrainSite",
    "EndContact",
    "Enqueue",
    "LoseSite",
    "Prioritize",
    "Reject",
    "Reply",
    "RequestCallback",
    "RestoreSite",
    "Result",
    "SetState",
    "SetVirtualHold",
    "TransferToQueue",
    "WrapUpDone",
]


class Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    # Unique per command; a repeat returns the first result and has no second effect.
    id: str


class Configure(Command, frozen=True, kw_only=True, tag="configure"):
    config: TenantConfig


class Enqueue(Command, frozen=True, kw_only=True, tag="enqueue"):
    contact_id: str
    queue_id: str
    priority: int | None = None  # 1-99, higher is served first; None: the queue's default_priority
    attributes: dict[str, str] = msgspec.field(default_factory=dict)  # e.g. {"vip": "true"}
    requires: dict[str, str] = msgspec.field(default_factory=dict)  # agent must have, e.g. dialect
    skills: dict[str, int] = msgspec.field(default_factory=dict)
    preferred_agent_id: str | None = None
    preferred_window_s: float | None = None  # default: the queue's preferred_agent_window_s
    # Offered to the preferred agent only (for the window): refused when that agent is not in the queue.
    preferred_only: bool = False
    virtual_hold: bool = False
    # None: the queue's channel. A voice queue also takes Channel.VOICEMAIL (model.queue_takes).
    channel: Channel | None = None


class Cancel(Command, frozen=True, kw_only=True, tag="cancel"):
    """The customer left: abandons a waiting or offered contact; ends a connected one."""

    contact_id: str
    reason: str = "abandoned"


class EndContact(Command, frozen=True, kw_only=True, tag="end_contact"):
    contact_id: str


class AgentLogin(Command, frozen=True, kw_only=True, tag="agent_login"):
    agent_id: str
    away_reason: str | None = None  # log in straight into away with this reason
    session_id: str | None = None  # the client's socket, when it signs in through one (presence.py)


class AgentLinked(Command, frozen=True, kw_only=True, tag="agent_linked"):
    """The agent's client (re)opened its socket: a lost agent resumes as it was."""

    agent_id: str
    session_id: str
    lease_s: float = DEFAULT_LINK_LEASE_S


class AgentUnlinked(Command, frozen=True, kw_only=True, tag="agent_unlinked"):
    """The agent's socket closed without a logout: its grace starts (a stale session's close is ignored)."""

    agent_id: str
    session_id: str


class AgentsPresent(Command, frozen=True, kw_only=True, tag="agents_present"):
    """One API process's open sockets (agent id -> session ids): renews their leases for `lease_s`."""

    sessions: dict[str, list[str]]
    lease_s: float = DEFAULT_LINK_LEASE_S


class AgentLogout(Command, frozen=True, kw_only=True, tag="agent_logout"):
    agent_id: str
    # Also log out an agent with connected contacts: they go back in line at their place.
    force: bool = False


class SetState(Command, frozen=True, kw_only=True, tag="set_state"):
    agent_id: str
    state: Literal["available", "away"]
    reason: str | None = None


class Accept(Command, frozen=True, kw_only=True, tag="accept"):
    agent_id: str
    offer_id: str


class Reject(Command, frozen=True, kw_only=True, tag="reject"):
    agent_id: str
    offer_id: str
    away_reason: str | None = None  # also go away (after any other work) with this reason


class WrapUpDone(Command, frozen=True, kw_only=True, tag="wrap_up_done"):
    agent_id: str
    contact_id: str | None = None  # None: every contact the agent is wrapping up


class TransferToQueue(Command, frozen=True, kw_only=True, tag="transfer_to_queue"):
    contact_id: str
    queue_id: str
    # A transfer to an agent: offered to them first for the window (default: the queue's own window).
    preferred_agent_id: str | None = None
    preferred_window_s: float | None = None


class SetVirtualHold(Command, frozen=True, kw_only=True, tag="set_virtual_hold"):
    """on=True: the customer leaves the line and keeps its place. on=False: the customer is back (or was
    called back and answered) and is matched at that same place."""

    contact_id: str
    on: bool


class RequestCallback(Command, frozen=True, kw_only=True, tag="request_callback"):
    """The customer asked to be called back: a contact already in line keeps its place on virtual hold;
    any other (a callback asked for outside a queue) joins `queue_id` on virtual hold at the queue's
    default priority."""

    contact_id: str
    queue_id: str
    number: str
    attributes: dict[str, str] = msgspec.field(default_factory=dict)


class Prioritize(Command, frozen=True, kw_only=True, tag="prioritize"):
    """A supervisor's hand on the line (core/floor.py): the waiting contact goes to the front of its
    queue, or with `agent_id` is pulled, offered to that agent now (outside the line's order)."""

    contact_id: str
    agent_id: str | None = None


class DrainSite(Command, frozen=True, kw_only=True, tag="drain_site"):
    site_id: str


class LoseSite(Command, frozen=True, kw_only=True, tag="lose_site"):
    site_id: str


class RestoreSite(Command, frozen=True, kw_only=True, tag="restore_site"):
    site_id: str


AnyCommand = (
    Configure
    | Enqueue
    | RequestCallback
    | Cancel
    | EndContact
    | AgentLogin
    | AgentLogout
    | AgentLinked
    | AgentUnlinked
    | AgentsPresent
    | SetState
    | Accept
    | Reject
    | WrapUpDone
    | TransferToQueue
    | SetVirtualHold
    | Prioritize
    | DrainSite
    | LoseSite
    | RestoreSite
)


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a command, kept per command id so a repeat gets the same answer."""

    ok: bool
    code: str | None = None
    reason: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class Result(msgspec.Struct, frozen=True, kw_only=True):
    reply: Reply
    outputs: list[Output]
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return self.reply.ok

    @property
    def code(self) -> str | None:
        return self.reply.code
