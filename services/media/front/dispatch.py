"""The SIP front's decisions (sans-IO): which media worker gets a message, and what happens when one dies.

The front (front.py) owns the public SIP port and hands every message to one worker over that worker's
link (a TCP connection, frames below). This module holds everything it decides, with no sockets, no NATS
and no clock of its own (`now` is passed in):

- `scan` reads just enough of a SIP message to dispatch it (request or response, method, Call-ID, To tag)
  without the full parse: the worker parses it anyway, and the front must stay cheap.
- `StreamFramer` cuts a caller's TCP byte stream into messages by Content-Length.
- `encode_frame` / `FrameReader`: the link's framing between the front and a worker.
- `Dispatcher`: the workers of this front's site (from their KV registrations), the dialog table (SIP
  Call-ID -> worker), least-loaded choice for new dialogs, and the loss of a worker (its calls to end, 481
  for its dialogs afterwards).
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass, field

from services.kernel.events import MediaWorkerCall, MediaWorkerRegistration
from services.media import sip
from services.media.ua.ratelimit import SourceLimiter, Verdict

__all__ = [
    "Action",
    "Connect",
    "Disconnect",
    "Dispatcher",
    "Drop",
    "Forward",
    "FrameReader",
    "LinkError",
    "LossReason",
    "Peer",
    "Reply",
    "SipHead",
    "StreamFramer",
    "WorkerLost",
    "encode_frame",
    "scan",
]

Peer = tuple[str, str, int]  # ("udp"|"tcp", host, port): the caller or trunk as the front sees it

# --- a cheap look at a SIP message ------------------------------------------------------------------


@dataclass(frozen=True)
class SipHead:
    is_request: bool
    method: str  # the request's method, or the CSeq method of a response
    call_id: str
    to_tag: bool  # the To header carries a tag: an in-dialog request


_HEAD_END = re.compile(rb"\r?\n\r?\n")


def scan(data: bytes) -> SipHead | None:
    """The dispatch facts of one message, or None when it is not recognisably SIP (a worker then answers
    it as malformed, exactly as in single-process mode)."""
    end = _HEAD_END.search(data)
    head = data[: end.start()] if end else data
    lines = head.split(b"\n")
    start = lines[0].rstrip(b"\r")
    if start.startswith(b"SIP/2.0 "):
        is_request, method = False, ""
    else:
        parts = start.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"SIP/"):
            return None
        is_request, method = True, parts[0].decode("ascii", "replace")
    call_id, to_tag = "", False
    for raw in lines[1:]:
        name, sep, value = raw.partition(b":")
        if not sep:
            continue
        key = name.strip().lower()
        if key in (b"call-id", b"i"):
            call_id = value.strip().decode("utf-8", "replace")
        elif key in (b"to", b"t"):
            to_tag = _has_tag(value)
        elif key == b"cseq" and not is_request:
            method = value.strip().rpartition(b" ")[2].decode("ascii", "replace")
    return SipHead(is_request, method.upper(), call_id, to_tag)


def _has_tag(value: bytes) -> bool:
    # Parameters of the To header follow the closing '>' (or the URI itself when there is none).
    rest = value.rpartition(b">")[2] if b">" in value else value
    return any(p.strip().lower().startswith(b"tag=") for p in rest.split(b";")[1:])


# --- framing a caller's TCP stream --------------------------------------------------------------------

_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d{1,10})[ \t]*\r?$", re.I | re.M)


class StreamFramer:
    """Cuts a byte stream into SIP messages by Content-Length (RFC 3261 §18.3). CRLF keepalives between
    messages are skipped. A stream whose framing is lost (no or bad Content-Length, oversized) is
    `broken`: the front closes it (the worker never sees the bytes)."""

    def __init__(self, *, max_header: int = 16384, max_body: int = 65536) -> None:
        self.max_header = max_header
        self.max_body = max_body
        self.broken = False
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        if self.broken:
            return []
        self._buf += data
        out: list[bytes] = []
        while True:
            while self._buf[:2] == b"\r\n":
                del self._buf[:2]
            if not self._buf:
                return out
            end = _HEAD_END.search(self._buf, 0, self.max_header + 4)
            if end is None:
                if len(self._buf) > self.max_header:
                    self.broken = True
                return out
            lengths = _CONTENT_LENGTH.findall(bytes(self._buf[: end.start()]))
            if len(lengths) != 1 or int(lengths[0]) > self.max_body:
                self.broken = True
                return out
            total = end.end() + int(lengths[0])
            if len(self._buf) < total:
                return out
            out.append(bytes(self._buf[:total]))
            del self._buf[:total]


# --- the link between the front and a worker ---------------------------------------------------------
#
# A frame: 4-byte big-endian length, then an ASCII header line and the SIP bytes:
#   b"m udp 203.0.113.9 5060\n" + message   one SIP message from (front -> worker) or to (worker -> front)
#                                           that peer; the worker sees the caller's real address
#   b"bye\n"                                 worker -> front: stopping cleanly (its calls were ended by it)

_LEN = struct.Struct("!I")
MAX_FRAME = 1 << 20


class LinkError(ValueError):
    pass


def encode_frame(kind: str, peer: Peer | None = None, payload: bytes = b"") -> bytes:
    head = f"{kind} {peer[0]} {peer[1]} {peer[2]}\n" if peer is not None else f"{kind}\n"
    body = head.encode("ascii") + payload
    return _LEN.pack(len(body)) + body


class FrameReader:
    """Incremental decoder for the link: feed bytes, get (kind, peer, payload) frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, Peer | None, bytes]]:
        self._buf += data
        out: list[tuple[str, Peer | None, bytes]] = []
        while len(self._buf) >= 4:
            (length,) = _LEN.unpack_from(self._buf)
            if length > MAX_FRAME:
                raise LinkError(f"frame of {length} bytes")
            if len(self._buf) < 4 + length:
                break
            body = bytes(self._buf[4 : 4 + length])
            del self._buf[: 4 + length]
            head, _, payload = body.partition(b"\n")
            parts = head.decode("ascii", "replace").split(" ")
            peer: Peer | None = None
            if len(parts) == 4:
                try:
                    peer = (parts[1], parts[2], int(parts[3]))
                except ValueError:
                    raise LinkError(f"bad frame header {head!r}") from None
            elif len(parts) != 1:
                raise LinkError(f"bad frame header {head!r}")
            out.append((parts[0], peer, payload))
        return out


