"""The media service: configuration, the SIP edge, and the NATS command adapter.

Commands arrive on sb.<tenant>.cmd.media.<name> through Bus.serve (request/reply, idempotent by command id:
a repeated id gets the first reply again without acting twice). Events go out through Bus.publish.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import msgspec
from nats.aio.subscription import Subscription

from services.kernel import events as ev
from services.kernel.bus import Bus
from services.kernel.config import Settings, advertised_host, machine_ipv4, sip_digest_key
from services.kernel.db import create_pool
from services.kernel.log import get_logger
from services.kernel.messages import Reply, decode
from services.kernel.metrics import figure_gauge, read_before_beats
from services.kernel.registry import parse_subject
from services.kernel.service import until_stopped
from services.kernel.serving import Later, Listener, Server
from services.kernel.waits import close_pool
from services.media import native
from services.media.bridge.bridging import Bridge
from services.media.dsp.tones import dtmf_sequence
from services.media.features.consult import Consults
from services.media.features.monitor import Monitors
from services.media.features.transfer import transfer
from services.media.features.voicemail import Recording, beep, resolve_under
from services.media.features.voicemail_ship import VoicemailShipper
from services.media.front import link as frontlink
from services.media.prompts import APOLOGY, PromptError, PromptStore
from services.media.rtp.g711 import G711
from services.media.rtp.session import RtpSession
from services.media.spool import SpoolWriter
from services.media.spool.ship import ChunkShipper, reship_leftovers
from services.media.ua.call import Call, CallState
from services.media.ua.edge import SipEdge
from services.media.ua.leg import EdgeConfig, Leg
from services.media.ua.store import Store
from services.media.webrtc import WebRtcError
from services.media.webrtc.calls import WebRtcCalls, WebRtcSession, webrtc_config
from services.recording.chunks import ensure_chunk_stream

__all__ = ["MediaService", "edge_config", "main"]

# routing's reason for signing out an agent whose socket did not come back within the grace (presence.py).
AGENT_LOST_REASON = "disconnected"
# Ended calls remembered to answer their late commands (`MediaService.ended`): minutes of calls at 10/s.
ENDED_KEPT = 4096

log = get_logger()

COMMANDS: dict[str, type[ev.MediaCommand]] = {
    cls.name: cls
    for cls in (
        ev.MediaAnswer,
        ev.MediaPlay,
        ev.MediaCollect,
        ev.MediaStop,
        ev.MediaHold,
        ev.MediaUnhold,
        ev.MediaHangup,
        ev.MediaOriginate,
        ev.MediaBridge,
        ev.MediaUnbridge,
        ev.MediaMute,
        ev.MediaUnmute,
        ev.MediaRecordStart,
        ev.MediaRecordPause,
        ev.MediaRecordResume,
        ev.MediaRecord,
        ev.MediaTransfer,
        ev.MediaSendDigits,
        ev.MediaConsult,
        ev.MediaCompleteTransfer,
        ev.MediaCancelTransfer,
        ev.MediaMonitor,
        ev.MediaUnmonitor,
    )
}
# At SIGTERM, recorded calls' last chunks get this long to reach JetStream (the spool keeps what did not).
SHIP_AT_STOP_S = 2.0
BRIDGE_COMMANDS = (
    ev.MediaBridge,
    ev.MediaUnbridge,
    ev.MediaMute,
    ev.MediaUnmute,
    ev.MediaRecordStart,
    ev.MediaRecordPause,
    ev.MediaRecordResume,
)
WebRtcCommand = ev.MediaWebRtcOffer | ev.MediaWebRtcAnswer | ev.MediaWebRtcIce | ev.MediaWebRtcRestart
WEBRTC_COMMANDS: dict[str, type[WebRtcCommand]] = {
    cls.name: cls
    for cls in (ev.MediaWebRtcOffer, ev.MediaWebRtcAnswer, ev.MediaWebRtcIce, ev.MediaWebRtcRestart)
}


def edge_config(settings: Settings) -> EdgeConfig:
    """The SIP edge's settings, all from the kernel's Settings (SB_*; docs/media.md, "Configuration")."""
    return EdgeConfig(
        host=advertised_host(settings, machine_ipv4()),
        bind=settings.bind_host,
        port=settings.sip_port,
        rtp_low=settings.rtp_port_min,
        rtp_high=settings.rtp_port_max,
        max_calls=settings.media_max_calls,
        max_setup=settings.media_max_setup,
        max_lag=settings.media_max_lag_ms / 1000.0,
        max_cpu=settings.media_max_cpu,
        rate=settings.sip_rate,
        burst=settings.sip_burst,
        ban_after=settings.sip_ban_after,
        ban_seconds=settings.sip_ban_seconds,
        realm=settings.sip_realm,
        media_timeout=settings.media_timeout_s,
        min_se=settings.sip_min_se,
        auth_secret=sip_digest_key(settings),
        unrouted_message=settings.unrouted_message.strip() or APOLOGY,  # blank: the default, never silence
    )


SIP_LEGS = figure_gauge("media_sip_legs", "SIP call legs this media process holds (caller, agent desk phone)")
WEBRTC_LEGS = figure_gauge(
    "media_webrtc_legs", "WebRTC legs this media process holds (browser agents, widget callers)"
)
BRIDGES = figure_gauge(
    "media_bridges", "Two legs joined by this media process (a caller talking to an agent)"
)


class MediaService:
    def __init__(
        self,
        edge: SipEdge,
        bus: Bus,
        webrtc: WebRtcCalls | None = None,
        *,
        settings: Settings | None = None,
        spool_dir: Path | None = None,
        data_dir: Path | None = None,
        flush_s: float = 2.0,
    ) -> None:
        self.edge = edge
        self.spool_dir = spool_dir
        self.flush_s = flush_s
        # `record` writes under it (voicemail); None: this worker does not record.
        self.data_dir = data_dir
        # Legs joined by a `transfer`: when one ends, the other is hung up.
        self.transfers: dict[uuid.UUID, uuid.UUID] = {}
        self.bus = bus
        # Recorded calls' chunks on their way to the recording service (spool/ship.py).
        self.shipper = ChunkShipper(bus.js)
        self._reship: asyncio.Task[int] | None = None
        self.webrtc = webrtc or WebRtcCalls(
            webrtc_config(settings or Settings()),
            emit=edge.emit,
            clock=edge.clock,
            now=edge.now,
            slots=edge.slots,
            call_limit=edge.store.call_limit,
            key_limit=edge.store.widget_key_limit,
            legs_per_agent=(settings or Settings()).webrtc_legs_per_agent,
        )
        self.bridges: dict[uuid.UUID, Bridge] = {}
        # Attended transfers and supervisor monitors over the bridges (consult.py, monitor.py).
        self.consults = Consults(self)
        self.monitors = Monitors(self)
        self._server: Server[ev.MediaCommand] | None = None
        self._config: Listener | None = None
        self._agents: Listener | None = None
        # Calls this worker held that ended lately (call id -> tenant): a command for one is answered
        # "ended" at once. Unanswered (no worker holds it), its sender waited its whole timeout: contacts'
        # hangup of an agent leg media had just ended (the agent signed out past its grace) held the caller's
        # apology and the next offer 5 s.
        self.ended: OrderedDict[uuid.UUID, uuid.UUID] = OrderedDict()
        edge.on_end.append(lambda leg: self._leg_ended(leg.call.call_id, leg.call.tenant_id))
        # Each call's own command subject, open while this worker holds it (`_route_here`).
        self._routes: dict[uuid.UUID, asyncio.Task[Subscription]] = {}
        self._route_tasks: set[asyncio.Task[None]] = set()
        self._unread: Callable[[], None] | None = None
        edge.on_start.append(lambda leg: self._route_here(leg.call.tenant_id, leg.call.call_id))
        self.webrtc.on_end.append(lambda session: self._leg_ended(session.leg_id, session.tenant_id))
        self.webrtc.on_start.append(lambda session: self._route_here(session.tenant_id, session.leg_id))

    async def start(self) -> None:
        await ensure_chunk_stream(self.bus.js)
        if self.spool_dir is not None:
            # Spools a crashed worker left: what JetStream lacks goes out, closed as partial (ship.py).
            self._reship = asyncio.create_task(reship_leftovers(self.bus.js, self.spool_dir))
        # Several media processes may run: `originate` goes to one of them (queue group); every other
        # command reaches all of them and only the process that holds the call answers.
        handlers = {kind: self.handle for kind in (*COMMANDS.values(), *WEBRTC_COMMANDS.values())}
        server = await self.bus.serve("media", handlers, queue=None, accept=self._holds)
        # A browser's offer for no particular call goes to one worker; one for a call goes to all
        # and the worker holding the call answers (the bridge needs both legs in one process).
        for name in ("originate", "webrtc_offer"):
            await server.subscribe(f"sb.*.cmd.media.{name}", queue="media", accept=_call_less)
        self._server = server
        # Cached number routes are dropped when the API changes a tenant's numbers.
        self._config = await self.bus.listen([ev.ConfigChanged], self._on_config_changed)
        # An agent whose socket stayed away past the tenant's grace is signed out by routing: its legs
        # (which would otherwise live on until ICE gives up) end with it.
        self._agents = await self.bus.listen([ev.AgentStateChanged], self._on_agent_state)
        self._unread = read_before_beats(self._read_figures)

    def _read_figures(self) -> None:
        SIP_LEGS.set(len(self.edge.legs))
        WEBRTC_LEGS.set(len(self.webrtc.sessions))
        BRIDGES.set(len(self.bridges))

    def _route_here(self, tenant_id: uuid.UUID, call_id: uuid.UUID) -> None:
        """Commands for this call come to this worker only (Bus.request sends a command naming a call to
        sb.<tenant>.cmd.media.<name>.<call>; the service subject, heard by every worker, stays the
        fallback). The tenant is in the subject: another tenant's command cannot reach the call."""
        if self._server is None or call_id in self._routes:
            return
        self._routes[call_id] = asyncio.get_running_loop().create_task(
            self._server.subscribe(
                f"sb.{tenant_id}.cmd.media.*.{call_id}", queue=None, parse=_held_call_command
            )
        )

    def _unroute(self, call_id: uuid.UUID) -> None:
        opening = self._routes.pop(call_id, None)
        if opening is None or self._server is None:
            return
        server = self._server

        async def close() -> None:
            try:
                sub = await opening
            except Exception:
                return  # never opened (the connection is gone): nothing to close
            await server.unsubscribe(sub)

        task = asyncio.get_running_loop().create_task(close())
        self._route_tasks.add(task)
        task.add_done_callback(self._route_tasks.discard)

    def _holds(self, subject: str, data: bytes) -> bool:
        """On the broadcast subscription: call-less originates are the queue group's; one near a call, only
        the worker holding that call answers."""
        if not subject.endswith((".originate", ".webrtc_offer")):
            return True
        near = _near_call_id(subject, data)
        return near is not None and (near in self.edge.legs or near in self.webrtc.sessions)

    async def _on_agent_state(self, change: ev.AgentStateChanged) -> None:
        if change.new != "logged_out" or change.reason != AGENT_LOST_REASON:
            return
        for session in list(self.webrtc.sessions.values()):
            if session.tenant_id == change.tenant_id and session.agent_id == change.agent_id:
                self.webrtc.end(session, "agent_disconnected")

    async def _on_config_changed(self, change: ev.ConfigChanged) -> None:
        # Cached routes carry the number's tenant and that tenant's trunks.
        if change.kind in ("number", "trunk"):
            self.edge.store.invalidate(change.tenant_id)

    async def stop(self) -> None:
        if self._unread is not None:
            self._unread()
        for bridge in list(self.bridges.values()):
            self.separate(bridge, "shutdown")
        if self._reship is not None:
            self._reship.cancel()
        await self.shipper.stop(SHIP_AT_STOP_S)
        await self.webrtc.stop()
        # Bounded (serving.py): when NATS died with the runtime (kill -9), an unsubscribe or flush can
        # wait for a reconnect that never comes, and the process must still exit on SIGTERM.
        if self._config is not None:
            await self._config.stop()
        if self._agents is not None:
            await self._agents.stop()
            self._agents = None
        if self._server is not None:
            await self._server.stop()
        self._server = self._config = None

    async def handle(self, command: ev.MediaCommand | WebRtcCommand) -> Reply | Later | None:
        """The reply; None when another worker holds the call; Later while an outside number rings."""
        if isinstance(command, ev.MediaTransfer):
            return self._start_transfer(command)
        if isinstance(command, ev.MediaConsult | ev.MediaCompleteTransfer | ev.MediaCancelTransfer):
            return self.consults.handle(command)
        if isinstance(command, ev.MediaMonitor | ev.MediaUnmonitor):
            return self.monitors.handle(command)
        if isinstance(command, WebRtcCommand):
            return await self.execute_webrtc(command)
        return await self.execute(command)

    def _start_transfer(self, command: ev.MediaTransfer) -> Reply | Later | None:
        """The reply comes when the outside number answered (and is bridged) or failed: Later, so the
        server keeps serving other commands meanwhile (and a retry waits for the same reply)."""
        leg = self._leg(command)
        if leg is None:
            if self.webrtc.get(command.tenant_id, command.call_id) is not None:
                return Reply(ok=False, error="a WebRTC leg cannot be transferred", code="unsupported")
            return None  # another worker holds the call
        return Later(transfer(self, leg, command))

    def _record(self, leg: Leg, command: ev.MediaRecord) -> Reply:
        if self.data_dir is None:
            return Reply(ok=False, error="this media worker has no data directory", code="unsupported")
        path = resolve_under(self.data_dir, command.file)
        if path is None or path.suffix.lower() != ".wav":
            return Reply(
                ok=False,
                error=f"record file {command.file!r} must be a .wav path inside the data directory",
                code="invalid",
            )
        if not 0 < command.max_seconds <= 3600:
            return Reply(ok=False, error="max_seconds must be in (0, 3600]", code="invalid")
        call = leg.call
        if call.state is not CallState.ANSWERED:
            return Reply(ok=False, error="the call is not answered", code="state")
        if call.call_id in self.bridges:
            return Reply(ok=False, error="a bridged call cannot record a message", code="state")
        recording = Recording(
            tenant_id=call.tenant_id,
            call_id=call.call_id,
            record_id=command.id,
            file=command.file,
            path=path,
            max_seconds=command.max_seconds,
        )
        self.edge.emit(call.record(recording, beep() if command.beep else None, self.edge.now()))
        return Reply(ok=True, data={"file": command.file})

    def _leg(self, command: ev.MediaCommand) -> Leg | None:
        leg = self.edge.legs.get(command.call_id)
        if leg is None or leg.call.tenant_id != command.tenant_id:
            return None  # another tenant's call is indistinguishable from no call
        return leg

    async def execute(self, command: ev.MediaCommand) -> Reply | None:
        """The reply, or None when this process does not hold the call (another one answers)."""
        edge = self.edge
        if isinstance(command, ev.MediaOriginate):
            if command.call_id in edge.legs:
                return Reply(ok=False, error="call id already in use", code="conflict")
            error = await edge.originate(
                call_id=command.call_id,
                tenant_id=command.tenant_id,
                to=command.to,
                caller_id=command.caller_id,
                trunk_name=command.trunk,
            )
            return Reply(
                ok=error is None,
                error=error,
                code="originate_failed" if error else None,
                data={"call_id": str(command.call_id)},
            )
        if isinstance(command, BRIDGE_COMMANDS):
            return self.bridge_command(command)
        leg = self._leg(command)
        if leg is None:
            session = self.webrtc.get(command.tenant_id, command.call_id)
            if session is not None:
                return await self._webrtc_call_command(session, command)
            if self.ended.get(command.call_id) == command.tenant_id:
                return Reply(ok=False, error="the call has ended", code="ended")
            return None
        if leg.call.state is CallState.ENDED:
            return Reply(ok=False, error="the call has ended", code="ended")
        now = edge.now()
        call = leg.call
        if isinstance(command, ev.MediaAnswer):
            ok = edge.answer(leg)
            return Reply(
                ok=ok, error=None if ok else "the call cannot be answered now", code=None if ok else "state"
            )
        if isinstance(command, ev.MediaHangup):
            edge.hangup(leg, command.cause)
            return Reply(ok=True)
        if isinstance(command, ev.MediaStop):
            edge.emit(call.stop(now))
            return Reply(ok=True)
        if isinstance(command, ev.MediaHold | ev.MediaUnhold):
            error = edge.reinvite(leg, hold=isinstance(command, ev.MediaHold))
            return Reply(ok=error is None, error=error, code=None if error is None else "state")
        if isinstance(command, ev.MediaRecord):
            return self._record(leg, command)
        return await self._prompt_command(call, command)

    async def _prompt_command(self, call: Call, command: ev.MediaCommand) -> Reply:
        edge, now = self.edge, self.edge.now()
        try:
            if isinstance(command, ev.MediaPlay):
                if command.tone == "moh":
                    samples = edge.prompts.moh
                elif command.text:
                    samples = await edge.prompts.text(command.text, voice=command.voice, rate=command.rate)
                elif command.file:
                    samples = edge.prompts.file(command.file)
                else:
                    return Reply(ok=False, error="play needs text, file or tone", code="invalid")
                edge.emit(
                    call.play(
                        samples,
                        play_id=command.id,
                        now=now,
                        interruptible=command.interruptible,
                        loop=command.loop,
                    )
                )
                return Reply(ok=True)
            if isinstance(command, ev.MediaSendDigits):
                try:
                    tones = dtmf_sequence(command.digits)
                except ValueError as exc:
                    return Reply(ok=False, error=str(exc), code="invalid")
                edge.emit(call.play(tones, play_id=command.id, now=now))
                return Reply(ok=True)
            if isinstance(command, ev.MediaCollect):
                if not 0 <= command.min_digits <= command.max_digits <= 64:
                    return Reply(ok=False, error="need 0 <= min_digits <= max_digits <= 64", code="invalid")
                prompt = None
                if command.text:
                    prompt = await edge.prompts.text(command.text, voice=command.voice)
                elif command.file:
                    prompt = edge.prompts.file(command.file)
                edge.emit(
                    call.collect(
                        collect_id=command.id,
                        min_digits=command.min_digits,
                        max_digits=command.max_digits,
                        terminator=command.terminator,
                        first_digit_timeout=command.first_digit_timeout,
                        inter_digit_timeout=command.inter_digit_timeout,
                        now=now,
                        prompt=prompt,
                    )
                )
                return Reply(ok=True)
        except PromptError as exc:
            return Reply(ok=False, error=str(exc), code="prompt")
        return Reply(ok=False, error="unsupported command", code="unknown_command")

    async def _webrtc_call_command(self, session: WebRtcSession, command: ev.MediaCommand) -> Reply:
        """Call commands on a WebRTC leg: prompts, digits, stop and hangup (answer is a no-op: the leg is
        up once connected; hold belongs to the bridge)."""
        call = session.call
        if call.state is CallState.ENDED:
            return Reply(ok=False, error="the call has ended", code="ended")
        if isinstance(command, ev.MediaAnswer):
            ok = call.state is CallState.ANSWERED
            return Reply(
                ok=ok, error=None if ok else "the leg is not connected yet", code=None if ok else "state"
            )
        if isinstance(command, ev.MediaHangup):
            self.webrtc.end(session, command.cause)
            return Reply(ok=True)
        if isinstance(command, ev.MediaStop):
            self.edge.emit(call.stop(self.edge.now()))
            return Reply(ok=True)
        if isinstance(command, ev.MediaHold | ev.MediaUnhold):
            # The agent hears music; the bridge carries silence from a held agent (webrtc/calls.py).
            if call.state is not CallState.ANSWERED:
                return Reply(ok=False, error="the leg is not connected", code="state")
            held = isinstance(command, ev.MediaHold)
            self.edge.emit(call.hold(held, by="local", now=self.edge.now(), moh=self.edge.prompts.moh))
            return Reply(ok=True)
        if isinstance(command, ev.MediaOriginate):
            return Reply(ok=False, error="originate is not a WebRTC leg command", code="unsupported")
        return await self._prompt_command(call, command)

    async def execute_webrtc(self, command: WebRtcCommand) -> Reply | None:
        if isinstance(command, ev.MediaWebRtcOffer):
            law = G711.PCMU
            if command.call_id is not None:
                leg = self.edge.legs.get(command.call_id)
                caller = self.webrtc.get(command.tenant_id, command.call_id)  # a web caller (the widget)
                if caller is not None:
                    law = caller.law
                elif leg is None or leg.call.tenant_id != command.tenant_id:
                    return None  # another worker holds that call
                elif leg.rtp is not None:
                    law = leg.rtp.codec  # the same law on both legs: nothing to translate
            try:
                sdp = await self.webrtc.offer(
                    tenant_id=command.tenant_id,
                    leg_id=command.leg_id,
                    agent_id=command.agent_id,
                    sdp=command.sdp,
                    law=law,
                    for_call_id=command.call_id or command.contact_id,
                )
            except WebRtcError as exc:
                return Reply(ok=False, error=str(exc), code=getattr(exc, "code", "webrtc"))
            codec = self.webrtc.sessions[command.leg_id].leg.codec  # "PCMU", "PCMA" or "opus"
            return Reply(
                ok=True,
                data={
                    "sdp": sdp,
                    "leg_id": str(command.leg_id),
                    "call_id": str(command.leg_id),
                    "codec": codec,
                },
            )
        session = self.webrtc.get(command.tenant_id, command.leg_id)
        if session is None:
            return None
        if session.agent_id != command.agent_id:
            return Reply(ok=False, error="the leg belongs to another agent", code="forbidden")
        try:
            if isinstance(command, ev.MediaWebRtcRestart):
                sdp = await session.leg.restart_ice(command.sdp)
                return Reply(ok=True, data={"sdp": sdp, "leg_id": str(command.leg_id)})
            if isinstance(command, ev.MediaWebRtcAnswer):
                await session.leg.accept_answer(command.sdp)
            else:
                await session.leg.add_ice_candidate(
                    command.candidate, command.sdp_mid, command.sdp_mline_index
                )
        except WebRtcError as exc:
            return Reply(ok=False, error=str(exc), code="webrtc")
        return Reply(ok=True)

    # --- the bridge ---

    def endpoint(self, tenant_id: uuid.UUID, call_id: uuid.UUID) -> RtpSession | WebRtcSession | None:
        leg = self.edge.legs.get(call_id)
        if leg is not None and leg.call.tenant_id == tenant_id:
            return leg.rtp
        return self.webrtc.get(tenant_id, call_id)

    def bridge_command(self, command: ev.MediaCommand) -> Reply | None:
        if not isinstance(command, ev.MediaBridge):
            if self.endpoint(command.tenant_id, command.call_id) is None:
                return None
            bridge = self.bridges.get(command.call_id)
            if bridge is None:
                return Reply(ok=False, error="the call is not bridged", code="state")
            return self._bridge_control(bridge, command)
        a = self.endpoint(command.tenant_id, command.call_id)
        if a is None:
            return None
        if command.other_call_id == command.call_id:
            return Reply(ok=False, error="a call cannot be bridged to itself", code="invalid")
        b = self.endpoint(command.tenant_id, command.other_call_id)
        if b is None:
            return Reply(ok=False, error="the other call is not held by this media worker", code="not_found")
        for side in (a, b):
            if side.call.state is not CallState.ANSWERED:
                return Reply(ok=False, error=f"call {side.call.call_id} is not answered", code="state")
            if side.call.call_id in self.bridges or self.monitors.is_supervisor(side.call.call_id):
                return Reply(ok=False, error=f"call {side.call.call_id} is bridged already", code="conflict")
        # Two SIP legs: the relay core (no decode). A WebRTC leg: decoded frames (aiortc runs its codec).
        if isinstance(a, WebRtcSession) and not isinstance(b, WebRtcSession):
            a, b = b, a  # side a is the caller: the recording's first channel
        if isinstance(a, RtpSession) and isinstance(b, RtpSession):
            bridge = Bridge.relay(a, b)  # no decode: payloads relayed with rewritten headers
        else:
            law = a.codec if isinstance(a, RtpSession) else a.law
            bridge = Bridge(a, b, path="pcm", law=law)
        bridge.join()
        for call_id in bridge.call_ids:
            self.bridges[call_id] = bridge
        # How audio crosses: "passthrough" (same G.711 law, payload untouched), "translate" (PCMU<->PCMA by
        # table), "pcm" (decoded samples: a WebRTC leg, whose codec aiortc runs).
        return Reply(ok=True, data={"path": bridge.path})

    def _bridge_control(self, bridge: Bridge, command: ev.MediaCommand) -> Reply:
        tenant, call_id = command.tenant_id, command.call_id
        if isinstance(command, ev.MediaUnbridge):
            self.separate(bridge, "unbridge")
            return Reply(ok=True, data=self._work(bridge))
        if isinstance(command, ev.MediaMute | ev.MediaUnmute):
            mute = isinstance(command, ev.MediaMute)
            if mute != (call_id in bridge.muted):
                bridge.mute(call_id, mute)
            return Reply(ok=True)
        caller_id = bridge.a.call.call_id
        state: ev.RecordingState
        if isinstance(command, ev.MediaRecordStart):
            if bridge.recorder is not None:
                return Reply(ok=True, data={"spool": bridge.recorder.directory.name})
            if self.spool_dir is None:
                return Reply(ok=False, error="this media worker has no spool directory", code="unsupported")
            recording_id = command.recording_id or caller_id
            try:
                self.spool_dir.mkdir(parents=True, exist_ok=True)
                bridge.recorder = SpoolWriter(
                    self.spool_dir,
                    str(recording_id),
                    bridge.law,
                    flush_seconds=self.flush_s,
                    started_at=time.time(),
                    tenant_id=str(tenant),
                )
                self.shipper.attach(bridge.recorder, tenant, recording_id)
            except FileExistsError:
                return Reply(ok=False, error="this call was recorded already", code="conflict")
            except OSError as exc:
                return Reply(ok=False, error=f"the spool cannot be written: {exc}", code="spool")
            bridge.recording = command
            bridge.a_left = call_id != bridge.b.call.call_id  # the call named goes on the left channel
            state = "started"
        elif bridge.recorder is None:
            return Reply(ok=False, error="the call is not being recorded", code="state")
        elif isinstance(command, ev.MediaRecordPause):
            bridge.recorder.pause(time.monotonic())
            state = "paused"
        else:
            bridge.recorder.resume(time.monotonic())
            state = "resumed"
        self.edge.emit([_recording_fact(bridge, state)])
        return Reply(ok=True, data={"spool": bridge.recorder.directory.name})

    @staticmethod
    def _work(bridge: Bridge) -> dict[str, object]:
        """What the bridge cost: relay work per kind and frames each SIP leg decoded (tests, benchmarks)."""
        stats = bridge.codec_stats()
        return {
            "path": bridge.path,
            "forwarded": stats.forwarded,
            "translated": stats.translated,
            "relay_decoded": stats.decoded,
            "relay_encoded": stats.encoded,
            "frames_decoded": bridge.decoded_frames(),
        }

    def separate(self, bridge: Bridge, reason: str) -> None:
        self.monitors.bridge_separating(bridge, reason)
        fact = _recording_fact(bridge, "stopped") if bridge.recorder is not None else None
        recorder = bridge.stop_recording()
        if recorder is not None and fact is not None:
            self.shipper.finish(uuid.UUID(recorder.directory.name))
            self.edge.emit([fact])
        bridge.separate()
        for call_id in bridge.call_ids:
            self.bridges.pop(call_id, None)
        log.info("unbridged", a=str(bridge.call_ids[0]), b=str(bridge.call_ids[1]), reason=reason)

    def _leg_ended(self, call_id: uuid.UUID, tenant_id: uuid.UUID) -> None:
        self.ended[call_id] = tenant_id
        if len(self.ended) > ENDED_KEPT:
            self.ended.popitem(last=False)
        self._unroute(call_id)
        bridge = self.bridges.get(call_id)
        if bridge is not None:
            self.separate(bridge, "ended")
        self.monitors.leg_ended(call_id)
        self.consults.leg_ended(call_id)
        other = self.transfers.pop(call_id, None)
        if other is not None:
            # A transferred call is one conversation: either side leaving ends it.
            self.transfers.pop(other, None)
            leg = self.edge.legs.get(other)
            if leg is not None:
                self.edge.hangup(leg)


