"""The bridge between two legs of one worker (SIP RtpSession or WebRTC session), both ways.

Each side's decoded 20 ms frames go to the other side's small queue; the other side sends them on its own
20 ms tick whenever its call has no prompt or music of its own (so hold with music, and prompts to one
party, work on a bridged call). Bridges with a WebRTC leg carry PCM ("pcm" path). When both legs speak the
same G.711 law on our own media path (a SIP PCMU caller and a WebRTC PCMU agent), the frames cross as their
G.711 payload instead (`payload_out`): no decode and no encode per frame; a leg still decodes for what
needs samples of its own (its in-band DTMF detector, a recording of its call), and a concealed frame (a
late or lost packet) crosses as PCM. Mute drops one direction's frames (the listener hears silence), as
does hold of a WebRTC leg (its agent hears music, the other side nothing).

The recording tap writes what crosses the bridge to the spool (services/media/spool): the caller's frames
(side `a`) and the agent's (side `b`) as two channels in the caller's G.711 law, one frame per frame the
caller's side produces (its 20 ms tick), paired with the agent's latest frame.
"""

from __future__ import annotations

import collections
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from services.media.bridge.relay import CodecStats, RelayDirection, StreamRewriter
from services.media.rtp.g711 import G711
from services.media.rtp.packet import RtpPacket
from services.media.rtp.session import RtpSession
from services.media.spool import SpoolWriter
from services.media.ua.call import Call

__all__ = ["MAX_QUEUED", "Bridge", "Endpoint"]

Samples = npt.NDArray[np.int16]
# Frames waiting in one direction; beyond it the oldest go (the sender's clock runs ahead of ours). A WebRTC
# leg delivers in bursts and the other leg takes one frame per tick, so whatever a burst leaves here stays
# as delay: 2 frames bound it at 40 ms (3 measured 70-90 ms p95 WebRTC -> SIP in media-bridge).
MAX_QUEUED = 2
_SILENCE: Samples = np.zeros(160, dtype=np.int16)


# What crosses the bridge to a leg: decoded samples, or (same law on both legs) the G.711 payload itself.
Frame = Samples | bytes


class Endpoint(Protocol):
    call: Call
    bridge_in: collections.deque[Frame] | None
    bridge_out: Callable[[Samples], None] | None
    # Set by a bridge whose legs share a G.711 law (`payload_law`): the leg hands its payloads undecoded.
    payload_out: Callable[[bytes], None] | None

    @property
    def payload_law(self) -> G711 | None:
        """The G.711 law whose payloads this leg can hand over and send as they are; None: PCM only."""
        ...


