"""WebRTC legs as calls of the media worker: the adapter between WebRtcLeg (aiortc), the sans-IO Call
(prompts, digits) and the shared 20 ms MediaClock.

A browser's `webrtc_offer` makes one leg, named by its `leg_id`; the leg is also a call whose `call_id` is
the leg id, so play/collect/stop/hangup and the bridge address it like a SIP call. Audio is 8 kHz int16 on
this side of the adapter (prompts, the DTMF detector, the bridge and the recording tap). The leg prefers
the SIP leg's G.711 law (no transcoding); an Opus leg runs at 48 kHz inside aiortc and the session
resamples each 20 ms frame (services/media/bridge/transcode.py). SB_MEDIA_WEBRTC_CODEC=opus prefers Opus.
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from services.kernel import events as ev
from services.kernel.config import Settings
from services.kernel.log import get_logger
from services.kernel.messages import Event
from services.kernel.slots import Slots, slot_key, tenant_slot
from services.media.bridge.transcode import Resampler
from services.media.dsp.dtmf import DtmfDetector
from services.media.rtp.g711 import G711
from services.media.rtp.session import MediaClock
from services.media.ua.call import Call, CallState
from services.media.webrtc import (
    DigitSource,
    IceServer,
    LegState,
    WebRtcConfig,
    WebRtcError,
    WebRtcLeg,
)

__all__ = ["WebRtcCalls", "WebRtcSession", "webrtc_config"]

log = get_logger()
Samples = npt.NDArray[np.int16]
Emit = Callable[[list[Event]], None]
# Received frames wait at most this long for the in-band DTMF detector on the 20 ms tick.
MAX_INBOX_FRAMES = 10
# Frames waiting for aiortc's sender, whose track paces on its own 20 ms clock: the queue keeps whatever
# a hiccup left in it, so its length is delay added for good (bridging.MAX_QUEUED is the other direction).
SEND_QUEUE_FRAMES = 3


def webrtc_config(settings: Settings) -> WebRtcConfig:
    """ICE host addresses (SB_MEDIA_ICE_HOSTS, comma-separated; "auto": aioice's own discovery), ICE servers
    (SB_MEDIA_ICE_SERVERS, space-separated `url[|username|credential]`; none: never a public STUN server)
    and the codec preferred (SB_MEDIA_WEBRTC_CODEC: `g711`, the SIP leg's law, Opus only when the offer
    has no G.711; or `opus`, G.711 when the offer has no Opus)."""
    hosts_raw = settings.media_ice_hosts.strip() or "127.0.0.1"
    hosts: tuple[str, ...] | None
    if hosts_raw.lower() == "auto":
        hosts = None
    else:
        hosts = tuple(h.strip() for h in hosts_raw.split(",") if h.strip())
    servers = []
    for entry in settings.media_ice_servers.split():
        url, _, rest = entry.partition("|")
        username, _, credential = rest.partition("|")
        servers.append(IceServer((url,), username or None, credential or None))
    codec = settings.media_webrtc_codec.strip().lower() or "g711"
    own = (settings.media_webrtc_path.strip().lower() or "own") == "own"
    try:
        return WebRtcConfig(
            ice_servers=tuple(servers),
            host_addresses=hosts,
            prefer_opus=codec == "opus",
            own_media=own,
            opus_complexity=settings.media_opus_complexity,
            consent_interval_s=settings.media_ice_consent_interval_s,
            consent_failures=settings.media_ice_consent_failures,
            dtls_certificate_lifetime_s=settings.media_dtls_cert_rotate_s,
        )
    except ValueError as exc:
        raise ValueError(f"SB_MEDIA_ICE_HOSTS / SB_MEDIA_ICE_SERVERS: {exc}") from None


@dataclass(eq=False)
class WebRtcSession:
    """One WebRTC leg: ticks with the SIP legs on the MediaClock."""

    leg_id: uuid.UUID
    tenant_id: uuid.UUID
    agent_id: str
    call: Call
    leg: WebRtcLeg
    emit: Emit
    detector: DtmfDetector = field(default_factory=DtmfDetector)
    inbox: collections.deque[Samples] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_INBOX_FRAMES)
    )
    # The bridge: frames from the other leg to send here (samples, or G.711 payloads in this leg's law),
    # and where this leg's audio goes (as payloads when the other leg speaks the same law).
    bridge_in: collections.deque[Samples | bytes] | None = None
    bridge_out: Callable[[Samples], None] | None = None
    payload_out: Callable[[bytes], None] | None = None
    frames_in: int = 0
    frames_out: int = 0
    on_end: Callable[[WebRtcSession], None] | None = None
    # The call this leg was offered for (the caller an agent is about to talk to), if any.
    for_call_id: uuid.UUID | None = None
    # Opus legs only: 48 kHz from aiortc down to the worker's 8 kHz, and back up (set once negotiated).
    downsample: Resampler | None = None
    upsample: Resampler | None = None
    # Slot keys this leg holds (its owner's legs; a web caller's place in the tenant's call limit).
    slots: tuple[str, ...] = ()
    te_pt: int | None = None  # the negotiated telephone-event payload type (set once negotiated)

    @property
    def law(self) -> G711:
        return self.leg.peer_law or G711.PCMU

    @property
    def payload_law(self) -> G711 | None:
        """The law of the payloads our media path hands over (on_payload) and sends as they are; None
        for Opus and on aiortc's path (bridging.Endpoint)."""
        media = self.leg.media
        return media.law if media is not None and media.on_payload is not None else None

    def negotiated(self) -> None:
        self.te_pt = self.leg.telephone_event_payload_type
        if self.leg.rate != 8000:
            self.downsample = Resampler(self.leg.rate, 8000)
            self.upsample = Resampler(8000, self.leg.rate)

    def on_audio(self, samples: Samples) -> None:
        if self.downsample is not None:
            samples = self.downsample(samples)
        if self.bridge_out is not None:
            # To the bridge as it arrives (aiortc's path) or in the clock's play pass (ours), so the
            # other leg sends it in this same tick. A held agent is not heard (the agent hears music:
            # Call.next_frame).
            self.bridge_out(np.zeros_like(samples) if self.call.held_by_us else samples)
            if self.te_pt is not None:
                # Bridged with RFC 4733 negotiated (every browser): the agent's keys come as events;
                # the in-band detector (about 15 us a frame) stays for the leg's own prompts and
                # collection, and for peers without events (rtp/session.py RtpSession.play).
                return
        self.inbox.append(samples)

    def on_payload(self, payload: bytes) -> None:
        """A received G.711 payload (our media path): to the bridge as it is when it carries payloads, else
        decoded like any frame. Decoded here only for the in-band detector (no RFC 4733)."""
        law = self.payload_law
        assert law is not None  # only our path's G.711 legs hand payloads over
        if self.payload_out is None:
            self.on_audio(law.decode(payload))
            return
        self.payload_out(bytes([law.silence]) * len(payload) if self.call.held_by_us else payload)
        if self.te_pt is None:
            self.inbox.append(law.decode(payload))

    def play(self, now: float) -> None:
        """The clock's first pass: our media path hands this tick's received frame to the bridge."""
        self.leg.play(now)

    def tick(self, now: float) -> None:
        events: list[Event] = []
        while self.inbox:  # aiortc delivers in bursts: the detector sees every frame
            samples = self.inbox.popleft()
            self.frames_in += 1
            for digit in self.detector.feed(samples, now):
                events += self.call.digit(digit.digit, "inband", now)
        out: Samples | bytes | None
        out, produced = self.call.next_frame(now)
        events += produced
        if out is None and self.bridge_in:
            out = self.bridge_in.popleft()
        if out is not None and self.call.state is CallState.ANSWERED:
            if self.upsample is not None and not isinstance(out, bytes):
                out = self.upsample(out)
            self.leg.send_audio(out)
            self.frames_out += 1
        # Our own media path (WebRtcConfig.own_media) sends this tick's frame at once: the MediaClock
        # is the only clock of the call.
        self.leg.transmit(now)
        events += self.call.tick(now)
        if events:
            self.emit(events)


def _widget_key(owner: str) -> uuid.UUID | None:
    parts = owner.split(":")
    try:
        return uuid.UUID(parts[1]) if len(parts) == 3 else None
    except ValueError:
        return None


class WebRtcLimitError(WebRtcError):
    """An offer past a limit: the owner's legs, or (a web caller) the tenant's concurrent calls."""

    code = "limit"


class WebRtcCalls:
    """The worker's WebRTC legs, by leg id (= their call id).

    Limits (docs/security.md), counted over every media worker through `slots`: an agent holds at most
    `legs_per_agent` legs at once, a widget token (owner `widget:<token session>`) one, and a web caller's
    leg is one of its tenant's concurrent calls (`call_limit`).
    """

    def __init__(
        self,
        config: WebRtcConfig,
        *,
        emit: Emit,
        clock: MediaClock,
        now: Callable[[], float],
        slots: Slots | None = None,
        call_limit: Callable[[uuid.UUID], Awaitable[int]] | None = None,
        key_limit: Callable[[uuid.UUID, uuid.UUID], Awaitable[int | None]] | None = None,
        legs_per_agent: int = 4,
    ) -> None:
        self.slots = slots or Slots()
        self.call_limit = call_limit
        self.key_limit = key_limit
        self.legs_per_agent = legs_per_agent
        self.config = config
        self.emit = emit
        self.clock = clock
        self.now = now
        self.sessions: dict[uuid.UUID, WebRtcSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_start: list[Callable[[WebRtcSession], None]] = []
        self.on_change: list[Callable[[WebRtcSession], None]] = []  # answered (connected)
        self.on_end: list[Callable[[WebRtcSession], None]] = []

    def get(self, tenant_id: uuid.UUID, leg_id: uuid.UUID) -> WebRtcSession | None:
        session = self.sessions.get(leg_id)
        if session is None or session.tenant_id != tenant_id:
            return None  # another tenant's leg is indistinguishable from no leg
        return session

    async def offer(
        self,
        *,
        tenant_id: uuid.UUID,
        leg_id: uuid.UUID,
        agent_id: str,
        sdp: str,
        law: G711 = G711.PCMU,
        for_call_id: uuid.UUID | None = None,
    ) -> str:
        """A new leg answering the browser's offer; returns the answer SDP. WebRtcError when unusable."""
        if leg_id in self.sessions:
            raise WebRtcError("leg id already in use")
        held = await self._take_slots(tenant_id, agent_id)
        try:
            return await self._offer(tenant_id, leg_id, agent_id, sdp, law, for_call_id, held)
        except BaseException:
            if leg_id not in self.sessions:
                for key in held:
                    self.slots.release(key)
            raise

    async def _take_slots(self, tenant_id: uuid.UUID, agent_id: str) -> tuple[str, ...]:
        web_caller = agent_id.startswith("widget:")
        owner = slot_key("webrtc-legs", tenant_id, agent_id)
        if not await self.slots.acquire(owner, 1 if web_caller else self.legs_per_agent):
            what = "this widget token has a call already" if web_caller else "this agent has too many legs"
            raise WebRtcLimitError(f"{what} (at most {1 if web_caller else self.legs_per_agent} at once)")
        if not web_caller or self.call_limit is None:
            return (owner,)
        held = [owner]
        try:
            key_id = _widget_key(agent_id)  # "widget:<key id>:<token session>"
            limit = await self.key_limit(tenant_id, key_id) if key_id and self.key_limit else None
            if limit is not None:
                key = slot_key("widget-key-calls", tenant_id, key_id)
                if not await self.slots.acquire(key, limit):
                    raise WebRtcLimitError(f"this widget key's limit of {limit} calls at once is reached")
                held.append(key)
            tenant = tenant_slot(tenant_id)
            if not await self.slots.acquire(tenant, await self.call_limit(tenant_id)):
                raise WebRtcLimitError("the tenant's concurrent-call limit is reached")
            held.append(tenant)
        except BaseException:
            for key in held:
                self.slots.release(key)
            raise
        return tuple(held)

    async def _offer(
        self,
        tenant_id: uuid.UUID,
        leg_id: uuid.UUID,
        agent_id: str,
        sdp: str,
        law: G711,
        for_call_id: uuid.UUID | None,
        held: tuple[str, ...],
    ) -> str:
        call = Call(call_id=leg_id, tenant_id=tenant_id, created_at=self.now())
        holder: list[WebRtcSession] = []
        leg = WebRtcLeg(
            self.config,
            peer_law=law,
            on_audio=lambda samples: holder[0].on_audio(samples) if holder else None,
            on_payload=lambda payload: holder[0].on_payload(payload) if holder else None,
            on_digit=lambda digit, source: self._digit(holder[0], digit, source) if holder else None,
            on_state=lambda state: self._state(holder[0], state) if holder else None,
            send_queue_frames=SEND_QUEUE_FRAMES,
            send_on_push=True,  # our MediaClock paces what the leg sends: no second 20 ms clock to wait for
            ticked_by_owner=True,
            reader=self.clock.reader,  # the clock reads the leg's ICE sockets at the start of each tick
        )
        session = WebRtcSession(
            leg_id, tenant_id, agent_id, call, leg, self.emit, for_call_id=for_call_id, slots=held
        )
        holder.append(session)
        try:
            answer = await leg.accept_offer(sdp)
        except WebRtcError:
            await leg.close()
            raise
        session.negotiated()
        self.sessions[leg_id] = session
        for hook in list(self.on_start):
            hook(session)
        self.clock.add(session)
        return answer

    def _digit(self, session: WebRtcSession, digit: str, source: DigitSource) -> None:
        kind: ev.DtmfSource = "datachannel" if source is DigitSource.DATA_CHANNEL else "rfc4733"
        self.emit(session.call.digit(digit, kind, self.now()))

    def _state(self, session: WebRtcSession, state: LegState) -> None:
        if state is LegState.CONNECTED:
            events: list[Event] = [self._signal(session, "state", state="connected")]
            events += session.call.answered(self.now())
            self.emit(events)
            for hook in list(self.on_change):
                hook(session)
        elif state in (LegState.FAILED, LegState.CLOSED):
            self.end(session, "ice_failed" if state is LegState.FAILED else "remote_closed")

    def _signal(
        self, session: WebRtcSession, kind: ev.SignalKind, *, state: str | None = None
    ) -> ev.WebRtcSignal:
        return ev.WebRtcSignal(
            tenant_id=session.tenant_id,
            agent_id=session.agent_id,
            leg_id=session.leg_id,
            kind=kind,
            state=state,
            call_id=session.for_call_id or session.leg_id,
        )

    def end(self, session: WebRtcSession, cause: str) -> None:
        """End the leg: call.ended and the `ended` signal; the peer connection closes in the background."""
        if self.sessions.pop(session.leg_id, None) is None:
            return
        for key in session.slots:
            self.slots.release(key)
        self.clock.remove(session)
        events = session.call.end(cause, self.now())
        events.append(self._signal(session, "ended"))
        self.emit(events)
        for hook in list(self.on_end):
            try:
                hook(session)
            except Exception:
                log.exception("webrtc_end_hook_failed")
        self._spawn(self._close(session))

    async def _quality(self, session: WebRtcSession) -> ev.CallQuality | None:
        try:
            q = await asyncio.wait_for(session.leg.quality(), 1.0)
        except Exception as exc:  # getStats on a closing connection; a report is not worth a crash
            log.warning("webrtc_quality_failed", error=type(exc).__name__)
            return None
        return ev.CallQuality(
            tenant_id=session.tenant_id,
            call_id=session.leg_id,
            mos=q.mos,
            r=q.r,
            jitter_ms=q.jitter_ms,
            loss_percent=q.loss_percent,
            rtt_ms=q.rtt_ms,
            packets_received=q.packets_received,
            packets_sent=q.packets_sent,
        )

    async def _close(self, session: WebRtcSession) -> None:
        if session.call.answered_at is not None:
            report = await self._quality(session)
            if report is not None:
                self.emit([report])
        await session.leg.close()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for session in list(self.sessions.values()):
            self.end(session, "shutdown")
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