def _near_call_id(subject: str, data: bytes) -> uuid.UUID | None:
    """The call an `originate` or `webrtc_offer` must be near (its worker answers), or None."""
    try:
        if subject.endswith(".webrtc_offer"):
            return decode(data, ev.MediaWebRtcOffer).call_id
        if subject.endswith(".originate"):
            return decode(data, ev.MediaOriginate).near_call_id
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass  # the queue-group worker answers with the decode error
    return None


def _held_call_command(subject: str) -> tuple[uuid.UUID | None, str] | None:
    """sb.<tenant>.cmd.media.<name>.<call>: the tenant and the command's name (the call is the payload's)."""
    parsed = parse_subject(subject.rsplit(".", 1)[0])
    if parsed is None or parsed.kind != "cmd":
        return None
    return parsed.tenant_id, parsed.name


def _call_less(subject: str, data: bytes) -> bool:
    """On the queue group: only what is near no call (for a call, the broadcast subscription takes it)."""
    return _near_call_id(subject, data) is None


async def main(settings: Settings, bus: Bus, stop: asyncio.Event) -> None:
    # Which per-packet code runs (services/media/native.py): a missing or stale build shows here.
    log.info("media per-packet modules", code=native.status())
    # Connections are opened up front: a new one costs tens of ms in the middle of call setup.
    pool = await create_pool(settings.database_url, min_size=5, max_size=10)
    prompts = PromptStore(settings.data_dir)
    # Behind the SIP front (SB_MEDIA_WORKER_ID set, docs/media.md "Sharding"): SIP through the link.
    worker = frontlink.WorkerSettings.from_settings(settings)
    # A finished voicemail goes to JetStream before its call.record_finished (features/voicemail_ship.py).
    voicemails = VoicemailShipper(
        bus.js, settings.data_dir, bus.publish, replicas=settings.jetstream_replicas
    )
    edge = SipEdge(
        edge_config(settings),
        store=Store(pool),
        prompts=prompts,
        publish=voicemails.publish,
        **({"transport_factory": worker.transport_factory} if worker is not None else {}),
    )
    # Concurrent calls per tenant and legs per agent, counted with the other media processes (kernel/slots.py).
    await edge.slots.attach(bus.js, settings.jetstream_replicas)
    await edge.start()
    service = MediaService(
        edge,
        bus,
        settings=settings,
        spool_dir=settings.data_dir / "spool",
        data_dir=settings.data_dir,
        flush_s=settings.recording_flush_s,
    )
    await service.start()
    # Registered in `sb_media_workers` either way: behind the front (which dispatches by it and watches
    # it), or alone with link port 0, watched by the contacts coordinator (services/media/front/loss.py), so
    # that its calls are ended within seconds if it dies.
    if worker is not None:
        assert isinstance(edge.transport, frontlink.LinkedTransport)
        worker_id, site, link_port = worker.worker_id, worker.site, edge.transport.link_port
    else:
        worker_id, site, link_port = frontlink.standalone_id(settings.sip_port), settings.site, 0
    registrar = frontlink.Registrar(
        bus,
        worker_id=worker_id,
        site=site,
        link_host=edge.config.host,  # where the front connects: the advertised address, never 0.0.0.0
        link_port=link_port,
        capacity=edge.config.max_calls,
        calls=lambda: frontlink.live_calls(edge, service.webrtc, with_byes=link_port == 0),
        replicas=settings.jetstream_replicas,
    )
    await registrar.start()
    # The registration follows the calls as they change (no sampling of them in between).
    edge.on_start.append(lambda _leg: registrar.changed())
    edge.on_change.append(lambda _leg: registrar.changed())
    service.webrtc.on_start.append(lambda _session: registrar.changed())
    service.webrtc.on_change.append(lambda _session: registrar.changed())
    service.webrtc.on_end.append(lambda _session: registrar.changed())
    # The unrouted message is rendered once (espeak-ng, cached on disk) before the first caller needs it.
    warmup = asyncio.get_running_loop().create_task(prompts.warm([edge.config.unrouted_message]))

    await until_stopped(stop)
    # The stop runs here, before run_service closes the bus: the calls' BYEs and call.ended go out, then
    # (behind the front) the goodbye frame, so the front does not take the stop for a loss.
    warmup.cancel()
    await registrar.stopping()  # the front sends no new calls while ours are being ended
    await service.stop()
    await edge.stop()
    await edge.slots.stop()
    await registrar.stop()  # deleted key: a clean stop, not a loss
    await close_pool(pool)


def _recording_fact(bridge: Bridge, state: ev.RecordingState) -> ev.CallRecording:
    """call.recording for the bridge's recording, with the segment labels its record_start gave."""
    assert bridge.recorder is not None
    spool = bridge.recorder.directory.name
    start = bridge.recording
    return ev.CallRecording(
        tenant_id=bridge.a.call.tenant_id,
        call_id=bridge.a.call.call_id,
        state=state,
        spool=spool,
        recording_id=uuid.UUID(spool),
        contact_id=start.contact_id if start else None,
        segment=start.segment if start else 0,
        kind=start.kind if start else "talk",
        agent_id=start.agent_id if start else "",
        consulted_agent_id=start.consulted_agent_id if start else "",
    )
