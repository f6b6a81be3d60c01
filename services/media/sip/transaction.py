"""RFC 3261 §17 transactions, sans-IO: the INVITE and non-INVITE client and server state machines with
timers A-M, and a `TransactionLayer` that owns them.

No clock and no sockets: every call takes `now` (seconds, any monotonic origin), timers are asked for
with `next_timer()` and fired with `handle_timer(now)`, and every call returns the actions the adapter
must carry out (`Transmit`, events for the transaction user). A 2xx to an INVITE moves both sides to
the Accepted state of RFC 6026 (Timers L and M) instead of ending the transaction.

On a reliable transport the timers that only exist to absorb retransmissions (D, I, J, K) are zero and
the transaction ends at once; A, E and G do not run at all (§17.1.1.2, §17.1.2.2, §17.2.1).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
from dataclasses import dataclass
from typing import ClassVar

from services.media.sip.errors import SipParseError
from services.media.sip.message import SipMessage, SipRequest, SipResponse, make_response

__all__ = [
    "Action",
    "Input",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "RequestReceived",
    "ResponseReceived",
    "State",
    "TimedOut",
    "Timer",
    "TimerConfig",
    "TransactionError",
    "TransactionKey",
    "TransactionLayer",
    "TransactionTerminated",
    "Transmit",
    "TransportError",
    "client_key",
    "server_key",
    "source_of",
]

log = logging.getLogger(__name__)


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Timer(enum.Enum):
    A = "A"  # INVITE client: request retransmit (unreliable only), doubles each time
    B = "B"  # INVITE client: transaction timeout, 64*T1
    D = "D"  # INVITE client: wait for response retransmits in Completed (32 s unreliable, 0 reliable)
    E = "E"  # non-INVITE client: request retransmit, doubles up to T2 (unreliable only)
    F = "F"  # non-INVITE client: transaction timeout, 64*T1
    G = "G"  # INVITE server: final response retransmit, doubles up to T2 (unreliable only)
    H = "H"  # INVITE server: wait for ACK, 64*T1
    I = "I"  # noqa: E741 - the RFC's name. INVITE server: absorb ACKs in Confirmed (T4, 0 reliable)
    J = "J"  # non-INVITE server: absorb request retransmits in Completed (64*T1, 0 reliable)
    K = "K"  # non-INVITE client: absorb response retransmits in Completed (T4, 0 reliable)
    L = "L"  # INVITE server (RFC 6026): Accepted state, 64*T1
    M = "M"  # INVITE client (RFC 6026): Accepted state, 64*T1


class Input(enum.Enum):
    """Everything that can move a transaction: received messages, the TU's sends, timers, transport."""

    PROVISIONAL_RECEIVED = enum.auto()
    SUCCESS_RECEIVED = enum.auto()
    FAILURE_RECEIVED = enum.auto()  # 300-699
    REQUEST_RETRANSMITTED = enum.auto()
    ACK_RECEIVED = enum.auto()
    PROVISIONAL_SENT = enum.auto()
    SUCCESS_SENT = enum.auto()
    FAILURE_SENT = enum.auto()
    TIMER_A = enum.auto()
    TIMER_B = enum.auto()
    TIMER_D = enum.auto()
    TIMER_E = enum.auto()
    TIMER_F = enum.auto()
    TIMER_G = enum.auto()
    TIMER_H = enum.auto()
    TIMER_I = enum.auto()
    TIMER_J = enum.auto()
    TIMER_K = enum.auto()
    TIMER_L = enum.auto()
    TIMER_M = enum.auto()
    TRANSPORT_ERROR = enum.auto()


_TIMER_INPUT = {timer: Input[f"TIMER_{timer.name}"] for timer in Timer}


@dataclass(frozen=True)
class TimerConfig:
    """RFC 3261 Table 4 values; T1/T2/T4 are configurable, the rest derive from them."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0

    def __post_init__(self) -> None:
        if not (0 < self.t1 <= self.t2) or self.t4 <= 0 or self.timer_d < 0:
            raise ValueError("timers must be positive with T1 <= T2")

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H, J (unreliable), L and M."""
        return 64 * self.t1


