# Agent selection strategies as sort keys. The key of an agent only changes on that agent's own events,
# so a queue keeps its ready agents sorted and the best one is at the front. Every key ends with the agent
# id: equal agents are told apart the same way on every run and after every restore.
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .agent import Agent
from .model import AgentProfile, Channel, QueueConfig, Strategy
from .queue import AgentIndex

__all__ = ["agent_key", "candidates", "skill_score"]


def skill_score(profile: AgentProfile, queue: QueueConfig) -> int:
    """Sum of the agent's proficiency over the queue's skills (most skilled first)."""
    return sum(profile.skills.get(skill, 0) for skill in queue.skills)


def _load(agent: Agent, profile: AgentProfile, channel: Channel) -> float:
    """Share of the agent's capacity for this channel in use."""
    limit = profile.capacity.get(channel, 0)
    if not limit:
        return 1.0
    return sum(1 for slot in agent.slots.values() if slot.channel is channel) / limit


def agent_key(agent: Agent, profile: AgentProfile, queue: QueueConfig) -> tuple[Any, ...]:
    """Lower sorts first.

    - longest idle: earliest `last_work_at` (became available after work or a break, or last accepted).
    - most skilled: highest skill score for the queue, then longest idle.
    - least occupied: lowest share of channel capacity in use, then least busy time since login,
      then longest idle.
    - round robin: agent id; the queue keeps a cursor on the last agent offered.
    """
    s = queue.strategy
    if s is Strategy.LONGEST_IDLE:
        return (agent.last_work_at, agent.agent_id)
    if s is Strategy.MOST_SKILLED:
        return (-skill_score(profile, queue), agent.last_work_at, agent.agent_id)
    if s is Strategy.LEAST_OCCUPIED:
        return (_load(agent, profile, queue.channel), agent.busy_s, agent.last_work_at, agent.agent_id)
    return (agent.agent_id,)


def candidates(index: AgentIndex, queue: QueueConfig, cursor: str | None) -> Iterator[str]:
    """Ready agents of the queue, best first."""
    if queue.strategy is Strategy.ROUND_ROBIN:
        return index.ordered_after(cursor)
    return index.ordered()
