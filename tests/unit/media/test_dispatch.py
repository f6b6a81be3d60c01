"""The SIP front's dispatch core (services/media/front/dispatch.py): least-loaded choice per site, dialog
stickiness, stale registrations, the loss of a worker (its calls, 481 afterwards), the link framing."""

from __future__ import annotations

import uuid

import pytest

from services.kernel.events import MediaWorkerCall, MediaWorkerRegistration
from services.media.front.dispatch import (
    Connect,
    Disconnect,
    Dispatcher,
    Drop,
    Forward,
    FrameReader,
    LinkError,
    LossReason,
    Reply,
    StreamFramer,
    WorkerLost,
    encode_frame,
    scan,
)
from services.media.ua.ratelimit import SourceLimiter

CALLER = ("udp", "192.0.2.7", 5070)
TENANT = uuid.UUID("11111111-1111-1111-1111-111111111111")


def req(method: str, call_id: str, *, to_tag: str | None = None, cseq: int = 1) -> bytes:
    to = "<sip:+15550001@front>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:+15550001@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKabc;rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:caller@192.0.2.7>;tag=f1\r\n"
        f"To: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def resp(status: int, call_id: str, method: str = "INVITE") -> bytes:
    return (
        f"SIP/2.0 {status} OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n"
        "From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def reg(
    worker_id: str,
    *,
    site: str = "a",
    active: int = 0,
    capacity: int = 100,
    calls: list[MediaWorkerCall] | None = None,
    pid: int = 1,
    state: str = "up",
) -> MediaWorkerRegistration:
    calls = calls or []
    return MediaWorkerRegistration(
        worker_id=worker_id,
        site=site,
        link_host="127.0.0.1",
        link_port=7000 + int(worker_id[-1]),
        capacity=capacity,
        active_calls=active or len(calls),
        calls=calls,
        pid=pid,
        started_at=float(pid),
        state=state,  # type: ignore[arg-type]
    )


def up(d: Dispatcher, *regs: MediaWorkerRegistration, now: float = 0.0) -> None:
    for r in regs:
        actions = d.registered(r, now)
        if any(isinstance(a, Connect) for a in actions):
            d.link_up(r.worker_id)


def test_scan_reads_the_dispatch_facts() -> None:
    head = scan(req("BYE", "abc@h", to_tag="t9"))
    assert head is not None and head.is_request and head.method == "BYE"
    assert head.call_id == "abc@h" and head.to_tag
    assert scan(req("INVITE", "x")) is not None and not scan(req("INVITE", "x")).to_tag  # type: ignore[union-attr]
    r = scan(resp(200, "q", "BYE"))
    assert r is not None and not r.is_request and r.method == "BYE" and r.call_id == "q"
    compact = b"INVITE sip:a@b SIP/2.0\r\ni: short\r\nt: <sip:a@b>\r\nl: 0\r\n\r\n"
    assert scan(compact) == scan(compact) and scan(compact).call_id == "short"  # type: ignore[union-attr]
    assert scan(b"hello world") is None


def test_new_calls_go_to_the_least_loaded_worker_of_the_site() -> None:
    d = Dispatcher("a")
    up(d, reg("w1", active=5), reg("w2", active=2), reg("w3", site="b", active=0))
    # w3 is idle but belongs to another site: never chosen, never even linked.
    assert "w3" not in d.workers
    first = d.inbound(req("INVITE", "c1"), CALLER, 1.0)
    assert isinstance(first, Forward) and first.worker_id == "w2" and first.peer == CALLER
    # The calls sent since the last registration count: w2 reaches w1's load after three more.
    picks = [d.inbound(req("INVITE", f"c{i}"), CALLER, 1.0) for i in range(2, 6)]
    assert [p.worker_id for p in picks] == ["w2", "w2", "w1", "w2"]  # type: ignore[union-attr]
    # Load is relative to capacity: a bigger worker with more calls can still be the lighter one.
    d2 = Dispatcher("a")
    up(d2, reg("w1", active=10, capacity=20), reg("w2", active=30, capacity=100))
    chosen = d2.inbound(req("INVITE", "z"), CALLER, 0.0)
    assert isinstance(chosen, Forward) and chosen.worker_id == "w2"