# --- the dispatcher ------------------------------------------------------------------------------------


class LossReason(enum.Enum):
    LINK_CLOSED = "link_closed"  # the worker's link socket died without a goodbye (process killed)
    REGISTRATION_EXPIRED = "registration_expired"  # no registration for `stale_after` (hung, partitioned)


@dataclass(frozen=True)
class Forward:
    worker_id: str
    peer: Peer
    data: bytes


@dataclass(frozen=True)
class Reply:
    """The front answers itself (481 for a lost worker's dialog, 503 when no worker is up)."""

    peer: Peer
    data: bytes


@dataclass(frozen=True)
class Drop:
    reason: str


@dataclass(frozen=True)
class Connect:
    worker_id: str
    host: str
    port: int


@dataclass(frozen=True)
class Disconnect:
    worker_id: str


@dataclass(frozen=True)
class WorkerLost:
    worker_id: str
    site: str
    reason: LossReason
    calls: tuple[MediaWorkerCall, ...]  # from its last registration: each gets call.ended
    pid: int = 0
    # A BYE for each answered dialog the front saw set up: the caller (or the phone the worker dialled)
    # is hung up instead of waiting for its own timers on dead air.
    byes: tuple[Reply, ...] = ()
    last_alive: float = 0.0  # the worker's wall clock at its last registration


Action = Connect | Disconnect | WorkerLost


@dataclass
class _Worker:
    reg: MediaWorkerRegistration
    seen_at: float  # front clock of the registration's put (now minus its age)
    linked: bool = False
    # New dialogs sent to it that its registration does not list yet (Call-ID -> when): its count lags
    # behind by a route lookup and a KV round trip, and a burst must not all go to one worker meanwhile.
    pending: dict[str, float] = field(default_factory=dict)
    sip_calls: frozenset[str] = frozenset()

    @property
    def incarnation(self) -> tuple[str, int, float]:
        return (self.reg.worker_id, self.reg.pid, self.reg.started_at)

    def load(self) -> float:
        return (self.reg.active_calls + len(self.pending)) / max(1, self.reg.capacity)


