"""Outbound calls (`originate`) for the SIP edge: the INVITE towards a tenant's trunk over UDP or TCP,
one retry answering a 401/407 digest challenge with the trunk's stored HA1, and the final response.

These functions take the edge (edge.py's SipEdge) as their first argument, typed by the narrow
`OutboundEdge` protocol below: what an outbound call needs of it, public members only.
"""

from __future__ import annotations

import ipaddress
import re
import time
import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol

from services.kernel.events import CallArrived
from services.kernel.slots import tenant_slot
from services.media import sip
from services.media.ua.call import Call
from services.media.ua.leg import ALLOW, Leg
from services.media.ua.trunk_auth import answer_challenge

if TYPE_CHECKING:
    from services.kernel.messages import Event
    from services.kernel.slots import Slots
    from services.media.rtp.session import RtpSession
    from services.media.ua.leg import EdgeConfig
    from services.media.ua.store import Store, Trunk
    from services.media.ua.transport import Peer, SipTransport

__all__ = ["OutboundEdge", "originate", "originate_response", "parse_direct"]


class OutboundEdge(Protocol):
    """What an outbound call needs of the SIP edge."""

    config: EdgeConfig
    address: sip.LocalAddress
    layer: sip.TransactionLayer
    dialogs: sip.DialogTable
    legs: dict[uuid.UUID, Leg]
    by_client: dict[sip.TransactionKey, Leg]
    by_dialog: dict[sip.DialogId, Leg]
    slots: Slots
    store: Store
    transport: SipTransport

    def emit(self, events: list[Event]) -> None: ...
    def state_changed(self, leg: Leg) -> None: ...
    def now(self) -> float: ...
    def carry_out(self, actions: list[sip.Action]) -> None: ...
    def arm(self) -> None: ...
    def local(self, peer: Peer) -> sip.LocalAddress: ...
    def contact(self, peer: Peer) -> str: ...
    def open_rtp(self, leg: Leg, port: int | None = None) -> Awaitable[RtpSession | None]: ...
    def apply_media(self, leg: Leg, media: sip.NegotiatedMedia) -> None: ...
    def send_ack(self, leg: Leg, response: sip.SipResponse) -> None: ...
    def leg_started(self, leg: Leg) -> None: ...
    def hangup(self, leg: Leg, cause: str = "normal_clearing") -> None: ...
    def finish(self, leg: Leg, cause: str, sip_status: int | None = None) -> None: ...


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
    leg = Leg(call=call, peer=peer, outbound=True, reliable=peer[0] == "tcp", trunk=trunk)
    rtp = await edge.open_rtp(leg)
    if rtp is None:
        return "no media port"
    leg.rtp = rtp
    offer = sip.create_offer(
        local_address=edge.config.host, local_port=rtp.port, session_id=leg.session_id, session_version=1
    )
    leg.pending_offer = offer
    number = user if direct is not None else (to if to.startswith("+") else f"+{to}")
    leg.out_number = number
    leg.out_from = f"<sip:{caller_id or 'anonymous'}@{edge.config.host}>;tag={sip.new_tag()}"
    leg.out_call_id = sip.new_call_id(edge.config.host)
    edge.legs[call_id] = leg
    edge.leg_started(leg)
    invite = send_invite(edge, leg, cseq=1)
    edge.emit(
        [
            CallArrived(
                tenant_id=tenant_id,
                call_id=call_id,
                direction="outbound",
                from_uri=str(invite.headers.get("From")),
                to_e164=number,
            )
        ]
    )
    edge.arm()
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


def send_invite(
    edge: OutboundEdge, leg: Leg, *, cseq: int, auth: tuple[str, str] | None = None
) -> sip.SipRequest:
    """The outbound INVITE (again with credentials after a challenge: same dialog ids, next CSeq)."""
    assert leg.pending_offer is not None
    host, port = leg.peer[1], leg.peer[2]
    invite = sip.build_request(
        "INVITE",
        f"sip:{leg.out_number}@{host}:{port}" + (";transport=tcp" if leg.reliable else ""),
        via=edge.local(leg.peer).via(sip.new_branch()),
        from_=leg.out_from,
        to=f"<sip:{leg.out_number}@{host}>",
        call_id=leg.out_call_id,
        cseq=cseq,
        contact=edge.contact(leg.peer),
        headers=[("Allow", ALLOW), *([auth] if auth else [])],
        body=bytes(leg.pending_offer),
        content_type="application/sdp",
    )
    leg.invite = invite
    key, actions = edge.layer.send_request(invite, edge.now(), peer=leg.peer, reliable=leg.reliable)
    edge.by_client[key] = leg
    edge.carry_out(actions)
    return invite


def retry_with_credentials(edge: OutboundEdge, leg: Leg, response: sip.SipResponse) -> bool:
    """Answer a trunk's 401/407 once with the trunk's digest credentials."""
    if leg.auth_attempted or leg.trunk is None or leg.invite is None:
        return False
    leg.auth_attempted = True
    name, answer_as = (
        ("WWW-Authenticate", "Authorization")
        if response.status == 401
        else ("Proxy-Authenticate", "Proxy-Authorization")
    )
    value = answer_challenge(
        list(response.headers.get_all(name)),
        leg.trunk,
        method="INVITE",
        uri=leg.invite.uri,
        cnonce=uuid.uuid4().hex[:16],
    )
    if value is None:
        return False
    send_invite(edge, leg, cseq=leg.invite.cseq.number + 1, auth=(answer_as, value))
    return True


def originate_response(edge: OutboundEdge, leg: Leg, response: sip.SipResponse) -> None:
    assert leg.invite is not None
    if response.status < 200:
        if response.status > 100 and leg.dialog is None:
            try:
                leg.dialog = sip.Dialog.from_uac(leg.invite, response, address=edge.address)
            except sip.DialogError:
                pass
        return
    if response.status in (401, 407) and retry_with_credentials(edge, leg, response):
        return
    if response.status >= 300:
        edge.finish(leg, "rejected", response.status)
        return
    try:
        dialog = sip.Dialog.from_uac(leg.invite, response, address=edge.address)
    except sip.DialogError:
        edge.finish(leg, "error", response.status)
        return
    if leg.dialog is not None:
        edge.dialogs.remove(leg.dialog.id)
    leg.dialog = dialog
    edge.dialogs.add(dialog)
    edge.by_dialog[dialog.id] = leg
    edge.send_ack(leg, response)
    media: sip.NegotiatedMedia | sip.Rejection | None = None
    if leg.pending_offer is not None and response.body:
        try:
            media = sip.accept_answer(leg.pending_offer, sip.parse_sdp(response.body))
        except sip.SipParseError:
            media = None
    leg.pending_offer = None
    if not isinstance(media, sip.NegotiatedMedia):
        edge.hangup(leg, "media_rejected")
        return
    edge.apply_media(leg, media)
    leg.final_sent = True
    edge.emit(leg.call.answered(edge.now()))
    edge.state_changed(leg)
