# Our own media path on a WebRTC leg (issue 21 item 2). aiortc keeps ICE (with RFC 7675 consent
# freshness, which is STUN and never passes through here) and the DTLS handshake (and the data channel
# over it); once DTLS is connected, SRTP and SRTCP are ours: the pylibsrtp sessions aiortc keyed from the
# handshake's exporter (RFC 5764 4.2) protect and unprotect, services.media.rtp parses, counts and
# reorders (ReceiverStats, JitterBuffer), G.711 by table and Opus through libopus at 8 kHz (webrtc/opus.py), all on the
# worker's one 20 ms clock. aiortc's own per-packet Python (RTCRtpReceiver and its jitter buffer,
# RTCRtpSender and its encoder queue) never sees a packet.
#
# The hooks are instance attributes, pinned to the aiortc/aioice versions dtmf_patch checks:
#   - each aioice StunProtocol's socket: read on the worker's 20 ms tick (rtp/tick_reader.py, the
#     transport's own reading paused), SRTP/SRTCP (first octet 128..191, RFC 7983) straight to `receive`
#     with its arrival time, without aioice's STUN parse; STUN and DTLS go on to the protocol's
#     datagram_received (aioice, and through Connection.data_received aiortc's queue) as before, up to
#     20 ms later, which consent checks (0.5 s timeout) and the data channel tolerate. A transport that is
#     not a plain UDP socket (TURN) keeps asyncio's reading, its datagram_received hooked instead;
#   - the IceLink's (webrtc/ice.py) or aioice Connection's data_received: SRTP that still comes this way
#     (the first datagrams on a Connection an ICE restart brought) reaches us, and we take its sockets;
#   - RTCRtpSender._send_rtcp and RTCRtpReceiver._send_rtcp: silenced (their SRs and RRs would count none
#     of our packets); our RTCP goes instead.
# The sessions are aiortc's objects, not copies: one SRTP stream state per SSRC, so a packet aiortc might
# still protect can never reuse a keystream index of ours.
from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pylibsrtp

from services.media.rtp.concealment import Concealer
from services.media.rtp.g711 import G711
from services.media.rtp.jitter_buffer import FrameKind, JitterBuffer
from services.media.rtp.packet import RtpError, RtpPacket, is_rtcp, plain_rtp
from services.media.rtp.reports import LegQuality, compound_report, stream_quality, take_reports
from services.media.rtp.rtcp import RtcpError, parse_compound
from services.media.rtp.stats import ReceiverStats, SenderStats
from services.media.rtp.telephone_event import TelephoneEventError, TelephoneEventReceiver, digit_packets
from services.media.rtp.tick_reader import MAX_DATAGRAM, TickReader
from services.media.webrtc.opus import OpusDecoder, OpusEncoder, OpusError, packet_samples
from services.media.webrtc.srtp_direct import DirectSrtp

__all__ = ["MediaCounters", "SrtpMedia", "SrtpMediaError"]

Samples = npt.NDArray[np.int16]
RATE = 8000  # the worker's side of the leg: 20 ms frames of 160 samples
FRAME = 160
OPUS_CLOCK = 48000
RTCP_INTERVAL = 2.0


class SrtpMediaError(RuntimeError):
    """The leg's DTLS transport is not in a state our path can take over; the message says why."""


@dataclass(slots=True)
class MediaCounters:
    """What the path did with what arrived, for tests, quality and the benchmark."""

    srtp_rejected: int = 0  # unprotect failed: tampered, replayed or not keyed for this leg
    malformed: int = 0  # authenticated but not RTP/RTCP we can parse
    rtp_received: int = 0
    rtcp_received: int = 0
    rtp_sent: int = 0
    rtcp_sent: int = 0


@dataclass(slots=True)
class _PendingEvent:
    at: float
    marker: bool
    timestamp: int
    payload: bytes


