"""Inbound calls for the SIP edge: a new INVITE's set-up core (ua/setup.py) carried out, from the route
lookup to the ringing leg, then what a set-up call gets on its way: call.arrived (`announce`), the
unrouted message (`play_unrouted`) or, turned away after the trunk checks, call.refused (`refused`).

`set_up` feeds each answer (route, port, tenant slot, RTP sockets) back into the core and decides nothing
itself but the awaits and whether the INVITE is still pending after each. It takes the edge (edge.py's
SipEdge) typed by the narrow `InboundEdge` protocol below: what an inbound call needs of it, public members
only; the sockets, the transaction layer and the leg tables stay the edge's.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Protocol

from services.kernel.events import CallArrived, CallRefused
from services.kernel.log import get_logger
from services.kernel.slots import tenant_slot
from services.media import sip
from services.media.prompts import PromptError
from services.media.ua import setup as setup_core
from services.media.ua.call import Call, CallState
from services.media.ua.dialog_core import DialogCore
from services.media.ua.leg import Leg
from services.media.ua.setup import InviteSetup, SetupConfig

if TYPE_CHECKING:
    from services.kernel.messages import Event
    from services.kernel.slots import Slots
    from services.media.prompts import PromptStore
    from services.media.rtp.session import PortPool, RtpSession
    from services.media.ua.dialog_core import Action, LegConfig
    from services.media.ua.leg import EdgeConfig
    from services.media.ua.store import NumberRoute, Store
    from services.media.ua.transport import Peer

__all__ = ["UNROUTED", "InboundEdge", "announce", "play_unrouted", "refused", "set_up"]

log = get_logger()

UNROUTED = "unrouted"  # the hang-up cause (and the contact's outcome) of a call to a number routed nowhere


class InboundEdge(Protocol):
    """What an inbound call needs of the SIP edge."""

    config: EdgeConfig
    store: Store
    prompts: PromptStore
    ports: PortPool
    slots: Slots
    legs: dict[uuid.UUID, Leg]
    leg_config: LegConfig

    def now(self) -> float: ...
    def emit(self, events: list[Event]) -> None: ...
    def local(self, peer: Peer) -> sip.LocalAddress: ...
    def contact_uri(self, peer: Peer) -> str: ...
    def still_pending(self, key: sip.TransactionKey) -> bool: ...
    def respond(
        self,
        key: sip.TransactionKey | None,
        request: sip.SipRequest,
        status: int,
        peer: Peer,
        *,
        headers: list[tuple[str, str]] | None = None,
        reason: str | None = None,
    ) -> None: ...
    def take_in(self, leg: Leg, key: sip.TransactionKey, ringing: sip.SipResponse) -> None: ...
    def open_rtp(self, leg: Leg, port: int | None = None) -> Awaitable[RtpSession | None]: ...
    def release_rtp(self, rtp: RtpSession) -> None: ...
    def run(self, leg: Leg, actions: Sequence[Action], peer: Peer | None = None) -> None: ...
    def reject(self, leg: Leg, status: int, cause: str) -> None: ...
    def answer(self, leg: Leg) -> bool: ...
    def hangup(self, leg: Leg, cause: str = "normal_clearing") -> None: ...
    def finish(self, leg: Leg, cause: str, sip_status: int | None = None) -> None: ...


async def set_up(edge: InboundEdge, key: sip.TransactionKey, invite: sip.SipRequest, peer: Peer) -> None:
    """Carry out the set-up core's actions for a new INVITE, feeding each answer back in."""
    if not edge.still_pending(key):
        return  # a CANCEL read in the same batch ran first
    config = edge.config
    contact_uri = edge.contact_uri(peer)
    setup = InviteSetup(
        invite,
        peer[1],
        SetupConfig(
            host=config.host,
            realm=config.realm,
            auth_secret=config.auth_secret,
            max_calls=config.max_calls,
            min_se=config.min_se,
        ),
        to_tag=sip.new_tag(),
        session_id=random.getrandbits(31),
        local=edge.local(peer),
        contact_uri=contact_uri,
    )
    leg: Leg | None = None
    rtp: RtpSession | None = None
    actions: list[setup_core.Action] = setup.received()
    while actions:
        action = actions.pop(0)
        follow: list[setup_core.Action] = []
        match action:
            case setup_core.Respond(status, reason, headers):
                edge.respond(key, invite, status, peer, headers=list(headers), reason=reason)
            case setup_core.Refused(status, cause):
                assert setup.route is not None and setup.number is not None
                refused(edge, setup.route, invite, setup.number, status, cause)
            case setup_core.LookUpRoute(number):
                route = await edge.store.route(number)
                if not edge.still_pending(key):
                    follow = setup.gone()
                else:
                    follow = setup.route_found(route, calls=len(edge.legs), now=time.time())
            case setup_core.TakePort():
                follow = setup.port_taken(edge.ports.acquire())
            case setup_core.ReleasePort(port):
                edge.ports.release(port)
            case setup_core.TakeSlot(tenant_id, limit):
                granted = await edge.slots.acquire(tenant_slot(tenant_id), limit)
                follow = setup.slot_taken(granted, pending=edge.still_pending(key))
            case setup_core.ReleaseSlot(tenant_id):
                edge.slots.release(tenant_slot(tenant_id))
            case setup_core.Ring(ringing, dialog, timer):
                assert setup.route is not None
                call = Call(call_id=uuid.uuid4(), tenant_id=setup.route.tenant_id, created_at=time.time())
                core = DialogCore(
                    call,
                    edge.leg_config,
                    outbound=False,
                    reliable=peer[0] == "tcp",
                    contact=f"<{contact_uri}>",
                    address=edge.local(peer),
                    session_id=setup.session_id,
                    to_tag=setup.to_tag,
                    invite=invite,
                    invite_key=key,
                    dialog=dialog,
                    session_timer=timer,
                )
                leg = Leg(call=call, peer=peer, core=core, route=setup.route)
                edge.take_in(leg, key, ringing)
            case setup_core.OpenRtp(port):
                assert leg is not None
                rtp = await edge.open_rtp(leg, port)
                follow = setup.rtp_opened(
                    rtp.port if rtp is not None else None,
                    pending=edge.still_pending(key),
                    ended=leg.call.state is CallState.ENDED,
                )
            case setup_core.Reject(status, cause):
                assert leg is not None
                edge.reject(leg, status, cause)
            case setup_core.CloseRtp(finish):
                assert leg is not None and rtp is not None
                edge.release_rtp(rtp)  # cancelled while the sockets were opening
                if finish:
                    edge.finish(leg, "cancelled")
            case setup_core.Announce(answer, codec):
                assert leg is not None and rtp is not None
                announce(edge, leg, rtp, answer, codec, setup.number or "")
            case setup_core.PlayUnrouted():
                assert leg is not None
                await play_unrouted(edge, leg, setup.number or "")
            case setup_core.AwaitAnswer():
                assert leg is not None
                edge.run(leg, leg.core.await_answer(edge.now()))
        actions = follow + actions


