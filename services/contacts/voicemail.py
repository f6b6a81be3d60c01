"""Voicemail to an agent: a message a caller left in the IVR (its `voicemail` node) is a task of its own,
offered through the desk like a call. The IVR hands it to routing as a `task` (kind voicemail) with its own
id; the coordinator makes it a contact when routing queues it (`arrived`), and from there it lives like a
call without audio legs: offered (`contact_offer` with `audio: "none"` and `context.voicemail {seconds,
url, of}` and `task: "voicemail"`), accepted (connected at once: there is nothing to bridge; the desk fetches the message from
`url`, which redirects to a signed URL of the message's recording: the recording service sealed it), closed by the agent's `hangup` (wrap-up), finished with a disposition. The agent may call the caller
back with the desk's `dial`.

Sans-IO: functions of the `Lifecycle` (lifecycle.py), time passed in.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from services.kernel import events as ev

from .records import ContactRecord

if TYPE_CHECKING:
    from .lifecycle import Lifecycle, OfferInfo

__all__ = ["KIND", "is_task", "record_for"]

KIND = "voicemail"


def is_task(event: ev.ContactQueued) -> bool:
    return event.attributes.get("kind") == KIND


def record_for(event: ev.ContactQueued, now: float) -> ContactRecord:
    """The task's contact record: the caller who left it, the queue, and the message's file."""
    a = event.attributes
    queue_id = None
    try:
        queue_id = uuid.UUID(event.queue)
    except ValueError:
        pass
    return ContactRecord(
        id=event.call_id,
        tenant_id=event.tenant_id,
        caller=a.get("caller", ""),
        queue_id=queue_id,
        state="arrived",
        arrived_at=now,
        queued_at=now,
        attributes=dict(a),
    )


def offered(m: Lifecycle, info: OfferInfo, now: float) -> None:
    s, r = m.state, m.state.record
    offer = info.offer
    s.offer_id, s.offer_expires_at, s.offer_agent_id = offer.offer_id, offer.expires_at, offer.agent_id
    if info.queue_name:
        r.queue_name = info.queue_name
    if r.offered_at is None:
        r.offered_at = now
    m._transition("offered", now, "offered", agent_id=offer.agent_id)
    context = m.context(now, info)
    context["voicemail"] = {
        "seconds": float(r.attributes.get("seconds", "0") or 0),
        "url": f"/v1/desk/voicemails/{m.contact_id}",
        "of": r.attributes.get("voicemail_of", ""),
    }
    m._desk(
        offer.agent_id,
        "contact_offer",
        now=now,
        offer_id=offer.offer_id,
        expires_at=offer.expires_at,
        audio="none",  # nothing to make a leg for: the message is fetched from its url
        task=KIND,
        context=context,
    )


def accepted(m: Lifecycle, event: ev.ContactAccepted, now: float) -> None:
    """Nothing to bridge: the agent has the message at once."""
    s, r = m.state, m.state.record
    if m.phase not in ("queued", "offered") or s.accepted:
        return
    s.accepted = s.bridged = True
    s.offer_id = None
    r.agent_id = uuid.UUID(event.agent_id)
    r.connected_at = now
    r.queue_s = round(now - r.queued_at, 3) if r.queued_at is not None else None
    m._transition("connected", now, "accepted", agent_id=event.agent_id)
    m._desk(event.agent_id, "contact_connected", now=now, task=KIND, recording="off")


def desk(m: Lifecycle, cmd: ev.DeskCommand, now: float) -> dict[str, Any]:
    """The agent's commands on a voicemail: only `hangup` (done listening: wrap-up) applies."""
    from .lifecycle import DeskRefused

    if not isinstance(cmd, ev.DeskHangup):
        raise DeskRefused("state", "a voicemail has no call: listen to it, call back with `dial`, or hang up")
    m._end_connected(now, by="agent", cause="voicemail_done")
    return {}
