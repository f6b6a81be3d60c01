"""One call leg's SIP dialog, sans-IO: everything after set-up (ua/setup.py) or originate.

Inputs: the answer, hang-up and hold commands; the peer's in-dialog requests (BYE, INFO, re-INVITE, ACK)
and CANCEL; the responses to our INVITE, BYE and re-INVITE (or their time-out); the leg's own timers
(ring-no-answer, the 2xx retransmission until the ACK). Each takes `now`; ids (Via branch, cnonce) are passed
in, never drawn here. Actions out, carried out by the edge (edge.py): respond in the request's transaction,
send a request in a new client transaction, send a message as it is, publish events, arm or cancel one of
the leg's timers, (re)configure its RTP, register its dialog, wake what waits for it, end it (which closes
its RTP). Every move of `LegState` is one entry of `TABLE`, made only by `_set_state`; a request the
state does not take gets the RFC's answer (481, 491, 500), a command the state does not take is refused.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

from services.kernel.messages import Event
from services.media import sip
from services.media.sip import session_timer
from services.media.ua.call import Call, Samples
from services.media.ua.requests import ALLOW, DTMF_INFO_TYPES, info_digit
from services.media.ua.store import Trunk
from services.media.ua.trunk_auth import answer_challenge

__all__ = [
    "TABLE",
    "Action",
    "ApplyMedia",
    "ArmTimer",
    "CancelTimer",
    "Changed",
    "DialogCore",
    "DialogCoreError",
    "DialogUp",
    "Emit",
    "End",
    "LegConfig",
    "LegInput",
    "LegState",
    "LegTimer",
    "OutboundTarget",
    "RefreshSession",
    "Respond",
    "Send",
    "SendRequest",
]

log = logging.getLogger(__name__)


class LegState(enum.Enum):
    RINGING = "ringing"  # inbound: 180 sent, no final response yet
    CALLING = "calling"  # outbound: our INVITE is out, no final response yet
    UP = "up"  # answered: the peer's BYE, INFO and re-INVITE are served
    REOFFERING = "reoffering"  # our re-INVITE (hold, resume) waits for its final response
    ENDED = "ended"


class LegInput(enum.Enum):
    ANSWER = "answer"  # the answer command: our 200 OK
    REJECT = "reject"  # our final error response (set-up failure, no answer, CANCEL, hang-up)
    PROVISIONAL = "provisional"  # a 1xx to our INVITE
    CHALLENGED = "challenged"  # a 401/407 to our INVITE, answered once with the trunk's credentials
    ACCEPTED = "accepted"  # a 2xx to our INVITE
    DECLINED = "declined"  # a final error to our INVITE, or none in time
    BYE = "bye"  # the peer hung up
    INFO = "info"
    REINVITE = "reinvite"  # the peer's re-INVITE (its hold, resume, or a session refresh)
    ACK = "ack"
    RETRANSMIT = "retransmit"  # our 2xx again: no ACK yet
    HOLD = "hold"  # hold or resume: our re-INVITE
    REOFFERED = "reoffered"  # the final response to our re-INVITE (or its time-out)
    HANGUP = "hangup"  # we hang up: BYE, or CANCEL while our INVITE rings
    GONE = "gone"  # ended from outside (set-up gave the leg up while its RTP opened)


_S, _I = LegState, LegInput
# The only moves a leg's dialog makes.
TABLE: dict[LegState, dict[LegInput, LegState]] = {
    _S.RINGING: {
        _I.ANSWER: _S.UP,
        _I.REJECT: _S.ENDED,
        _I.BYE: _S.ENDED,
        _I.INFO: _S.RINGING,
        _I.GONE: _S.ENDED,
    },
    _S.CALLING: {
        _I.PROVISIONAL: _S.CALLING,
        _I.CHALLENGED: _S.CALLING,
        _I.ACCEPTED: _S.UP,
        _I.DECLINED: _S.ENDED,
        _I.HANGUP: _S.ENDED,
        _I.GONE: _S.ENDED,
    },
    _S.UP: {
        _I.BYE: _S.ENDED,
        _I.INFO: _S.UP,
        _I.REINVITE: _S.UP,
        _I.ACK: _S.UP,
        _I.RETRANSMIT: _S.UP,
        _I.HOLD: _S.REOFFERING,
        _I.HANGUP: _S.ENDED,
        _I.GONE: _S.ENDED,
    },
    _S.REOFFERING: {
        _I.BYE: _S.ENDED,
        _I.INFO: _S.REOFFERING,
        _I.ACK: _S.REOFFERING,
        _I.RETRANSMIT: _S.REOFFERING,
        _I.REOFFERED: _S.UP,
        _I.HANGUP: _S.ENDED,
        _I.GONE: _S.ENDED,
    },
    _S.ENDED: {},
}

# The peer's INVITE in a state that takes none (RFC 3261 §14.2): while our own re-INVITE is pending, 491;
# before our final response to the first INVITE, 500 with a Retry-After.
_REINVITE_REFUSED: dict[LegState, tuple[int, tuple[tuple[str, str], ...]]] = {
    _S.REOFFERING: (491, ()),
    _S.RINGING: (500, (("Retry-After", "1"),)),
}


class LegTimer(enum.Enum):
    NO_ANSWER = "no_answer"  # ringing without the answer command: 480
    ACK_WAIT = "ack_wait"  # our 2xx is retransmitted until the ACK; none in time: BYE


class DialogCoreError(Exception):
    """A move the table does not have (an adapter bug, never a peer's doing: peers get a response)."""


@dataclass(frozen=True)
class LegConfig:
    host: str  # our address in SDP
    timers: sip.TimerConfig
    no_answer_timeout: float


@dataclass(frozen=True)
class OutboundTarget:
    """What our INVITE (and its retry after a digest challenge) repeats."""

    number: str
    host: str
    port: int
    from_: str  # with our tag
    call_id: str


# --- actions ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Respond:
    """A response in the request's server transaction (`key`; None: straight to the peer)."""

    key: sip.TransactionKey | None
    response: sip.SipResponse


@dataclass(frozen=True)
class SendRequest:
    """A request in a new client transaction; `track`: its responses and time-out come back to this leg."""

    request: sip.SipRequest
    track: bool


@dataclass(frozen=True)
class Send:
    """A message outside any transaction: the ACK to a 2xx, our 2xx again."""

    message: sip.SipMessage


@dataclass(frozen=True)
class Emit:
    events: tuple[Event, ...]


@dataclass(frozen=True)
class ArmTimer:
    timer: LegTimer
    at: float


@dataclass(frozen=True)
class CancelTimer:
    timer: LegTimer


@dataclass(frozen=True)
class ApplyMedia:
    """Configure the leg's RTP; `keep_codec`: the answer to our re-INVITE (only where and whether to send)."""

    media: sip.NegotiatedMedia
    keep_codec: bool = False


@dataclass(frozen=True)
class RefreshSession:
    """RFC 4028: the session's new deadline (a 2xx to an INVITE refreshes it)."""

    deadline: float


@dataclass(frozen=True)
class DialogUp:
    """Register the dialog (our INVITE's 2xx made it); `replaces`: the early dialog's id, if any."""

    dialog: sip.Dialog
    replaces: sip.DialogId | None


@dataclass(frozen=True)
class Changed:
    """The leg was answered: wake what waits for it."""


@dataclass(frozen=True)
class End:
    """The leg is over: call.ended, its RTP closed, its slot and dialog released."""

    cause: str
    status: int | None = None


Action = (
    Respond
    | SendRequest
    | Send
    | Emit
    | ArmTimer
    | CancelTimer
    | ApplyMedia
    | RefreshSession
    | DialogUp
    | Changed
    | End
)


def _emit(events: list[Event]) -> list[Action]:
    return [Emit(tuple(events))] if events else []


@dataclass(eq=False)
class DialogCore:
    """One leg's dialog from its ringing (inbound) or its INVITE (outbound) to its end."""

    call: Call
    config: LegConfig
    outbound: bool
    reliable: bool
    contact: str  # our Contact header value, <sip:...>
    address: sip.LocalAddress  # our Via (and the dialog's requests')
    session_id: int
    to_tag: str = ""
    invite: sip.SipRequest | None = None
    invite_key: sip.TransactionKey | None = None  # inbound: the INVITE's server transaction
    dialog: sip.Dialog | None = None
    session_timer: session_timer.SessionTimer | None = None  # RFC 4028, when the caller asked
    target: OutboundTarget | None = None
    trunk: Trunk | None = None
    state: LegState = field(init=False)
    port: int | None = None  # our RTP port, once its sockets are open
    media: sip.NegotiatedMedia | None = None  # what the last offer/answer agreed
    sdp_version: int = 1
    answer_sdp: bytes = b""  # inbound: the SDP of our 200 OK
    late_offer: sip.SessionDescription | None = None  # our offer in the 200 OK; its answer comes in the ACK
    pending_offer: sip.SessionDescription | None = None  # our INVITE's or re-INVITE's offer
    ok: sip.InviteOkRetransmitter | None = None
    auth_attempted: bool = False

    def __post_init__(self) -> None:
        self.state = LegState.CALLING if self.outbound else LegState.RINGING

    # --- inbound set-up ---------------------------------------------------------------------------------

    def media_ready(self, port: int, sdp: sip.Answer | sip.SessionDescription, now: float) -> list[Action]:
        """The RTP sockets are open on `port`; `sdp`: our answer, or (a late-offer INVITE) our offer."""
        self.port = port
        if isinstance(sdp, sip.Answer):
            self.answer_sdp = bytes(sdp.sdp)
            return self._apply(sdp.media, now)
        self.late_offer = sdp
        self.answer_sdp = bytes(sdp)
        return []

    def await_answer(self, now: float) -> list[Action]:
        if self.state is not LegState.RINGING:
            return []
        return [ArmTimer(LegTimer.NO_ANSWER, now + self.config.no_answer_timeout)]

    # --- commands -----------------------------------------------------------------------------------------

    def answer(self, now: float, *, pending: bool) -> tuple[bool, list[Action]]:
        """Our 200 OK (`pending`: the INVITE still wants a final response). True when the call is up."""
        if self.state is not LegState.RINGING:
            return self.state in (LegState.UP, LegState.REOFFERING), []
        if not pending or self.port is None or self.invite is None:
            return False, []  # (no RTP port yet: the 200 would have no SDP; the caller retries)
        refresh, headers = self._refresh(now)
        ok = sip.make_response(
            self.invite,
            200,
            to_tag=self.to_tag,
            body=self.answer_sdp,
            headers=[("Contact", self.contact), ("Allow", ALLOW), *headers],
        )
        self._set_state(LegInput.ANSWER)
        actions: list[Action] = [CancelTimer(LegTimer.NO_ANSWER), *refresh, Respond(self.invite_key, ok)]
        actions += self._await_ack(ok, now)
        if self.dialog is not None:
            self.dialog.confirm()
        return True, [*actions, *_emit(self.call.answered(now)), Changed()]

    def reject(self, status: int, cause: str, now: float, *, pending: bool) -> list[Action]:
        """End a ringing inbound leg with a final error response (`pending`: the INVITE still wants one)."""
        if self.state is not LegState.RINGING:
            return []
        self._set_state(LegInput.REJECT)
        actions: list[Action] = [CancelTimer(LegTimer.NO_ANSWER)]
        if pending and self.invite is not None:
            actions.append(
                Respond(self.invite_key, sip.make_response(self.invite, status, to_tag=self.to_tag))
            )
        return [*actions, End(cause, status)]

    def hangup(self, cause: str, now: float, *, pending: bool = False) -> list[Action]:
        """Ringing inbound: 603 (503 at shutdown); our INVITE ringing: CANCEL; answered: BYE."""
        if self.state is LegState.RINGING:
            return self.reject(603 if cause != "shutdown" else 503, cause, now, pending=pending)
        if self.state is LegState.ENDED:
            return []
        actions: list[Action] = []
        if self.state is LegState.CALLING:
            if self.invite is not None:
                actions.append(SendRequest(sip.make_cancel(self.invite), track=False))
        elif self.dialog is not None and not self.dialog.terminated:
            actions.append(SendRequest(self.dialog.create_request("BYE"), track=True))
        self._set_state(LegInput.HANGUP)
        return [*actions, End(cause)]

    def hold(self, held: bool, now: float, *, moh: Samples | None = None) -> tuple[str | None, list[Action]]:
        """Hold (our offer sendonly) or resume (sendrecv): a re-INVITE. An error text when refused."""
        if self.state is LegState.REOFFERING:
            return "a re-INVITE is in progress on this call; try again", []
        if self.state is not LegState.UP or self.dialog is None or self.port is None:
            return "the call is not answered", []
        self.sdp_version += 1
        pcma = self.media is not None and self.media.codec.name.upper() == "PCMA"
        offer = sip.create_offer(
            local_address=self.config.host,
            local_port=self.port,
            session_id=self.session_id,
            session_version=self.sdp_version,
            codecs=(sip.PCMA, sip.PCMU) if pcma else (sip.PCMU, sip.PCMA),
            telephone_event_pt=(self.media.telephone_event_pt if self.media else None) or 101,
            direction=sip.Direction.SENDONLY if held else sip.Direction.SENDRECV,
        )
        request = self.dialog.create_request("INVITE", body=bytes(offer), content_type="application/sdp")
        self.pending_offer = offer
        self._set_state(LegInput.HOLD)
        events = self.call.hold(held, by="local", now=now, moh=moh)
        return None, [SendRequest(request, track=True), *_emit(events)]

    def gone(self) -> None:
        """Ended from outside the table (the edge's `finish`): nothing more is sent."""
        if self.state is not LegState.ENDED:
            self._set_state(LegInput.GONE)

    # --- the peer's requests ----------------------------------------------------------------------------

    def request(self, key: sip.TransactionKey | None, request: sip.SipRequest, now: float) -> list[Action]:
        """BYE, INFO or INVITE inside this leg's dialog."""
        if self.dialog is None:
            return [self._response(key, request, 481)]
        problem = self.dialog.receive_request(request)  # CSeq order
        if problem is not None:
            return [self._response(key, request, problem)]
        method = request.method
        if method == "BYE":
            if not self._allows(LegInput.BYE):
                return [self._response(key, request, 481)]
            self._set_state(LegInput.BYE)
            return [self._response(key, request, 200), End("remote_bye")]
        if method == "INFO":
            if not self._allows(LegInput.INFO):
                return [self._response(key, request, 481)]
            self._set_state(LegInput.INFO)
            return self._info(key, request, now)
        if not self._allows(LegInput.REINVITE):
            status, headers = _REINVITE_REFUSED.get(self.state, (481, ()))
            return [self._response(key, request, status, headers=headers)]
        self._set_state(LegInput.REINVITE)
        return self._reinvite(key, request, now)

    def _info(self, key: sip.TransactionKey | None, request: sip.SipRequest, now: float) -> list[Action]:
        ctype = request.content_type
        if not request.body:
            return [self._response(key, request, 200)]
        if ctype not in DTMF_INFO_TYPES:
            return [self._response(key, request, 415, headers=(("Accept", ", ".join(DTMF_INFO_TYPES)),))]
        digit = info_digit(ctype, request.body)
        if digit is None:
            return [self._response(key, request, 400, reason="Bad Request (no DTMF digit in the body)")]
        return [self._response(key, request, 200), *_emit(self.call.digit(digit, "info", now))]

    def _reinvite(self, key: sip.TransactionKey | None, request: sip.SipRequest, now: float) -> list[Action]:
        if self.port is None or not request.body:
            return [self._response(key, request, 488)]
        try:
            offer = sip.parse_sdp(request.body)
        except sip.SipParseError as err:
            return [self._response(key, request, 400, reason=f"Bad Request (SDP: {err.reason[:80]})")]
        self.sdp_version += 1
        answer = sip.answer_offer(
            offer,
            local_address=self.config.host,
            local_port=self.port,
            session_id=self.session_id,
            session_version=self.sdp_version,
            local_direction=sip.Direction.SENDONLY if self.call.held_by_us else sip.Direction.SENDRECV,
        )
        if isinstance(answer, sip.Rejection):
            return [self._response(key, request, answer.status)]
        actions = self._apply(answer.media, now)
        refresh, headers = self._refresh(now)  # a re-INVITE refreshes the session
        ok = sip.make_response(
            request,
            200,
            to_tag=self.to_tag,
            body=bytes(answer.sdp),
            headers=[("Contact", self.contact), *headers],
        )
        return [*actions, *refresh, Respond(key, ok), *self._await_ack(ok, now)]

    def ack(self, request: sip.SipRequest, now: float) -> list[Action]:
        """The ACK to our 2xx: the retransmission stops; a late offer's answer is in it."""
        if not self._allows(LegInput.ACK):
            return []  # an ACK to a non-2xx is its transaction's; after the end there is nothing to do
        self._set_state(LegInput.ACK)
        actions: list[Action] = []
        if self.ok is not None:
            self.ok.ack_received()
            self.ok = None
            actions.append(CancelTimer(LegTimer.ACK_WAIT))
        if self.late_offer is None:
            return actions
        offer, self.late_offer = self.late_offer, None
        media: sip.NegotiatedMedia | sip.Rejection | None = None
        if request.body and request.content_type == "application/sdp":
            try:
                media = sip.accept_answer(offer, sip.parse_sdp(request.body))
            except sip.SipParseError:
                media = None
        if not isinstance(media, sip.NegotiatedMedia) or self.port is None:
            return actions + self.hangup("media_rejected", now)  # no usable answer: the only way out is BYE
        return actions + self._apply(media, now)

    # --- responses to our requests ----------------------------------------------------------------------

    def start(self, offer: sip.SessionDescription, port: int, *, branch: str) -> list[Action]:
        """Outbound: our INVITE with `offer` (RTP on `port`)."""
        if self.state is not LegState.CALLING or self.invite is not None:
            raise DialogCoreError("the INVITE of an outbound leg goes out once")
        self.port = port
        self.pending_offer = offer
        return [SendRequest(self._build_invite(1, branch), track=True)]

    def response(
        self, method: str, response: sip.SipResponse, now: float, *, branch: str, cnonce: str
    ) -> list[Action]:
        """A response to a request of ours this leg tracks; `branch`, `cnonce`: for a retried INVITE."""
        if method != "INVITE":
            return []  # our BYE's: the leg ended when it went out
        if self.state is LegState.CALLING:
            return self._invite_response(response, now, branch=branch, cnonce=cnonce)
        if response.status < 200:
            return []
        if self.state is LegState.ENDED and self.outbound and response.status < 300:
            return self._answered_after_end(response)
        actions = self._ack(response) if response.status < 300 else []
        offer, self.pending_offer = self.pending_offer, None
        if self.state is LegState.REOFFERING:
            self._set_state(LegInput.REOFFERED)
            if offer is not None and response.status < 300 and response.body:
                try:
                    media = sip.accept_answer(offer, sip.parse_sdp(response.body))
                except sip.SipParseError:
                    media = None
                if isinstance(media, sip.NegotiatedMedia):
                    actions.append(ApplyMedia(media, keep_codec=True))
        return actions

    def stray_ok(self, response: sip.SipResponse) -> list[Action]:
        """A retransmitted 2xx to one of our INVITEs (its transaction is gone): ACK it again."""
        return self._ack(response) if self.state is not LegState.ENDED else []

    def timed_out(self, method: str, now: float) -> list[Action]:
        """A request of ours got no final response in time."""
        if method != "INVITE":
            return []
        if self.state is LegState.CALLING:
            self._set_state(LegInput.DECLINED)
            return [End("no_answer", 408)]
        if self.state is LegState.REOFFERING:
            self._set_state(LegInput.REOFFERED)
            self.pending_offer = None
        return []

    def _invite_response(
        self, response: sip.SipResponse, now: float, *, branch: str, cnonce: str
    ) -> list[Action]:
        assert self.invite is not None
        status = response.status
        if status < 200:
            if status > 100 and self.dialog is None:
                try:
                    self.dialog = sip.Dialog.from_uac(self.invite, response, address=self.address)
                except sip.DialogError:
                    pass
            self._set_state(LegInput.PROVISIONAL)
            return []
        if status in (401, 407):
            retry = self._retry(response, branch, cnonce)
            if retry is not None:
                self._set_state(LegInput.CHALLENGED)
                return [SendRequest(retry, track=True)]
        if status >= 300:
            self._set_state(LegInput.DECLINED)
            return [End("rejected", status)]
        try:
            dialog = sip.Dialog.from_uac(self.invite, response, address=self.address)
        except sip.DialogError:
            self._set_state(LegInput.DECLINED)
            return [End("error", status)]
        early, self.dialog = self.dialog, dialog
        self._set_state(LegInput.ACCEPTED)
        actions: list[Action] = [
            DialogUp(dialog, early.id if early is not None else None),
            *self._ack(response),
        ]
        media: sip.NegotiatedMedia | sip.Rejection | None = None
        offer, self.pending_offer = self.pending_offer, None
        if offer is not None and response.body:
            try:
                media = sip.accept_answer(offer, sip.parse_sdp(response.body))
            except sip.SipParseError:
                media = None
        if not isinstance(media, sip.NegotiatedMedia):
            return actions + self.hangup("media_rejected", now)
        actions += self._apply(media, now)
        return [*actions, *_emit(self.call.answered(now)), Changed()]

    def _answered_after_end(self, response: sip.SipResponse) -> list[Action]:
        """A 2xx to our INVITE after we gave it up (our CANCEL crossed the answer): the peer's call is up,
        so it is acknowledged and ended with BYE (RFC 3261 §9.1, §15). Not a move: the leg has ended."""
        if self.invite is None or (
            self.dialog is not None and self.dialog.state is not sip.DialogState.EARLY
        ):
            return self._ack(response)  # our re-INVITE's, after our BYE: only the ACK
        try:
            dialog = sip.Dialog.from_uac(self.invite, response, address=self.address)
            ack = dialog.create_ack(response.cseq.number)
            bye = dialog.create_request("BYE")
        except (sip.DialogError, sip.SipParseError):
            return []
        self.dialog = dialog
        return [Send(ack), SendRequest(bye, track=False)]

    def _retry(self, response: sip.SipResponse, branch: str, cnonce: str) -> sip.SipRequest | None:
        """Our INVITE again with the trunk's digest credentials, once."""
        if self.auth_attempted or self.trunk is None or self.invite is None:
            return None
        self.auth_attempted = True
        name, answer_as = (
            ("WWW-Authenticate", "Authorization")
            if response.status == 401
            else ("Proxy-Authenticate", "Proxy-Authorization")
        )
        value = answer_challenge(
            list(response.headers.get_all(name)),
            self.trunk,
            method="INVITE",
            uri=self.invite.uri,
            cnonce=cnonce,
        )
        if value is None:
            return None
        return self._build_invite(self.invite.cseq.number + 1, branch, auth=(answer_as, value))

    def _build_invite(self, cseq: int, branch: str, auth: tuple[str, str] | None = None) -> sip.SipRequest:
        """Our INVITE (again after a challenge: same dialog ids, next CSeq)."""
        target = self.target
        assert target is not None and self.pending_offer is not None
        self.invite = sip.build_request(
            "INVITE",
            f"sip:{target.number}@{target.host}:{target.port}" + (";transport=tcp" if self.reliable else ""),
            via=self.address.via(branch),
            from_=target.from_,
            to=f"<sip:{target.number}@{target.host}>",
            call_id=target.call_id,
            cseq=cseq,
            contact=self.contact,
            headers=[("Allow", ALLOW), *([auth] if auth else [])],
            body=bytes(self.pending_offer),
            content_type="application/sdp",
        )
        return self.invite

    # --- timers -------------------------------------------------------------------------------------------

    def timer_fired(self, timer: LegTimer, now: float, *, pending: bool) -> list[Action]:
        if timer is LegTimer.NO_ANSWER:
            return self.reject(480, "no_answer", now, pending=pending)
        ok = self.ok
        if ok is None or not self._allows(LegInput.RETRANSMIT):
            return []
        responses = ok.handle_timer(now)
        if ok.timed_out:
            self.ok = None
            return self.hangup("ack_timeout", now)
        self._set_state(LegInput.RETRANSMIT)
        actions: list[Action] = [Send(response) for response in responses]
        at = ok.next_timer()
        return actions + ([ArmTimer(LegTimer.ACK_WAIT, at)] if at is not None else [])

    # --- helpers ------------------------------------------------------------------------------------------

    def _apply(self, media: sip.NegotiatedMedia, now: float) -> list[Action]:
        """Media agreed: configure RTP, and call.held when the peer holds or resumes."""
        self.media = media
        return [ApplyMedia(media), *_emit(self.call.hold(media.on_hold, by="remote", now=now))]

    def _await_ack(self, ok: sip.SipResponse, now: float) -> list[Action]:
        self.ok = sip.InviteOkRetransmitter(ok, now, reliable=self.reliable, timers=self.config.timers)
        at = self.ok.next_timer()
        return [ArmTimer(LegTimer.ACK_WAIT, at)] if at is not None else []

    def _refresh(self, now: float) -> tuple[list[Action], list[tuple[str, str]]]:
        """A 2xx's RFC 4028 headers, and the session's new deadline."""
        if self.session_timer is None or self.port is None:
            return [], []
        deadline = session_timer.deadline(now, self.session_timer)
        return [RefreshSession(deadline)], session_timer.response_headers(self.session_timer)

    def _ack(self, response: sip.SipResponse) -> list[Action]:
        if self.dialog is None:
            return []
        try:
            return [Send(self.dialog.create_ack(response.cseq.number))]
        except (sip.DialogError, sip.SipParseError):
            return []

    def _response(
        self,
        key: sip.TransactionKey | None,
        request: sip.SipRequest,
        status: int,
        *,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Respond:
        return Respond(key, sip.make_response(request, status, reason, to_tag=self.to_tag, headers=headers))

    def _allows(self, event: LegInput) -> bool:
        return event in TABLE[self.state]

    def _set_state(self, event: LegInput) -> None:
        """The only place the state changes: through the table, or not at all."""
        new = TABLE[self.state].get(event)
        if new is None:
            raise DialogCoreError(f"leg dialog: {event.value} is not allowed in {self.state.value}")
        if new is not self.state:
            log.debug("leg_dialog %s -> %s (%s)", self.state.value, new.value, event.value)
        self.state = new
