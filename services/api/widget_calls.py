"""A web caller on the agents' websocket: the click-to-call widget's session (sdk/js/widget.js).

The caller holds a widget token (`POST /v1/widget/token` with the tenant's public key, services/api/widget.py)
that names one queue. On `/v1/ws` it may only: `call {sdp}` (its WebRTC offer: a media worker answers and the
leg becomes a call), `ice`, `hangup` and `ping`. Once its leg is connected the API announces the call as an
inbound `call.arrived` with the token's queue, so the contact coordinator takes it exactly like a phone call
routed straight to a queue: music, in line, offered to an agent, bridged. Pushed to the caller: `answer`,
`state`/`ended` of its leg, `position {position, expected_wait_s}` while it waits and `answered` when an
agent takes it. A web caller cannot come back to its call: when its socket closes, the call ends.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from services.kernel import events as ev
from services.kernel.db import tenant_tx
from services.kernel.ids import new_id

from .queries import widget as sql
from .signalling_base import Bad, Socket
from .tokens import WidgetClaims

__all__ = ["WidgetCaller", "widget_agent_id"]


def widget_agent_id(claims: WidgetClaims) -> str:
    """How media knows the caller's leg: the signalling owner, like an agent id for an agent's leg. It names
    the widget key too: media counts each key's web calls against the key's own limit."""
    return f"widget:{claims.widget_key_id}:{claims.session_id}"


class WidgetCaller(Socket):
    def __init__(self, socket: Any, state: Any, claims: WidgetClaims) -> None:
        super().__init__(socket, state)
        self.claims = claims
        self.owner = widget_agent_id(claims)
        self.leg_id: uuid.UUID | None = None
        self.announced = False

    @property
    def expires_at(self) -> float:
        # The token gates starting a call; a call in progress outlives it (a web call may last longer than
        # the token's few minutes, and its hang-up must still be heard).
        return self.claims.expires_at if self.leg_id is None else float("inf")

    async def handle(self, kind: str, body: Any, ref: str | None = None) -> None:
        tenant = self.claims.tenant_id
        if kind == "ping":
            await self.send("pong", **({"ref": ref} if ref else {}))
        elif kind == "call":
            if self.leg_id is not None:
                raise Bad("state", "this session already has a call", ref)
            leg_id = new_id()
            self.leg_id = leg_id
            data = await self.command(
                ev.MediaWebRtcOffer(tenant_id=tenant, leg_id=leg_id, agent_id=self.owner, sdp=body.sdp)
            )
            sdp = data.get("sdp")
            if not isinstance(sdp, str):
                raise Bad("media_error", "the media service answered without an SDP answer", ref)
            await self.send(
                "answer", leg_id=str(leg_id), sdp=sdp, call_id=str(leg_id), **({"ref": ref} if ref else {})
            )
        elif kind == "ice":
            if body.leg_id != self.leg_id:
                raise Bad("unknown_leg", "this session has no leg with that id", ref)
            await self.command(
                ev.MediaWebRtcIce(
                    tenant_id=tenant,
                    leg_id=body.leg_id,
                    agent_id=self.owner,
                    candidate=body.candidate,
                    sdp_mid=body.sdp_mid,
                    sdp_mline_index=body.sdp_mline_index,
                )
            )
        elif kind == "hangup":
            if self.leg_id is None:
                raise Bad("state", "no call to hang up", ref)
            await self.command(ev.MediaHangup(tenant_id=tenant, call_id=self.leg_id, cause="caller_hangup"))
            await self.send("ack", ref=ref)

    # Pushed events come decoded from Bus.listen on this tenant's subjects (payload tenant checked there).

    async def on_signal(self, signal: ev.WebRtcSignal) -> None:
        if signal.agent_id != self.owner or signal.leg_id != self.leg_id:
            return
        if signal.kind == "state" and signal.state == "connected" and not self.announced:
            self.announced = True
            await self.announce()
        fields: dict[str, Any] = {"leg_id": str(signal.leg_id)}
        if signal.state is not None:
            fields["state"] = signal.state
        await self.send(signal.kind, **fields)

    async def announce(self) -> None:
        """The web caller is up: a call arrives for the token's queue (the coordinator answers and queues it),
        or for the key's flow when it has one (the coordinator runs it in the IVR; the keypad's digits drive
        its menus)."""
        assert self.leg_id is not None
        async with tenant_tx(self.state.db(), self.claims.tenant_id, readonly=True) as conn:
            flow_id = await sql.flow_of(conn, self.claims.widget_key_id)
        arrived = ev.CallArrived(
            tenant_id=self.claims.tenant_id,
            id=uuid.uuid5(self.leg_id, "arrived"),
            call_id=self.leg_id,
            from_uri="",
            from_name="Web caller",
            queue_id=self.claims.queues[0],
            flow_id=flow_id,
            codec="webrtc",
            ts=time.time(),
        )
        await self.bus.publish(arrived)

    async def on_contact(self, change: ev.ContactStateChanged) -> None:
        """An agent took the call (the coordinator bridged it): `answered`, so the page stops showing a place
        in line."""
        if change.call_id == self.leg_id and change.new == "connected":
            await self.send("answered", leg_id=str(self.leg_id))

    async def hang_up_if_calling(self) -> None:
        """The page went away (the socket closed): a web caller cannot come back to its call, so it ends."""
        if self.leg_id is not None and self.state.bus is not None:
            try:
                await self.command(
                    ev.MediaHangup(tenant_id=self.claims.tenant_id, call_id=self.leg_id, cause="caller_left")
                )
            except Bad:
                pass  # already ended, or media is gone

    async def on_position(self, event: ev.ContactQueued | ev.ContactPositionChanged) -> None:
        """Its place in line: when it joins the line (routing tells only changes after that) and as it moves."""
        if event.call_id == self.leg_id:
            await self.send("position", position=event.position, expected_wait_s=event.expected_wait_s)
