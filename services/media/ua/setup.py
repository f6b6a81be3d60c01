"""An inbound call's set-up, sans-IO: every decision between a new INVITE and a ringing call.

The adapter (inbound.py) feeds in what it was asked to find out — the dialled number's route, a port number,
the tenant's call slot, the RTP sockets — and carries out the actions that come back: respond, look the
route up, take or release a port or a slot, ring, open RTP, record a refusal, announce the call. Each
step waits for one answer, so the steps are one table (`TABLE`, `Step` x `Input` -> `Step`), changed only
by `_set_state`. No sockets, no database, no clock: the wall-clock `now` (digest nonces) and the ids (call
id, SDP session id, To tag) are passed in. `gone()` at any wait: the INVITE was cancelled or answered
meanwhile (the adapter checks after each await); what was taken is given back.
"""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass

from services.media import sip
from services.media.sip import session_timer
from services.media.ua.store import NumberRoute
from services.media.ua.trunk_auth import check_trunk_auth

__all__ = [
    "TABLE",
    "Action",
    "Announce",
    "AwaitAnswer",
    "CloseRtp",
    "Input",
    "InviteSetup",
    "LookUpRoute",
    "OpenRtp",
    "PlayUnrouted",
    "Refused",
    "Reject",
    "ReleasePort",
    "ReleaseSlot",
    "Respond",
    "Ring",
    "SetupConfig",
    "SetupError",
    "Step",
    "TakePort",
    "TakeSlot",
]

log = logging.getLogger(__name__)

NOT_FOUND = "Not Found (no such number)"


class Step(enum.Enum):
    RECEIVED = "received"  # the request's own checks
    ROUTING = "routing"  # waiting for the number's route
    PORTING = "porting"  # the route passed its checks; waiting for an RTP port number
    LIMITING = "limiting"  # SDP and 180 ready; waiting for one of the tenant's call slots
    OPENING = "opening"  # 180 sent; waiting for the RTP sockets
    SET_UP = "set_up"  # announced: the call is the edge's (answer, hang-up, ...)
    REFUSED = "refused"  # a final error response went out
    ABANDONED = "abandoned"  # cancelled (or answered elsewhere) while waiting


class Input(enum.Enum):
    CHECKED = enum.auto()
    ROUTED = enum.auto()
    PORT_TAKEN = enum.auto()
    SLOT_TAKEN = enum.auto()
    RTP_OPENED = enum.auto()
    REFUSE = enum.auto()
    GONE = enum.auto()


_WAITING = {Input.REFUSE: Step.REFUSED, Input.GONE: Step.ABANDONED}
TABLE: dict[Step, dict[Input, Step]] = {
    Step.RECEIVED: {Input.CHECKED: Step.ROUTING, **_WAITING},
    Step.ROUTING: {Input.ROUTED: Step.PORTING, **_WAITING},
    Step.PORTING: {Input.PORT_TAKEN: Step.LIMITING, **_WAITING},
    Step.LIMITING: {Input.SLOT_TAKEN: Step.OPENING, **_WAITING},
    Step.OPENING: {Input.RTP_OPENED: Step.SET_UP, **_WAITING},
    Step.SET_UP: {},
    Step.REFUSED: {},
    Step.ABANDONED: {},
}


class SetupError(Exception):
    """An input the current step does not take (an adapter bug, never a caller's doing)."""


@dataclass(frozen=True)
class SetupConfig:
    host: str  # our address in SDP
    realm: str
    auth_secret: bytes
    max_calls: int
    min_se: int