def test_calls_sent_count_until_the_worker_lists_them() -> None:
    d = Dispatcher("a", pending_for=2.0)
    up(d, reg("w1", active=0), reg("w2", active=0))
    sent = {}
    for i in range(4):
        action = d.inbound(req("INVITE", f"c{i}"), CALLER, 0.0)
        assert isinstance(action, Forward)
        sent[f"c{i}"] = action.worker_id
    assert d.loads() == {"w1": 2, "w2": 2}
    # w1's registration was made before its calls were set up: they still count (no burst to w1).
    d.registered(reg("w1", active=0), 0.1)
    assert d.loads() == {"w1": 2, "w2": 2}
    # Once listed they count once, as the worker's own calls.
    mine = [
        MediaWorkerCall(tenant_id=TENANT, call_id=uuid.uuid4(), sip_call_id=c)
        for c, w in sent.items()
        if w == "w1"
    ]
    d.registered(reg("w1", calls=mine), 0.5)
    assert d.loads() == {"w1": 2, "w2": 2}
    # An INVITE that never became a call (say, 404) stops counting after `pending_for`.
    d.registered(reg("w2", active=0), 2.5)
    assert d.loads() == {"w1": 2, "w2": 0}


def test_a_dialog_stays_with_its_worker() -> None:
    d = Dispatcher("a")
    up(d, reg("w1"), reg("w2"))
    invite = d.inbound(req("INVITE", "dlg"), CALLER, 0.0)
    assert isinstance(invite, Forward)
    owner = invite.worker_id
    for message in (
        req("INVITE", "dlg"),  # a retransmission
        req("ACK", "dlg", to_tag="t"),
        req("CANCEL", "dlg"),
        req("INFO", "dlg", to_tag="t", cseq=2),
        req("INVITE", "dlg", to_tag="t", cseq=3),  # re-INVITE
        resp(200, "dlg", "INVITE"),  # the answer to the worker's re-INVITE
        req("BYE", "dlg", to_tag="t", cseq=4),
    ):
        action = d.inbound(message, CALLER, 1.0)
        assert isinstance(action, Forward) and action.worker_id == owner
    assert d.loads()[owner] == 1  # only the first INVITE counted as a new call


def test_requests_a_worker_starts_bring_their_responses_back_to_it() -> None:
    d = Dispatcher("a")
    up(d, reg("w1"), reg("w2"))
    d.outbound("w2", req("INVITE", "orig@w2"), 0.0)  # originate: the INVITE leaves through the front
    answer = d.inbound(resp(200, "orig@w2"), ("udp", "198.51.100.1", 5060), 0.5)
    assert isinstance(answer, Forward) and answer.worker_id == "w2"
    assert isinstance(d.inbound(resp(200, "nobody"), CALLER, 0.5), Drop)


def test_out_of_dialog_requests_that_make_no_dialog_are_not_remembered() -> None:
    d = Dispatcher("a")
    up(d, reg("w1"))
    assert isinstance(d.inbound(req("OPTIONS", "ping"), CALLER, 0.0), Forward)
    # An in-dialog request for an unknown dialog goes to a worker, which answers 481 as one process would.
    assert isinstance(d.inbound(req("BYE", "unknown", to_tag="t"), CALLER, 0.0), Forward)
    assert d.dialogs == {}


def test_without_a_worker_the_front_answers_503() -> None:
    d = Dispatcher("a")
    action = d.inbound(req("INVITE", "c"), CALLER, 0.0)
    assert isinstance(action, Reply) and action.peer == CALLER
    assert action.data.startswith(b"SIP/2.0 503") and b"Retry-After: 5" in action.data
    assert isinstance(d.inbound(req("ACK", "c"), CALLER, 0.0), Drop)
    # A worker that stops ("stopping") takes no new calls either.
    up(d, reg("w1", state="stopping"))
    assert isinstance(d.inbound(req("INVITE", "d"), CALLER, 0.0), Reply)