@dataclass(frozen=True)
class TransactionKey:
    """Identifies a transaction (§17.1.3, §17.2.3). ACK is keyed as its INVITE; CANCEL has its own key."""

    branch: str
    method: str
    sent_by: str = ""
    server: bool = False
    # Server side: the address the request came from. sent-by and branch are whatever the sender wrote,
    # so without it a message from one address could match (retransmit, CANCEL) another's transaction.
    source: str = ""


# --- actions: what the adapter must do after each call ---------------------------------------------


@dataclass(frozen=True)
class Transmit:
    """Send `message` to `peer` (the peer given when the transaction was created)."""

    key: TransactionKey | None
    message: SipMessage
    peer: object = None


@dataclass(frozen=True)
class RequestReceived:
    """A new request for the TU. `key` is None for an ACK that matched no transaction (the ACK to a 2xx)."""

    key: TransactionKey | None
    request: SipRequest
    peer: object = None


@dataclass(frozen=True)
class ResponseReceived:
    """A response for the TU. `key` is None for a stray response (e.g. a 2xx retransmitted after Timer M)."""

    key: TransactionKey | None
    response: SipResponse


@dataclass(frozen=True)
class TimedOut:
    """Timer B or F (no final response) or Timer H (no ACK for our error response)."""

    key: TransactionKey
    request: SipRequest


@dataclass(frozen=True)
class TransportError:
    key: TransactionKey
    request: SipRequest


@dataclass(frozen=True)
class TransactionTerminated:
    key: TransactionKey


Action = Transmit | RequestReceived | ResponseReceived | TimedOut | TransportError | TransactionTerminated


class TransactionError(Exception):
    """The TU asked for something the transaction's state does not allow (e.g. two final responses)."""


def _response_input(status: int, *, sent: bool) -> Input:
    if status < 200:
        return Input.PROVISIONAL_SENT if sent else Input.PROVISIONAL_RECEIVED
    if status < 300:
        return Input.SUCCESS_SENT if sent else Input.SUCCESS_RECEIVED
    return Input.FAILURE_SENT if sent else Input.FAILURE_RECEIVED


class _Transaction:
    TABLE: ClassVar[dict[State, dict[Input, State]]]
    INITIAL: ClassVar[State]

    def __init__(
        self,
        key: TransactionKey,
        request: SipRequest,
        *,
        reliable: bool,
        timers: TimerConfig,
        peer: object = None,
    ) -> None:
        self.key = key
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self.peer = peer
        self.state = self.INITIAL
        self._deadlines: dict[Timer, float] = {}
        self._intervals: dict[Timer, float] = {}

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def next_timer(self) -> float | None:
        return min(self._deadlines.values(), default=None)

    def handle_timer(self, now: float) -> list[Action]:
        """Fire every timer due at `now`, earliest first (a zero timer fires within the call that armed it)."""
        actions: list[Action] = []
        while self._deadlines:
            timer, deadline = min(self._deadlines.items(), key=lambda item: item[1])
            if deadline > now:
                break
            del self._deadlines[timer]
            actions += self._on_timer(timer, now)
        return actions

    def transport_error(self, now: float) -> list[Action]:
        if not self._allows(Input.TRANSPORT_ERROR):
            return []
        self._set_state(Input.TRANSPORT_ERROR)
        return [TransportError(self.key, self.request), TransactionTerminated(self.key)]

    def _on_timer(self, timer: Timer, now: float) -> list[Action]:
        raise NotImplementedError

    def _allows(self, event: Input) -> bool:
        return event in self.TABLE[self.state]

    def _set_state(self, event: Input) -> State:
        """The only place the state changes: through the table, or not at all."""
        new = self.TABLE[self.state].get(event)
        if new is None:
            raise TransactionError(
                f"{type(self).__name__} {self.key.branch}: {event.name} is not allowed in {self.state.value}"
            )
        old, self.state = self.state, new
        if new is State.TERMINATED:
            self._deadlines.clear()
        if old is not new and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s: %s -> %s on %s",
                type(self).__name__,
                self.key.branch,
                old.value,
                new.value,
                event.name,
            )
        return new

    def _arm(self, timer: Timer, now: float, duration: float) -> None:
        self._intervals[timer] = duration
        self._deadlines[timer] = now + duration

    def _cancel(self, *timers: Timer) -> None:
        for timer in timers:
            self._deadlines.pop(timer, None)

    def _transmit(self, message: SipMessage) -> Transmit:
        return Transmit(self.key, message, self.peer)


