"""Bus <-> core: decode routing commands into the core's commands, and the core's outputs into bus events.

An event's id is derived from (tenant, output seq), so the same output published again after a recovery
carries the same Nats-Msg-Id and JetStream stores it once.
"""

from __future__ import annotations

import uuid

from services.kernel import events as ev
from services.kernel.messages import Command, Event

from . import core

__all__ = ["BUS_COMMANDS", "QUERIES", "event_for", "event_id"]

# The bus commands routing serves (Bus.serve decodes them by their ClassVars).
BUS_COMMANDS: tuple[type[Command], ...] = (
    ev.RoutingEnqueue,
    ev.RoutingCancel,
    ev.RoutingCallback,
    ev.RoutingTask,
    ev.RoutingAgentLogin,
    ev.RoutingAgentLogout,
    ev.RoutingAgentLinked,
    ev.RoutingAgentUnlinked,
    ev.RoutingAgentsPresent,
    ev.RoutingSetState,
    ev.RoutingAccept,
    ev.RoutingReject,
    ev.RoutingWrapUpDone,
    ev.RoutingAgentStatus,
    ev.RoutingEnd,
    ev.RoutingTransfer,
    ev.RoutingSetVirtualHold,
    ev.RoutingPrioritize,
    ev.RoutingPosition,
    ev.RoutingQueueStatus,
    ev.RoutingDrainSite,
    ev.RoutingLoseSite,
    ev.RoutingRestoreSite,
)
# Read-only: answered from the state the commands before them leave, never journaled.
QUERIES = (ev.RoutingPosition, ev.RoutingQueueStatus, ev.RoutingAgentStatus)

_NAMESPACE = uuid.UUID("6f1c7a52-1d0e-4c55-9a8e-2b7f0d9e4a31")


def event_id(tenant_id: uuid.UUID, seq: int) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{tenant_id}/{seq}")


def _call(contact_id: str) -> uuid.UUID:
    return uuid.UUID(contact_id)


def event_for(tenant_id: uuid.UUID, out: core.Output) -> Event | None:
    """The bus event for one core output (None for outputs kept inside routing)."""
    eid = event_id(tenant_id, out.seq)
    match out:
        case core.AgentStateChanged():
            return ev.AgentStateChanged(
                tenant_id=tenant_id,
                id=eid,
                ts=out.at,
                agent_id=out.agent_id,
                old=out.old,
                new=out.new,
                reason=out.reason,
            )
        case core.ContactQueued():
            return ev.ContactQueued(
                tenant_id=tenant_id,
                id=eid,
                ts=out.at,
                call_id=_call(out.contact_id),
                queue=out.queue_id,
                position=out.position,
                expected_wait_s=out.expected_wait_s,
                attributes=out.attributes,
            )
        case core.ContactOffered():
            return ev.ContactOffered(
                tenant_id=tenant_id,
                id=eid,
                ts=out.at,
                call_id=_call(out.contact_id),
                queue_id=out.queue_id,
                agent_id=out.agent_id,
                offer_id=out.offer_id,
                expires_at=out.expires_at,
            )
        case core.ContactAccepted():
            return ev.ContactAccepted(
                tenant_id=tenant_id, id=eid, ts=out.at, call_id=_call(out.contact_id), agent_id=out.agent_id
            )
        case core.ContactRejected():
            return ev.ContactRejected(
                tenant_id=tenant_id,
                id=eid,
                ts=out.at,
                call_id=_call(out.contact_id),
                queue_id=out.queue_id,
                agent_id=out.agent_id,
                offer_id=out.offer_id,
                reason=out.reason,
            )
        case core.ContactRequeued():
            return ev.ContactRequeued(
                tenant_id=tenant_id,
                id=eid,
                ts=out.at,
                call_id=_call(out.contact_id),
                queue_id=out.queue_id,
                position=out.position,
                reason=out.reason,
            )
        case core.ContactAbandoned():
            return ev.ContactAbandoned(
                tenant_id=tenant_id,
                id=eid,
                ts=out.at,
                call_id=_call(out.contact_id),
                queue_id=out.queue_id,
                waited_s=out.waited_s,
                reason=out.reason,
                agent_id=out.agent_id,
            )
        case core.ContactOverflowed():
            return ev.ContactOverflowed(
                tenant_id=tenant_id,
                id=eid,
                ts=out.at,
                call_id=_call(out.contact_id),
                kind="overflow",
                from_queue_id=out.from_queue_id,
                to_queue_id=out.to_queue_id,
                reason=out.reason,
            )
        case core.ContactTransferred():
            return ev.ContactOverflowed(
                tenant_id=tenant_id,
                id=eid,
                ts=out.at,
                call_id=_call(out.contact_id),
                kind="transfer",
                from_queue_id=out.from_queue_id,
                to_queue_id=out.to_queue_id,
                reason="transferred",
            )
        case core.ContactSiteSpilled():
            return ev.ContactOverflowed(
                tenant_id=tenant_id,
                id=eid,
                ts=out.at,
                call_id=_call(out.contact_id),
                kind="site_spill",
                from_queue_id=out.queue_id,
                to_queue_id=out.queue_id,
                reason=out.reason,
            )
        case core.ContactEnded():
            return ev.ContactEnded(
                tenant_id=tenant_id,
                id=eid,
                ts=out.at,
                call_id=_call(out.contact_id),
                queue_id=out.queue_id,
                agent_id=out.agent_id,
                talk_s=out.talk_s,
            )
        case core.ContactWrappedUp():
            return ev.ContactWrappedUp(
                tenant_id=tenant_id,
                id=eid,
                ts=out.at,
                call_id=_call(out.contact_id),
                queue_id=out.queue_id,
                agent_id=out.agent_id,
                handle_s=out.handle_s,
            )
        case core.PositionChanged():
            return ev.ContactPositionChanged(
                tenant_id=tenant_id,
                id=eid,
                ts=out.at,
                call_id=_call(out.contact_id),
                position=out.position,
                expected_wait_s=out.expected_wait_s,
            )
        case core.CallbackDue():
            return ev.RoutingCallbackDue(
                tenant_id=tenant_id,
                id=eid,
                ts=out.at,
                call_id=_call(out.contact_id),
                queue_id=out.queue_id,
                expires_at=out.expires_at,
            )
    return None


def assigned_for(tenant_id: uuid.UUID, out: core.ContactAccepted) -> Event:
    """contact.assigned goes with contact.accepted (for reporting, webhooks and the supervisor feed: the
    coordinator bridges on contact.accepted); its id is derived from the same seq."""
    return ev.ContactAssigned(
        tenant_id=tenant_id,
        id=uuid.uuid5(_NAMESPACE, f"{tenant_id}/{out.seq}/assigned"),
        ts=out.at,
        call_id=_call(out.contact_id),
        queue_id=out.queue_id,
        agent_id=out.agent_id,
        offer_id=out.offer_id,
    )
