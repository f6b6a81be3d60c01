# Sites over the routing state: drain, lose and restore a site, and spill the contacts held for a site to
# every site (when it is not up, or on the queue's spill times).
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import agents, matching
from .agent import Rejected
from .commands import (
    DrainSite,
    LoseSite,
    RestoreSite,
)
from .contact import Contact
from .outputs import (
    ContactSiteSpilled,
)
from .state import SiteStatus

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["agents_at", "drain", "lose", "restore", "spill", "spill_site", "status_of"]


def status_of(e: Engine, site_id: str) -> SiteStatus | Rejected:
    status = e.state.site_status.get(site_id)
    if status is None:
        return Rejected(code="unknown_site", reason=f"site {site_id!r} does not exist")
    return status


def drain(e: Engine, cmd: DrainSite) -> Rejected | dict[str, Any]:
    status = status_of(e, cmd.site_id)
    if isinstance(status, Rejected):
        return status
    if status is not SiteStatus.UP:
        return Rejected(code="site_not_up", reason=f"site {cmd.site_id!r} is {status.value}")
    e.state.site_status[cmd.site_id] = SiteStatus.DRAINING
    for agent_id in agents_at(e, cmd.site_id):
        e.matcher.agent_changed(agent_id)
    return {"spilled": spill_site(e, cmd.site_id, "site_drained")}


def lose(e: Engine, cmd: LoseSite) -> Rejected | dict[str, Any]:
    status = status_of(e, cmd.site_id)
    if isinstance(status, Rejected):
        return status
    if status is SiteStatus.LOST:
        return Rejected(code="site_not_up", reason=f"site {cmd.site_id!r} is already lost")
    e.state.site_status[cmd.site_id] = SiteStatus.LOST
    present = agents_at(e, cmd.site_id)
    for agent_id in present:
        agents.log_out(e, e.state.agents[agent_id], "site_lost")
    return {"logged_out": len(present), "spilled": spill_site(e, cmd.site_id, "site_lost")}


def restore(e: Engine, cmd: RestoreSite) -> Rejected | dict[str, Any]:
    status = status_of(e, cmd.site_id)
    if isinstance(status, Rejected):
        return status
    if status is SiteStatus.UP:
        return Rejected(code="site_up", reason=f"site {cmd.site_id!r} is already up")
    e.state.site_status[cmd.site_id] = SiteStatus.UP
    for agent_id in agents_at(e, cmd.site_id):
        e.matcher.agent_changed(agent_id)
        e.dirty_agents[agent_id] = None
    return {}


def agents_at(e: Engine, site_id: str) -> list[str]:
    return sorted(
        aid for aid in e.state.agents if (p := e.matcher.profile(aid)) is not None and p.site_id == site_id
    )


def spill_site(e: Engine, site_id: str, reason: str) -> int:
    """Let every waiting contact held for this site go to the other sites now."""
    spilled = 0
    for qid in sorted(e.queues):
        if e.queues[qid].preferred_site_id != site_id:
            continue
        for cid in e.matcher.lines[qid].ids():
            c = e.state.contacts[cid]
            if not c.site_spilled:
                spill(e, c, reason)
                spilled += 1
    return spilled


def spill(e: Engine, c: Contact, reason: str) -> None:
    q = e.queues[c.queue_id]
    c.site_spilled = True
    e.matcher.mark(c.queue_id)
    e.dirty_contacts[c.contact_id] = None
    e.emit(
        ContactSiteSpilled(
            contact_id=c.contact_id,
            queue_id=c.queue_id,
            from_site_id=q.preferred_site_id or "",
            reason=reason,
        )
    )
    matching.arm_contact(e, c)
