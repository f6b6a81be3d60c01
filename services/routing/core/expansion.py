# Bullseye expansion: the minimum skill level a waiting contact needs widens in timed steps (e.g. >= 8
# for 15 s, then >= 5, then any member of the queue). Pure functions of the queue, the contact and time.
from __future__ import annotations

from .contact import Contact
from .model import AgentProfile, QueueConfig

__all__ = ["levels_for", "skills_ok", "step_at"]


def step_at(queue: QueueConfig, queued_at: float, now: float) -> int:
    """Index of the expansion step in force at `now` for a contact queued at `queued_at` (0 without
    steps). Compared as absolute times, exactly as the timers are armed, so a timer firing at a step's
    start always finds that step in force (no float drift between "waited" and "deadline")."""
    step = 0
    for i, s in enumerate(queue.expansion):
        if now >= queued_at + s.after_s:
            step = i
    return step


def levels_for(queue: QueueConfig, contact: Contact, step: int) -> dict[str, int]:
    """Minimum level per required skill (queue's and contact's); 0 means the skill is not required.

    Without expansion steps each skill keeps its own minimum (the higher of queue and contact). With
    steps, the step's level applies to every required skill, so "anyone in the queue" is level 0.
    """
    wanted = dict(queue.skills)
    for skill, level in contact.skills.items():
        wanted[skill] = max(level, wanted.get(skill, 0))
    if not queue.expansion:
        return wanted
    level = queue.expansion[min(step, len(queue.expansion) - 1)].min_proficiency
    return {skill: level for skill in wanted}


def skills_ok(profile: AgentProfile, levels: dict[str, int]) -> bool:
    skills = profile.skills
    for skill, level in levels.items():
        if level > 0 and skills.get(skill, 0) < level:
            return False
    return True
