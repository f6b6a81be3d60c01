# Tenant configuration the routing core is given (queues, sites, agent profiles, seats, reason codes),
# with validation that explains what is wrong. The API owns this data; the adapter hands it over.
from __future__ import annotations

import enum
import re

import msgspec

from .schedule import Schedule, validate_schedule

__all__ = [
    "DEFAULT_AWAY_REASONS",
    "DEFAULT_LINK_GRACE_S",
    "DEFAULT_LINK_LEASE_S",
    "MAX_LINK_GRACE_S",
    "SYSTEM_AWAY_REASONS",
    "AgentProfile",
    "Channel",
    "ExpansionStep",
    "FastEnum",
    "OverflowRule",
    "PriorityRule",
    "QueueConfig",
    "SiteConfig",
    "Strategy",
    "TenantConfig",
    "queue_takes",
    "validate_config",
]

PRIORITY_MIN = 1
PRIORITY_MAX = 99
DEFAULT_PRIORITY = 50
PROFICIENCY_MAX = 10
# Reason codes the engine itself uses; tenants cannot redefine them.
SYSTEM_AWAY_REASONS = ("missed", "disconnected")
# How long a signed-in agent whose client lost its socket keeps its seat and its calls (docs/agent-protocol.md).
DEFAULT_LINK_GRACE_S = 20.0
MAX_LINK_GRACE_S = 600.0
# How long an API process's report that a socket is open holds (three of its 5 s beats): an unrenewed lease
# means that process is gone. The process says so in each report (`lease_s`); this is the default.
DEFAULT_LINK_LEASE_S = 15.0
DEFAULT_AWAY_REASONS = ("break", "lunch", "meeting", "training", "other")
_ID = re.compile(r"^[A-Za-z0-9_.:@\-]{1,128}$")


class FastEnum(enum.Enum):
    """Enum whose members hash by identity in C. Enum's own __hash__ hashes the name in Python, which
    shows in the matching hot path (members are dict keys and set members there). Members compare by
    identity anyway, and nothing iterates a set or dict of them in a way that depends on the hash."""

    __hash__ = object.__hash__


class Channel(FastEnum):
    VOICE = "voice"
    CHAT = "chat"
    EMAIL = "email"
    # A recorded message for an agent to play and return: no audio leg, but a capacity of its own.
    VOICEMAIL = "voicemail"


class Strategy(FastEnum):
    LONGEST_IDLE = "longest_idle"
    MOST_SKILLED = "most_skilled"
    ROUND_ROBIN = "round_robin"
    LEAST_OCCUPIED = "least_occupied"


class ExpansionStep(msgspec.Struct, frozen=True, kw_only=True):
    """Bullseye ring: from `after_s` seconds in the queue, every required skill needs at least
    `min_proficiency` (0 drops the skill requirement: any member of the queue)."""

    after_s: float
    min_proficiency: int


class PriorityRule(msgspec.Struct, frozen=True, kw_only=True):
    """A contact whose attribute `attribute` equals `equals` gets `raise_by` added to its priority."""

    attribute: str
    equals: str
    raise_by: int


class OverflowRule(msgspec.Struct, frozen=True, kw_only=True):
    """Move a waiting contact to `target_queue_id` after `after_s` seconds in this queue, or as soon as
    its expected wait is over `expected_wait_over_s` (unknown counts as over). The first rule that fires
    and whose target is open, of the same channel and not yet visited by the contact wins."""

    target_queue_id: str
    after_s: float | None = None
    expected_wait_over_s: float | None = None


