"""WebRTC signalling between browsers (through the API's websocket) and the media worker holding a leg."""

from __future__ import annotations

import uuid
from typing import Literal

from ..messages import Command, Event

__all__ = [
    "MediaWebRtcAnswer",
    "MediaWebRtcIce",
    "MediaWebRtcOffer",
    "MediaWebRtcRestart",
    "SignalKind",
    "WebRtcSignal",
]

# WebRTC signalling between browsers (through the API's websocket /v1/ws) and the media worker that holds
# the leg. A leg is named by `leg_id`, chosen by the API per offer; `agent_id` is the token's subject.


class MediaWebRtcOffer(Command, kw_only=True, frozen=True):
    """A browser's SDP offer; the reply's data carries {"sdp": answer}."""

    service = "media"
    name = "webrtc_offer"
    leg_id: uuid.UUID
    agent_id: str
    sdp: str
    call_id: uuid.UUID | None = None
    # A leg for a contact whose call is not up yet (an agent-first callback dials the customer after the
    # accept, next to this leg): any worker takes it, and its signals name the contact.
    contact_id: uuid.UUID | None = None

    @property
    def held_by(self) -> uuid.UUID | None:
        return self.call_id  # the leg goes where the call it joins is


class MediaWebRtcAnswer(Command, kw_only=True, frozen=True):
    """A browser's SDP answer to an offer the media worker sent (outbound to the agent)."""

    service = "media"
    name = "webrtc_answer"
    leg_id: uuid.UUID
    agent_id: str
    sdp: str

    @property
    def held_by(self) -> uuid.UUID | None:
        return self.leg_id


class MediaWebRtcRestart(Command, kw_only=True, frozen=True):
    """A browser's re-offer for a live leg after `restartIce()` (new ICE credentials, same media): the
    worker restarts ICE under the same DTLS-SRTP session; the reply's data carries {"sdp": answer}."""

    service = "media"
    name = "webrtc_restart"
    leg_id: uuid.UUID
    agent_id: str
    sdp: str

    @property
    def held_by(self) -> uuid.UUID | None:
        return self.leg_id


class MediaWebRtcIce(Command, kw_only=True, frozen=True):
    """A trickled ICE candidate from the browser ("" ends them)."""

    service = "media"
    name = "webrtc_ice"
    leg_id: uuid.UUID
    agent_id: str
    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None

    @property
    def held_by(self) -> uuid.UUID | None:
        return self.leg_id


SignalKind = Literal["offer", "state", "ended"]


class WebRtcSignal(Event, kw_only=True, frozen=True):
    """Media to one agent's browser: an offer (a call for the agent), a leg's state, or its end. The API
    pushes it to that agent's websocket sessions."""

    domain = "webrtc"
    name = "signal"
    agent_id: str
    leg_id: uuid.UUID
    kind: SignalKind
    sdp: str | None = None
    state: str | None = None
    call_id: uuid.UUID | None = None  # the call the leg was offered for (its own leg id when none)