@dataclass(eq=False)
class Bridge:
    a: Endpoint
    b: Endpoint
    path: str = "pcm"
    # Call ids whose audio the other side does not hear (mute).
    muted: set[uuid.UUID] = field(default_factory=set)
    law: G711 = G711.PCMU
    recorder: SpoolWriter | None = None
    recording: Any = None  # the record_start command (its segment labels) of the recording under way
    # The recording's left channel is side a, unless record_start named side b (a WebRTC caller bridged to
    # a phone, a consultation whose first agent is the WebRTC side): the named call is always on the left.
    a_left: bool = True
    # The agent's latest frame, waiting for the caller's to pair with: a payload (relay) or samples.
    _agent_frame: bytes | Samples | None = None
    # SIP<->SIP: the no-decode relay, one direction per target call id.
    directions: dict[uuid.UUID, RelayDirection] = field(default_factory=dict)
    decoded_at_join: int = 0

    @classmethod
    def relay(cls, a: RtpSession, b: RtpSession) -> Bridge:
        """Two SIP legs: payloads relayed untouched (same law) or by table (PCMU<->PCMA), never decoded."""
        same = a.codec is b.codec
        bridge = cls(a, b, path="passthrough" if same else "translate", law=a.codec)
        for src, dst in ((a, b), (b, a)):
            bridge.directions[dst.call.call_id] = RelayDirection(
                source_law=src.codec,
                target_law=dst.codec,
                rewriter=StreamRewriter(dst.ssrc, first_seq=dst.seq, first_ts=dst.ts),
                event_types=(src.te_pt, dst.te_pt) if src.te_pt is not None else None,
            )
        return bridge

    def join(self) -> None:
        if self.directions:
            self._join_relay()
            return
        self._join_pcm()

    def decoded_frames(self) -> int:
        """Frames the SIP legs decoded (jitter buffer -> linear) since the bridge joined them."""
        total = sum(s.decoded_frames for s in (self.a, self.b) if isinstance(s, RtpSession))
        return total - self.decoded_at_join

    def _join_relay(self) -> None:
        self.decoded_at_join = self.decoded_frames()
        for src, dst in ((self.a, self.b), (self.b, self.a)):
            assert isinstance(src, RtpSession) and isinstance(dst, RtpSession)
            direction = self.directions[dst.call.call_id]
            # Relayed packets continue the leg's own stream from where it is now (on a re-join after a
            # monitor, the leg has sent its own packets since the relay stopped).
            direction.rewriter = StreamRewriter(dst.ssrc, first_seq=dst.seq, first_ts=dst.ts)
            dst.relay_in = direction
            src.relay_out = self._relayer(src, dst, direction)

    def _relayer(
        self, src: RtpSession, dst: RtpSession, direction: RelayDirection
    ) -> Callable[[RtpPacket, float], None]:
        caller = src is self.a
        audio = direction.source_law.payload_type  # looked up once: an enum property costs per packet

        def relay(packet: RtpPacket, now: float) -> None:
            out = direction.on_packet(packet)
            if out is None:
                return
            dst.deliver_relayed(out, now)
            if self.recorder is not None and packet.payload_type == audio:
                payload = out.payload  # in the target's law: the caller's law when the agent spoke
                if caller:
                    payload = packet.payload  # the caller's own law, untouched
                self._tap_payload(caller, payload)

        return relay

    def _tap_payload(self, caller: bool, payload: bytes) -> None:
        assert self.recorder is not None
        if caller != self.a_left:
            self._agent_frame = payload
            return
        agent, self._agent_frame = self._agent_frame, None
        if agent is not None and type(agent) is not bytes:  # the agent's last frame came decoded
            agent = self.law.encode(agent)
        self.recorder.write(payload, agent, time.monotonic())

    def mute(self, call_id: uuid.UUID, muted: bool) -> None:
        if muted:
            self.muted.add(call_id)
        else:
            self.muted.discard(call_id)
        direction = self.directions.get(self.other(call_id).call.call_id)
        if direction is not None:
            if muted:
                direction.mute()
            else:
                direction.resume()

    def codec_stats(self) -> CodecStats:
        total = CodecStats()
        for direction in self.directions.values():
            total.forwarded += direction.stats.forwarded
            total.translated += direction.stats.translated
            total.decoded += direction.stats.decoded
            total.encoded += direction.stats.encoded
        return total

    def _join_pcm(self) -> None:
        law = self.a.payload_law
        same = law is not None and law is self.b.payload_law
        for src, dst in ((self.a, self.b), (self.b, self.a)):
            dst.bridge_in = collections.deque(maxlen=MAX_QUEUED)
            src.bridge_out = self._forwarder(src, dst)
            src.payload_out = self._payload_forwarder(src, dst, law) if same and law is not None else None

    def _forwarder(self, src: Endpoint, dst: Endpoint) -> Callable[[Samples], None]:
        call_id = src.call.call_id

        def forward(samples: Samples) -> None:
            queue = dst.bridge_in
            if queue is None:
                return
            if self.muted and call_id in self.muted:
                samples = _SILENCE  # the other side hears nothing; the recording keeps the silence
            else:
                queue.append(samples)
            if self.recorder is not None:
                self._tap(src is self.a, samples)

        return forward

    def _payload_forwarder(self, src: Endpoint, dst: Endpoint, law: G711) -> Callable[[bytes], None]:
        """The same as `_forwarder` for a payload in `law`, which both legs speak."""
        call_id = src.call.call_id
        caller = src is self.a
        silence = bytes([law.silence]) * len(_SILENCE)

        def forward(payload: bytes) -> None:
            queue = dst.bridge_in
            if queue is None:
                return
            if self.muted and call_id in self.muted:
                payload = silence
            else:
                queue.append(payload)
            if self.recorder is not None:
                self._tap_payload(caller, payload if law is self.law else law.transcode_to(self.law, payload))

        return forward

    def _tap(self, caller: bool, samples: Samples) -> None:
        # The samples go to the spool as they are; it encodes a whole chunk at once (encoding each frame
        # here was most of what recording cost a bridged WebRTC call: docs/media.md, issue 21).
        assert self.recorder is not None
        if caller != self.a_left:
            self._agent_frame = samples
            return
        agent, self._agent_frame = self._agent_frame, None
        if isinstance(agent, bytes):  # the agent's payload (same law, a relay before a monitor): octets
            self.recorder.write(self.law.encode(samples), agent, time.monotonic())
            return
        self.recorder.write_pcm(samples, agent, time.monotonic())

    def stop_recording(self) -> SpoolWriter | None:
        recorder, self.recorder, self.recording = self.recorder, None, None
        if recorder is not None:
            recorder.close()
        return recorder

    def tap(self, side: Endpoint, samples: Samples) -> None:
        """A decoded frame of `side` for the recording (used while a monitor carries the audio)."""
        if self.recorder is not None and side in (self.a, self.b):
            self._tap(side is self.a, samples)

    def separate(self) -> None:
        self.stop_recording()
        self.detach()

    def detach(self) -> None:
        """Unhook both legs and keep the recording (a monitor takes the audio over: monitor.py)."""
        for side in (self.a, self.b):
            side.bridge_in = None
            side.bridge_out = None
            side.payload_out = None
            if isinstance(side, RtpSession):
                direction = side.relay_in
                side.relay_in = None
                side.relay_out = None
                if direction is not None:
                    # The leg's own stream continues where the relayed one stopped (same SSRC).
                    side.seq, side.ts = direction.rewriter.next_position()

    def other(self, call_id: uuid.UUID) -> Endpoint:
        return self.b if self.a.call.call_id == call_id else self.a

    @property
    def call_ids(self) -> tuple[uuid.UUID, uuid.UUID]:
        return self.a.call.call_id, self.b.call.call_id