@dataclass
class _Dialog:
    worker_id: str
    last_seen: float
    # What the front needs to end the dialog itself if its worker dies: the peer, the INVITE and its 2xx
    # as they crossed the front (kept as bytes: parsed only then, so dispatch stays a cheap scan).
    peer: Peer | None = None
    invite: bytes | None = None
    answer: bytes | None = None
    uac: bool = False  # the worker sent the INVITE (an outbound call, e.g. an agent's desk phone)


# The front's BYE takes a CSeq far above any the worker used in the dialog (a few re-INVITEs at most): the
# peer refuses a BYE whose CSeq is not higher than the last request it saw from us.
LOST_BYE_CSEQ = 1_000_000


def lost_bye(dialog: _Dialog, host: str, port: int) -> Reply | None:
    """The BYE that ends an answered dialog whose worker is gone (None when it was never answered)."""
    if dialog.peer is None or dialog.invite is None or dialog.answer is None:
        return None
    try:
        invite = sip.parse_datagram(dialog.invite)
        answer = sip.parse_datagram(dialog.answer)
        if not isinstance(invite, sip.SipRequest) or not isinstance(answer, sip.SipResponse):
            return None
        address = sip.LocalAddress(host, port, "TCP" if dialog.peer[0] == "tcp" else "UDP")
        make = sip.Dialog.from_uac if dialog.uac else sip.Dialog.from_uas
        sip_dialog = make(invite, answer, address=address)
        sip_dialog.local_seq = max(sip_dialog.local_seq, LOST_BYE_CSEQ)
        bye = sip_dialog.create_request("BYE", headers=[("Reason", 'SIP;cause=500;text="media worker lost"')])
    except (sip.SipParseError, sip.DialogError):
        return None
    return Reply(dialog.peer, bytes(bye))


