"""The RTP adapter: one UDP endpoint (RTP + RTCP on the next port) per call, one shared 20 ms clock.

Symmetric RTP: the first packet's source becomes the remote address (and only that source is heard
afterwards). Received audio goes through the jitter buffer to the in-band DTMF detector; RFC 4733 events
go to the telephone-event receiver. Outgoing audio comes from the call logic one frame per tick, paced
by the loop clock on an absolute 20 ms grid so it does not drift.

RTP is read on that clock's tick (rtp/tick_reader.py: all sockets in one batch, with the kernel's arrival
stamps), not by the event loop; only a relayed leg (SIP<->SIP, forwarded on receipt) reads through its
asyncio transport, so the relay adds no tick's wait. RTCP (one datagram in 5 s) stays on the loop.
"""

from __future__ import annotations

import asyncio
import collections
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from services.kernel.events import CallQuality
from services.kernel.log import get_logger
from services.kernel.messages import Event
from services.media.bridge.relay import RelayDirection
from services.media.dsp.dtmf import DtmfDetector
from services.media.rtp.concealment import Concealer
from services.media.rtp.g711 import G711
from services.media.rtp.jitter_buffer import FrameKind, JitterBuffer
from services.media.rtp.packet import RtpError, RtpPacket
from services.media.rtp.reports import compound_report, stream_quality, take_reports
from services.media.rtp.rtcp import RtcpError, parse_compound
from services.media.rtp.stats import ReceiverStats, SenderStats
from services.media.rtp.telephone_event import TelephoneEventError, TelephoneEventReceiver, digit_packets
from services.media.rtp.tick_reader import MAX_DATAGRAM, TickReader
from services.media.sip.sdp import is_unspecified_address
from services.media.ua.call import FRAME, Call, CallState

__all__ = ["MediaClock", "PortPool", "RtpSession"]

TICK = 0.02
RTCP_INTERVAL = 5.0
log = get_logger()

Emit = Callable[[list[Event]], None]


class PortPool:
    """Even RTP ports from [low, high); RTCP uses port + 1. Taking and releasing are O(1); a released
    port goes to the back of the queue, so it is not reused while late packets may still arrive."""

    def __init__(self, low: int, high: int) -> None:
        if low < 1024 or high <= low + 1:
            raise ValueError("the RTP port range must be above 1023 and hold at least one pair")
        self.low = low + (low % 2)
        self.high = high
        self._free: collections.deque[int] = collections.deque(range(self.low, self.high - 1, 2))
        self.in_use: set[int] = set()

    def acquire(self) -> int | None:
        if not self._free:
            return None
        port = self._free.popleft()
        self.in_use.add(port)
        return port

    def release(self, port: int) -> None:
        if port in self.in_use:
            self.in_use.remove(port)
            self._free.append(port)


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, handler: Callable[[bytes, tuple[str, int], float], None]) -> None:
        self.handler = handler
        self.time = asyncio.get_running_loop().time

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.handler(data, addr, self.time())
        except Exception:  # a bad packet must never take the endpoint down
            log.exception("rtp_packet_failed")

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable while the peer is gone: nothing to do


@dataclass(slots=True)
class _PendingDigit:
    at: float
    marker: bool
    timestamp: int
    payload: bytes