class SrtpMedia:
    """The media of one connected leg. `codec` is "PCMU", "PCMA" or "opus" with its payload type;
    `te_pt` the negotiated telephone-event (at the codec's clock rate). `tick(now)` runs on the worker's
    MediaClock: it plays one frame out of the jitter buffer to `on_audio` and sends what `send` queued
    since the last tick (silence when nothing came), so the RTP clock follows the one clock that also
    drives the other leg of the bridge. The worker's clock calls the two halves, `play` and `transmit`,
    in two passes over all legs (rtp/session.py MediaClock)."""

    def __init__(
        self,
        *,
        dtls: Any,
        ssrc: int,
        codec: str,
        payload_type: int,
        te_pt: int | None,
        on_audio: Callable[[Samples], None],
        on_digit: Callable[[str], None],
        on_payload: Callable[[bytes], None] | None = None,
        reader: TickReader | None = None,
        jitter_frames: int = 1,
        opus_bitrate: int = 32000,
        opus_complexity: int = 1,
        cname: str = "switchboard",
    ) -> None:
        self.dtls = dtls
        self.ssrc = ssrc
        self.codec = codec
        self.payload_type = payload_type
        self.te_pt = te_pt
        self.on_audio = on_audio
        self.on_digit = on_digit
        # G.711 legs: each played payload goes here undecoded instead of to `on_audio` (the owner decodes
        # only if it needs samples: bridging.Bridge carries same-law payloads as they are).
        self.on_payload = on_payload if codec in ("PCMU", "PCMA") else None
        # Whoever ticks this leg drains it (the worker's MediaClock, or the leg's own timer); None:
        # aioice's sockets stay on the event loop, hooked (tests of the path alone).
        self.reader = reader
        self.cname = cname
        self.law: G711 | None = {"PCMU": G711.PCMU, "PCMA": G711.PCMA}.get(codec)
        self.encoder: OpusEncoder | None = None
        self.decoder: OpusDecoder | None = None
        if self.law is None:
            self.encoder = OpusEncoder(RATE, bitrate=opus_bitrate, complexity=opus_complexity)
            self.decoder = OpusDecoder(RATE)
        # Decoded Opus not played yet: a 40 or 60 ms packet plays over two or three ticks.
        self._held: Samples = np.zeros(0, np.int16)
        self.clock_rate = RATE if self.law is not None else OPUS_CLOCK
        self.ts_step = FRAME if self.law is not None else OPUS_CLOCK // 50
        # Starts at `jitter_frames` and follows the measured jitter (down to a few ms on a quiet network),
        # but never past two frames more: the SIP side's own buffer follows, and the whole leg must stay
        # inside the 40 ms delay budget (a burst from a starved sender is cheaper concealed than delayed
        # for the rest of the call).
        delay = max(1, jitter_frames) * 0.02
        self.jitter = JitterBuffer(
            clock_rate=self.clock_rate,
            frame_samples=self.ts_step,
            max_delay=delay + 0.04,
            initial_delay=delay,
        )
        self.concealer = Concealer()
        self.rx = ReceiverStats(self.clock_rate, min_sequential=1)
        self.tx = SenderStats(self.clock_rate)
        self.events_rx = TelephoneEventReceiver()
        self.counters = MediaCounters()
        self.remote_ssrc: int | None = None
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self._outbox: list[Samples | bytes] = []
        self._events_out: list[_PendingEvent] = []
        self._next_rtcp = 0.0
        self._connection: Any = None
        # The nominated pair `_write` sends on, and its UDP socket (None: send through its transport).
        self._pair: Any = None
        self._pair_sock: socket.socket | None = None
        self._original_received: Callable[[bytes, int], None] | None = None
        # aioice protocols whose datagram_received we replaced, with the one they had of their own
        self._shortcuts: list[tuple[Any, Callable[[bytes, tuple[Any, ...]], None] | None]] = []
        # aioice protocols whose sockets the tick reads, with their transport and socket
        self._ticked: list[tuple[Any, Any, socket.socket]] = []
        self._silence = bytes([self.law.silence]) * FRAME if self.law is not None else None
        self.closed = False

    # --- taking over from aiortc ---

    def attach(self, sender: Any, receiver: Any, link: Any = None) -> None:
        """Call once the DTLS transport is connected (its SRTP sessions exist). `link`: the leg's IceLink
        (ice.py), which survives an ICE restart; without one, the transport's aioice Connection."""
        rx, tx = getattr(self.dtls, "_rx_srtp", None), getattr(self.dtls, "_tx_srtp", None)
        if self.dtls.state != "connected" or rx is None or tx is None:
            raise SrtpMediaError(f"DTLS is {self.dtls.state} with no SRTP keys: media cannot start")
        connection = link if link is not None else getattr(self.dtls.transport, "_connection", None)
        if connection is None or not hasattr(connection, "_nominated"):
            raise SrtpMediaError("aioice's connection changed: re-check webrtc/srtp_media.py")
        self._rx_srtp = DirectSrtp(rx)
        self._tx_srtp = DirectSrtp(tx)
        self._connection = connection
        self._original_received = connection.data_received
        connection.data_received = self._datagram
        self._take_sockets()

        sender._send_rtcp = self.quiet_rtcp
        receiver._send_rtcp = self.quiet_rtcp
        self._next_rtcp = asyncio.get_running_loop().time() + RTCP_INTERVAL / 2

    @staticmethod
    async def quiet_rtcp(packets: Any) -> None:
        """Stands in for aiortc's RTCP senders (their reports would count none of our packets)."""
        return None

    def quality(self) -> LegQuality:
        return stream_quality(
            self.rx, self.tx, jitter_buffer_s=self.jitter.target_delay, one_way_without_rtt_ms=20.0
        )

    def _take_sockets(self) -> None:
        """Each of aioice's sockets first tries every datagram as STUN (a parse that fails with an
        exception on every media packet) before handing it to data_received: SRTP/SRTCP goes straight to
        `receive` instead. STUN (0..3) and DTLS (20..63) still take aioice's way (RFC 7983). The sockets
        are those of the Connection under the IceLink now; after an ICE restart the first SRTP datagram
        that comes the long way (`_datagram`) takes the new Connection's."""
        current = getattr(self._connection, "connection", self._connection)  # IceLink or Connection
        for protocol in list(getattr(current, "_protocols", ())):
            if any(taken is protocol for taken, _ in self._shortcuts) or any(
                taken is protocol for taken, _, _ in self._ticked
            ):
                continue
            if not self._read_on_tick(protocol):
                self._shortcut(protocol)

    def _read_on_tick(self, protocol: Any) -> bool:
        """The protocol's socket to the tick's reader, its transport's reading paused; False for what is
        not an asyncio UDP socket transport (TURN) or when nobody drains a reader."""
        transport = getattr(protocol, "transport", None)
        sock = getattr(transport, "_sock", None)  # asyncio's selector transports keep theirs here
        if (
            self.reader is None
            or transport is None
            or not isinstance(sock, socket.socket)
            or sock.type != socket.SOCK_DGRAM
            or not hasattr(transport, "pause_reading")
            or transport.is_closing()
        ):
            return False
        transport.pause_reading()

        def datagram(data: bytes, addr: Any, arrival: float) -> None:
            if data and 127 < data[0] < 192:
                if not self.closed:
                    self.receive(data, arrival)
            else:
                protocol.datagram_received(data, addr)  # STUN to aioice, DTLS on to aiortc

        self.reader.add(sock, datagram)
        self._ticked.append((protocol, transport, sock))
        return True

    def _drop_closed_sockets(self) -> None:
        """A Connection an ICE restart replaced closes its sockets: they leave the reader."""
        assert self.reader is not None
        for entry in [e for e in self._ticked if e[1].is_closing()]:
            self._ticked.remove(entry)
            self.reader.remove(entry[2])

    def _shortcut(self, protocol: Any) -> None:
        original = protocol.datagram_received
        transport = getattr(protocol, "transport", None)
        if transport is not None and hasattr(transport, "max_size"):
            # asyncio reads each datagram into a fresh 256 KiB buffer (then shrinks it); media and
            # DTLS records fit in an MTU.
            transport.max_size = MAX_DATAGRAM
        time = asyncio.get_running_loop().time

        def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
            if data and 127 < data[0] < 192:
                if not self.closed:
                    self.receive(data, time())
            else:
                original(data, addr)

        self._shortcuts.append((protocol, vars(protocol).get("datagram_received")))
        protocol.datagram_received = datagram_received

    def detach(self) -> None:
        if self.closed:
            return
        self.closed = True
        for _protocol, transport, sock in self._ticked:
            # aioice reads its sockets again until aiortc closes them (consent, DTLS close alerts).
            if self.reader is not None:
                self.reader.remove(sock)
            transport.resume_reading()
        self._ticked.clear()
        for protocol, own in self._shortcuts:
            if own is None:
                del protocol.datagram_received  # aioice's method again, not a copy of it
            else:
                protocol.datagram_received = own
        self._shortcuts.clear()
        if self._connection is not None and self._original_received is not None:
            self._connection.data_received = self._original_received

    # --- receive (straight from the socket callback) ---

    def _datagram(self, data: bytes, component: int) -> None:
        if not 127 < data[0] < 192:
            assert self._original_received is not None
            self._original_received(data, component)  # DTLS: the handshake's and the data channel's
            return
        if self.closed:
            return
        self._take_sockets()
        self.receive(data, asyncio.get_running_loop().time())

    def receive(self, data: bytes, now: float) -> None:
        """One SRTP or SRTCP datagram. Nothing that fails authentication goes further than this."""
        rtcp = is_rtcp(data)
        try:
            plain = self._rx_srtp.unprotect_rtcp(data) if rtcp else self._rx_srtp.unprotect(data)
        except pylibsrtp.Error:
            self.counters.srtp_rejected += 1
            return
        if rtcp:
            self._on_rtcp(plain, now)
            return
        try:
            packet = RtpPacket.parse(plain)
        except RtpError:
            self.counters.malformed += 1
            return
        self.counters.rtp_received += 1
        if packet.payload_type == self.te_pt and self.te_pt is not None:
            # Browsers send events in the audio's sequence space; aiortc (dtmf_patch) on an SSRC of its
            # own, which must not read as a new source in the audio's statistics.
            if packet.ssrc == self.remote_ssrc:
                self.rx.on_packet(packet.sequence_number, packet.timestamp, now, timing=False)
            try:
                digits = self.events_rx.on_packet(packet.timestamp, packet.payload)
            except (TelephoneEventError, ValueError):
                return
            for digit in digits:
                self.on_digit(digit.digit)
            return
        if packet.payload_type != self.payload_type:
            return
        self.remote_ssrc = packet.ssrc
        self.rx.on_packet(packet.sequence_number, packet.timestamp, now)
        self.jitter.push(
            packet.sequence_number,
            packet.timestamp,
            packet.payload,
            now,
            marker=packet.marker,
            samples=len(packet.payload) if self.law is not None else self._opus_duration(packet.payload),
            ssrc=packet.ssrc,
        )

    def _on_rtcp(self, plain: bytes, now: float) -> None:
        try:
            packets = parse_compound(plain)
        except (RtcpError, ValueError):
            self.counters.malformed += 1
            return
        self.counters.rtcp_received += 1
        take_reports(packets, ssrc=self.ssrc, rx=self.rx, tx=self.tx, now=now)

    # --- the 20 ms tick ---

    def send(self, samples: Samples | bytes) -> None:
        """8 kHz int16 for the next tick, or on a G.711 leg a payload in its law, sent as it is; a frame
        that the tick has not taken yet is replaced (the bridge is ahead: sending both would add 20 ms
        for good)."""
        self._outbox.append(samples if type(samples) is bytes else np.asarray(samples, dtype=np.int16))

    def queue_digit(self, digit: str, now: float, duration: float) -> float:
        """RFC 4733 packets for `digit` on our audio SSRC and sequence space, sent by the ticks;
        returns how long they take. TelephoneEventError on a bad digit."""
        packets = digit_packets(digit, timestamp=self.ts, duration=duration, clock_rate=self.clock_rate)
        start = max(now, self._events_out[-1].at + 0.02) if self._events_out else now
        self._events_out += [
            _PendingEvent(start + p.offset, p.marker, p.timestamp, p.payload) for p in packets
        ]
        return self._events_out[-1].at - now

    def tick(self, now: float) -> None:
        self.play(now)
        self.transmit(now)

    def play(self, now: float) -> None:
        """The first half of a tick: one frame out of the jitter buffer to `on_audio` (what arrived since
        the last tick was read just before, by whoever drains `reader`)."""
        if self.closed:
            return
        if self._ticked:
            self._drop_closed_sockets()
        if self.law is None:
            self._play_opus(now)
            return
        frame = self.jitter.pop(now)
        if frame is not None and frame.kind is FrameKind.AUDIO and frame.payload:
            if self.on_payload is not None:
                self.concealer.heard_payload(frame.payload, self.law)
                self.on_payload(frame.payload)
                return
            samples = self.law.decode(frame.payload)
            self.concealer.heard(samples)
            self.on_audio(samples)
        elif frame is not None and frame.kind is FrameKind.MISSING:
            made_up = self.concealer.conceal()  # a late or lost packet: the last frame, fading
            if made_up is not None:
                self.on_audio(made_up)

    def transmit(self, now: float) -> None:
        """The second half: the frame `send` queued (or silence), or a digit's packet, and RTCP."""
        if self.closed:
            return
        out = self._outbox[-1] if self._outbox else None
        self._outbox.clear()
        if self._events_out and self._events_out[0].at <= now + 0.001:
            event = self._events_out.pop(0)
            self._send_rtp(self.te_pt or 101, event.timestamp, event.payload, now, event.marker)
        else:
            payload = self._encode(out)
            if payload is not None:
                self._send_rtp(self.payload_type, self.ts, payload, now)
        self.ts = (self.ts + self.ts_step) & 0xFFFFFFFF
        if now >= self._next_rtcp:
            self._next_rtcp = now + RTCP_INTERVAL
            self._send_rtcp(now)

    def _opus_duration(self, payload: bytes) -> int:
        """The packet's length at the RTP clock (Chromium sends 20 ms, but 10 to 60 ms are allowed);
        a packet whose header does not parse holds one frame's slot and fails to decode when played."""
        try:
            return packet_samples(payload, OPUS_CLOCK)
        except OpusError:
            return self.ts_step

    def _play_opus(self, now: float) -> None:
        """One 20 ms frame to `on_audio`. Up to three slots are taken from the jitter buffer while less
        than a frame is decoded (10 ms packets: two per tick); what a longer packet decodes beyond the
        frame is held for the next ticks, whose slots are not due yet. A missing slot is libopus's
        concealment, which continues the decoder's own signal and fades out over a long gap."""
        assert self.decoder is not None
        held = self._held
        for _ in range(3):
            frame = self.jitter.pop(now)
            if frame is None:
                break
            if frame.kind is FrameKind.AUDIO:
                try:
                    pcm = self.decoder.decode(frame.payload)
                except OpusError:
                    self.counters.malformed += 1
                    pcm = self.decoder.conceal(FRAME)
            else:
                pcm = self.decoder.conceal(FRAME)
                self.concealer.concealed += 1
            held = np.concatenate((held, pcm)) if len(held) else pcm
            if len(held) >= FRAME:
                break
        if len(held) > 6 * FRAME:
            held = held[len(held) - 6 * FRAME :]  # never more than 120 ms behind the buffer's schedule
        if len(held) < FRAME:
            self._held = held  # a 10 ms remainder waits for its second half
            return
        self._held = held[FRAME:]
        self.on_audio(held[:FRAME])

    def _encode(self, samples: Samples | bytes | None) -> bytes | None:
        if isinstance(samples, bytes):
            # A payload in our law, from a bridge that carries them as they are (only between legs of one
            # G.711 law: bridging.Bridge).
            assert self.law is not None, "a G.711 payload reached an Opus leg"
            return samples
        if self.law is not None:
            return self._silence if samples is None else self.law.encode(samples)
        assert self.encoder is not None
        if samples is None:
            samples = np.zeros(FRAME, np.int16)
        return self.encoder.encode(samples)

    # --- send ---

    def _send_rtp(
        self, payload_type: int, timestamp: int, payload: bytes, now: float, marker: bool = False
    ) -> None:
        packet = plain_rtp(payload_type, self.seq, timestamp, self.ssrc, payload, marker)
        if self._write(self._tx_srtp.protect(packet)):
            self.counters.rtp_sent += 1
            self.seq = (self.seq + 1) & 0xFFFF
            self.tx.on_sent(timestamp, len(payload), now)

    def _send_rtcp(self, now: float) -> None:
        report = compound_report(
            ssrc=self.ssrc,
            cname=self.cname,
            rx=self.rx,
            tx=self.tx,
            remote_ssrc=self.remote_ssrc,
            now=now,
            wallclock=time.time(),
        )
        if self._write(self._tx_srtp.protect_rtcp(report)):
            self.counters.rtcp_sent += 1

    def _write(self, data: bytes) -> bool:
        pair = self._connection._nominated.get(1) if self._connection is not None else None
        if pair is None:
            return False  # ICE lost or closing: aiortc's consent check ends the leg
        transport = getattr(pair.protocol, "transport", None)
        closing = getattr(transport, "is_closing", None)
        if transport is None or (closing is not None and closing()):
            return False
        if pair is not self._pair:  # the first packet, or a new pair (ICE restart, renomination)
            self._pair = pair
            sock = getattr(transport, "_sock", None)  # asyncio's selector transports keep theirs here
            self._pair_sock = (
                sock if isinstance(sock, socket.socket) and sock.type == socket.SOCK_DGRAM else None
            )
        if self._pair_sock is None:
            transport.sendto(data, pair.remote_addr)  # aioice's TURN transport (also sync)
            return True
        try:
            # The socket itself: asyncio's sendto wrapper is a third of a send's CPU. A full send buffer
            # drops the packet (real-time audio: a late packet is a lost one) where asyncio would queue it.
            self._pair_sock.sendto(data, pair.remote_addr)
        except OSError:
            return False
        return True