@dataclass
class Dispatcher:
    site: str
    stale_after: float = 5.0  # a worker with no registration for this long is lost
    dialog_idle: float = 40.0  # a dialog its worker no longer lists is forgotten after this (> 64*T1)
    lost_memory: float = 300.0  # how long a lost worker's dialogs are answered 481 by the front itself
    pending_for: float = 2.0  # a dispatched INVITE counts as load until its worker lists it, or this long
    # Per source address, before anything else: a scanner is refused (503) and then ignored here, for all
    # workers at once, and never costs a worker anything.
    limiter: SourceLimiter | None = None
    host: str = "127.0.0.1"  # the front's SIP address, for the Via of the BYEs it sends itself
    port: int = 5060
    workers: dict[str, _Worker] = field(default_factory=dict)
    dialogs: dict[str, _Dialog] = field(default_factory=dict)
    lost_dialogs: dict[str, float] = field(default_factory=dict)  # Call-ID -> when its worker was lost
    _gone: dict[tuple[str, int, float], float] = field(default_factory=dict)  # incarnations lost or stopped
    _last_tick: float | None = None

    # --- workers ---

    def registered(self, reg: MediaWorkerRegistration, now: float, age: float = 0.0) -> list[Action]:
        """A registration put into the KV bucket (`age`: how old it already is, from its own timestamp)."""
        if reg.site != self.site or reg.link_port == 0:
            # Another site's worker, or a media process without a front (services/media/front/loss.py watches
            # those): never ours to dispatch to.
            return []
        if (reg.worker_id, reg.pid, reg.started_at) in self._gone:
            return []  # a late registration of a lost or stopped incarnation
        worker = self.workers.get(reg.worker_id)
        actions: list[Action] = []
        if worker is not None and worker.incarnation != (reg.worker_id, reg.pid, reg.started_at):
            # Restarted under the same id: the old process is gone, and so are its calls.
            actions += self._lose(worker, LossReason.LINK_CLOSED, now)
            worker = None
        seen_at = now - max(0.0, age)
        if worker is None:
            worker = _Worker(reg=reg, seen_at=seen_at)
            self.workers[reg.worker_id] = worker
        else:
            worker.reg, worker.seen_at = reg, max(worker.seen_at, seen_at)
        worker.sip_calls = frozenset(c.sip_call_id for c in reg.calls if c.sip_call_id)
        # Listed now, so counted in active_calls; one never listed (refused: 404, 486...) times out.
        worker.pending = {
            cid: at
            for cid, at in worker.pending.items()
            if cid not in worker.sip_calls and now - at < self.pending_for
        }
        for sip_call_id in worker.sip_calls:
            # A front that (re)starts learns the live dialogs from the registrations.
            self.dialogs.setdefault(sip_call_id, _Dialog(reg.worker_id, now))
        if not worker.linked and now - worker.seen_at < self.stale_after:
            actions.append(Connect(reg.worker_id, reg.link_host, reg.link_port))
        return actions

    def unregistered(self, worker_id: str, now: float) -> list[Action]:
        """Its KV key was deleted: a clean stop (the worker ended its own calls first)."""
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return []
        self._gone[worker.incarnation] = now
        return [Disconnect(worker_id)] if worker.linked else []

    def link_up(self, worker_id: str) -> None:
        worker = self.workers.get(worker_id)
        if worker is not None:
            worker.linked = True

    def link_down(self, worker_id: str, now: float, *, clean: bool) -> list[Action]:
        """The link closed: after the worker's goodbye (`clean`) or not (the process died)."""
        worker = self.workers.get(worker_id)
        if worker is None or not worker.linked:
            return []
        if clean:
            self.workers.pop(worker_id)
            self._gone[worker.incarnation] = now
            return []
        return self._lose(worker, LossReason.LINK_CLOSED, now)

    def link_failed(self, worker_id: str) -> None:
        """A connect attempt failed: the next registration tries again."""
        worker = self.workers.get(worker_id)
        if worker is not None:
            worker.linked = False

    def tick(self, now: float, *, feed_ok: bool = True) -> list[Action]:
        """Timers: expired registrations, forgotten dialogs. `feed_ok`: the front receives registrations
        (its NATS connection is up). When it does not, or when the front itself was stalled since the
        last tick, nobody's silence proves anything: every worker gets a fresh grace period instead."""
        actions: list[Action] = []
        stalled = self._last_tick is not None and now - self._last_tick > self.stale_after / 2
        self._last_tick = now
        if stalled or not feed_ok:
            for worker in self.workers.values():
                worker.seen_at = max(worker.seen_at, now)
        for worker in list(self.workers.values()):
            if now - worker.seen_at > self.stale_after:
                actions += self._lose(worker, LossReason.REGISTRATION_EXPIRED, now)
        for call_id, dialog in list(self.dialogs.items()):
            owner = self.workers.get(dialog.worker_id)
            if now - dialog.last_seen > self.dialog_idle and (
                owner is None or call_id not in owner.sip_calls
            ):
                del self.dialogs[call_id]
        for call_id, at in list(self.lost_dialogs.items()):
            if now - at > self.lost_memory:
                del self.lost_dialogs[call_id]
        for key, at in list(self._gone.items()):
            if now - at > self.lost_memory:
                del self._gone[key]
        return actions

    def _lose(self, worker: _Worker, reason: LossReason, now: float) -> list[Action]:
        worker_id = worker.reg.worker_id
        self.workers.pop(worker_id, None)
        self._gone[worker.incarnation] = now
        byes: list[Reply] = []
        for call_id, dialog in list(self.dialogs.items()):
            if dialog.worker_id == worker_id:
                del self.dialogs[call_id]
                self.lost_dialogs[call_id] = now
                if (bye := lost_bye(dialog, self.host, self.port)) is not None:
                    byes.append(bye)
        actions: list[Action] = [
            WorkerLost(
                worker_id,
                worker.reg.site,
                reason,
                tuple(worker.reg.calls),
                worker.reg.pid,
                tuple(byes),
                worker.reg.ts,
            )
        ]
        if worker.linked:
            actions.append(Disconnect(worker_id))
        return actions

    def pick(self) -> str | None:
        """The least-loaded linked worker of this site taking new calls (load = calls / capacity, with
        the calls sent to it since its last registration counted in)."""
        best: _Worker | None = None
        for worker in self.workers.values():
            if not worker.linked or worker.reg.state != "up":
                continue
            if best is None or (worker.load(), worker.reg.worker_id) < (best.load(), best.reg.worker_id):
                best = worker
        return best.reg.worker_id if best is not None else None

    def loads(self) -> dict[str, int]:
        return {w.reg.worker_id: w.reg.active_calls + len(w.pending) for w in self.workers.values()}

    # --- messages ---

    def inbound(self, data: bytes, peer: Peer, now: float) -> Forward | Reply | Drop:
        """A message from a caller or trunk: which worker gets it, or the front's own answer."""
        head = scan(data)
        if self.limiter is not None:
            verdict = self.limiter.check(peer[1], now)
            if verdict is Verdict.IGNORE:
                return Drop("source over its limit: ignored")
            if verdict is Verdict.REJECT:
                if head is None or not head.is_request or head.method == "ACK":
                    return Drop("source over its limit")
                return self._answer(data, peer, 503, "Service Unavailable (rate limit)", retry_after=30)
        if head is None or not head.call_id:
            target = self.pick()  # the worker answers it as malformed (400), as a single process would
            return Forward(target, peer, data) if target else Drop("no worker for a malformed message")
        dialog = self.dialogs.get(head.call_id)
        if dialog is not None and dialog.worker_id in self.workers:
            dialog.last_seen = now
            if dialog.uac and _answers_invite(head, data):
                dialog.answer = data  # the far end answered the worker's call
            return Forward(dialog.worker_id, peer, data)
        if not head.is_request:
            return Drop("a response for no dialog of ours")
        if head.call_id in self.lost_dialogs:
            # Its worker died with the call: the dialog is gone (RFC 3261 §12.2.2).
            if head.method == "ACK":
                return Drop("ACK for a lost worker's dialog")
            return self._answer(data, peer, 481, "Call/Transaction Does Not Exist (media worker lost)")
        target = self.pick()
        if target is None:
            if head.method == "ACK":
                return Drop("no worker")
            return self._answer(data, peer, 503, "Service Unavailable (no media worker)", retry_after=5)
        if head.method == "INVITE" and not head.to_tag:
            # A new dialog: it stays with this worker (CANCEL, ACK, BYE, re-INVITEs follow its Call-ID).
            self.dialogs[head.call_id] = _Dialog(target, now, peer=peer, invite=data)
            self.workers[target].pending[head.call_id] = now
        return Forward(target, peer, data)

    def outbound(self, worker_id: str, data: bytes, now: float, peer: Peer | None = None) -> None:
        """A message a worker sends out: a request it starts (originate) makes its dialog follow it."""
        if worker_id not in self.workers:
            return
        head = scan(data)
        if head is None or not head.call_id:
            return
        dialog = self.dialogs.get(head.call_id)
        if dialog is not None:
            dialog.last_seen = now
            if not dialog.uac and _answers_invite(head, data):
                dialog.answer = data  # the worker answered the caller
        elif head.is_request and head.method == "INVITE":
            self.dialogs[head.call_id] = _Dialog(worker_id, now, peer=peer, invite=data, uac=True)

    @staticmethod
    def _answer(data: bytes, peer: Peer, status: int, reason: str, retry_after: int = 0) -> Reply | Drop:
        try:
            request = sip.parse_datagram(data)
        except sip.SipParseError:
            return Drop("unparsable request")
        if not isinstance(request, sip.SipRequest):
            return Drop("not a request")
        headers = [("Retry-After", str(retry_after))] if retry_after else []
        response = sip.make_response(request, status, reason, to_tag=sip.new_tag(), headers=headers)
        return Reply(peer, bytes(response))


def _answers_invite(head: SipHead, data: bytes) -> bool:
    return not head.is_request and head.method == "INVITE" and data.startswith(b"SIP/2.0 2")