def test_a_dead_link_loses_exactly_that_worker_s_calls_and_its_dialogs_get_481() -> None:
    d = Dispatcher("a")
    up(d, reg("w1"), reg("w2"))
    owners = {}
    for i in range(4):
        action = d.inbound(req("INVITE", f"c{i}"), CALLER, 0.0)
        assert isinstance(action, Forward)
        owners[f"c{i}"] = action.worker_id
    calls = {
        w: [
            MediaWorkerCall(tenant_id=TENANT, call_id=uuid.uuid4(), sip_call_id=c, answered_at=10.0)
            for c, o in owners.items()
            if o == w
        ]
        for w in ("w1", "w2")
    }
    up(d, reg("w1", calls=calls["w1"]), reg("w2", calls=calls["w2"]), now=1.0)
    actions = d.link_down("w1", 2.0, clean=False)
    lost = [a for a in actions if isinstance(a, WorkerLost)]
    assert len(lost) == 1 and lost[0].worker_id == "w1" and lost[0].reason is LossReason.LINK_CLOSED
    assert {c.call_id for c in lost[0].calls} == {c.call_id for c in calls["w1"]}
    assert Disconnect("w1") in actions
    for call_id, owner in owners.items():
        bye = d.inbound(req("BYE", call_id, to_tag="t", cseq=2), CALLER, 3.0)
        if owner == "w1":
            assert isinstance(bye, Reply) and bye.data.startswith(b"SIP/2.0 481")
            assert f"Call-ID: {call_id}".encode() in bye.data
            assert isinstance(d.inbound(req("ACK", call_id, to_tag="t"), CALLER, 3.0), Drop)
        else:
            assert isinstance(bye, Forward) and bye.worker_id == "w2"
    # New calls now all go to the survivor.
    assert d.inbound(req("INVITE", "new"), CALLER, 3.0).worker_id == "w2"  # type: ignore[union-attr]
    # A late registration from the dead process is ignored.
    assert d.registered(reg("w1", calls=calls["w1"]), 3.5) == [] and "w1" not in d.workers


def test_a_clean_stop_loses_nothing() -> None:
    d = Dispatcher("a")
    call = MediaWorkerCall(tenant_id=TENANT, call_id=uuid.uuid4(), sip_call_id="c1")
    up(d, reg("w1", calls=[call]))
    assert d.link_down("w1", 1.0, clean=True) == []
    assert d.unregistered("w1", 1.1) == []
    assert d.tick(100.0) == []  # no expiry later either
    d2 = Dispatcher("a")
    up(d2, reg("w1", calls=[call]))
    assert d2.unregistered("w1", 1.0) == [Disconnect("w1")] and d2.tick(100.0) == []


def test_a_registration_that_lapses_loses_the_worker() -> None:
    d = Dispatcher("a", stale_after=5.0)
    call = MediaWorkerCall(tenant_id=TENANT, call_id=uuid.uuid4(), sip_call_id="c1")
    up(d, reg("w1", calls=[call]), now=0.0)
    up(d, reg("w2"), now=0.0)
    d.registered(reg("w2"), 4.0)  # w2 keeps registering, w1 does not
    assert d.tick(4.9) == []
    actions = d.tick(5.1)
    lost = [a for a in actions if isinstance(a, WorkerLost)]
    assert [(x.worker_id, x.reason) for x in lost] == [("w1", LossReason.REGISTRATION_EXPIRED)]
    assert lost[0].calls == (call,)
    # A registration already old when it arrives (left in the bucket by a dead worker) is not fresh.
    d3 = Dispatcher("a", stale_after=5.0)
    assert d3.registered(reg("w1"), 100.0, age=60.0) == []  # no Connect to a stale worker
    assert [a.worker_id for a in d3.tick(100.1) if isinstance(a, WorkerLost)] == ["w1"]


