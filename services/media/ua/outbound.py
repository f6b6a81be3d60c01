"""Outbound calls (`originate`) for the SIP edge: the checks (number, trunk, capacity, the tenant's call
slot), the TCP connection and the RTP sockets, then the leg's dialog core (ua/dialog_core.py) sends the
INVITE and decides on its responses (one retry answering a 401/407 with the trunk's stored HA1).

These functions take the edge (edge.py's SipEdge) as their first argument, typed by the narrow
`OutboundEdge` protocol below: what an outbound call needs of it, public members only.
"""

from __future__ import annotations

import ipaddress
import random
import re
import time
import uuid
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Protocol

from services.kernel.events import CallArrived
from services.kernel.slots import tenant_slot
from services.media import sip
from services.media.ua.call import Call
from services.media.ua.dialog_core import DialogCore, OutboundTarget
from services.media.ua.leg import Leg

if TYPE_CHECKING:
    from services.kernel.messages import Event
    from services.kernel.slots import Slots
    from services.media.rtp.session import RtpSession
    from services.media.ua.dialog_core import Action, LegConfig
    from services.media.ua.leg import EdgeConfig
    from services.media.ua.store import Store, Trunk
    from services.media.ua.transport import Peer, SipTransport

__all__ = ["OutboundEdge", "originate", "parse_direct"]


class OutboundEdge(Protocol):
    """What an outbound call needs of the SIP edge."""

    config: EdgeConfig
    legs: dict[uuid.UUID, Leg]
    slots: Slots
    store: Store
    transport: SipTransport
    leg_config: LegConfig

    def emit(self, events: list[Event]) -> None: ...
    def now(self) -> float: ...
    def local(self, peer: Peer) -> sip.LocalAddress: ...
    def contact(self, peer: Peer) -> str: ...
    def open_rtp(self, leg: Leg, port: int | None = None) -> Awaitable[RtpSession | None]: ...
    def leg_started(self, leg: Leg) -> None: ...
    def run(self, leg: Leg, actions: Sequence[Action], peer: Peer | None = None) -> None: ...


_E164 = re.compile(r"\+?[1-9][0-9]{2,14}")


async def originate(
    edge: OutboundEdge,
    *,
    call_id: uuid.UUID,
    tenant_id: uuid.UUID,
    to: str,
    caller_id: str,
    trunk_name: str | None,
) -> str | None:
    """Start an outbound call to an E.164 number through the tenant's trunk, or straight to a `sip:` URI
    (an agent's softphone or desk phone at a static address, over UDP); returns an error text or None."""
    trunk = None
    direct = parse_direct(to) if to.lower().startswith("sip:") else None
    if to.lower().startswith("sip:") and direct is None:
        return f"cannot dial {to[:80]!r}: a sip: URI needs a user and an IP address (sip:user@1.2.3.4[:port])"
    if direct is None and not _E164.fullmatch(to):
        return f"cannot dial {to[:80]!r}: give an E.164 number or a sip: URI"
    if direct is None:
        trunks = await edge.store.trunks(tenant_id)
        candidates = [t for t in trunks if t.outbound_host and (trunk_name is None or t.name == trunk_name)]
        if not candidates:
            return "no trunk with an outbound host"
        trunk = candidates[0]
    if len(edge.legs) >= edge.config.max_calls:
        return "media capacity reached"
    slot = tenant_slot(tenant_id)
    if not await edge.slots.acquire(slot, await edge.store.call_limit(tenant_id)):
        return "the tenant's concurrent-call limit is reached"
    error: str | None = "not placed"
    try:
        error = await _place(edge, call_id, tenant_id, to, caller_id, trunk, direct)
    finally:
        if error is not None and call_id not in edge.legs:
            edge.slots.release(slot)  # no leg holds it (a leg gives it back when it ends)
    return error


async def _place(
    edge: OutboundEdge,
    call_id: uuid.UUID,
    tenant_id: uuid.UUID,
    to: str,
    caller_id: str,
    trunk: Trunk | None,
    direct: tuple[str, str, int] | None,
) -> str | None:
    """The rest of `originate` once the tenant's slot is held."""
    call = Call(call_id=call_id, tenant_id=tenant_id, created_at=time.time())
    if direct is not None:
        user, host, port = direct
    else:
        assert trunk is not None
        user, host, port = "", trunk.outbound_host or "", trunk.outbound_port or 5060
    peer: Peer = ("udp", host, port)
    if trunk is not None and trunk.outbound_transport == "tcp":
        try:
            peer = await edge.transport.connect_tcp(host, port)
        except (OSError, TimeoutError) as exc:
            return f"cannot connect to the trunk over TCP: {exc}"
    number = user if direct is not None else (to if to.startswith("+") else f"+{to}")
    config = edge.config
    dialog = DialogCore(
        call,
        edge.leg_config,
        outbound=True,
        reliable=peer[0] == "tcp",
        contact=edge.contact(peer),
        address=edge.local(peer),
        session_id=random.getrandbits(31),
        to_tag=sip.new_tag(),
        target=OutboundTarget(
            number=number,
            host=host,
            port=port,
            from_=f"<sip:{caller_id or 'anonymous'}@{config.host}>;tag={sip.new_tag()}",
            call_id=sip.new_call_id(config.host),
        ),
        trunk=trunk,
    )
    leg = Leg(call=call, peer=peer, core=dialog)
    rtp = await edge.open_rtp(leg)
    if rtp is None:
        return "no media port"
    leg.rtp = rtp
    offer = sip.create_offer(
        local_address=config.host, local_port=rtp.port, session_id=dialog.session_id, session_version=1
    )
    edge.legs[call_id] = leg
    edge.leg_started(leg)
    edge.run(leg, dialog.start(offer, rtp.port, branch=sip.new_branch()))
    assert dialog.invite is not None
    edge.emit(
        [
            CallArrived(
                tenant_id=tenant_id,
                call_id=call_id,
                direction="outbound",
                from_uri=str(dialog.invite.headers.get("From")),
                to_e164=number,
            )
        ]
    )
    return None


def parse_direct(uri: str) -> tuple[str, str, int] | None:
    """(user, host, port) of `sip:user@host[:port][;params]`, or None when it is not that."""
    try:
        parsed = sip.parse_uri(uri)
    except sip.SipParseError:
        return None
    if not isinstance(parsed, sip.SipUri) or not parsed.user or parsed.scheme.lower() != "sip":
        return None
    try:
        ipaddress.IPv4Address(parsed.host)
    except ValueError:
        return None  # no DNS in the media edge yet (and an IPv4 edge): a static IPv4 address
    return parsed.user, parsed.host, parsed.port or 5060
