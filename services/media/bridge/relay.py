# The bridge's per-direction relay, sans-IO: RTP packets from one leg in, packets for the other leg out.
# Same G.711 law on both sides: the payload is forwarded untouched (no decode); PCMU<->PCMA: one
# bytes.translate. Either way the header is rewritten (SSRC, sequence number, timestamp, payload type) so the
# receiving leg sees one continuous stream from one source, even when the sending side changes under it
# (re-INVITE, transfer, a new SSRC, a jump in sequence or timestamp): on a change the output continues
# from where it was, one frame later, with the marker bit set (a new talkspurt, so jitter buffers resync).
# Hold replaces the payload with music frames; mute with comfort silence (the stream keeps its timing).
from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from services.media.rtp.g711 import G711
from services.media.rtp.packet import RtpPacket, seq_diff, ts_diff

__all__ = ["CodecStats", "DirectionState", "RelayDirection", "StreamRewriter"]

Samples = npt.NDArray[np.int16]
MusicSource = Callable[[int], Samples]

# RFC 3550 A.1: a forward jump beyond this many sequence numbers is a new stream, not loss.
MAX_DROPOUT = 3000
MAX_MISORDER = 100
# A timestamp jump of more than 10 s at 8 kHz (with the sequence looking normal) is a new timeline.
MAX_TS_JUMP = 80_000


class DirectionState(enum.Enum):
    FLOWING = "flowing"
    HELD = "held"  # the receiver hears music instead
    MUTED = "muted"  # the receiver hears comfort silence


@dataclass
class CodecStats:
    """Work done per direction, so tests (and benchmarks) can prove the passthrough decodes nothing."""

    forwarded: int = 0
    translated: int = 0  # PCMU<->PCMA by table, no linear samples
    decoded: int = 0
    encoded: int = 0


class StreamRewriter:
    """Output SSRC, sequence and timestamp for one direction: continuous whatever the input does."""

    def __init__(self, ssrc: int, *, first_seq: int, first_ts: int) -> None:
        self.ssrc = ssrc & 0xFFFFFFFF
        self._next_seq = first_seq & 0xFFFF
        self._next_ts = first_ts & 0xFFFFFFFF
        self._source: int | None = None
        self._seq_offset = 0
        self._ts_offset = 0
        self._last_in_seq = 0
        self._last_in_ts = 0
        self._last_out_seq: int | None = None
        self._last_out_ts = 0
        self._last_samples = 160
        self.switches = 0

    def _is_new_source(self, packet: RtpPacket) -> bool:
        if self._source is None or packet.ssrc != self._source:
            return True
        jump = seq_diff(packet.sequence_number, self._last_in_seq)
        if jump > MAX_DROPOUT or jump < -MAX_MISORDER:
            return True
        return abs(ts_diff(packet.timestamp, self._last_in_ts)) > MAX_TS_JUMP

    def switch(self) -> None:
        """Say that the next packet starts a new source (transfer, re-INVITE) even if it looks the same."""
        self._source = None

    def rewrite(self, packet: RtpPacket, *, samples: int, payload_type: int, payload: bytes) -> RtpPacket:
        marker = packet.marker
        if self._is_new_source(packet):
            if self._last_out_seq is not None:
                self.switches += 1
                out_seq = (self._last_out_seq + 1) & 0xFFFF
                out_ts = (self._last_out_ts + self._last_samples) & 0xFFFFFFFF
                marker = True
            else:
                out_seq, out_ts = self._next_seq, self._next_ts
            self._source = packet.ssrc
            self._seq_offset = (out_seq - packet.sequence_number) & 0xFFFF
            self._ts_offset = (out_ts - packet.timestamp) & 0xFFFFFFFF
            self._last_in_seq, self._last_in_ts = packet.sequence_number, packet.timestamp
        seq = (packet.sequence_number + self._seq_offset) & 0xFFFF
        ts = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        if seq_diff(packet.sequence_number, self._last_in_seq) > 0:
            self._last_in_seq, self._last_in_ts = packet.sequence_number, packet.timestamp
        if self._last_out_seq is None or seq_diff(seq, self._last_out_seq) > 0:
            self._last_out_seq, self._last_out_ts = seq, ts
            if samples:
                self._last_samples = samples
        return RtpPacket(payload_type, seq, ts, self.ssrc, payload, marker)

    def next_position(self) -> tuple[int, int]:
        """(sequence number, timestamp) the next packet of this output stream would carry: where the
        leg's own stream continues when the relay stops."""
        if self._last_out_seq is None:
            return self._next_seq, self._next_ts
        return (self._last_out_seq + 1) & 0xFFFF, (self._last_out_ts + self._last_samples) & 0xFFFFFFFF

    def generated(self, payload_type: int, payload: bytes, samples: int) -> RtpPacket:
        """A packet made here (music, silence while the source is quiet), next in the output stream. The
        next input packet then counts as a new source, so the output stays monotonic."""
        if self._last_out_seq is None:
            seq, ts = self._next_seq, self._next_ts
        else:
            seq = (self._last_out_seq + 1) & 0xFFFF
            ts = (self._last_out_ts + self._last_samples) & 0xFFFFFFFF
        self._last_out_seq, self._last_out_ts, self._last_samples = seq, ts, samples
        self._source = None
        return RtpPacket(payload_type, seq, ts, self.ssrc, payload, False)