class QueueConfig(msgspec.Struct, frozen=True, kw_only=True):
    queue_id: str
    channel: Channel = Channel.VOICE
    strategy: Strategy = Strategy.LONGEST_IDLE
    # skill -> minimum proficiency (1-10); used as is unless `expansion` is set.
    skills: dict[str, int] = msgspec.field(default_factory=dict)
    expansion: list[ExpansionStep] = msgspec.field(default_factory=list)
    priority_rules: list[PriorityRule] = msgspec.field(default_factory=list)
    overflow: list[OverflowRule] = msgspec.field(default_factory=list)
    schedule: Schedule | None = None
    # Where a contact goes when it arrives while the queue is closed (else the enqueue is refused).
    closed_target_queue_id: str | None = None
    preferred_site_id: str | None = None
    site_spill_after_s: float | None = None
    site_spill_expected_wait_s: float | None = None
    preferred_agent_window_s: float = 0.0
    offer_timeout_s: float = 20.0
    wrap_up_s: float = 30.0
    callback_timeout_s: float = 300.0
    # A contact's priority when its enqueue names none (queues.priority in the database).
    default_priority: int = DEFAULT_PRIORITY
    default_aht_s: float = 180.0
    aht_window: int = 100
    ewt_round_s: int = 5


class SiteConfig(msgspec.Struct, frozen=True, kw_only=True):
    site_id: str
    name: str = ""


class AgentProfile(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: str
    site_id: str | None = None
    # Queues the agent is staffed on (a member of); skills and attributes narrow this further.
    queues: list[str] = msgspec.field(default_factory=list)
    skills: dict[str, int] = msgspec.field(default_factory=dict)
    # e.g. {"language": ["en", "es"], "dialect": ["es-MX"]}
    attributes: dict[str, list[str]] = msgspec.field(default_factory=dict)
    # Contacts held at once per channel. Voice is 0 or 1 and exclusive (see agent.can_take).
    capacity: dict[Channel, int] = msgspec.field(
        default_factory=lambda: {Channel.VOICE: 1, Channel.CHAT: 1, Channel.EMAIL: 1, Channel.VOICEMAIL: 1}
    )


def queue_takes(queue: QueueConfig, channel: Channel) -> bool:
    """A queue takes contacts of its own channel; a voice queue also takes the voicemails its callers
    leave (the IVR's voicemail node names a voice queue), routed on the voicemail channel's capacity."""
    return channel is queue.channel or (queue.channel is Channel.VOICE and channel is Channel.VOICEMAIL)


class TenantConfig(msgspec.Struct, frozen=True, kw_only=True):
    seats: int = 0
    link_grace_s: float = DEFAULT_LINK_GRACE_S
    away_reasons: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_AWAY_REASONS))
    sites: list[SiteConfig] = msgspec.field(default_factory=list)
    queues: list[QueueConfig] = msgspec.field(default_factory=list)
    agents: list[AgentProfile] = msgspec.field(default_factory=list)


def _check_id(kind: str, value: str) -> str | None:
    if not _ID.match(value):
        return f"{kind} id {value!r} is invalid: use 1-128 letters, digits or _ . : @ -"
    return None


def _check_skills(owner: str, skills: dict[str, int]) -> str | None:
    for skill, level in skills.items():
        if not skill:
            return f"{owner}: empty skill name"
        if not 1 <= level <= PROFICIENCY_MAX:
            return f"{owner}: skill {skill!r} proficiency {level} is outside 1-{PROFICIENCY_MAX}"
    return None


