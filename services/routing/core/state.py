# The whole routing state of one tenant as plain data: what a snapshot holds. Indexes and timers are
# derived from it (services/routing/core/matcher.py, engine.py) and rebuilt on restore.
from __future__ import annotations

import msgspec

from .agent import Agent
from .commands import Reply
from .contact import Contact, Offer
from .model import AgentProfile, FastEnum, QueueConfig, TenantConfig

__all__ = ["STATE_VERSION", "RoutingState", "SiteStatus"]

STATE_VERSION = 1


class SiteStatus(FastEnum):
    UP = "up"
    DRAINING = "draining"  # agents finish what they hold and get nothing new
    LOST = "lost"  # agents logged out, their contacts back in line


class RoutingState(msgspec.Struct, kw_only=True):
    version: int = STATE_VERSION
    config: TenantConfig = msgspec.field(default_factory=TenantConfig)
    # Queues removed from the configuration while contacts they routed were still connected.
    retired_queues: dict[str, QueueConfig] = msgspec.field(default_factory=dict)
    # Profiles removed from the configuration while the agent was still logged in.
    stale_profiles: dict[str, AgentProfile] = msgspec.field(default_factory=dict)
    site_status: dict[str, SiteStatus] = msgspec.field(default_factory=dict)
    agents: dict[str, Agent] = msgspec.field(default_factory=dict)
    contacts: dict[str, Contact] = msgspec.field(default_factory=dict)
    offers: dict[str, Offer] = msgspec.field(default_factory=dict)
    # Recent handle times per queue (rolling window, oldest first).
    aht: dict[str, list[float]] = msgspec.field(default_factory=dict)
    rr_cursor: dict[str, str] = msgspec.field(default_factory=dict)
    # Replies by command id, oldest first, trimmed to max_replies.
    replies: dict[str, Reply] = msgspec.field(default_factory=dict)
    max_replies: int = 100_000
    # Queues whose positions and expected waits need publishing, and when that is next done: at most
    # once per position_interval_s (0: at the end of every call).
    dirty_queues: dict[str, None] = msgspec.field(default_factory=dict)
    positions_due_at: float | None = None
    position_interval_s: float = 1.0
    next_seq: int = 0
    # The time of the last agent state change output (each in its own microsecond: engine.py, emit_state_change).
    last_state_at: float = 0.0
    next_arrival: int = 0
    now: float = 0.0