def test_a_restarted_worker_replaces_its_dead_incarnation() -> None:
    d = Dispatcher("a")
    call = MediaWorkerCall(tenant_id=TENANT, call_id=uuid.uuid4(), sip_call_id="c1")
    up(d, reg("w1", calls=[call], pid=1))
    actions = d.registered(reg("w1", pid=2), 1.0)
    assert [type(a) for a in actions] == [WorkerLost, Disconnect, Connect]
    assert actions[0].calls == (call,)  # type: ignore[union-attr]


def test_dialogs_are_forgotten_once_idle_and_unlisted() -> None:
    d = Dispatcher("a", dialog_idle=40.0)
    up(d, reg("w1"))
    d.inbound(req("INVITE", "short"), CALLER, 0.0)  # say, a 404: never becomes a call
    d.inbound(req("INVITE", "long"), CALLER, 0.0)
    live = MediaWorkerCall(tenant_id=TENANT, call_id=uuid.uuid4(), sip_call_id="long")
    for t in range(5, 100, 5):
        d.registered(reg("w1", calls=[live]), float(t))
        d.tick(float(t))
    assert set(d.dialogs) == {"long"}  # a quiet but live call keeps its dialog for hours


def test_a_front_that_starts_late_learns_dialogs_from_registrations() -> None:
    d = Dispatcher("a")
    live = MediaWorkerCall(tenant_id=TENANT, call_id=uuid.uuid4(), sip_call_id="older")
    up(d, reg("w1"), reg("w2", calls=[live]))
    bye = d.inbound(req("BYE", "older", to_tag="t"), CALLER, 0.0)
    assert isinstance(bye, Forward) and bye.worker_id == "w2"


def test_stream_framer_cuts_messages_and_breaks_on_bad_framing() -> None:
    one, two = req("OPTIONS", "a"), req("INVITE", "b")
    body = b"v=0\r\n"
    three = two.replace(b"Content-Length: 0", f"Content-Length: {len(body)}".encode()) + body
    framer = StreamFramer()
    stream = b"\r\n\r\n" + one + three
    out = []
    for i in range(0, len(stream), 7):  # dribbled in
        out += framer.feed(stream[i : i + 7])
    assert out == [one, three] and not framer.broken
    bad = StreamFramer()
    assert bad.feed(b"OPTIONS sip:a SIP/2.0\r\nCall-ID: x\r\n\r\n") == [] and bad.broken


def test_link_frames_round_trip() -> None:
    data = encode_frame("m", ("tcp", "10.0.0.1", 5061), b"SIP bytes") + encode_frame("bye")
    reader = FrameReader()
    frames = reader.feed(data[:5]) + reader.feed(data[5:])
    assert frames == [("m", ("tcp", "10.0.0.1", 5061), b"SIP bytes"), ("bye", None, b"")]
    with pytest.raises(LinkError):
        FrameReader().feed(b"\xff\xff\xff\xff")


def test_silence_proves_nothing_while_the_front_cannot_hear() -> None:
    d = Dispatcher("a", stale_after=5.0)
    up(d, reg("w1"), now=0.0)
    d.tick(0.0)
    # NATS is down at the front: no registrations arrive from anyone; nobody is declared lost.
    for t in range(1, 20):
        assert d.tick(float(t), feed_ok=False) == []
    # Back up: the grace period counts from the last tick that could not hear.
    assert d.tick(20.0) == [] and d.tick(22.0) == [] and d.tick(23.9) == []
    assert [type(a) for a in d.tick(24.1)] == [WorkerLost, Disconnect]
    # The front's own loop stalled for 10 s: the next tick does not judge anyone either.
    d2 = Dispatcher("a", stale_after=5.0)
    up(d2, reg("w1"), now=0.0)
    d2.tick(0.2)
    assert d2.tick(10.2) == []
    assert "w1" in d2.workers