def announce(
    edge: InboundEdge,
    leg: Leg,
    rtp: RtpSession,
    answer: sip.Answer | sip.SessionDescription,
    codec: str,
    number: str,
) -> None:
    """The call is set up: its media, then call.arrived."""
    leg.rtp = rtp
    edge.run(leg, leg.core.media_ready(rtp.port, answer, edge.now()))
    invite, route, call = leg.core.invite, leg.route, leg.call
    assert invite is not None and route is not None
    from_uri, from_name = _caller(invite)
    edge.emit(
        [
            CallArrived(
                tenant_id=route.tenant_id,
                call_id=call.call_id,
                from_uri=from_uri,
                from_name=from_name,
                to_e164=number,
                number_id=route.number_id,
                flow_id=route.flow_id,
                queue_id=route.queue_id,
                codec=codec,
            )
        ]
    )


async def play_unrouted(edge: InboundEdge, leg: Leg, number: str) -> None:
    """A number routed nowhere: the configured message, then hang up; the contact ends `unrouted`."""
    assert leg.route is not None
    log.info(
        "call_unrouted",
        contact_id=str(leg.call.call_id),
        number=number,
        tenant_id=str(leg.route.tenant_id),
    )
    edge.answer(leg)
    try:
        message = await edge.prompts.text(edge.config.unrouted_message)
    except PromptError as exc:
        log.warning("unrouted_message_unavailable", error=str(exc))
        edge.hangup(leg, UNROUTED)
        return
    if leg.call.state is CallState.ENDED:
        return  # the caller hung up while the prompt was rendered
    leg.call.hangup_after_play = True
    if leg.rtp is None:
        edge.hangup(leg, UNROUTED)
        return
    # The RTP tick that finishes the message asks for the hang-up (RtpSession.on_hangup_requested).
    leg.rtp.on_hangup_requested = lambda: edge.hangup(leg, UNROUTED)
    leg.call.play(message, play_id=None, now=edge.now())


def refused(
    edge: InboundEdge, route: NumberRoute, invite: sip.SipRequest, number: str, status: int, cause: str
) -> None:
    """A call admitted by the trunk checks and then turned away still gets its contact record."""
    call_id = uuid.uuid4()
    log.info("call_refused", contact_id=str(call_id), number=number, status=status, cause=cause)
    from_uri, from_name = _caller(invite)
    edge.emit(
        [
            CallRefused(
                tenant_id=route.tenant_id,
                call_id=call_id,
                from_uri=from_uri,
                from_name=from_name,
                to_e164=number,
                number_id=route.number_id,
                status=status,
                cause=cause,
            )
        ]
    )


def _caller(invite: sip.SipRequest) -> tuple[str, str]:
    """The caller's URI and display name (at most 100 characters) from From; empty when it does not parse."""
    try:
        from_ = invite.from_
        return from_.uri, (from_.display_name or "")[:100]
    except sip.SipParseError:
        return "", ""