def _ack_for(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK a client transaction sends for a 300-699 response (RFC 3261 §17.1.1.3)."""
    ack = SipRequest("ACK", invite.uri)
    h = ack.headers
    top_via = invite.headers.get("Via")
    if top_via is not None:
        h.add("Via", top_via)
    h.add("Max-Forwards", "70")
    for route in invite.headers.get_all("Route"):
        h.add("Route", route)
    for name in ("From", "To", "Call-ID"):
        source = response if name == "To" else invite
        value = source.headers.get(name)
        if value is not None:
            h.add(name, value)
    h.add("CSeq", f"{invite.cseq.number} ACK")
    return ack


class InviteClientTransaction(_Transaction):
    INITIAL = State.CALLING
    TABLE: ClassVar[dict[State, dict[Input, State]]] = {
        State.CALLING: {
            Input.TIMER_A: State.CALLING,
            Input.TIMER_B: State.TERMINATED,
            Input.PROVISIONAL_RECEIVED: State.PROCEEDING,
            Input.SUCCESS_RECEIVED: State.ACCEPTED,
            Input.FAILURE_RECEIVED: State.COMPLETED,
            Input.TRANSPORT_ERROR: State.TERMINATED,
        },
        State.PROCEEDING: {
            Input.PROVISIONAL_RECEIVED: State.PROCEEDING,
            Input.SUCCESS_RECEIVED: State.ACCEPTED,
            Input.FAILURE_RECEIVED: State.COMPLETED,
            Input.TRANSPORT_ERROR: State.TERMINATED,
        },
        State.COMPLETED: {
            Input.FAILURE_RECEIVED: State.COMPLETED,
            Input.TIMER_D: State.TERMINATED,
            Input.TRANSPORT_ERROR: State.TERMINATED,
        },
        State.ACCEPTED: {
            Input.SUCCESS_RECEIVED: State.ACCEPTED,
            Input.TIMER_M: State.TERMINATED,
        },
        State.TERMINATED: {},
    }

    def start(self, now: float) -> list[Action]:
        if not self.reliable:
            self._arm(Timer.A, now, self.timers.t1)
        self._arm(Timer.B, now, self.timers.timeout)
        return [self._transmit(self.request)]

    def receive_response(self, response: SipResponse, now: float) -> list[Action]:
        event = _response_input(response.status, sent=False)
        if not self._allows(event):
            return []  # e.g. a 1xx after the final response: absorbed
        old = self.state
        self._set_state(event)
        actions: list[Action] = []
        if event is Input.FAILURE_RECEIVED:
            # Every copy of the final response is acknowledged; only the first goes up to the TU.
            actions.append(self._transmit(_ack_for(self.request, response)))
            if old is State.COMPLETED:
                return actions
            self._cancel(Timer.A, Timer.B)
            self._arm(Timer.D, now, 0.0 if self.reliable else self.timers.timer_d)
        elif event is Input.SUCCESS_RECEIVED:
            if old is not State.ACCEPTED:
                self._cancel(Timer.A, Timer.B)
                self._arm(Timer.M, now, self.timers.timeout)
        else:
            self._cancel(Timer.A, Timer.B)
        actions.append(ResponseReceived(self.key, response))
        return actions + self.handle_timer(now)

    def _on_timer(self, timer: Timer, now: float) -> list[Action]:
        self._set_state(_TIMER_INPUT[timer])
        if timer is Timer.A:
            self._arm(Timer.A, now, self._intervals[Timer.A] * 2)
            return [self._transmit(self.request)]
        if timer is Timer.B:
            return [TimedOut(self.key, self.request), TransactionTerminated(self.key)]
        return [TransactionTerminated(self.key)]  # D, M


class NonInviteClientTransaction(_Transaction):
    INITIAL = State.TRYING
    TABLE: ClassVar[dict[State, dict[Input, State]]] = {
        State.TRYING: {
            Input.TIMER_E: State.TRYING,
            Input.TIMER_F: State.TERMINATED,
            Input.PROVISIONAL_RECEIVED: State.PROCEEDING,
            Input.SUCCESS_RECEIVED: State.COMPLETED,
            Input.FAILURE_RECEIVED: State.COMPLETED,
            Input.TRANSPORT_ERROR: State.TERMINATED,
        },
        State.PROCEEDING: {
            Input.TIMER_E: State.PROCEEDING,
            Input.TIMER_F: State.TERMINATED,
            Input.PROVISIONAL_RECEIVED: State.PROCEEDING,
            Input.SUCCESS_RECEIVED: State.COMPLETED,
            Input.FAILURE_RECEIVED: State.COMPLETED,
            Input.TRANSPORT_ERROR: State.TERMINATED,
        },
        State.COMPLETED: {
            Input.SUCCESS_RECEIVED: State.COMPLETED,
            Input.FAILURE_RECEIVED: State.COMPLETED,
            Input.TIMER_K: State.TERMINATED,
        },
        State.TERMINATED: {},
    }

    def start(self, now: float) -> list[Action]:
        if not self.reliable:
            self._arm(Timer.E, now, self.timers.t1)
        self._arm(Timer.F, now, self.timers.timeout)
        return [self._transmit(self.request)]

    def receive_response(self, response: SipResponse, now: float) -> list[Action]:
        event = _response_input(response.status, sent=False)
        if not self._allows(event):
            return []
        old = self.state
        self._set_state(event)
        if old is State.COMPLETED:
            return []  # retransmitted final response: absorbed
        if event is not Input.PROVISIONAL_RECEIVED:
            self._cancel(Timer.E, Timer.F)
            self._arm(Timer.K, now, 0.0 if self.reliable else self.timers.t4)
        actions: list[Action] = [ResponseReceived(self.key, response)]
        return actions + self.handle_timer(now)

    def _on_timer(self, timer: Timer, now: float) -> list[Action]:
        self._set_state(_TIMER_INPUT[timer])
        if timer is Timer.E:
            interval = self.timers.t2 if self.state is State.PROCEEDING else self._intervals[Timer.E] * 2
            self._arm(Timer.E, now, min(interval, self.timers.t2))
            return [self._transmit(self.request)]
        if timer is Timer.F:
            return [TimedOut(self.key, self.request), TransactionTerminated(self.key)]
        return [TransactionTerminated(self.key)]  # K


class InviteServerTransaction(_Transaction):
    INITIAL = State.PROCEEDING
    TABLE: ClassVar[dict[State, dict[Input, State]]] = {
        State.PROCEEDING: {
            Input.REQUEST_RETRANSMITTED: State.PROCEEDING,
            Input.PROVISIONAL_SENT: State.PROCEEDING,
            Input.SUCCESS_SENT: State.ACCEPTED,
            Input.FAILURE_SENT: State.COMPLETED,
            Input.TRANSPORT_ERROR: State.TERMINATED,
        },
        State.COMPLETED: {
            Input.REQUEST_RETRANSMITTED: State.COMPLETED,
            Input.ACK_RECEIVED: State.CONFIRMED,
            Input.TIMER_G: State.COMPLETED,
            Input.TIMER_H: State.TERMINATED,
            Input.TRANSPORT_ERROR: State.TERMINATED,
        },
        State.CONFIRMED: {
            Input.REQUEST_RETRANSMITTED: State.CONFIRMED,
            Input.ACK_RECEIVED: State.CONFIRMED,
            Input.TIMER_I: State.TERMINATED,
        },
        State.ACCEPTED: {
            Input.REQUEST_RETRANSMITTED: State.ACCEPTED,
            Input.ACK_RECEIVED: State.ACCEPTED,
            Input.SUCCESS_SENT: State.ACCEPTED,
            Input.TIMER_L: State.TERMINATED,
            Input.TRANSPORT_ERROR: State.TERMINATED,
        },
        State.TERMINATED: {},
    }

    def __init__(
        self,
        key: TransactionKey,
        request: SipRequest,
        *,
        reliable: bool,
        timers: TimerConfig,
        peer: object = None,
    ) -> None:
        super().__init__(key, request, reliable=reliable, timers=timers, peer=peer)
        self.last_response: SipResponse | None = None

    def start(self, now: float, *, send_trying: bool = True) -> list[Action]:
        """§17.2.1: answer 100 Trying at once, so the client stops retransmitting."""
        if not send_trying:
            return []
        self.last_response = make_response(self.request, 100)
        return [self._transmit(self.last_response)]

    def receive_request(self, request: SipRequest, now: float) -> list[Action]:
        event = Input.ACK_RECEIVED if request.method == "ACK" else Input.REQUEST_RETRANSMITTED
        if not self._allows(event):
            return []
        old = self.state
        self._set_state(event)
        if event is Input.ACK_RECEIVED:
            if old is State.COMPLETED:
                self._cancel(Timer.G, Timer.H)
                self._arm(Timer.I, now, 0.0 if self.reliable else self.timers.t4)
                return self.handle_timer(now)
            if old is State.ACCEPTED:
                return [RequestReceived(self.key, request, self.peer)]  # RFC 6026 §7.1: ACK to the TU
            return []
        if old in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            return [self._transmit(self.last_response)]
        return []

    def send_response(self, response: SipResponse, now: float) -> list[Action]:
        event = _response_input(response.status, sent=True)
        old = self.state
        self._set_state(event)
        self.last_response = response
        if event is Input.SUCCESS_SENT and old is State.PROCEEDING:
            self._arm(Timer.L, now, self.timers.timeout)
        elif event is Input.FAILURE_SENT:
            if not self.reliable:
                self._arm(Timer.G, now, self.timers.t1)
            self._arm(Timer.H, now, self.timers.timeout)
        return [self._transmit(response), *self.handle_timer(now)]

    def _on_timer(self, timer: Timer, now: float) -> list[Action]:
        self._set_state(_TIMER_INPUT[timer])
        if timer is Timer.G:
            self._arm(Timer.G, now, min(self._intervals[Timer.G] * 2, self.timers.t2))
            assert self.last_response is not None  # Completed is only entered by sending one
            return [self._transmit(self.last_response)]
        if timer is Timer.H:
            return [TimedOut(self.key, self.request), TransactionTerminated(self.key)]
        return [TransactionTerminated(self.key)]  # I, L


class NonInviteServerTransaction(_Transaction):
    INITIAL = State.TRYING
    TABLE: ClassVar[dict[State, dict[Input, State]]] = {
        State.TRYING: {
            Input.REQUEST_RETRANSMITTED: State.TRYING,
            Input.PROVISIONAL_SENT: State.PROCEEDING,
            Input.SUCCESS_SENT: State.COMPLETED,
            Input.FAILURE_SENT: State.COMPLETED,
            Input.TRANSPORT_ERROR: State.TERMINATED,
        },
        State.PROCEEDING: {
            Input.REQUEST_RETRANSMITTED: State.PROCEEDING,
            Input.PROVISIONAL_SENT: State.PROCEEDING,
            Input.SUCCESS_SENT: State.COMPLETED,
            Input.FAILURE_SENT: State.COMPLETED,
            Input.TRANSPORT_ERROR: State.TERMINATED,
        },
        State.COMPLETED: {
            Input.REQUEST_RETRANSMITTED: State.COMPLETED,
            Input.TIMER_J: State.TERMINATED,
            Input.TRANSPORT_ERROR: State.TERMINATED,
        },
        State.TERMINATED: {},
    }

    def __init__(
        self,
        key: TransactionKey,
        request: SipRequest,
        *,
        reliable: bool,
        timers: TimerConfig,
        peer: object = None,
    ) -> None:
        super().__init__(key, request, reliable=reliable, timers=timers, peer=peer)
        self.last_response: SipResponse | None = None

    def receive_request(self, request: SipRequest, now: float) -> list[Action]:
        if request.method == "ACK" or not self._allows(Input.REQUEST_RETRANSMITTED):
            return []
        old = self.state
        self._set_state(Input.REQUEST_RETRANSMITTED)
        if old is State.TRYING or self.last_response is None:
            return []  # §17.2.2: retransmissions in Trying are discarded
        return [self._transmit(self.last_response)]

    def send_response(self, response: SipResponse, now: float) -> list[Action]:
        event = _response_input(response.status, sent=True)
        self._set_state(event)
        self.last_response = response
        if event is not Input.PROVISIONAL_SENT:
            self._arm(Timer.J, now, 0.0 if self.reliable else self.timers.timeout)
        return [self._transmit(response), *self.handle_timer(now)]

    def _on_timer(self, timer: Timer, now: float) -> list[Action]:
        self._set_state(_TIMER_INPUT[timer])
        return [TransactionTerminated(self.key)]  # J


ClientTransaction = InviteClientTransaction | NonInviteClientTransaction
ServerTransaction = InviteServerTransaction | NonInviteServerTransaction


def server_key(request: SipRequest, source: str = "") -> TransactionKey:
    """§17.2.3: branch + sent-by + method (ACK matches its INVITE); RFC 2543 peers without the magic cookie
    are matched on Request-URI, From tag, Call-ID, CSeq number and top Via instead. `source`: the address
    the request came from, part of the key (see TransactionKey)."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch
    if not via.has_magic_cookie or branch is None:
        branch = "|".join(
            [
                "2543",
                request.uri,
                request.from_.tag or "",
                request.call_id,
                str(request.cseq.number),
                str(via),
            ]
        )
    return TransactionKey(branch, method, via.sent_by, server=True, source=source)


def source_of(peer: object) -> str:
    """The host of an adapter's peer ("udp"|"tcp", host, port); "" for anything else."""
    return peer[1] if isinstance(peer, tuple) and len(peer) == 3 and isinstance(peer[1], str) else ""


def client_key(message: SipMessage) -> TransactionKey:
    """§17.1.3: the top Via branch (ours) and the CSeq method."""
    return TransactionKey(message.top_via.branch or "", message.cseq.method, "", server=False)


class TransactionLayer:
    """Every live transaction of one SIP endpoint, keyed per §17, with one timer for the adapter to arm."""

    def __init__(self, timers: TimerConfig | None = None, *, send_trying: bool = True) -> None:
        self.timers = timers or TimerConfig()
        self.send_trying = send_trying
        self._transactions: dict[TransactionKey, ClientTransaction | ServerTransaction] = {}
        self._heap: list[tuple[float, int, TransactionKey]] = []
        self._scheduled: dict[TransactionKey, float] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._transactions)

    def get(self, key: TransactionKey) -> ClientTransaction | ServerTransaction | None:
        return self._transactions.get(key)

    def state(self, key: TransactionKey) -> State | None:
        txn = self._transactions.get(key)
        return txn.state if txn is not None else None

    def receive(
        self, message: SipMessage, now: float, *, peer: object = None, reliable: bool = False
    ) -> list[Action]:
        """A parsed message from the transport: matched to its transaction, or the start of a new one."""
        try:
            key = (
                server_key(message, source_of(peer))
                if isinstance(message, SipRequest)
                else client_key(message)
            )
        except SipParseError:
            return []  # parse_datagram/StreamParser already validated; a hand-built message may not be
        txn = self._transactions.get(key)
        if isinstance(message, SipResponse):
            if isinstance(txn, InviteClientTransaction | NonInviteClientTransaction):
                return self._after(txn, txn.receive_response(message, now))
            return [ResponseReceived(None, message)]
        if isinstance(txn, InviteServerTransaction | NonInviteServerTransaction):
            return self._after(txn, txn.receive_request(message, now))
        if message.method == "ACK":
            return [RequestReceived(None, message, peer)]
        actions: list[Action]
        if message.method == "INVITE":
            ist = InviteServerTransaction(key, message, reliable=reliable, timers=self.timers, peer=peer)
            self._transactions[key] = ist
            actions = [RequestReceived(key, message, peer), *ist.start(now, send_trying=self.send_trying)]
            return self._after(ist, actions)
        nist = NonInviteServerTransaction(key, message, reliable=reliable, timers=self.timers, peer=peer)
        self._transactions[key] = nist
        return self._after(nist, [RequestReceived(key, message, peer)])

    def send_request(
        self, request: SipRequest, now: float, *, peer: object = None, reliable: bool = False
    ) -> tuple[TransactionKey, list[Action]]:
        """Start a client transaction for `request` (which carries its own top Via with a fresh branch)."""
        if request.method == "ACK":
            raise TransactionError("ACK is sent outside transactions (use Transmit directly)")
        key = client_key(request)
        if not key.branch or key in self._transactions:
            raise TransactionError("request needs a top Via with a new branch")
        txn: ClientTransaction
        if request.method == "INVITE":
            txn = InviteClientTransaction(key, request, reliable=reliable, timers=self.timers, peer=peer)
        else:
            txn = NonInviteClientTransaction(key, request, reliable=reliable, timers=self.timers, peer=peer)
        self._transactions[key] = txn
        return key, self._after(txn, txn.start(now))

    def send_response(self, key: TransactionKey, response: SipResponse, now: float) -> list[Action]:
        txn = self._transactions.get(key)
        if not isinstance(txn, InviteServerTransaction | NonInviteServerTransaction):
            raise TransactionError(f"no server transaction {key}")
        return self._after(txn, txn.send_response(response, now))

    def transport_error(self, key: TransactionKey, now: float) -> list[Action]:
        txn = self._transactions.get(key)
        if txn is None:
            return []
        return self._after(txn, txn.transport_error(now))

    def find_invite(self, cancel: SipRequest, peer: object = None) -> TransactionKey | None:
        """The INVITE server transaction a CANCEL (from `peer`) refers to (§9.2), if it is still alive."""
        try:
            key = server_key(cancel, source_of(peer))
        except SipParseError:
            return None
        invite_key = TransactionKey(key.branch, "INVITE", key.sent_by, server=True, source=key.source)
        return invite_key if invite_key in self._transactions else None

    def next_timer(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, _, key = heap[0]
            if self._scheduled.get(key) == deadline:
                return deadline
            heapq.heappop(heap)  # superseded or finished: drop lazily
        return None

    def handle_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        while True:
            deadline = self.next_timer()
            if deadline is None or deadline > now:
                return actions
            _, _, key = heapq.heappop(self._heap)
            del self._scheduled[key]
            txn = self._transactions.get(key)
            if txn is not None:
                actions += self._after(txn, txn.handle_timer(now))

    def _after(self, txn: ClientTransaction | ServerTransaction, actions: list[Action]) -> list[Action]:
        key = txn.key
        if txn.terminated:
            self._transactions.pop(key, None)
            self._scheduled.pop(key, None)
            return actions
        deadline = txn.next_timer()
        if deadline is None:
            self._scheduled.pop(key, None)
        elif self._scheduled.get(key) != deadline:
            self._scheduled[key] = deadline
            heapq.heappush(self._heap, (deadline, next(self._seq), key))
        return actions