def test_the_front_limits_each_source_before_dispatch() -> None:
    d = Dispatcher("a", limiter=SourceLimiter(rate=10, burst=5, ban_after=3, ban_seconds=60))
    d.registered(reg("w1"), 0.0)
    d.link_up("w1")
    scanner, other = ("udp", "198.51.100.9", 5060), ("udp", "192.0.2.7", 5070)
    out = [d.inbound(req("OPTIONS", f"s{i}"), scanner, 0.0) for i in range(10)]
    assert [type(o) for o in out[:5]] == [Forward] * 5
    # Over the rate: answered 503 with Retry-After by the front itself, then silence.
    refused = [o for o in out[5:] if isinstance(o, Reply)]
    assert len(refused) == 2 and all(
        b"SIP/2.0 503" in r.data and b"Retry-After: 30" in r.data for r in refused
    )
    assert [type(o) for o in out[7:]] == [Drop] * 3
    assert isinstance(d.inbound(req("OPTIONS", "later"), scanner, 59.0), Drop)
    assert isinstance(d.inbound(req("OPTIONS", "o1"), other, 0.0), Forward)  # others keep full service
    assert isinstance(d.inbound(req("OPTIONS", "again"), scanner, 61.0), Forward)


def _with_contact(invite: bytes) -> bytes:
    return invite.replace(
        b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nContact: <sip:caller@192.0.2.7:5070>\r\n"
    )


def test_a_lost_worker_s_answered_callers_get_a_bye_from_the_front() -> None:
    d = Dispatcher("a", host="127.0.0.1", port=5060)
    up(d, reg("w1"))
    for call_id in ("answered", "ringing"):
        assert isinstance(d.inbound(_with_contact(req("INVITE", call_id)), CALLER, 0.0), Forward)
    ok = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKabc;rport\r\n"
        b"From: <sip:caller@192.0.2.7>;tag=f1\r\nTo: <sip:+15550001@front>;tag=ours\r\n"
        b"Call-ID: answered\r\nCSeq: 1 INVITE\r\nContact: <sip:w1@127.0.0.1:5060>\r\nContent-Length: 0\r\n\r\n"
    )
    d.outbound("w1", ok, 0.5, CALLER)
    d.outbound("w1", resp(180, "ringing"), 0.5, CALLER)
    [lost] = [a for a in d.link_down("w1", 2.0, clean=False) if isinstance(a, WorkerLost)]
    [bye] = lost.byes  # the unanswered call has no dialog to end
    assert bye.peer == CALLER
    text = bye.data.decode()
    assert text.startswith("BYE sip:caller@192.0.2.7:5070 SIP/2.0\r\n")
    head = dict(line.split(": ", 1) for line in text.split("\r\n")[1:] if ": " in line)
    assert head["Call-ID"] == "answered" and head["CSeq"] == "1000001 BYE"
    assert head["From"].endswith(";tag=ours") and head["To"].endswith(";tag=f1")
    assert head["Via"].startswith("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK")


def test_a_lost_worker_s_outbound_call_gets_a_bye_too() -> None:
    d = Dispatcher("a", host="127.0.0.1", port=5060)
    up(d, reg("w1"))
    phone = ("udp", "192.0.2.9", 5080)
    invite = (
        b"INVITE sip:desk@192.0.2.9:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKout\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:+15550100@127.0.0.1>;tag=we\r\nTo: <sip:desk@192.0.2.9>\r\n"
        b"Call-ID: out-1\r\nCSeq: 1 INVITE\r\nContact: <sip:w1@127.0.0.1:5060>\r\nContent-Length: 0\r\n\r\n"
    )
    d.outbound("w1", invite, 0.0, phone)
    ok = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKout\r\n"
        b"From: <sip:+15550100@127.0.0.1>;tag=we\r\nTo: <sip:desk@192.0.2.9>;tag=phone\r\n"
        b"Call-ID: out-1\r\nCSeq: 1 INVITE\r\nContact: <sip:desk@192.0.2.9:5080>\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(d.inbound(ok, phone, 1.0), Forward)
    [lost] = [a for a in d.link_down("w1", 2.0, clean=False) if isinstance(a, WorkerLost)]
    [bye] = lost.byes
    assert bye.peer == phone and bye.data.startswith(b"BYE sip:desk@192.0.2.9:5080 SIP/2.0")
    assert b"tag=phone" in bye.data and b"From: <sip:+15550100@127.0.0.1>;tag=we" in bye.data