# --- actions ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Respond:
    """A final response to the INVITE (before any leg exists)."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Refused:
    """Publish call.refused: turned away after the trunk checks passed (it gets a contact record)."""

    status: int
    cause: str


@dataclass(frozen=True)
class LookUpRoute:
    number: str


@dataclass(frozen=True)
class TakePort:
    pass


@dataclass(frozen=True)
class ReleasePort:
    port: int


@dataclass(frozen=True)
class TakeSlot:
    tenant_id: uuid.UUID
    limit: int


@dataclass(frozen=True)
class ReleaseSlot:
    tenant_id: uuid.UUID


@dataclass(frozen=True)
class Ring:
    """Make the leg (call id, tenant, dialog, session timer), send the 180."""

    response: sip.SipResponse
    dialog: sip.Dialog
    timer: session_timer.SessionTimer | None


@dataclass(frozen=True)
class OpenRtp:
    port: int


@dataclass(frozen=True)
class Reject:
    """The leg exists: end it with this final response (SipEdge.reject)."""

    status: int
    cause: str


@dataclass(frozen=True)
class CloseRtp:
    """Sockets opened for nothing (the INVITE went meanwhile); `finish`: end the leg, cause cancelled."""

    finish: bool


@dataclass(frozen=True)
class Announce:
    """The call is set up: its media (an answer, or our offer for a late-offer INVITE), then call.arrived."""

    answer: sip.Answer | sip.SessionDescription
    codec: str


@dataclass(frozen=True)
class PlayUnrouted:
    """A number with no flow and no queue: answer, play the unrouted message, hang up."""


@dataclass(frozen=True)
class AwaitAnswer:
    """Wait for the `answer` command (480 when none comes in time)."""


Action = (
    Respond
    | Refused
    | LookUpRoute
    | TakePort
    | ReleasePort
    | TakeSlot
    | ReleaseSlot
    | Ring
    | OpenRtp
    | Reject
    | CloseRtp
    | Announce
    | PlayUnrouted
    | AwaitAnswer
)


class InviteSetup:
    """One new INVITE from `received()` to SET_UP, REFUSED or ABANDONED."""

    def __init__(
        self,
        invite: sip.SipRequest,
        source_host: str,
        config: SetupConfig,
        *,
        to_tag: str,
        session_id: int,
        local: sip.LocalAddress,
        contact_uri: str,
    ) -> None:
        self.invite = invite
        self.source_host = source_host
        self.config = config
        self.to_tag = to_tag
        self.session_id = session_id
        self.local = local
        self.contact_uri = contact_uri
        self.state = Step.RECEIVED
        self.number: str | None = None
        self.route: NumberRoute | None = None
        self.port: int | None = None
        self.offer: sip.SessionDescription | None = None
        self.timer: session_timer.SessionTimer | None = None
        self.answer: sip.Answer | sip.SessionDescription | None = None
        self.ringing: sip.SipResponse | None = None
        self.dialog: sip.Dialog | None = None

    # --- inputs -------------------------------------------------------------------------------------

    def received(self) -> list[Action]:
        self._expect(Step.RECEIVED, "received")
        invite = self.invite
        if invite.body and invite.content_type != "application/sdp":
            return self._refuse(415, headers=(("Accept", "application/sdp"),), record=False)
        number = sip.dialled_number(invite.uri)
        if number is None or not (8 <= len(number) <= 16):
            return self._refuse(404, NOT_FOUND, record=False)
        self.number = number
        self._set_state(Input.CHECKED)
        return [LookUpRoute(number)]

    def route_found(self, route: NumberRoute | None, *, calls: int, now: float) -> list[Action]:
        """The number's route (None: no such number); `calls`: the legs this process holds; `now`: wall
        clock, for digest nonces."""
        self._expect(Step.ROUTING, "route_found")
        if route is None:
            return self._refuse(404, NOT_FOUND, record=False)
        self.route = route
        challenge = check_trunk_auth(
            self.invite,
            route.trunks,
            self.source_host,
            default_realm=self.config.realm,
            secret=self.config.auth_secret,
            now=now,
        )
        if challenge is not None:
            status, headers = challenge
            return self._refuse(status, headers=tuple(headers), record=False)
        if calls >= self.config.max_calls:
            return self._refuse(
                503, "Service Unavailable (capacity)", headers=(("Retry-After", "5"),), cause="capacity"
            )
        timer = session_timer.requested(self.invite, self.config.min_se)
        if isinstance(timer, session_timer.TooSmall):
            return self._refuse(
                422,
                "Session Interval Too Small",
                headers=(("Min-SE", str(timer.min_se)),),
                cause="session_interval_too_small",
            )
        self.timer = timer
        if self.invite.body:
            try:
                self.offer = sip.parse_sdp(self.invite.body)
            except sip.SipParseError as err:
                return self._refuse(400, f"Bad Request (SDP: {err.reason[:80]})", cause="bad_sdp")
        self._set_state(Input.ROUTED)
        return [TakePort()]

    def port_taken(self, port: int | None) -> list[Action]:
        """The RTP port number for the SDP (the sockets are opened after the 180); None: none free."""
        self._expect(Step.PORTING, "port_taken")
        if port is None:
            return self._refuse(503, "Service Unavailable (no media port)", cause="no_media_port")
        self.port = port
        answer = self._local_sdp(port)
        if isinstance(answer, sip.Rejection):
            return [
                ReleasePort(port),
                *self._refuse(
                    answer.status,
                    headers=(("Warning", f'{answer.warning_code} switchboard "{answer.reason}"'),),
                    cause="no_common_codec",
                ),
            ]
        self.answer = answer
        # The 180 and the dialog it makes are ready before the slot is asked for: a request that cannot
        # make a dialog is refused without holding one of the tenant's calls.
        ringing = sip.make_response(
            self.invite, 180, to_tag=self.to_tag, headers=[("Contact", f"<{self.contact_uri}>")]
        )
        try:
            dialog = sip.Dialog.from_uas(
                self.invite, ringing, address=self.local, local_contact=self.contact_uri
            )
        except sip.DialogError as err:
            return [ReleasePort(port), *self._refuse(400, f"Bad Request ({err})", cause="bad_request")]
        self.ringing, self.dialog = ringing, dialog
        assert self.route is not None
        self._set_state(Input.PORT_TAKEN)
        # The tenant's limit counts its calls on every worker (and its web and outbound calls).
        return [TakeSlot(self.route.tenant_id, self.route.max_concurrent_calls)]

    def slot_taken(self, granted: bool, *, pending: bool) -> list[Action]:
        """The tenant's call slot (`granted`); `pending`: the INVITE still wants an answer."""
        self._expect(Step.LIMITING, "slot_taken")
        assert self.port is not None and self.route is not None
        assert self.ringing is not None and self.dialog is not None
        if not granted:
            if not pending:
                self._set_state(Input.GONE)
                return [ReleasePort(self.port)]
            busy = self._refuse(486, "Busy Here (tenant call limit)", cause="tenant_call_limit")
            return [ReleasePort(self.port), *busy]
        if not pending:
            self._set_state(Input.GONE)
            return [ReleaseSlot(self.route.tenant_id), ReleasePort(self.port)]
        self._set_state(Input.SLOT_TAKEN)
        return [Ring(self.ringing, self.dialog, self.timer), OpenRtp(self.port)]

    def rtp_opened(self, port: int | None, *, pending: bool, ended: bool) -> list[Action]:
        """The RTP sockets (`port`: the pair we got, None: none); `pending`: the INVITE still wants an
        answer; `ended`: the leg ended meanwhile (a CANCEL)."""
        self._expect(Step.OPENING, "rtp_opened")
        if port is None:
            self._set_state(Input.REFUSE)
            return [Reject(503, "no_media_port")]
        if ended or not pending:
            self._set_state(Input.GONE)
            return [CloseRtp(finish=not ended)]
        assert self.route is not None and self.answer is not None
        if port != self.port:  # that pair was taken by another process: answer with the one we got
            answer = self._local_sdp(port)
            assert not isinstance(answer, sip.Rejection)  # the same offer was accepted above
            self.answer = answer
        self._set_state(Input.RTP_OPENED)
        codec = self.answer.media.codec.name if isinstance(self.answer, sip.Answer) else ""
        follow: Action = (
            PlayUnrouted() if self.route.flow_id is None and self.route.queue_id is None else AwaitAnswer()
        )
        return [Announce(self.answer, codec), follow]

    def gone(self) -> list[Action]:
        """The INVITE was cancelled (or answered by someone else) while we waited for the route: nothing
        was taken yet. (Later waits pass `pending` with their answer.)"""
        self._set_state(Input.GONE)
        return []

    # --- helpers ------------------------------------------------------------------------------------

    def _local_sdp(self, port: int) -> sip.Answer | sip.Rejection | sip.SessionDescription:
        """Our answer to the caller's offer, or (late offer: an INVITE without SDP) our own offer."""
        if self.offer is None:
            return sip.create_offer(
                local_address=self.config.host, local_port=port, session_id=self.session_id, session_version=1
            )
        return sip.answer_offer(
            self.offer,
            local_address=self.config.host,
            local_port=port,
            session_id=self.session_id,
            session_version=1,
        )

    def _refuse(
        self,
        status: int,
        reason: str | None = None,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        cause: str = "",
        record: bool = True,
    ) -> list[Action]:
        """A final error response; `record`: also call.refused (only once the route passed the trunk
        checks: a 401/403/404 is not recorded, scanners would fill the history)."""
        self._set_state(Input.REFUSE)
        actions: list[Action] = [Respond(status, reason, headers)]
        if record:
            actions.append(Refused(status, cause))
        return actions

    def _expect(self, step: Step, what: str) -> None:
        if self.state is not step:
            raise SetupError(f"INVITE set-up: {what} is not allowed in {self.state.value}")

    def _set_state(self, event: Input) -> None:
        """The only place the step changes: through the table, or not at all."""
        new = TABLE[self.state].get(event)
        if new is None:
            raise SetupError(f"INVITE set-up: {event.name} is not allowed in {self.state.value}")
        log.debug("invite_setup %s -> %s", self.state.value, new.value)
        self.state = new