def _check_queue(q: QueueConfig, queue_ids: set[str], site_ids: set[str]) -> str | None:
    where = f"queue {q.queue_id!r}"
    if err := _check_skills(where, q.skills):
        return err
    if not PRIORITY_MIN <= q.default_priority <= PRIORITY_MAX:
        return f"{where}: default_priority must be {PRIORITY_MIN}-{PRIORITY_MAX}"
    previous = -1.0
    for i, step in enumerate(q.expansion):
        if i == 0 and step.after_s != 0:
            return f"{where}: the first expansion step must start at after_s=0"
        if step.after_s <= previous:
            return f"{where}: expansion steps must have increasing after_s"
        if not 0 <= step.min_proficiency <= PROFICIENCY_MAX:
            return f"{where}: expansion min_proficiency must be 0-{PROFICIENCY_MAX}"
        previous = step.after_s
    for boost in q.priority_rules:
        if not -PRIORITY_MAX <= boost.raise_by <= PRIORITY_MAX:
            return f"{where}: priority rule raise_by must be within +/-{PRIORITY_MAX}"
    for rule in q.overflow:
        if rule.target_queue_id not in queue_ids:
            return f"{where}: overflow target {rule.target_queue_id!r} is not a queue"
        if rule.target_queue_id == q.queue_id:
            return f"{where}: a queue cannot overflow to itself"
        if rule.after_s is None and rule.expected_wait_over_s is None:
            return f"{where}: an overflow rule needs after_s or expected_wait_over_s"
        if (rule.after_s is not None and rule.after_s < 0) or (
            rule.expected_wait_over_s is not None and rule.expected_wait_over_s < 0
        ):
            return f"{where}: overflow thresholds must not be negative"
    if q.closed_target_queue_id is not None and q.closed_target_queue_id not in queue_ids:
        return f"{where}: closed target {q.closed_target_queue_id!r} is not a queue"
    if q.preferred_site_id is not None and q.preferred_site_id not in site_ids:
        return f"{where}: preferred site {q.preferred_site_id!r} is not a site"
    if q.schedule is not None and (err := validate_schedule(q.schedule)):
        return f"{where}: {err}"
    if q.offer_timeout_s <= 0:
        return f"{where}: offer_timeout_s must be positive (an offer always times out)"
    if q.callback_timeout_s <= 0:
        return f"{where}: callback_timeout_s must be positive"
    for name in ("wrap_up_s", "preferred_agent_window_s", "default_aht_s"):
        if getattr(q, name) < 0:
            return f"{where}: {name} must not be negative"
    for name in ("site_spill_after_s", "site_spill_expected_wait_s"):
        value = getattr(q, name)
        if value is not None and value < 0:
            return f"{where}: {name} must not be negative"
    if q.default_aht_s <= 0:
        return f"{where}: default_aht_s must be positive"
    if q.aht_window < 1:
        return f"{where}: aht_window must be at least 1"
    if q.ewt_round_s < 1:
        return f"{where}: ewt_round_s must be at least 1"
    return None


def validate_config(cfg: TenantConfig) -> str | None:
    """Return None if the configuration is usable, else a sentence saying what is wrong."""
    if cfg.seats < 0:
        return "seats must not be negative"
    if not 0 <= cfg.link_grace_s <= MAX_LINK_GRACE_S:
        return f"link_grace_s must be 0-{MAX_LINK_GRACE_S:.0f} seconds"
    for reason in cfg.away_reasons:
        if not reason or len(reason) > 64:
            return f"away reason code {reason!r} must be 1-64 characters"
        if reason in SYSTEM_AWAY_REASONS:
            return f"away reason code {reason!r} is reserved by the system"
    site_ids: set[str] = set()
    for site in cfg.sites:
        if err := _check_id("site", site.site_id):
            return err
        if site.site_id in site_ids:
            return f"site {site.site_id!r} is listed twice"
        site_ids.add(site.site_id)
    queue_ids: set[str] = set()
    for q in cfg.queues:
        if err := _check_id("queue", q.queue_id):
            return err
        if q.queue_id in queue_ids:
            return f"queue {q.queue_id!r} is listed twice"
        queue_ids.add(q.queue_id)
    for q in cfg.queues:
        if err := _check_queue(q, queue_ids, site_ids):
            return err
    agent_ids: set[str] = set()
    for a in cfg.agents:
        if err := _check_id("agent", a.agent_id):
            return err
        if a.agent_id in agent_ids:
            return f"agent {a.agent_id!r} is listed twice"
        agent_ids.add(a.agent_id)
        if a.site_id is not None and a.site_id not in site_ids:
            return f"agent {a.agent_id!r}: site {a.site_id!r} is not a site"
        for qid in a.queues:
            if qid not in queue_ids:
                return f"agent {a.agent_id!r}: queue {qid!r} is not a queue"
        if len(set(a.queues)) != len(a.queues):
            return f"agent {a.agent_id!r}: a queue is listed twice"
        if err := _check_skills(f"agent {a.agent_id!r}", a.skills):
            return err
        for channel, n in a.capacity.items():
            if n < 0:
                return f"agent {a.agent_id!r}: capacity for {channel.value} must not be negative"
            if channel is Channel.VOICE and n > 1:
                return f"agent {a.agent_id!r}: voice capacity is 0 or 1"
    return None
