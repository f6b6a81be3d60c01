# Indexes derived from the routing state and the decisions read from them: which agents are ready for a
# queue, who may take which contact, the best agent for a contact and the best contact for an agent, and
# per-queue staffing counts for expected wait and status. Decides only; the engine applies.
from __future__ import annotations

from .agent import Agent, AgentState, can_take
from .contact import IN_LINE, Contact, ContactState, line_key
from .expansion import skills_ok
from .model import AgentProfile, Channel, QueueConfig
from .queue import AgentIndex, QueueLine
from .state import RoutingState, SiteStatus
from .strategies import agent_key, candidates

__all__ = ["Matcher"]

_READY_STATES = frozenset({AgentState.AVAILABLE, AgentState.ON_CONTACT})
_NO_SITE = ""


class _Contribution:
    """What one logged-in agent adds to the per-queue counts and indexes, kept so it can be taken back
    exactly when the agent changes."""

    __slots__ = ("queues", "ready", "site", "staffed", "state")

    def __init__(
        self, state: AgentState, site: str, queues: list[str], staffed: list[int], ready: list[str]
    ) -> None:
        self.state = state
        self.site = site
        self.queues = queues
        self.staffed = staffed
        self.ready = ready


def _room_in(agent: Agent, profile: AgentProfile, q: QueueConfig) -> bool:
    """Room for some contact of this queue: of its channel, or a voicemail when it is a voice queue
    (those go on the voicemail channel's capacity)."""
    if can_take(agent, profile, q.channel):
        return True
    return q.channel is Channel.VOICE and can_take(agent, profile, Channel.VOICEMAIL)


def _fits(agent: Agent, profile: AgentProfile, q: QueueConfig, c: Contact) -> bool:
    """Room for this contact. Ready for a non-voice queue already means room on its one channel; a voice
    queue mixes calls and voicemails, so the contact's own channel decides."""
    return q.channel is not Channel.VOICE or can_take(agent, profile, c.channel)