@dataclass
class RelayDirection:
    """Packets from the `source_law` leg to the `target_law` leg. `event_types` maps the source's
    telephone-event payload type to the target's (None: the target did not negotiate it; events are
    dropped, the adapter may play them in-band)."""

    source_law: G711
    target_law: G711
    rewriter: StreamRewriter
    event_types: tuple[int, int | None] | None = None
    music: MusicSource | None = None
    state: DirectionState = DirectionState.FLOWING
    stats: CodecStats = field(default_factory=CodecStats)

    def hold(self, music: MusicSource | None = None) -> None:
        if music is not None:
            self.music = music
        self.state = DirectionState.HELD

    def mute(self) -> None:
        self.state = DirectionState.MUTED

    def resume(self) -> None:
        self.state = DirectionState.FLOWING

    def on_packet(self, packet: RtpPacket) -> RtpPacket | None:
        """The packet to send to the target leg, or None (dropped: unknown payload type, events the target
        cannot take, or events while not flowing: digits must not leak past hold or mute)."""
        if self.event_types is not None and packet.payload_type == self.event_types[0]:
            target_pt = self.event_types[1]
            if target_pt is None or self.state is not DirectionState.FLOWING:
                return None
            self.stats.forwarded += 1
            return self.rewriter.rewrite(packet, samples=0, payload_type=target_pt, payload=packet.payload)
        if packet.payload_type != self.source_law.payload_type:
            return None
        samples = len(packet.payload)  # G.711: one octet per sample
        if self.state is DirectionState.FLOWING:
            if self.source_law is self.target_law:
                payload = packet.payload
                self.stats.forwarded += 1
            else:
                payload = self.source_law.transcode_to(self.target_law, packet.payload)
                self.stats.translated += 1
        else:
            payload = self._substitute(samples)
        return self.rewriter.rewrite(
            packet, samples=samples, payload_type=self.target_law.payload_type, payload=payload
        )

    def fill(self, samples: int = 160) -> RtpPacket:
        """A frame on the adapter's clock when the source sends nothing (it holds us, or went quiet)."""
        return self.rewriter.generated(self.target_law.payload_type, self._substitute(samples), samples)

    def _substitute(self, samples: int) -> bytes:
        if self.state is DirectionState.HELD and self.music is not None:
            self.stats.encoded += 1
            return self.target_law.encode(self.music(samples))
        return bytes([self.target_law.silence]) * samples
