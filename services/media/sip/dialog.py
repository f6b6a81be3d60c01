"""Dialogs (RFC 3261 §12, §13.2.2.4, §13.3.1.4), sans-IO.

A `Dialog` holds what §12 says defines a dialog (Call-ID, tags, CSeq numbers, route set, remote target)
and builds the in-dialog requests (BYE, re-INVITE, INFO...) and the ACK for a 2xx. A `DialogTable`
matches incoming requests and responses to dialogs; a request with a To tag that matches none is
answered 481 by the caller. `InviteOkRetransmitter` is the UAS core's 2xx retransmission (§13.3.1.4),
which RFC 6026 leaves outside the INVITE server transaction.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from services.media.sip.errors import SipParseError
from services.media.sip.fields import NameAddr, Via, parse_name_addr
from services.media.sip.headers import Params
from services.media.sip.message import SipRequest, SipResponse, build_request, new_branch
from services.media.sip.transaction import TimerConfig

__all__ = [
    "Dialog",
    "DialogError",
    "DialogId",
    "DialogState",
    "DialogTable",
    "InviteOkRetransmitter",
    "LocalAddress",
    "Role",
    "make_cancel",
    "unmatched_request_status",
]

log = logging.getLogger(__name__)

# Requests whose Contact replaces the remote target (§12.2, RFC 3311 UPDATE, RFC 6665 SUBSCRIBE/NOTIFY).
_TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


_TRANSITIONS: dict[DialogState, frozenset[DialogState]] = {
    DialogState.EARLY: frozenset({DialogState.CONFIRMED, DialogState.TERMINATED}),
    DialogState.CONFIRMED: frozenset({DialogState.TERMINATED}),
    DialogState.TERMINATED: frozenset(),
}


class Role(enum.Enum):
    UAC = "uac"  # we sent the INVITE
    UAS = "uas"  # we received it


class DialogError(Exception):
    """A dialog cannot be made from these messages, or the caller asked for an illegal state change."""


@dataclass(frozen=True)
class DialogId:
    call_id: str
    local_tag: str
    remote_tag: str


@dataclass(frozen=True)
class LocalAddress:
    """Where this endpoint is reached, for the Via of the requests a dialog builds."""

    host: str
    port: int
    transport: str = "UDP"

    def via(self, branch: str) -> Via:
        return Via(
            self.transport.upper(), self.host, self.port, Params([("branch", branch), ("rport", None)])
        )


def _first_contact(message: SipRequest | SipResponse) -> str | None:
    contacts = [c for c in message.contacts if c.uri != "*"]
    return contacts[0].uri if contacts else None


class Dialog:
    def __init__(
        self,
        *,
        id: DialogId,
        role: Role,
        state: DialogState,
        local: NameAddr,
        remote: NameAddr,
        remote_target: str,
        route_set: list[str],
        local_seq: int,
        remote_seq: int | None,
        address: LocalAddress,
        local_contact: str | None = None,
        secure: bool = False,
    ) -> None:
        self.id = id
        self.role = role
        self.state = state
        self.local = local
        self.remote = remote
        self.remote_target = remote_target
        self.route_set = route_set
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.address = address
        self.local_contact = local_contact
        self.secure = secure

    @classmethod
    def from_uas(
        cls,
        request: SipRequest,
        response: SipResponse,
        *,
        address: LocalAddress,
        local_contact: str | None = None,
    ) -> Dialog:
        """The dialog a UAS creates by sending `response` (1xx with a To tag: early; 2xx: confirmed) (§12.1.1)."""
        if not 100 < response.status < 300:
            raise DialogError("only 101-299 responses create dialogs")
        try:
            local_tag = response.to.tag
            remote = request.from_
            target = _first_contact(request)
            route_set = request.headers.get_all("Record-Route")
            cseq = request.cseq.number
            local = request.to
        except SipParseError as err:
            raise DialogError(err.reason) from None
        if not local_tag:
            raise DialogError("the response has no To tag")
        if target is None:
            raise DialogError("the request has no Contact")
        return cls(
            id=DialogId(request.call_id, local_tag, remote.tag or ""),
            role=Role.UAS,
            state=DialogState.EARLY if response.status < 200 else DialogState.CONFIRMED,
            local=local.with_tag(local_tag),
            remote=remote,
            remote_target=target,
            route_set=route_set,
            local_seq=0,
            remote_seq=cseq,
            address=address,
            local_contact=local_contact,
            secure=request.uri.lower().startswith("sips:"),
        )

    @classmethod
    def from_uac(
        cls,
        request: SipRequest,
        response: SipResponse,
        *,
        address: LocalAddress,
        local_contact: str | None = None,
    ) -> Dialog:
        """The dialog a UAC creates on receiving `response` to its `request` (§12.1.2)."""
        if not 100 < response.status < 300:
            raise DialogError("only 101-299 responses create dialogs")
        try:
            local = request.from_
            remote = response.to
            target = _first_contact(response) or request.uri
            route_set = list(reversed(response.headers.get_all("Record-Route")))
            cseq = request.cseq.number
            contact = local_contact or _first_contact(request)
        except SipParseError as err:
            raise DialogError(err.reason) from None
        if not local.tag or not remote.tag:
            raise DialogError("a dialog needs both a From tag and a To tag")
        return cls(
            id=DialogId(request.call_id, local.tag, remote.tag),
            role=Role.UAC,
            state=DialogState.EARLY if response.status < 200 else DialogState.CONFIRMED,
            local=local,
            remote=remote,
            remote_target=target,
            route_set=route_set,
            local_seq=cseq,
            remote_seq=None,
            address=address,
            local_contact=contact,
            secure=request.uri.lower().startswith("sips:"),
        )

    @property
    def terminated(self) -> bool:
        return self.state is DialogState.TERMINATED

    def _set_state(self, new: DialogState, reason: str) -> None:
        if new is self.state:
            return
        if new not in _TRANSITIONS[self.state]:
            raise DialogError(
                f"dialog {self.id.call_id}: {self.state.value} -> {new.value} is not allowed ({reason})"
            )
        log.debug("dialog %s: %s -> %s (%s)", self.id.call_id, self.state.value, new.value, reason)
        self.state = new

    def confirm(self) -> None:
        self._set_state(DialogState.CONFIRMED, "2xx")

    def terminate(self, reason: str = "BYE") -> None:
        self._set_state(DialogState.TERMINATED, reason)

    # --- requests we send ---

    def _target(self) -> tuple[str, list[str]]:
        """Request-URI and Route set per §12.2.1.1, including the strict-router case."""
        if not self.route_set:
            return self.remote_target, []
        try:
            first = parse_name_addr(self.route_set[0])
        except SipParseError:
            return self.remote_target, list(self.route_set)
        first_uri = first.sip_uri
        if first_uri is None or first_uri.loose_route:
            return self.remote_target, list(self.route_set)
        return first.uri, [*self.route_set[1:], f"<{self.remote_target}>"]

    def create_request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        branch: str | None = None,
    ) -> SipRequest:
        """A request inside this dialog (BYE, re-INVITE, INFO, UPDATE...) with the next local CSeq."""
        if method in ("ACK", "CANCEL"):
            raise DialogError(f"{method} is not built this way: use create_ack() or make_cancel()")
        if self.state is DialogState.TERMINATED:
            raise DialogError("the dialog is terminated")
        self.local_seq += 1
        return self._build(method, self.local_seq, body, content_type, headers, branch)

    def create_ack(
        self,
        invite_cseq: int,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        branch: str | None = None,
    ) -> SipRequest:
        """The ACK for a 2xx to the INVITE with CSeq `invite_cseq` (§13.2.2.4): same number, new branch."""
        return self._build("ACK", invite_cseq, body, content_type, (), branch)

    def _build(
        self,
        method: str,
        cseq: int,
        body: bytes,
        content_type: str | None,
        headers: Iterable[tuple[str, str]],
        branch: str | None,
    ) -> SipRequest:
        uri, routes = self._target()
        contact = self.local_contact if method in _TARGET_REFRESH and self.local_contact else None
        return build_request(
            method,
            uri,
            via=self.address.via(branch or new_branch()),
            from_=self.local,
            to=self.remote,
            call_id=self.id.call_id,
            cseq=cseq,
            contact=f"<{contact}>" if contact else None,
            routes=routes,
            headers=headers,
            body=body,
            content_type=content_type,
        )

    # --- messages we receive ---

    def receive_request(self, request: SipRequest) -> int | None:
        """Apply an in-dialog request (§12.2.2). Returns 500 when its CSeq is out of order, else None."""
        try:
            cseq = request.cseq.number
            target = _first_contact(request) if request.method in _TARGET_REFRESH else None
        except SipParseError:
            return 400
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_seq is not None and cseq < self.remote_seq:
                return 500
            self.remote_seq = cseq
        if target is not None:
            self.remote_target = target
        return None

    def receive_response(self, method: str, response: SipResponse) -> None:
        """Apply a response to a request we sent in (or to create) this dialog (§12.2.1.2, §13.2.2.4)."""
        status = response.status
        if status in (408, 481):
            self._set_state(DialogState.TERMINATED, f"{status} to {method}")
            return
        if method == "INVITE" and self.state is DialogState.EARLY:
            if status >= 300:
                self._set_state(DialogState.TERMINATED, f"{status} to INVITE")
                return
            if status >= 200:
                self._set_state(DialogState.CONFIRMED, "2xx to INVITE")
                self.route_set = list(reversed(response.headers.get_all("Record-Route")))
        if 200 <= status < 300 and method in _TARGET_REFRESH:
            try:
                target = _first_contact(response)
            except SipParseError:
                target = None
            if target is not None:
                self.remote_target = target


def make_cancel(invite: SipRequest) -> SipRequest:
    """The CANCEL for a pending INVITE (§9.1): same Request-URI, top Via, From, To, Call-ID, Route and CSeq
    number."""
    cancel = SipRequest("CANCEL", invite.uri)
    h = cancel.headers
    top_via = invite.headers.get("Via")
    if top_via is not None:
        h.add("Via", top_via)
    h.add("Max-Forwards", "70")
    for route in invite.headers.get_all("Route"):
        h.add("Route", route)
    for name in ("From", "To", "Call-ID"):
        value = invite.headers.get(name)
        if value is not None:
            h.add(name, value)
    h.add("CSeq", f"{invite.cseq.number} CANCEL")
    return cancel


def unmatched_request_status(request: SipRequest) -> int | None:
    """What to answer a request no dialog matched: 481 if it claims a dialog (To tag), None otherwise
    (an ACK is simply dropped; a request without a To tag is a new one)."""
    if request.method == "ACK":
        return None
    try:
        return 481 if request.to.tag else None
    except SipParseError:
        return 400


class DialogTable:
    """The dialogs of one endpoint, matched by Call-ID and tags (§12.2.2)."""

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))

    def add(self, dialog: Dialog) -> None:
        self._dialogs[dialog.id] = dialog

    def get(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.get(dialog_id)

    def remove(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.pop(dialog_id, None)

    def match_request(self, request: SipRequest) -> Dialog | None:
        """The dialog of an incoming request: its To tag is our tag, its From tag theirs."""
        try:
            key = DialogId(request.call_id, request.to.tag or "", request.from_.tag or "")
        except SipParseError:
            return None
        return self._dialogs.get(key)

    def match_response(self, response: SipResponse) -> Dialog | None:
        """The dialog of a response to our request: its From tag is ours, its To tag theirs."""
        try:
            key = DialogId(response.call_id, response.from_.tag or "", response.to.tag or "")
        except SipParseError:
            return None
        return self._dialogs.get(key)


class InviteOkRetransmitter:
    """The UAS core's 2xx retransmission until the ACK arrives (§13.3.1.4): T1, doubling up to T2, for at
    most 64*T1; not retransmitted on a reliable transport, but the ACK is still awaited that long.
    `timed_out` tells the TU to end the session (send BYE)."""

    def __init__(
        self, response: SipResponse, now: float, *, reliable: bool = False, timers: TimerConfig | None = None
    ) -> None:
        self.response = response
        self.timers = timers or TimerConfig()
        self.acked = False
        self.timed_out = False
        self._interval = self.timers.t1
        self._next: float | None = None if reliable else now + self._interval
        self._give_up = now + self.timers.timeout

    @property
    def done(self) -> bool:
        return self.acked or self.timed_out

    def ack_received(self) -> None:
        self.acked = True

    def next_timer(self) -> float | None:
        if self.done:
            return None
        return self._give_up if self._next is None else min(self._next, self._give_up)

    def handle_timer(self, now: float) -> list[SipResponse]:
        """The responses to send now (zero or one)."""
        if self.done:
            return []
        if now >= self._give_up:
            self.timed_out = True
            return []
        if self._next is not None and now >= self._next:
            self._interval = min(self._interval * 2, self.timers.t2)
            self._next = now + self._interval
            return [self.response]
        return []