class Matcher:
    def __init__(
        self,
        state: RoutingState,
        queues: dict[str, QueueConfig],
        profiles: dict[str, AgentProfile],
    ) -> None:
        self.state = state
        # Live queues (config + retired) and live profiles (config only: removed agents get no work).
        self.queues = queues
        self.profiles = profiles
        self.lines: dict[str, QueueLine] = {}
        self.ready: dict[str, AgentIndex] = {}
        # Contacts in a preferred-agent window, by that agent (validated lazily when read).
        self.preferring: dict[str, dict[str, None]] = {}
        self.staffed: dict[str, dict[str, int]] = {}
        self.by_state: dict[str, dict[AgentState, int]] = {}
        self._contrib: dict[str, _Contribution] = {}

    # -- building ---------------------------------------------------------------------------------

    def rebuild(self) -> None:
        self.lines = {qid: QueueLine() for qid in self.queues}
        self.ready = {qid: AgentIndex() for qid in self.queues}
        self.staffed = {qid: {} for qid in self.queues}
        self.by_state = {qid: {} for qid in self.queues}
        self.preferring = {}
        self._contrib = {}
        for c in self.state.contacts.values():
            if c.state in IN_LINE:
                self.lines[c.queue_id].add(line_key(c), c.contact_id)
            self.note_preference(c)
        dirty = dict(self.state.dirty_queues)
        for agent_id in self.state.agents:
            self.agent_changed(agent_id)
        # Re-indexing is not a change: keep exactly the queues that were waiting to be published.
        self.state.dirty_queues = dirty

    def profile(self, agent_id: str) -> AgentProfile | None:
        return self.profiles.get(agent_id) or self.state.stale_profiles.get(agent_id)

    # -- contacts ---------------------------------------------------------------------------------

    def line_add(self, c: Contact) -> int:
        line = self.lines[c.queue_id]
        line.add(line_key(c), c.contact_id)
        self.mark(c.queue_id)
        self.note_preference(c)
        return line.position(line_key(c))

    def line_remove(self, c: Contact) -> None:
        self.lines[c.queue_id].remove(line_key(c))
        self.mark(c.queue_id)

    def mark(self, queue_id: str) -> None:
        """The queue's positions or expected waits may have changed: publish them at the next flush."""
        self.state.dirty_queues[queue_id] = None

    def position(self, c: Contact) -> int:
        return self.lines[c.queue_id].position(line_key(c))

    def note_preference(self, c: Contact) -> None:
        if c.preferred_until is not None and c.preferred_agent_id is not None:
            self.preferring.setdefault(c.preferred_agent_id, {})[c.contact_id] = None

    def preferring_contacts(self, agent_id: str) -> list[Contact]:
        """Contacts whose preferred-agent window for this agent is open, pruning stale entries."""
        ids = self.preferring.get(agent_id)
        if not ids:
            return []
        out: list[Contact] = []
        for cid in list(ids):
            c = self.state.contacts.get(cid)
            if c is None or c.preferred_until is None or c.preferred_agent_id != agent_id:
                del ids[cid]
            else:
                out.append(c)
        if not ids:
            del self.preferring[agent_id]
        return out

    # -- agents -----------------------------------------------------------------------------------

    def site_up(self, site_id: str | None) -> bool:
        if site_id is None:
            return True
        return self.state.site_status.get(site_id, SiteStatus.LOST) is SiteStatus.UP

    def agent_changed(self, agent_id: str) -> None:
        """Bring indexes and counts up to date with one agent's current state. A queue is marked for a
        position refresh only if its staffing (and so its expected wait) really changed."""
        old = self._contrib.pop(agent_id, None)
        new = self._contribution(agent_id)
        if old is not None:
            for qid, slots in zip(old.queues, old.staffed, strict=True):
                self.by_state[qid][old.state] -= 1
                if slots:
                    self.staffed[qid][old.site] -= slots
        if new is not None:
            self._contrib[agent_id] = new
            for qid, slots in zip(new.queues, new.staffed, strict=True):
                counts = self.by_state[qid]
                counts[new.state] = counts.get(new.state, 0) + 1
                if slots:
                    per_site = self.staffed[qid]
                    per_site[new.site] = per_site.get(new.site, 0) + slots
            if new.ready:
                agent = self.state.agents[agent_id]
                profile = self.profiles[agent_id]
                for qid in new.ready:
                    self.ready[qid].put(agent_id, agent_key(agent, profile, self.queues[qid]))
        if old is not None and old.ready:
            keep = new.ready if new is not None else ()
            for qid in old.ready:
                if qid not in keep:
                    self.ready[qid].discard(agent_id)
        # Staffing changes move expected waits: those queues need their positions published again.
        if (
            old is None
            or new is None
            or old.site != new.site
            or old.staffed != new.staffed
            or old.queues != new.queues
        ):
            for c in (old, new):
                if c is not None:
                    for qid, slots in zip(c.queues, c.staffed, strict=True):
                        if slots:
                            self.mark(qid)

    def _contribution(self, agent_id: str) -> _Contribution | None:
        agent = self.state.agents.get(agent_id)
        profile = self.profiles.get(agent_id)
        live = profile is not None
        if profile is None:
            profile = self.state.stale_profiles.get(agent_id)
        if agent is None or profile is None or agent.state is AgentState.LOGGED_OUT:
            return None
        up = self.site_up(profile.site_id)
        staffs = live and up and agent.state is not AgentState.AWAY
        # Ready: configured, at a working site, available (or on a contact with room), no offer
        # outstanding and not waiting to go away.
        may_take = (
            live
            and up
            and agent.state in _READY_STATES
            and agent.offer_id is None
            and agent.away_reason is None
        )
        queues: list[str] = []
        staffed: list[int] = []
        ready: list[str] = []
        for qid in profile.queues:
            q = self.queues.get(qid)
            if q is None:
                continue
            queues.append(qid)
            staffed.append(profile.capacity.get(q.channel, 0) if staffs else 0)
            if may_take and _room_in(agent, profile, q):
                ready.append(qid)
        return _Contribution(agent.state, profile.site_id or _NO_SITE, queues, staffed, ready)

    def is_ready(self, agent_id: str) -> bool:
        contrib = self._contrib.get(agent_id)
        return contrib is not None and bool(contrib.ready)

    def staffed_slots(self, q: QueueConfig, c: Contact | None) -> int:
        """Staffed slots that can serve the contact: the preferred site's only until it spills."""
        per_site = self.staffed.get(q.queue_id, {})
        if q.preferred_site_id is not None and (c is None or not c.site_spilled):
            return per_site.get(q.preferred_site_id, 0)
        return sum(per_site.values())

    # -- decisions --------------------------------------------------------------------------------

    def eligible(self, agent_id: str, c: Contact) -> bool:
        """May this agent take this contact (ignoring whether the agent is ready right now)?"""
        profile = self.profiles.get(agent_id)
        if profile is None or c.queue_id not in profile.queues:
            return False
        if agent_id in c.rejected_by or (c.preferred_only and agent_id != c.preferred_agent_id):
            return False
        for name, value in c.requires.items():
            if value not in profile.attributes.get(name, ()):
                return False
        if c.preferred_until is not None:
            # The customer asked for this person: site and skill level do not apply inside the window.
            return agent_id == c.preferred_agent_id
        q = self.queues[c.queue_id]
        if q.preferred_site_id is not None and not c.site_spilled and profile.site_id != q.preferred_site_id:
            return False
        return skills_ok(profile, c.levels)

    def best_agent(self, c: Contact) -> str | None:
        index = self.ready.get(c.queue_id)
        if not index:
            return None
        if c.preferred_until is not None:
            a = c.preferred_agent_id
            if a is None or a not in index or not self.eligible(a, c):
                return None
            return a if _fits(self.state.agents[a], self.profiles[a], self.queues[c.queue_id], c) else None
        q = self.queues[c.queue_id]
        agents = self.state.agents
        for agent_id in candidates(index, q, self.state.rr_cursor.get(q.queue_id)):
            if self.eligible(agent_id, c) and _fits(agents[agent_id], self.profiles[agent_id], q, c):
                return agent_id
        return None

    def best_contact(self, agent_id: str) -> Contact | None:
        """The contact this agent should take next: an open preferred-agent window for it first, then
        the best waiting contact (priority, then arrival) across the queues it is ready for."""
        contrib = self._contrib.get(agent_id)
        if contrib is None:
            return None
        agent, profile = self.state.agents[agent_id], self.profile(agent_id)
        assert profile is not None  # an agent contributes only with a profile
        best: Contact | None = None
        best_key: tuple[int, int] | None = None
        for c in self.preferring_contacts(agent_id):
            if (
                c.state is ContactState.WAITING
                and agent_id in self.ready[c.queue_id]
                and self.eligible(agent_id, c)
                and _fits(agent, profile, self.queues[c.queue_id], c)
            ):
                key = line_key(c)
                if best_key is None or key < best_key:
                    best, best_key = c, key
        if best is not None:
            return best
        contacts = self.state.contacts
        for qid in contrib.queues:
            if agent_id not in self.ready[qid]:
                continue
            q = self.queues[qid]
            for cid in self.lines[qid]:
                c = contacts[cid]
                key = line_key(c)
                if best_key is not None and key >= best_key:
                    break
                if (
                    c.state is ContactState.WAITING
                    and self.eligible(agent_id, c)
                    and _fits(agent, profile, q, c)
                ):
                    best, best_key = c, key
                    break
        return best

    def waiting_in(self, queue_ids: set[str]) -> list[Contact]:
        """Waiting contacts of these queues in matching order (open preferred windows first)."""
        out = [
            self.state.contacts[cid]
            for qid in sorted(queue_ids)
            if qid in self.lines
            for cid in self.lines[qid]
            if self.state.contacts[cid].state is ContactState.WAITING
        ]
        out.sort(key=lambda c: (c.preferred_until is None, line_key(c)))
        return out

    def queues_of(self, agent_id: str) -> list[str]:
        contrib = self._contrib.get(agent_id)
        return list(contrib.queues) if contrib is not None else []