class RtpSession:
    def __init__(
        self,
        call: Call,
        *,
        host: str,
        port: int,
        emit: Emit,
        clock: MediaClock,
    ) -> None:
        self.call = call
        self.host = host
        self.port = port
        self.emit = emit
        self.clock = clock
        self.codec = G711.PCMU
        self.payload_type = 0
        self.te_pt: int | None = None
        self.remote: tuple[str, int] | None = None
        self.remote_rtcp: tuple[str, int] | None = None
        self.latched = False
        self.sending = False  # our SDP direction includes send
        self.receiving = True
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.remote_ssrc: int | None = None
        self.jitter = JitterBuffer()
        self.concealer = Concealer()
        self.rx = ReceiverStats(8000, min_sequential=1)
        self.tx = SenderStats(8000)
        self.events_rx = TelephoneEventReceiver()
        self._last_event_ts: int | None = None
        self.detector = DtmfDetector()
        self._digits_out: list[_PendingDigit] = []
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtp_sock: socket.socket | None = None
        # Whose turn it is to read the RTP socket: the clock's TickReader, or the event loop (relaying).
        self._read_on_tick = False
        self._rtcp: asyncio.DatagramTransport | None = None
        self._next_rtcp = 0.0
        self.last_rx = 0.0
        # Nothing heard (RTP or RTCP) for `media_timeout` seconds while not on hold: the peer is gone
        # without a BYE; the edge ends the call (cause media_timeout). 0: never.
        self.media_timeout = 0.0
        self.on_media_timeout: Callable[[], None] | None = None
        # RFC 4028: the caller must refresh (re-INVITE) before this; the edge moves it on each refresh.
        self.session_deadline: float | None = None
        self.on_session_expired: Callable[[], None] | None = None
        self.closed = False
        # The bridge (services/media/bridge/bridging.py): frames from the other leg to send when no prompt or
        # music plays, and where this leg's decoded audio goes.
        # A frame from the bridge is samples, or the G.711 payload itself when both legs speak this leg's
        # law (`payload_out` set: this leg hands over its payloads undecoded).
        self.bridge_in: collections.deque[npt.NDArray[np.int16] | bytes] | None = None
        self.bridge_out: Callable[[npt.NDArray[np.int16]], None] | None = None
        self.payload_out: Callable[[bytes], None] | None = None
        # Called once, from the tick, when the call core asks to hang up (the unrouted message played).
        self.on_hangup_requested: Callable[[], None] | None = None
        # The no-decode relay (a SIP<->SIP bridge): this leg's packets go to `relay_out` instead of the
        # jitter buffer; `relay_in` is the direction whose output this leg sends (its rewriter keeps one
        # continuous stream when a prompt or music of our own replaces the relayed packets).
        self.relay_out: Callable[[RtpPacket, float], None] | None = None
        self.relay_in: RelayDirection | None = None
        self.decoded_frames = 0

    @property
    def payload_law(self) -> G711:
        """The law of this leg's payloads, which a bridge can carry undecoded (bridging.Endpoint)."""
        return self.codec

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        # Our own socket object under the transport: the tick reads it while the transport's reading
        # is paused, and the transport sends on it.
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self.host, self.port))
            rtp, _ = await loop.create_datagram_endpoint(lambda: _Proto(self._on_rtp), sock=sock)
        except BaseException:
            sock.close()
            raise
        try:
            rtcp, _ = await loop.create_datagram_endpoint(
                lambda: _Proto(self._on_rtcp), local_addr=(self.host, self.port + 1)
            )
        except OSError:
            rtp.close()
            raise
        # asyncio reads each datagram into a fresh 256 KiB buffer and shrinks it: for 172-octet packets,
        # 50 a second per leg, a buffer of one jumbo datagram is plenty (longer ones are cut, and fail to
        # parse like any other garbage).
        rtp.max_size = rtcp.max_size = MAX_DATAGRAM  # type: ignore[attr-defined]
        self._rtp = rtp
        self._rtp_sock = sock
        self._rtcp = rtcp
        now = loop.time()
        self._next_rtcp = now + RTCP_INTERVAL / 2
        self.last_rx = now
        self.clock.add(self)
        self._choose_reader()

    def _choose_reader(self) -> None:
        """The tick reads the RTP socket, except while this leg relays (SIP<->SIP): the relay forwards
        each packet on receipt, and reading it on the tick would add up to 20 ms to the relayed call."""
        on_tick = self.relay_out is None
        if on_tick is self._read_on_tick or self._rtp is None or self._rtp_sock is None or self.closed:
            return
        self._read_on_tick = on_tick
        # asyncio's selector datagram transport pauses and resumes like a ReadTransport (typeshed's
        # DatagramTransport does not say so).
        if on_tick:
            self._rtp.pause_reading()  # type: ignore[attr-defined]
            self.clock.reader.add(self._rtp_sock, self._on_rtp)
        else:
            self.clock.reader.remove(self._rtp_sock)
            self._rtp.resume_reading()  # type: ignore[attr-defined]

    def configure(
        self,
        *,
        codec: G711,
        payload_type: int,
        te_pt: int | None,
        remote: tuple[str, int],
        sending: bool,
        receiving: bool,
    ) -> None:
        self.codec = codec
        self.payload_type = payload_type
        self.te_pt = te_pt
        self.sending = sending
        self.receiving = receiving
        if not self.latched and remote[1] > 0 and not is_unspecified_address(remote[0]):
            self.remote = remote
            self.remote_rtcp = (remote[0], remote[1] + 1)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.clock.remove(self)
        if self._rtp_sock is not None:
            self.clock.reader.remove(self._rtp_sock)
        if self._rtcp is not None and self.remote_rtcp is not None:
            try:
                self._rtcp.sendto(self._report(time.monotonic(), bye=True), self.remote_rtcp)
            except Exception:
                pass
        for transport in (self._rtp, self._rtcp):
            if transport is not None:
                transport.close()

    # --- receive ---

    def _on_rtp(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        """One RTP datagram and its arrival time (read on the tick, or by the loop while relaying)."""
        if self.closed:
            return
        if not self.latched:
            self.latched = True
            self.remote = addr
            if self.remote_rtcp is None or self.remote_rtcp[0] != addr[0]:
                self.remote_rtcp = (addr[0], addr[1] + 1)
        elif addr != self.remote:
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            return
        self.last_rx = now
        self.remote_ssrc = packet.ssrc
        if packet.payload_type == self.te_pt and self.te_pt is not None:
            self.rx.on_packet(packet.sequence_number, packet.timestamp, now, timing=False)
            if packet.marker and packet.timestamp != self._last_event_ts:
                # A new event (RFC 4733 2.5.1.1) whose timestamp is not after the last one: the sender
                # restarted its timeline (a new stream, replayed captures). Start over, do not drop it.
                self.events_rx = TelephoneEventReceiver()
            self._last_event_ts = packet.timestamp
            if self.relay_out is not None and self.receiving:
                self.relay_out(packet, now)
            try:
                received = self.events_rx.on_packet(packet.timestamp, packet.payload)
            except (TelephoneEventError, ValueError):
                return
            events: list[Event] = []
            for digit in received:
                events += self.call.digit(digit.digit, "rfc4733", now)
            if events:
                self.emit(events)
            return
        if packet.payload_type != self.payload_type:
            return
        self.rx.on_packet(packet.sequence_number, packet.timestamp, now)
        if self.receiving and self.relay_out is not None:
            self.relay_out(packet, now)
        elif self.receiving:
            self.jitter.push(
                packet.sequence_number,
                packet.timestamp,
                packet.payload,
                now,
                marker=packet.marker,
                samples=len(packet.payload),
                ssrc=packet.ssrc,
            )

    def _on_rtcp(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        try:
            packets = parse_compound(data)
        except (RtcpError, ValueError):
            return
        self.last_rx = now
        take_reports(packets, ssrc=self.ssrc, rx=self.rx, tx=self.tx, now=now)

    # --- send ---

    def send_digit(self, digit: str, now: float) -> None:
        """RFC 4733 digit towards the peer (if telephone-event was negotiated)."""
        if self.te_pt is None:
            return
        for p in digit_packets(digit, timestamp=self.ts):
            self._digits_out.append(_PendingDigit(now + p.offset, p.marker, p.timestamp, p.payload))

    def play(self, now: float) -> None:
        """The first half of a tick: one frame out of the jitter buffer to the in-band DTMF detector, the
        bridge and the recording. MediaClock plays every session before it ticks any, so a frame one leg
        hands to the bridge goes out on the other leg in the same tick, whichever ticks first. The clock
        has read every leg's socket just before (MediaClock._tick)."""
        self._choose_reader()  # a bridge may have started or ended a relay since the last tick
        events: list[Event] = []
        frame = self.jitter.pop(now)
        heard = None
        if frame is not None and frame.kind is FrameKind.AUDIO and frame.payload:
            # A bridged leg that negotiated RFC 4733 sends its digits as events (relayed, and detected in
            # _on_rtp): its audio goes to a person, and the detector (about 15 us a frame) would only
            # find what the events already carry. Unbridged, the call's own logic listens (prompts,
            # collection), and a gateway that negotiated events but sends tones is still understood.
            detect = self.te_pt is None or self.bridge_out is None
            if self.payload_out is not None:
                # Same law on the other leg: the payload crosses as it is; decoded only for our own use.
                self.payload_out(frame.payload)
                self.concealer.heard_payload(frame.payload, self.codec)
                if detect or self.call.recording is not None:
                    heard = self.codec.decode(frame.payload)
                    self.decoded_frames += 1
            else:
                heard = self.codec.decode(frame.payload)
                self.decoded_frames += 1
                if self.bridge_out is not None:
                    self.bridge_out(heard)
                self.concealer.heard(heard)
            if detect and heard is not None:
                for digit in self.detector.feed(heard, now):
                    events += self.call.digit(digit.digit, "inband", now)
        elif frame is not None and frame.kind is FrameKind.MISSING and self.bridge_out is not None:
            # A late or lost packet: the person on the other side hears the last frame fading, not a
            # hole. The detector and the recording get nothing made up.
            made_up = self.concealer.conceal()
            if made_up is not None:
                self.bridge_out(made_up)
        if self.call.recording is not None:
            events += self.call.heard(heard, now)
        if events:
            self.emit(events)

    def tick(self, now: float) -> None:
        """The second half: this tick's frame out (prompt, music or the bridge's), timers, RTCP."""
        events: list[Event] = []
        samples_out: npt.NDArray[np.int16] | bytes | None
        samples_out, produced = self.call.next_frame(now)
        events += produced
        if samples_out is None and self.bridge_in:
            samples_out = self.bridge_in.popleft()
        if self.relay_in is not None:
            # Relayed packets carry the stream; only our own prompt or music is sent from here.
            if samples_out is not None and self.sending and self.remote is not None:
                payload = samples_out if type(samples_out) is bytes else self.codec.encode(samples_out)
                self._send_raw(self.relay_in.rewriter.generated(self.payload_type, payload, FRAME), now)
        elif self.sending and self.remote is not None and self._rtp is not None:
            if self._digits_out and self._digits_out[0].at <= now + 0.001:
                d = self._digits_out.pop(0)
                self._send(
                    RtpPacket.plain(self.te_pt or 101, self.seq, d.timestamp, self.ssrc, d.payload, d.marker),
                    now,
                )
                if not self._digits_out:
                    self.ts = (self.ts + FRAME) & 0xFFFFFFFF
            else:
                if samples_out is None:
                    payload = bytes([self.codec.silence]) * FRAME
                elif type(samples_out) is bytes:
                    payload = samples_out  # the other leg's payload, in our law (bridging.Bridge)
                else:
                    payload = self.codec.encode(samples_out)
                self._send(RtpPacket.plain(self.payload_type, self.seq, self.ts, self.ssrc, payload), now)
            self.ts = (self.ts + FRAME) & 0xFFFFFFFF
        events += self.call.tick(now)
        self._check_inactivity(now)
        if now >= self._next_rtcp:
            self._next_rtcp = now + RTCP_INTERVAL
            if self._rtcp is not None and self.remote_rtcp is not None:
                try:
                    self._rtcp.sendto(self._report(now), self.remote_rtcp)
                except Exception:
                    pass
        if events:
            self.emit(events)
        if self.call.hangup_requested and self.on_hangup_requested is not None:
            hangup, self.on_hangup_requested = self.on_hangup_requested, None
            hangup()

    def _check_inactivity(self, now: float) -> None:
        call = self.call
        if self.session_deadline is not None and now >= self.session_deadline and self.on_session_expired:
            expired, self.on_session_expired = self.on_session_expired, None
            expired()
            return
        if call.held_by_us or call.held_by_them or call.state is not CallState.ANSWERED:
            self.last_rx = now  # a held or unanswered call may be silent; the clock restarts after it
            return
        if self.media_timeout > 0 and now - self.last_rx >= self.media_timeout and self.on_media_timeout:
            timed_out, self.on_media_timeout = self.on_media_timeout, None
            timed_out()

    def deliver_relayed(self, packet: RtpPacket, now: float) -> None:
        """A packet from the relay (already rewritten for this leg); our own prompt or music wins."""
        if self.call.playback is not None or (self.call.held_by_us and self.call.next_moh_active):
            return
        if self.sending and self.remote is not None:
            self._send_raw(packet, now)

    def _send_raw(self, packet: RtpPacket, now: float) -> None:
        if self._rtp is None or self.remote is None:
            return
        self._write(bytes(packet), self.remote)
        self.tx.on_sent(packet.timestamp, len(packet.payload), now)

    def _send(self, packet: RtpPacket, now: float) -> None:
        assert self._rtp is not None and self.remote is not None
        self._write(bytes(packet), self.remote)
        self.seq = (self.seq + 1) & 0xFFFF
        self.tx.on_sent(packet.timestamp, len(packet.payload), now)

    def _write(self, data: bytes, remote: tuple[str, int]) -> None:
        sock = self._rtp_sock
        if sock is None:
            assert self._rtp is not None
            self._rtp.sendto(data, remote)
            return
        try:
            # The socket itself, under the transport: asyncio's sendto wrapper costs a third of a send.
            # A full send buffer drops the packet (a late audio packet is a lost one) where asyncio would
            # queue it; an ICMP error from a peer that went away is nothing to act on (_Proto ignores it).
            sock.sendto(data, remote)
        except OSError:
            pass

    def _report(self, now: float, *, bye: bool = False) -> bytes:
        return compound_report(
            ssrc=self.ssrc,
            cname=f"sb-{self.call.call_id.hex[:12]}",
            rx=self.rx,
            tx=self.tx,
            remote_ssrc=self.remote_ssrc,
            now=now,
            wallclock=time.time(),
            bye=bye,
        )

    def quality(self) -> CallQuality:
        q = stream_quality(
            self.rx, self.tx, jitter_buffer_s=self.jitter.target_delay, one_way_without_rtt_ms=0.0
        )
        return CallQuality(
            tenant_id=self.call.tenant_id,
            call_id=self.call.call_id,
            mos=q.mos,
            r=q.r,
            jitter_ms=q.jitter_ms,
            loss_percent=q.loss_percent,
            rtt_ms=q.rtt_ms,
            packets_received=q.packets_received,
            packets_sent=q.packets_sent,
        )


class Ticked(Protocol):
    """A leg on the clock: an RtpSession or a WebRTC leg's session (webrtc/calls.py)."""

    call: Call

    def play(self, now: float) -> None: ...

    def tick(self, now: float) -> None: ...


class MediaClock:
    """One timer for every session: ticks on an absolute 20 ms grid of the loop clock: reads every
    session's sockets (`reader`), then two passes (`play` on every session, then `tick` on every
    session)."""

    def __init__(self) -> None:
        self.sessions: dict[int, Ticked] = {}
        self.reader = TickReader()
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0.0
        self.late_ticks = 0

    def add(self, session: Ticked) -> None:
        self.sessions[id(session)] = session
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._next = loop.time() + TICK
            self._handle = loop.call_at(self._next, self._tick)

    def remove(self, session: Ticked) -> None:
        self.sessions.pop(id(session), None)
        if not self.sessions and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        sessions = list(self.sessions.values())
        # What arrived since the last tick, into each leg's jitter buffer before any leg plays.
        try:
            self.reader.drain(now)
        except Exception:
            log.exception("rtp_read_failed")
        # Two passes: every leg plays its received frame into the bridge first, then every leg sends.
        # In one pass a frame from a leg that ticks after its partner waited a whole tick (20 ms more
        # delay in that direction, measured in media-bridge).
        for session in sessions:
            try:
                session.play(now)
            except Exception:
                log.exception("rtp_play_failed", call_id=str(session.call.call_id))
        for session in sessions:
            try:
                session.tick(now)
            except Exception:
                log.exception("rtp_tick_failed", call_id=str(session.call.call_id))
        self._next += TICK
        if self._next < now - 5 * TICK:  # far behind (a stall): skip ahead rather than burst
            self.late_ticks += 1
            self._next = now + TICK
        if self.sessions:
            self._handle = loop.call_at(self._next, self._tick)
        else:
            self._handle = None


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0
