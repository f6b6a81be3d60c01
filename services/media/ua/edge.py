"""The SIP edge: UDP and TCP sockets bound to the sans-IO cores, and the actions of those cores carried out.

The transaction layer (sip/transaction.py) gets every message; a new INVITE goes to its set-up
(ua/inbound.py carries out ua/setup.py's core through the narrow `InboundEdge`), everything after it to
the leg's dialog core (ua/dialog_core.py): the edge only looks the leg up, passes `now` and whether the
INVITE still waits for an answer, and carries out the actions (`run`). One `loop.call_at` timer serves the
transaction layer; each leg's own timers (ring-no-answer, the 2xx retransmission) are `loop.call_at`
handles armed and cancelled by its core. Every entry point catches everything: no input, however broken,
may raise out of the transport or stall other calls.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from services.kernel.log import get_logger
from services.kernel.messages import Event
from services.kernel.slots import Slots, tenant_slot
from services.media import sip
from services.media.prompts import PromptStore
from services.media.rtp.g711 import G711
from services.media.rtp.session import MediaClock, PortPool, RtpSession
from services.media.ua import dialog_core as core
from services.media.ua import inbound, outbound, requests
from services.media.ua.admission import AdmissionController
from services.media.ua.call import CallState
from services.media.ua.dialog_core import LegConfig, LegTimer
from services.media.ua.leg import EdgeConfig, Leg
from services.media.ua.publisher import EventPublisher
from services.media.ua.ratelimit import SourceLimiter
from services.media.ua.store import Store
from services.media.ua.transport import Peer, SipTransport, as_peer
from services.media.ua.watch import LegWatch

__all__ = ["EdgeConfig", "SipEdge"]

log = get_logger()

# The hang-up cause of a call whose peer sent no RTP or RTCP for SB_MEDIA_TIMEOUT_S.
MEDIA_TIMEOUT = "media_timeout"
# RFC 4028: the caller asked for a session timer and stopped refreshing.
SESSION_EXPIRED = "session_expired"


class SipEdge:
    def __init__(
        self,
        config: EdgeConfig,
        *,
        store: Store,
        prompts: PromptStore,
        publish: Callable[[Event], Awaitable[None]],
        transport_factory: Callable[..., SipTransport] = SipTransport,
    ) -> None:
        # transport_factory: front/link.py's LinkedTransport when the worker sits behind the SIP front.
        self.config = config
        self.store = store
        self.prompts = prompts
        self.layer = sip.TransactionLayer(config.timers)
        self.leg_config = LegConfig(
            host=config.host, timers=config.timers, no_answer_timeout=config.no_answer_timeout
        )
        self.dialogs = sip.DialogTable()
        self.limiter = SourceLimiter(
            rate=config.rate, burst=config.burst, ban_after=config.ban_after, ban_seconds=config.ban_seconds
        )
        self.clock = MediaClock()
        self.ports = PortPool(config.rtp_low, config.rtp_high)
        self.legs: dict[uuid.UUID, Leg] = {}
        self.by_dialog: dict[sip.DialogId, Leg] = {}
        self.by_invite: dict[sip.TransactionKey, Leg] = {}
        self.by_client: dict[sip.TransactionKey, Leg] = {}
        self.pending: dict[sip.TransactionKey, Peer] = {}
        # Inbound INVITEs in set-up or up, by Call-ID, From tag and CSeq: the same request again on another
        # transaction (another Via branch) is a merged request (RFC 3261 8.2.2.2), never a second call.
        self.invites: dict[tuple[str, str, int], sip.TransactionKey] = {}
        # Calls per tenant, shared with the other media processes once attached to the bus (app.main).
        self.slots = Slots()
        self.address = sip.LocalAddress(config.host, config.port, "UDP")
        self.transport = transport_factory(
            config.bind or config.host, config.port, limiter=self.limiter, on_message=self._on_message
        )
        self.send = self.transport.send
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.events = EventPublisher(publish)
        self.emit = self.events.emit
        # Called once per leg when it is taken in (its commands' subject opens) and when its call ends
        # (the bridge lets go of it).
        self.on_start: list[Callable[[Leg], None]] = []
        self.on_end: list[Callable[[Leg], None]] = []
        # Called when a leg is answered or ends (the worker's registration follows).
        self.on_change: list[Callable[[Leg], None]] = []
        # Futures for a leg reaching a state (transfer, consult): resolved where the state changes.
        self.watch = LegWatch(self.legs)
        self.reaches = self.watch.reaches
        self.admission = AdmissionController(
            max_calls=config.max_calls,
            max_setup=config.max_setup,
            max_lag=config.max_lag,
            max_cpu=config.max_cpu,
        )

    # --- life cycle ---

    async def start(self) -> None:
        await self.transport.start()
        self._spawn(self.events.run())
        self._spawn(self._lag_probe())
        log.info("sip_listening", host=self.config.host, port=self.config.port)

    async def stop(self) -> None:
        for leg in list(self.legs.values()):
            self.hangup(leg, "shutdown")
        await asyncio.sleep(0.05)
        if self._timer is not None:
            self._timer.cancel()
        self.transport.close()
        await self.events.drain(2.0)
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _lag_probe(self, interval: float = 0.1) -> None:
        loop = asyncio.get_running_loop()
        cpu_then, wall_then = time.process_time(), loop.time()
        while True:
            at = loop.time() + interval
            await asyncio.sleep(interval)
            now, cpu = loop.time(), time.process_time()
            self.admission.observe_lag(now - at)
            self.admission.observe_cpu(cpu - cpu_then, now - wall_then)
            cpu_then, wall_then = cpu, now

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def carry_out(self, actions: list[sip.Action]) -> None:
        for action in actions:
            try:
                self._action(action)
            except Exception:
                log.exception("sip_action_failed", action=type(action).__name__)

    def _action(self, action: sip.Action) -> None:
        if isinstance(action, sip.Transmit):
            self.send(action.message, action.peer)
        elif isinstance(action, sip.RequestReceived):
            self._request(action.key, action.request, as_peer(action.peer))
        elif isinstance(action, sip.ResponseReceived):
            self._response(action.key, action.response)
        elif isinstance(action, sip.TimedOut | sip.TransportError):
            leg = self.by_client.pop(action.key, None)
            if leg is not None:
                self.run(leg, leg.core.timed_out(action.request.method, self.now()))
        elif isinstance(action, sip.TransactionTerminated):
            self.by_invite.pop(action.key, None)
            self.pending.pop(action.key, None)

    def arm(self) -> None:
        at = self.layer.next_timer()
        if at is None:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.now()
        try:
            self.carry_out(self.layer.handle_timer(now))
        except Exception:
            log.exception("sip_timer_failed")
        self.arm()

    # --- requests ---

    def respond(
        self,
        key: sip.TransactionKey | None,
        request: sip.SipRequest,
        status: int,
        peer: Peer,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        reason: str | None = None,
        to_tag: str | None = None,
    ) -> None:
        response = sip.make_response(
            request, status, reason, to_tag=to_tag or sip.new_tag(), headers=headers or [], body=body
        )
        if key is not None and self.layer.get(key) is not None:
            self.carry_out(self.layer.send_response(key, response, self.now()))
        else:
            self.send(response, peer)

    def _on_message(self, message: sip.SipMessage, peer: Peer) -> None:
        try:
            self.carry_out(self.layer.receive(message, self.now(), peer=peer, reliable=peer[0] == "tcp"))
        except Exception:
            log.exception("sip_message_failed")
        self.arm()

    def _request(self, key: sip.TransactionKey | None, request: sip.SipRequest, peer: Peer) -> None:
        verdict = requests.screen(request)
        if isinstance(verdict, requests.Answer):
            self.respond(key, request, verdict.status, peer, headers=list(verdict.headers))
            return
        if verdict is requests.Goes.ACK:
            self._ack(request)
            return
        if verdict is requests.Goes.CANCEL:
            self._cancel(key, request, peer)
            return
        method = request.method
        dialog = self.dialogs.match_request(request)
        if dialog is None:
            unmatched = sip.unmatched_request_status(request)
            if unmatched is not None or method != "INVITE":
                self.respond(key, request, unmatched or 481, peer)
                return
            assert key is not None
            merge = _merge_key(request)
            if merge is not None and self.invites.get(merge, key) != key:
                # A client that retransmits with a fresh branch (or a forking proxy): answering it as a new
                # call made a second contact that an agent took while the caller's RTP went to the first.
                self.respond(key, request, 482, peer)
                return
            # Shedding comes before any database work: past capacity a clean 503 costs microseconds.
            admission = self.admission.check(calls=len(self.legs), setting_up=len(self.pending))
            if not admission.admitted:
                self.respond(
                    key,
                    request,
                    503,
                    peer,
                    headers=[("Retry-After", str(admission.retry_after))],
                    reason=admission.reason,
                )
                return
            self.pending[key] = peer
            if merge is not None:
                self.invites[merge] = key
            self._spawn(self._new_call(key, request, peer))
            return
        leg = self.by_dialog.get(dialog.id)
        if leg is None:
            self.respond(key, request, 481, peer)
            return
        self.run(leg, leg.core.request(key, request, self.now()), peer)

    def _ack(self, request: sip.SipRequest) -> None:
        dialog = self.dialogs.match_request(request)
        leg = self.by_dialog.get(dialog.id) if dialog is not None else None
        if leg is not None:
            self.run(leg, leg.core.ack(request, self.now()))

    def _cancel(self, key: sip.TransactionKey | None, request: sip.SipRequest, peer: Peer) -> None:
        invite_key = self.layer.find_invite(request, peer)
        txn = self.layer.get(invite_key) if invite_key is not None else None
        if invite_key is None or txn is None:
            self.respond(key, request, 481, peer)
            return
        self.respond(key, request, 200, peer)
        if txn.state is not sip.State.PROCEEDING:
            return  # a final response went out already: CANCEL has no effect (§9.2)
        self.pending.pop(invite_key, None)
        leg = self.by_invite.get(invite_key)
        if leg is not None:
            self.run(leg, leg.core.reject(487, "cancelled", self.now(), pending=True))
        else:  # still being set up: no leg, no dialog yet (set-up notices it is no longer pending)
            response = sip.make_response(txn.request, 487, to_tag=sip.new_tag())
            self.carry_out(self.layer.send_response(invite_key, response, self.now()))

    # --- inbound INVITE (ua/inbound.py carries out its set-up) ---

    async def _new_call(self, key: sip.TransactionKey, invite: sip.SipRequest, peer: Peer) -> None:
        try:
            await inbound.set_up(self, key, invite, peer)
        except Exception:
            log.exception("new_call_failed")
            if self.layer.state(key) is sip.State.PROCEEDING:
                self.respond(key, invite, 500, peer)
        finally:
            self.pending.pop(key, None)
            if key not in self.by_invite:  # no leg was made, or it ended already: _release forgot it
                self._forget_invite(key, invite)
            self.arm()

    def _forget_invite(self, key: sip.TransactionKey, invite: sip.SipRequest) -> None:
        merge = _merge_key(invite)
        if merge is not None and self.invites.get(merge) == key:
            del self.invites[merge]

    def still_pending(self, key: sip.TransactionKey) -> bool:
        """The INVITE still wants an answer from set-up: not CANCELled, not answered by anyone else. Checked
        when set-up starts (a CANCEL read in the same batch runs first) and after every await in it."""
        return key in self.pending and self.layer.state(key) is sip.State.PROCEEDING

    def take_in(self, leg: Leg, key: sip.TransactionKey, ringing: sip.SipResponse) -> None:
        """A new inbound leg, its dialog made by the 180: into the tables, then the 180 goes out."""
        assert leg.dialog is not None
        self.legs[leg.call.call_id] = leg
        self.leg_started(leg)
        self.by_invite[key] = leg
        self.dialogs.add(leg.dialog)
        self.by_dialog[leg.dialog.id] = leg
        self.carry_out(self.layer.send_response(key, ringing, self.now()))

    async def open_rtp(self, leg: Leg, port: int | None = None) -> RtpSession | None:
        """RTP/RTCP sockets on `port` (already taken from the pool) or the next free pair; a pair that
        another process holds is skipped."""
        error: OSError | None = None
        for _ in range(50):
            if port is None:
                port = self.ports.acquire()
                if port is None:
                    return None
            session = RtpSession(
                leg.call,
                host=self.config.bind or self.config.host,
                port=port,
                emit=self.emit,
                clock=self.clock,
            )
            session.media_timeout = self.config.media_timeout
            session.on_media_timeout = functools.partial(self.hangup, leg, MEDIA_TIMEOUT)
            session.on_session_expired = functools.partial(self.hangup, leg, SESSION_EXPIRED)
            try:
                await session.open()
                return session
            except OSError as exc:
                error = exc
                self.ports.release(port)
                port = None
        # The call gets a 503; say why, since "every pair taken" (another program in our range) and a
        # failing socket call look the same to the caller.
        log.warning(
            "rtp_open_failed", call_id=leg.call.call_id, error=str(error) if error else "no free port"
        )
        return None

    def release_rtp(self, rtp: RtpSession) -> None:
        rtp.close()
        self.ports.release(rtp.port)

    def _apply_media(self, rtp: RtpSession, media: sip.NegotiatedMedia, keep_codec: bool) -> None:
        if keep_codec:  # the answer to our re-INVITE: where to send, and music on hold goes out meanwhile
            rtp.configure(
                codec=rtp.codec,
                payload_type=rtp.payload_type,
                te_pt=rtp.te_pt,
                remote=(media.remote_address, media.remote_port),
                sending=True,
                receiving=media.direction.receives,
            )
            return
        rtp.configure(
            codec=G711.PCMA if media.codec.name.upper() == "PCMA" else G711.PCMU,
            payload_type=media.codec.payload_type,
            te_pt=media.telephone_event_pt,
            remote=(media.remote_address, media.remote_port),
            sending=media.direction.sends,
            receiving=media.direction.receives,
        )

    def signalling_address(self) -> tuple[str, int]:
        """Where SIP reaches this process: Via and Contact (behind the front, the front's address)."""
        return self.transport.public or (self.config.host, self.config.port)

    def local(self, peer: Peer) -> sip.LocalAddress:
        host, port = self.signalling_address()
        return sip.LocalAddress(host, port, "TCP" if peer[0] == "tcp" else "UDP")

    def contact_uri(self, peer: Peer) -> str:
        host, port = self.signalling_address()
        suffix = ";transport=tcp" if peer[0] == "tcp" else ""
        return f"sip:{host}:{port}{suffix}"

    def contact(self, peer: Peer) -> str:
        return f"<{self.contact_uri(peer)}>"

    # --- call control (used by commands too) ---

    def _ringing(self, leg: Leg) -> bool:
        """The leg's INVITE still waits for a final response (its transaction is proceeding)."""
        key = leg.core.invite_key
        return key is not None and self.layer.state(key) is sip.State.PROCEEDING

    def answer(self, leg: Leg) -> bool:
        ok, actions = leg.core.answer(self.now(), pending=self._ringing(leg))
        self.run(leg, actions)
        return ok

    def hangup(self, leg: Leg, cause: str = "normal_clearing") -> None:
        self.run(leg, leg.core.hangup(cause, self.now(), pending=self._ringing(leg)))

    def reject(self, leg: Leg, status: int, cause: str) -> None:
        """End a leg still being set up with this final response (its media failed)."""
        self.run(leg, leg.core.reject(status, cause, self.now(), pending=self._ringing(leg)))

    def reinvite(self, leg: Leg, *, hold: bool) -> str | None:
        """Hold or resume the peer (our re-INVITE); an error text when the call cannot be now."""
        error, actions = leg.core.hold(hold, self.now(), moh=self.prompts.moh if hold else None)
        self.run(leg, actions)
        return error

    def state_changed(self, leg: Leg) -> None:
        """The leg was answered or ended: wake its waiters (`reaches`) and the change hooks."""
        self.watch.changed(leg)
        for hook in list(self.on_change):
            try:
                hook(leg)
            except Exception:
                log.exception("change_hook_failed")

    def leg_started(self, leg: Leg) -> None:
        for hook in list(self.on_start):
            try:
                hook(leg)
            except Exception:
                log.exception("start_hook_failed")

    # --- carrying out a leg's actions (ua/dialog_core.py) ---

    def run(self, leg: Leg, actions: Sequence[core.Action], peer: Peer | None = None) -> None:
        """Carry out the dialog core's actions for `leg` in order; `peer`: where a request came from (a
        response without a transaction goes back there)."""
        for action in actions:
            try:
                self._leg_action(leg, action, peer or leg.peer)
            except Exception:
                log.exception("leg_action_failed", action=type(action).__name__)
        self.arm()

    def _leg_action(self, leg: Leg, action: core.Action, peer: Peer) -> None:
        match action:
            case core.Respond(key, response):
                if key is not None and self.layer.get(key) is not None:
                    self.carry_out(self.layer.send_response(key, response, self.now()))
                else:
                    self.send(response, peer)
            case core.SendRequest(request, track):
                try:
                    key, actions = self.layer.send_request(
                        request, self.now(), peer=leg.peer, reliable=leg.core.reliable
                    )
                except sip.TransactionError:
                    return
                if track:
                    self.by_client[key] = leg
                self.carry_out(actions)
            case core.Send(message):
                self.send(message, leg.peer)
            case core.Emit(events):
                self.emit(list(events))
            case core.ArmTimer(timer, at):
                handle = leg.timers.pop(timer, None)
                if handle is not None:
                    handle.cancel()
                loop = asyncio.get_running_loop()
                leg.timers[timer] = loop.call_at(at, self._leg_timer, leg, timer)
            case core.CancelTimer(timer):
                handle = leg.timers.pop(timer, None)
                if handle is not None:
                    handle.cancel()
            case core.ApplyMedia(media, keep_codec):
                if leg.rtp is not None:
                    self._apply_media(leg.rtp, media, keep_codec)
            case core.RefreshSession(deadline):
                if leg.rtp is not None:
                    leg.rtp.session_deadline = deadline
            case core.DialogUp(dialog, replaces):
                if replaces is not None:
                    self.dialogs.remove(replaces)
                self.dialogs.add(dialog)
                self.by_dialog[dialog.id] = leg
            case core.Changed():
                self.state_changed(leg)
            case core.End(cause, status):
                self.finish(leg, cause, status)

    def _leg_timer(self, leg: Leg, timer: LegTimer) -> None:
        leg.timers.pop(timer, None)
        try:
            self.run(leg, leg.core.timer_fired(timer, self.now(), pending=self._ringing(leg)))
        except Exception:
            log.exception("leg_timer_failed", timer=timer.value)

    # --- responses (our BYE, re-INVITE, originate) ---

    def _response(self, key: sip.TransactionKey | None, response: sip.SipResponse) -> None:
        leg = self.by_client.get(key) if key is not None else None
        try:
            method = response.cseq.method
        except sip.SipParseError:
            method = ""
        if leg is None:
            dialog = self.dialogs.match_response(response)
            leg = self.by_dialog.get(dialog.id) if dialog is not None else None
            if leg is not None and 200 <= response.status < 300 and method == "INVITE":
                self.run(leg, leg.core.stray_ok(response))  # a retransmitted 2xx: ACK again
            return
        if response.status >= 200 and key is not None:
            self.by_client.pop(key, None)
        actions = leg.core.response(
            method, response, self.now(), branch=sip.new_branch(), cnonce=uuid.uuid4().hex[:16]
        )
        self.run(leg, actions)

    # --- originate (outbound.py) ---

    async def originate(
        self, *, call_id: uuid.UUID, tenant_id: uuid.UUID, to: str, caller_id: str, trunk_name: str | None
    ) -> str | None:
        """Start an outbound call; returns an error text or None."""
        return await outbound.originate(
            self, call_id=call_id, tenant_id=tenant_id, to=to, caller_id=caller_id, trunk_name=trunk_name
        )

    # --- teardown ---

    def finish(self, leg: Leg, cause: str, sip_status: int | None = None) -> None:
        leg.core.gone()
        if leg.call.state is not CallState.ENDED:
            events: list[Event] = []
            if leg.rtp is not None and leg.call.answered_at is not None:
                events.append(leg.rtp.quality())
            events += leg.call.end(cause, self.now(), sip_status=sip_status)
            self.emit(events)
            for hook in list(self.on_end):
                try:
                    hook(leg)
                except Exception:
                    log.exception("end_hook_failed")
        self._release(leg)
        self.state_changed(leg)

    def _release(self, leg: Leg) -> None:
        if self.legs.pop(leg.call.call_id, None) is not None:
            self.slots.release(tenant_slot(leg.call.tenant_id))
        if leg.rtp is not None:
            self.release_rtp(leg.rtp)
        if leg.dialog is not None:
            self.dialogs.remove(leg.dialog.id)
            self.by_dialog.pop(leg.dialog.id, None)
        # The INVITE's transaction outlives the call by up to 32 s (Timer H or L): the leg must not live on
        # with it (its RTP session, jitter buffer and detectors were held that long for every ended call).
        if leg.core.invite_key is not None:
            self.by_invite.pop(leg.core.invite_key, None)
            if leg.core.invite is not None and not leg.outbound:
                self._forget_invite(leg.core.invite_key, leg.core.invite)
        for handle in leg.timers.values():
            handle.cancel()
        leg.timers.clear()


def _merge_key(request: sip.SipRequest) -> tuple[str, str, int] | None:
    """What makes two INVITEs the same request for RFC 3261 8.2.2.2 (None: a header does not parse)."""
    try:
        tag = request.from_.tag
        return (request.call_id, tag, request.cseq.number) if tag else None
    except sip.SipParseError:
        return None
