"""WebRTC leg signalling shared by the sockets on `/v1/ws` that own legs by a name (an agent's socket: its
agent id; a supervisor's: `supervisor:<account>`): `offer` / `answer` / `ice` to the media worker (an
`offer` naming one of the socket's legs is that leg's ICE restart), and media's `WebRtcSignal`s for the
owner's legs back to the browser."""

from __future__ import annotations

import uuid
from typing import Any

from services.kernel.events import (
    MediaWebRtcAnswer,
    MediaWebRtcIce,
    MediaWebRtcOffer,
    MediaWebRtcRestart,
    WebRtcSignal,
)
from services.kernel.ids import new_id

from .signalling_base import Bad, Socket

__all__ = ["LEG_TYPES", "LegSocket"]

LEG_TYPES = frozenset(("offer", "answer", "ice"))


class LegSocket(Socket):
    """A socket whose legs are media's legs of `owner` in `tenant_id` (set by the subclass)."""

    owner: str
    tenant_id: uuid.UUID
    legs: set[uuid.UUID]
    # An agent's legs outlive its socket (the desk reconnects while the call goes on), so a new socket may
    # restart ICE on a leg an earlier one offered: media checks the leg is this owner's. A supervisor's legs
    # end with their socket.
    legs_outlive_socket = False

    async def leg_message(self, kind: str, body: Any, ref: str | None) -> None:
        tenant, owner = self.tenant_id, self.owner
        if kind == "offer" and getattr(body, "leg_id", None) is not None:
            await self._restart(body.leg_id, body.sdp, ref)
            return
        if kind == "offer":
            cap = self.state.settings.webrtc_legs_per_socket
            if len(self.legs) >= cap:
                raise Bad("limit", f"at most {cap} WebRTC legs at once on one connection; hang one up first")
            leg_id = new_id()
            self.legs.add(leg_id)
            try:
                data = await self.command(
                    MediaWebRtcOffer(
                        tenant_id=tenant,
                        leg_id=leg_id,
                        agent_id=owner,
                        sdp=body.sdp,
                        call_id=body.call_id,
                        contact_id=getattr(body, "contact_id", None),
                    )
                )
            except Bad:
                self.legs.discard(leg_id)
                raise
            sdp = data.get("sdp")
            if not isinstance(sdp, str):
                raise Bad("media_error", "the media service answered without an SDP answer")
            extra = {"call_id": str(body.call_id)} if body.call_id else {}
            await self.send("answer", leg_id=str(leg_id), sdp=sdp, **extra, **({"ref": ref} if ref else {}))
            return
        if body.leg_id not in self.legs:
            raise Bad("unknown_leg", "this session has no leg with that id")
        if kind == "answer":
            await self.command(
                MediaWebRtcAnswer(tenant_id=tenant, leg_id=body.leg_id, agent_id=owner, sdp=body.sdp)
            )
        else:
            await self.command(
                MediaWebRtcIce(
                    tenant_id=tenant,
                    leg_id=body.leg_id,
                    agent_id=owner,
                    candidate=body.candidate,
                    sdp_mid=body.sdp_mid,
                    sdp_mline_index=body.sdp_mline_index,
                )
            )

    async def _restart(self, leg_id: uuid.UUID, sdp: str, ref: str | None) -> None:
        """An ICE restart of a live leg (docs/agent-protocol.md): the worker holding it answers (`forbidden`
        for another owner's leg; no worker answers for a leg that is gone: `media_timeout`)."""
        if leg_id not in self.legs and not self.legs_outlive_socket:
            raise Bad("unknown_leg", "this session has no leg with that id")
        data = await self.command(
            MediaWebRtcRestart(tenant_id=self.tenant_id, leg_id=leg_id, agent_id=self.owner, sdp=sdp)
        )
        answer = data.get("sdp")
        if not isinstance(answer, str):
            raise Bad("media_error", "the media service answered without an SDP answer")
        self.legs.add(leg_id)  # this socket signals it from now on (its trickled candidates)
        await self.send("answer", leg_id=str(leg_id), sdp=answer, **({"ref": ref} if ref else {}))

    async def on_signal(self, signal: WebRtcSignal) -> None:
        # Decoded by Bus.listen on this tenant's subjects (payload tenant checked there).
        if signal.agent_id != self.owner or signal.tenant_id != self.tenant_id:
            return
        if signal.kind == "offer":
            self.legs.add(signal.leg_id)
        elif signal.kind == "ended":
            self.legs.discard(signal.leg_id)  # no longer counts against the socket's cap
        fields: dict[str, Any] = {"leg_id": str(signal.leg_id)}
        if signal.sdp is not None:
            fields["sdp"] = signal.sdp
        if signal.state is not None:
            fields["state"] = signal.state
        if signal.call_id is not None:
            fields["call_id"] = str(signal.call_id)
        await self.send(signal.kind, **fields)
