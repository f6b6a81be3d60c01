# One WebRTC leg (an agent's browser or a widget caller) on aiortc: offer/answer, codec choice, audio in
# and out as 20 ms frames of int16 samples, digits (RFC 4733 through the pinned patch, or the data-channel
# fallback) and quality figures. DTLS-SRTP is the only transport aiortc has; `assert_dtls_srtp` checks it.
# The bridge feeds `send_audio` and receives through `on_audio`; the media worker's adapter owns the leg.
# With `WebRtcConfig.own_media` (the default under the worker: SB_MEDIA_WEBRTC_PATH=own) aiortc stops at
# ICE and DTLS: media runs on our RTP/SRTP path (srtp_media.py), ticked by the owner's clock.
from __future__ import annotations

import asyncio
import copy
import enum
import fractions
import json
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aioice import Connection
from aiortc import (
    MediaStreamTrack,
    RTCDataChannel,
    RTCDtlsTransport,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcicetransport import RTCIceParameters, candidate_from_aioice, candidate_to_aioice
from aiortc.sdp import SessionDescription, candidate_from_sdp
from av.stream import Stream

from services.media.rtp.g711 import G711
from services.media.rtp.telephone_event import TelephoneEventError, digit_code
from services.media.rtp.tick_reader import TickReader

from . import dtmf_patch, voice_patch
from .certificate import ROTATION, peer_connection
from .config import WebRtcConfig, rtc_configuration, set_host_addresses
from .ice import IceLink, IceRestartError, RemoteIce, set_consent
from .quality import LegQuality, quality_from_stats
from .srtp_media import SrtpMedia, SrtpMediaError

__all__ = ["DigitSource", "LegState", "OutboundAudio", "WebRtcError", "WebRtcLeg"]

Samples = npt.NDArray[np.int16]
AudioHandler = Callable[[Samples], None]
PTIME = 0.02
G711_RATE = 8000
OPUS_RATE = 48000
# At most this much audio waits in the outbound queue; older frames are dropped (the bridge is ahead).
MAX_QUEUED_FRAMES = 10
# With `send_on_push`, silence goes out only when no frame came this long after the frame's slot.
PUSH_GRACE = 0.01


class WebRtcError(RuntimeError):
    """Signalling the leg cannot act on (bad SDP, no common codec, wrong state); the message says why."""


class LegState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"
    CLOSED = "closed"


class DigitSource(enum.Enum):
    RFC4733 = "rfc4733"
    DATA_CHANNEL = "datachannel"


DigitHandler = Callable[[str, DigitSource], None]


class OutboundAudio(MediaStreamTrack):
    """The track aiortc sends from: 20 ms frames of mono int16 at `rate`, fed by the bridge through
    `push`; silence when nothing is queued, so the RTP clock never stops.

    Paced by its own 20 ms clock, or with `send_on_push` by the pusher's (the media worker's MediaClock):
    a pushed frame goes out at once instead of waiting up to 20 ms for this track's next slot, and silence
    only when nothing came by a slot's end (plus PUSH_GRACE)."""

    kind = "audio"

    def __init__(self, rate: int, max_queued: int = MAX_QUEUED_FRAMES, *, send_on_push: bool = False) -> None:
        super().__init__()
        self.send_on_push = send_on_push
        self._waiter: asyncio.Future[None] | None = None
        self.rate = rate
        self.frame_samples = int(rate * PTIME)
        # Frames pushed on one 20 ms clock and taken on another: the queue keeps whatever a hiccup left
        # in it, so its length bounds the delay it can add (the media worker keeps it short).
        self._frames: deque[Samples] = deque(maxlen=max_queued)
        self._pending = np.zeros(0, dtype=np.int16)
        self._start: float | None = None
        self._pts = 0
        # Set for a G.711 send codec: frames go out as encoded packets (aiortc's sender then only packs
        # them: no PyAV resampler and encoder per frame).
        self.law: G711 | None = None
        self._time_base = fractions.Fraction(1, rate)
        # Set when our own path carries the media: aiortc's sender then waits here for good (it sends
        # nothing, so its sequence numbers and SRTP indexes never meet ours).
        self._parked: asyncio.Future[None] | None = None

    def park(self) -> None:
        if self._parked is None:
            self._parked = asyncio.get_running_loop().create_future()
            self._wake()

    def set_rate(self, rate: int) -> None:
        """The negotiated codec's rate (before media flows); queued audio at the old rate is dropped."""
        if rate != self.rate:
            self.rate = rate
            self.frame_samples = int(rate * PTIME)
            self._time_base = fractions.Fraction(1, rate)
            self._frames.clear()
            self._pending = np.zeros(0, dtype=np.int16)

    def push(self, samples: Samples) -> None:
        data = np.concatenate([self._pending, np.asarray(samples, dtype=np.int16)])
        whole = len(data) // self.frame_samples * self.frame_samples
        for start in range(0, whole, self.frame_samples):
            self._frames.append(data[start : start + self.frame_samples])
        self._pending = data[whole:]
        if self._frames:
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def recv(self) -> av.AudioFrame | av.Packet[Stream]:
        if self.readyState != "live":
            raise MediaStreamError
        if self._parked is not None:
            await self._parked  # cancelled with aiortc's sender task when the connection closes
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += self.frame_samples
            due = self._start + self._pts / self.rate
            if not self.send_on_push:
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            elif not self._frames:
                loop = asyncio.get_running_loop()  # its time() is time.monotonic()
                self._waiter = loop.create_future()
                timer = loop.call_at(due + PUSH_GRACE, self._wake)
                try:
                    await self._waiter
                finally:
                    timer.cancel()
                    self._waiter = None
        samples = self._frames.popleft() if self._frames else np.zeros(self.frame_samples, np.int16)
        if self.law is not None:
            packet = av.Packet(self.law.encode(samples))
            packet.pts = self._pts
            packet.time_base = self._time_base
            return packet
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        return frame


def _opus_voice_fmtp(sdp: str, bitrate: int, *, narrowband: bool = False) -> str:
    """Ask the browser for mono voice Opus at about `bitrate` (RFC 7587 fmtp) in the SDP we send;
    any fmtp aiortc wrote for Opus is replaced. `narrowband` (our own media path, which codes from and
    decodes to 8 kHz): say so, so that the browser need not code what we would not play
    (maxplaybackrate) nor expect more than telephone band from us (sprop-maxcapturerate)."""
    if "opus/48000" not in sdp.lower():
        return sdp  # a G.711 answer (the worker's usual one): nothing to rewrite
    lines = sdp.split("\r\n")
    opus = {
        line[len("a=rtpmap:") :].split(" ", 1)[0]
        for line in lines
        if line.startswith("a=rtpmap:") and "opus/48000" in line.lower()
    }
    out = []
    for line in lines:
        if line.startswith("a=fmtp:") and line[len("a=fmtp:") :].split(" ", 1)[0] in opus:
            continue
        out.append(line)
        if line.startswith("a=rtpmap:") and line[len("a=rtpmap:") :].split(" ", 1)[0] in opus:
            pt = line[len("a=rtpmap:") :].split(" ", 1)[0]
            band = ";maxplaybackrate=8000;sprop-maxcapturerate=8000" if narrowband else ""
            out.append(
                f"a=fmtp:{pt} minptime=10;useinbandfec=1;stereo=0;sprop-stereo=0;maxaveragebitrate={bitrate}"
                + band
            )
    return "\r\n".join(out)


async def _not_on_our_path(parameters: object) -> None:
    """Stands in for RTCRtpSender.send and RTCRtpReceiver.receive on a leg whose media is ours."""


class WebRtcLeg:
    """`peer_law`: the law of the other leg when it is G.711: this leg prefers it, then the other law (so
    the bridge needs no transcoding), and takes Opus only from an offer with no G.711. None, or
    `prefer_opus`: Opus first (voice settings), G.711 when the offer has no Opus. `rate` follows the
    negotiated codec: 8 kHz frames for G.711, 48 kHz for Opus."""

    def __init__(
        self,
        config: WebRtcConfig,
        *,
        peer_law: G711 | None = None,
        prefer_opus: bool = False,
        on_audio: AudioHandler | None = None,
        on_payload: Callable[[bytes], None] | None = None,
        on_digit: DigitHandler | None = None,
        on_state: Callable[[LegState], None] | None = None,
        send_queue_frames: int = MAX_QUEUED_FRAMES,
        send_on_push: bool = False,
        ticked_by_owner: bool = False,
        reader: TickReader | None = None,
    ) -> None:
        """`ticked_by_owner`: with our own media path, the owner calls `tick(now)` every 20 ms on its
        clock (the media worker's MediaClock); otherwise the leg runs a 20 ms timer of its own.
        `reader`: the owner's TickReader, which it drains before each tick (MediaClock.reader); without
        one the leg drains a reader of its own at the start of each `play`. `on_payload`: on our media
        path with G.711, each received payload goes there undecoded instead of to `on_audio`."""
        dtmf_patch.install()
        voice_patch.install(config.opus_max_average_bitrate)
        if config.host_addresses is not None:
            set_host_addresses(config.host_addresses)
        set_consent(config.consent_interval_s, config.consent_failures)
        self.config = config
        self.peer_law = peer_law
        self.prefer_opus = prefer_opus or config.prefer_opus or peer_law is None
        # Until negotiated: the preferred codec's rate (set again from the answer or our answer).
        self.rate = OPUS_RATE if self.prefer_opus else G711_RATE
        self.on_audio = on_audio
        self.on_payload = on_payload
        self.on_digit = on_digit
        self.on_state = on_state
        self.state = LegState.NEW
        self.outbound = OutboundAudio(self.rate, send_queue_frames, send_on_push=send_on_push)
        certificate = ROTATION.current(config.dtls_certificate_lifetime_s, time.monotonic())
        self.pc = peer_connection(rtc_configuration(config), certificate)
        self.channel: RTCDataChannel | None = None
        self.received_frames = 0
        self.media: SrtpMedia | None = None
        self._ticked_by_owner = ticked_by_owner
        self._reader = reader
        self._own_reader: TickReader | None = None
        self._own_timer: asyncio.TimerHandle | None = None
        self._transceiver: RTCRtpTransceiver | None = None
        # The ICE transport's Connection, replaceable by an ICE restart (ice.py); set once negotiated.
        self.link: IceLink | None = None
        self._sent: SessionDescription | None = None  # our last restart's description (the next one's base)
        self._restarting: Connection | None = None  # our own restart offer, waiting for its answer
        self._tasks: set[asyncio.Task[None]] = set()
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._attach_channel)
        self.pc.on("connectionstatechange", self._on_connection_state)

    # signalling

    def _add_transceiver(self) -> RTCRtpTransceiver:
        if self._transceiver is None:
            transceiver = self.pc.addTransceiver(self.outbound, direction="sendrecv")
            capabilities = RTCRtpSender.getCapabilities("audio").codecs
            law = self.peer_law or G711.PCMU
            g711 = [f"audio/{law.name}", "audio/PCMA" if law is G711.PCMU else "audio/PCMU"]
            wanted = ["audio/opus", *g711] if self.prefer_opus else [*g711, "audio/opus"]
            wanted.append("audio/telephone-event")
            prefs = []
            for mime in wanted:
                prefs += [c for c in capabilities if c.mimeType.lower() == mime.lower()][:1]
            # Before setRemoteDescription: aiortc filters the offer's codecs through these.
            transceiver.setCodecPreferences(prefs)
            self._transceiver = transceiver
            dtmf_patch.set_digit_handler(transceiver.receiver, self._on_event_digit)
            # aiortc 1.16 (pinned by dtmf_patch.install) fixes its audio jitter buffer at 4 frames.
            jitter = getattr(transceiver.receiver, "_RTCRtpReceiver__jitter_buffer", None)
            if jitter is not None and hasattr(jitter, "_prefetch"):
                jitter._prefetch = self.config.jitter_frames
            voice_patch.inline_codecs(transceiver)
        return self._transceiver

    def _match_telephone_events(self, remote_sdp: str) -> None:
        # Preferences match by MIME type only, so an offer with telephone-event at 48 and 8 kHz keeps the
        # first; keep instead the one at the audio codec's clock rate (what browsers send with it).
        transceiver = self._transceiver
        if transceiver is None or transceiver.mid is None:
            raise WebRtcError("the offer has no audio section")
        audio = [c for c in transceiver._codecs if not dtmf_patch.is_telephone_event(c)]
        if not audio:
            # aiortc would pick telephone-event as the send codec and fail in its encoder thread.
            raise WebRtcError("the offer has no audio codec in common (PCMU, PCMA or Opus)")
        rate = audio[0].clockRate
        # Answer with the one codec we send, so the browser sends it too (one rate on the leg).
        audio = audio[:1]
        # aiortc's own parse of the offer (setRemoteDescription's), rather than a second one of ours.
        remote: SessionDescription | None = self.pc._RTCPeerConnection__remoteDescription()  # type: ignore[attr-defined]
        offered = [
            c
            for m in (remote or SessionDescription.parse(remote_sdp)).media
            if m.kind == "audio"
            for c in m.rtp.codecs
            if dtmf_patch.is_telephone_event(c) and c.clockRate == rate
        ]
        transceiver._codecs = audio + [copy.copy(c) for c in offered[:1]]  # not aiortc's description's own

    async def accept_offer(self, sdp: str) -> str:
        """Answer a browser's offer; returns the answer SDP (all candidates included: aiortc does not
        trickle)."""
        self._add_transceiver()
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except (ValueError, KeyError, IndexError) as exc:
            raise WebRtcError(f"the offer cannot be used: {exc}") from None
        except Exception as exc:  # aiortc raises its own errors for no common codec, bad transport, ...
            raise WebRtcError(f"the offer was refused: {type(exc).__name__}: {exc}") from None
        self._link_ice()
        self._match_telephone_events(sdp)
        self._negotiated()
        self._set_state(LegState.CONNECTING)
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:
            raise WebRtcError(f"no answer possible: {type(exc).__name__}: {exc}") from None
        return self._outgoing_sdp()

    async def create_offer(self, *, data_channel: bool = True) -> str:
        """Offer from our side (outbound to a browser, or a test peer)."""
        self._add_transceiver()
        if data_channel and self.channel is None:
            self._attach_channel(self.pc.createDataChannel("dtmf"))
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        self._set_state(LegState.CONNECTING)
        return self._outgoing_sdp()

    async def accept_answer(self, sdp: str) -> None:
        if self._restarting is not None:  # the answer to our restart offer
            new, self._restarting = self._restarting, None
            assert self.link is not None
            try:
                await self.link.finish_restart(new, self._remote_ice(sdp, "answer"))
            except IceRestartError as exc:
                raise WebRtcError(str(exc)) from None
            return
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:
            raise WebRtcError(f"the answer was refused: {type(exc).__name__}: {exc}") from None
        self._link_ice()
        self._negotiated()

    def _link_ice(self) -> None:
        # After a remote description, before aiortc's connect task runs (it was only scheduled): BUNDLE
        # has settled which ICE transport carries the leg, and DTLS has not read from it yet.
        ice = self.sender.transport.transport
        if self.link is None or self.link.ice is not ice:
            self.link = IceLink(ice)

    async def restart_ice(self, sdp: str) -> str:
        """The browser's re-offer after `restartIce()` (new ice-ufrag/ice-pwd, same media and DTLS
        fingerprint): a new ICE Connection under the same DTLS transport; returns the answer with our new
        credentials and candidates. The current pair carries the audio until the new one is connected;
        no new DTLS handshake, the SRTP sessions go on (ice.py)."""
        link = self._restartable()
        remote = self._remote_ice(sdp, "offer")
        try:
            connection = await link.restart(remote)
        except IceRestartError as exc:
            raise WebRtcError(str(exc)) from None
        return self._with_ice(connection)

    async def create_restart_offer(self) -> str:
        """Our side restarts ICE (a Python softphone, and the test's browser): an offer with new
        credentials; `accept_answer` then finishes the restart."""
        link = self._restartable()
        try:
            self._restarting = await link.begin_restart()
        except IceRestartError as exc:
            raise WebRtcError(str(exc)) from None
        return self._with_ice(self._restarting)

    def _restartable(self) -> IceLink:
        if self.link is None or self.state is not LegState.CONNECTED or self.pc.remoteDescription is None:
            raise WebRtcError(f"the leg is {self.state.value}: only a connected leg can restart ICE")
        return self.link

    def _remote_ice(self, sdp: str, kind: str) -> RemoteIce:
        """The ICE part of a restart's offer or answer, checked against the leg's current description."""
        assert self.link is not None and self.pc.remoteDescription is not None
        try:
            description = SessionDescription.parse(sdp)
        except (ValueError, KeyError, IndexError) as exc:
            raise WebRtcError(f"the {kind} cannot be used: {exc}") from None
        current = SessionDescription.parse(self.pc.remoteDescription.sdp)
        if not description.media or [m.rtp.muxId for m in description.media] != [
            m.rtp.muxId for m in current.media
        ]:
            raise WebRtcError(
                f"a re-{kind} must keep the leg's media sections: only an ICE restart is renegotiated"
            )
        media = description.media[0]
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise WebRtcError(f"the {kind} has no ice-ufrag/ice-pwd")
        fingerprints = {f.value for m in current.media[:1] if m.dtls for f in m.dtls.fingerprints}
        if media.dtls is None or {f.value for f in media.dtls.fingerprints} != fingerprints:
            raise WebRtcError(
                f"the re-{kind}'s DTLS fingerprint is not the leg's: a new peer needs a new leg"
            )
        if (media.ice.usernameFragment, media.ice.password) == self.link.remote_credentials:
            raise WebRtcError(
                f"the {kind} keeps the leg's ICE credentials: only an ICE restart (new ice-ufrag and ice-pwd) "
                "is renegotiated on a leg"
            )
        return RemoteIce(
            username=media.ice.usernameFragment,
            password=media.ice.password,
            candidates=tuple(candidate_to_aioice(c) for c in media.ice_candidates),
            complete=media.ice_candidates_complete,
            lite=media.ice.iceLite,
        )

    def _with_ice(self, connection: Connection) -> str:
        """Our last description (offer or answer) again, with `connection`'s credentials and candidates
        and the next version (JSEP 5.2.2/5.3.3); media, codecs and the DTLS role stay as they were."""
        description = self._sent or SessionDescription.parse(self.pc.localDescription.sdp)
        origin = description.origin.split(" ") if description.origin else []
        if len(origin) == 6 and origin[2].isdigit():
            origin[2] = str(int(origin[2]) + 1)
            description.origin = " ".join(origin)
        candidates = [candidate_from_aioice(c) for c in connection.local_candidates]
        for media in description.media:
            media.ice = RTCIceParameters(
                usernameFragment=connection.local_username, password=connection.local_password
            )
            media.ice_candidates = candidates
            media.ice_candidates_complete = True
            if candidates:
                media.host, media.port = candidates[0].ip, candidates[0].port
        self._sent = description
        return _opus_voice_fmtp(
            str(description), self.config.opus_max_average_bitrate, narrowband=self.config.own_media
        )

    def _negotiated(self) -> None:
        if self.config.own_media:
            # Our path takes and gives 8 kHz whatever the codec (Opus is resampled inside it).
            self.rate = G711_RATE
            self.outbound.park()
            # aiortc's sender and receiver carry nothing on our path: never started (aiortc's connect task
            # calls these once DTLS is up), they cost no decoder thread per leg (joined at close: the
            # event loop waited for it), no RTCP tasks waking every 0.5-1.5 s, no parked RTP task.
            assert self._transceiver is not None
            self._transceiver.sender.send = _not_on_our_path  # type: ignore[method-assign]
            self._transceiver.receiver.receive = _not_on_our_path  # type: ignore[method-assign]
            transport = self.sender.transport
            transport.on("statechange", lambda: self._start_media(transport))
            return
        # The track must produce frames at the send codec's rate before aiortc's encoder asks for any.
        self.rate = OPUS_RATE if self.codec == "opus" else G711_RATE
        self.outbound.set_rate(self.rate)
        self.outbound.law = {"PCMU": G711.PCMU, "PCMA": G711.PCMA}.get(self.codec or "")

    def _start_media(self, dtls: RTCDtlsTransport) -> None:
        # aiortc emits "connected" once its SRTP sessions are keyed and before its receive loop starts:
        # from the first SRTP datagram on, packets reach our path only.
        if dtls.state != "connected" or self.media is not None or self._transceiver is None:
            return
        codec = self._transceiver._codecs[0]
        payload_type = codec.payloadType
        if payload_type is None:  # aiortc numbers every codec it negotiates
            self._set_state(LegState.FAILED)
            raise SrtpMediaError(f"the negotiated codec {codec.mimeType} has no payload type")
        media = SrtpMedia(
            dtls=dtls,
            ssrc=self.sender._ssrc,
            codec=codec.mimeType.split("/", 1)[1],
            payload_type=payload_type,
            te_pt=self.telephone_event_payload_type,
            on_audio=self._deliver,
            on_digit=self._on_event_digit,
            on_payload=self._deliver_payload if self.on_payload is not None else None,
            reader=self._reader if self._reader is not None else self._own_reader_now(),
            jitter_frames=self.config.jitter_frames,
            opus_bitrate=self.config.opus_max_average_bitrate,
            opus_complexity=self.config.opus_complexity,
        )
        try:
            media.attach(self.sender, self._transceiver.receiver, link=self.link)
        except SrtpMediaError:
            self._set_state(LegState.FAILED)
            raise
        self.media = media
        if not self._ticked_by_owner:
            loop = asyncio.get_running_loop()
            self._own_timer = loop.call_at(loop.time() + PTIME, self._own_tick, loop.time() + PTIME)

    def _own_reader_now(self) -> TickReader:
        if self._own_reader is None:
            self._own_reader = TickReader()
        return self._own_reader

    def _own_tick(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        self.tick(loop.time())
        due = max(due + PTIME, loop.time())
        self._own_timer = loop.call_at(due, self._own_tick, due)

    def tick(self, now: float) -> None:
        """One 20 ms step of our media path (nothing before DTLS connects, or on aiortc's path)."""
        self.play(now)
        self.transmit(now)

    def play(self, now: float) -> None:
        """A tick's first half: a received frame to the owner (see SrtpMedia.play)."""
        if self._own_reader is not None:
            self._own_reader.drain(now)
        if self.media is not None:
            self.media.play(now)

    def transmit(self, now: float) -> None:
        """A tick's second half: the frame queued by `send_audio` goes out."""
        if self.media is not None:
            self.media.transmit(now)

    async def add_ice_candidate(
        self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """A trickled candidate from the browser ("candidate:..." line; empty means end of candidates)."""
        if not candidate:
            return
        try:
            parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
        except (ValueError, IndexError) as exc:
            raise WebRtcError(f"not an ICE candidate: {exc}") from None
        if self.link is not None and await self.link.add_remote_candidate(candidate_to_aioice(parsed)):
            return  # after an ICE restart: the restart's Connection takes it
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        await self.pc.addIceCandidate(parsed)

    def _outgoing_sdp(self) -> str:
        # Only Opus lines change: an answer with G.711 alone stays as aiortc wrote it.
        return _opus_voice_fmtp(
            self.pc.localDescription.sdp,
            self.config.opus_max_average_bitrate,
            narrowband=self.config.own_media,
        )

    # media

    def send_audio(self, samples: Samples | bytes) -> None:
        """Queue mono int16 samples at `self.rate` (8 kHz for G.711, 48 kHz for Opus on aiortc's path;
        8 kHz always on ours, one 20 ms frame per tick); on our path a G.711 leg also takes a payload in
        its law (SrtpMedia.send)."""
        if self.config.own_media:
            if self.media is not None:
                self.media.send(samples)
            return
        if isinstance(samples, bytes):  # aiortc's path has no payload_law: no bridge offers it payloads
            raise TypeError("aiortc's media path takes samples, not G.711 payloads")
        self.outbound.push(samples)

    @property
    def codec(self) -> str | None:
        """The negotiated send codec, e.g. "PCMU" or "opus"; None before negotiation."""
        codecs = self._transceiver._codecs if self._transceiver is not None else []
        return codecs[0].mimeType.split("/", 1)[1] if codecs else None

    @property
    def telephone_event_payload_type(self) -> int | None:
        codecs = self._transceiver._codecs if self._transceiver is not None else []
        return next((c.payloadType for c in codecs if dtmf_patch.is_telephone_event(c)), None)

    @property
    def sender(self) -> RTCRtpSender:
        if self._transceiver is None:
            raise WebRtcError("the leg has not negotiated yet")
        return self._transceiver.sender

    def assert_dtls_srtp(self) -> None:
        """Media flows only over a connected DTLS transport with SRTP keys from its handshake."""
        transport = self.sender.transport
        if not isinstance(transport, RTCDtlsTransport) or transport.state != "connected":
            raise WebRtcError(f"media transport is not connected DTLS-SRTP ({transport!r})")
        if getattr(transport, "_rx_srtp", None) is None or getattr(transport, "_tx_srtp", None) is None:
            raise WebRtcError("DTLS is connected but no SRTP session was keyed")

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and not self.config.own_media:  # ours receives from the socket
            self._spawn(self._receive(track))

    async def _receive(self, track: MediaStreamTrack) -> None:
        resampler: av.AudioResampler | None = None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, np.ndarray):  # G.711, decoded by table (voice_patch.inline_codecs)
                self._deliver(frame)
                continue
            if not isinstance(frame, av.AudioFrame):
                continue
            if (
                frame.format.name == "s16"
                and frame.sample_rate == self.rate
                and frame.layout.nb_channels <= 2
            ):
                # What aiortc's decoders give (G.711 mono at 8 kHz, Opus stereo at 48 kHz): numpy does it
                # for a fraction of a resampler call (about 130 us each, per frame and leg).
                pcm = frame.to_ndarray().reshape(-1).astype(np.int16, copy=False)  # s16: no copy
                if frame.layout.nb_channels == 2:
                    pcm = ((pcm[0::2].astype(np.int32) + pcm[1::2]) >> 1).astype(np.int16)
                self._deliver(pcm)
                continue
            if resampler is None:
                resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate)
            for out in resampler.resample(frame):
                self._deliver(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))

    def _deliver(self, samples: Samples) -> None:
        self.received_frames += 1
        if self.on_audio is not None:
            self.on_audio(samples)

    def _deliver_payload(self, payload: bytes) -> None:
        self.received_frames += 1
        if self.on_payload is not None:
            self.on_payload(payload)

    # digits

    def _on_event_digit(self, digit: str) -> None:
        if self.on_digit is not None:
            self.on_digit(digit, DigitSource.RFC4733)

    def _attach_channel(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.on("message", lambda message: self._on_channel_message(channel, message))

    def _on_channel_message(self, channel: RTCDataChannel, message: str | bytes) -> None:
        """Fallback digits: {"type": "dtmf", "digit": "5"}. Anything else gets an error message back."""
        try:
            data = json.loads(message)
            if isinstance(data, dict) and data.get("type") == "error":
                return  # never answer an error with an error: two legs would ping-pong forever
            if not isinstance(data, dict) or data.get("type") != "dtmf":
                raise ValueError('expected {"type": "dtmf", "digit": "<0-9*#A-D>"}')
            digit = data.get("digit")
            if not isinstance(digit, str):
                raise ValueError("digit must be a string")
            digit_code(digit)
        except (ValueError, TelephoneEventError) as exc:
            if channel.readyState == "open":
                channel.send(json.dumps({"type": "error", "code": "bad_message", "reason": str(exc)[:200]}))
            return
        if self.on_digit is not None:
            self.on_digit(digit.upper(), DigitSource.DATA_CHANNEL)

    def send_channel_digit(self, digit: str) -> None:
        """The browser side of the fallback (tests, and a softphone written in Python)."""
        digit_code(digit)
        if self.channel is None or self.channel.readyState != "open":
            raise WebRtcError("the data channel is not open")
        self.channel.send(json.dumps({"type": "dtmf", "digit": digit}))

    async def send_digit(self, digit: str, *, duration: float = 0.1) -> None:
        """RFC 4733 digit towards the peer, through the patch's sender shim."""
        pt = self.telephone_event_payload_type
        if pt is None:
            raise WebRtcError("telephone-event was not negotiated")
        if self.media is not None:
            await asyncio.sleep(self.media.queue_digit(digit, asyncio.get_running_loop().time(), duration))
            return
        await dtmf_patch.send_digit(self.sender, digit, payload_type=pt, duration=duration)

    # quality and life cycle

    async def quality(self) -> LegQuality:
        if self.media is not None:
            return self.media.quality()
        report = await self.pc.getStats()
        return quality_from_stats(report, clock_rate=self.rate)

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self._set_state(LegState.CONNECTED)
        elif state == "failed":
            self._set_state(LegState.FAILED)
        elif state == "closed":
            self._set_state(LegState.CLOSED)

    def _set_state(self, state: LegState) -> None:
        if state is self.state or self.state is LegState.CLOSED:
            return
        self.state = state
        if self.on_state is not None:
            self.on_state(state)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._own_timer is not None:
            self._own_timer.cancel()
        if self._transceiver is not None:
            dtmf_patch.set_digit_handler(self._transceiver.receiver, None)
        if self.media is not None:
            self.media.detach()
        if self._own_reader is not None:
            self._own_reader.close()
        self.outbound.stop()
        if self.link is not None:
            await self.link.close()
        await self.pc.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._set_state(LegState.CLOSED)
