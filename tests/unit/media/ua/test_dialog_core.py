"""A leg's dialog core (services/media/ua/dialog_core.py): every row of its table, the requests and commands
a state refuses, and the actions each move asks for. No sockets, no clock: `now` is stepped by hand."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable

import pytest

from services.kernel.events import CallAnswered, CallDtmf, CallHeld
from services.media import sip
from services.media.ua import dialog_core as dc
from services.media.ua.call import Call, CallState
from services.media.ua.dialog_core import TABLE, DialogCore, DialogCoreError, LegInput, LegState, LegTimer
from services.media.ua.store import Trunk

TENANT = uuid.UUID("01a00000-0000-7000-8000-000000000001")
CONFIG = dc.LegConfig(host="127.0.0.1", timers=sip.TimerConfig(), no_answer_timeout=30.0)
LOCAL = sip.LocalAddress("127.0.0.1", 5060, "UDP")
CONTACT = "<sip:127.0.0.1:5060>"
NOW = 100.0


def _sdp(port: int = 4000, direction: str = "sendrecv", pt: str = "0") -> bytes:
    return (
        f"v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {pt} 101\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    ).encode()


def _parse(text: str, body: bytes = b"") -> sip.SipMessage:
    return sip.parse_datagram(text.replace("\n", "\r\n").encode() + b"\r\n" + body)


def _request(method: str, cseq: int, *, body: bytes = b"", ctype: str = "application/sdp") -> sip.SipRequest:
    """The caller's request inside the inbound dialog (our To tag t0)."""
    head = (
        f"{method} sip:127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK{method}{cseq}\n"
        "From: <sip:a@x>;tag=1\nTo: <sip:b@y>;tag=t0\nCall-ID: c\n"
        f"CSeq: {cseq if method != 'ACK' else 1} {method}\nMax-Forwards: 70\nContact: <sip:a@192.0.2.7:5070>\n"
        + (f"Content-Type: {ctype}\n" if body else "")
        + f"Content-Length: {len(body)}\n"
    )
    message = _parse(head, body)
    assert isinstance(message, sip.SipRequest)
    return message


def _invite(body: bytes | None = None) -> sip.SipRequest:
    message = _request("INVITE", 1, body=_sdp() if body is None else body)
    message.headers.set("To", "<sip:b@y>")
    return message


def _call() -> Call:
    return Call(call_id=uuid.uuid4(), tenant_id=TENANT, created_at=0.0)


def _inbound(*, late_offer: bool = False) -> DialogCore:
    """A ringing inbound leg whose RTP is open on 20000, as set-up leaves it."""
    invite = _invite(b"" if late_offer else None)
    ringing = sip.make_response(invite, 180, to_tag="t0", headers=[("Contact", CONTACT)])
    dialog = sip.Dialog.from_uas(invite, ringing, address=LOCAL, local_contact="sip:127.0.0.1:5060")
    core = DialogCore(
        _call(),
        CONFIG,
        outbound=False,
        reliable=False,
        contact=CONTACT,
        address=LOCAL,
        session_id=7,
        to_tag="t0",
        invite=invite,
        invite_key=None,
        dialog=dialog,
    )
    if late_offer:
        offer = sip.create_offer(local_address="127.0.0.1", local_port=20000, session_id=7, session_version=1)
        assert core.media_ready(20000, offer, NOW) == []
    else:
        answer = sip.answer_offer(
            sip.parse_sdp(_sdp()),
            local_address="127.0.0.1",
            local_port=20000,
            session_id=7,
            session_version=1,
        )
        assert isinstance(answer, sip.Answer)
        actions = core.media_ready(20000, answer, NOW)
        assert actions == [dc.ApplyMedia(answer.media)]
    return core


def _up() -> DialogCore:
    core = _inbound()
    ok, _ = core.answer(NOW, pending=True)
    assert ok and core.state is LegState.UP
    return core


def _reoffering() -> DialogCore:
    core = _up()
    error, _ = core.hold(True, NOW)
    assert error is None and core.state is LegState.REOFFERING
    return core


TRUNK = Trunk(
    id=uuid.uuid4(),
    name="t",
    allowed_ips=(),
    username="u",
    realm="r",
    ha1_sha256=hashlib.sha256(b"u:r:p").hexdigest(),
    ha1_md5=hashlib.md5(b"u:r:p").hexdigest(),
    outbound_host="192.0.2.9",
    outbound_port=5060,
)


def _calling() -> DialogCore:
    core = DialogCore(
        _call(),
        CONFIG,
        outbound=True,
        reliable=False,
        contact=CONTACT,
        address=LOCAL,
        session_id=9,
        to_tag="o0",
        target=dc.OutboundTarget("+15550100300", "192.0.2.9", 5060, "<sip:x@127.0.0.1>;tag=f1", "out-1"),
        trunk=TRUNK,
    )
    offer = sip.create_offer(local_address="127.0.0.1", local_port=20002, session_id=9, session_version=1)
    [send] = core.start(offer, 20002, branch="z9hG4bKout1")
    assert isinstance(send, dc.SendRequest) and send.track and send.request.method == "INVITE"
    assert core.state is LegState.CALLING
    return core


def _ended() -> DialogCore:
    core = _up()
    core.hangup("normal_clearing", NOW)
    assert core.state is LegState.ENDED
    return core


MAKE: dict[LegState, Callable[[], DialogCore]] = {
    LegState.RINGING: _inbound,
    LegState.CALLING: _calling,
    LegState.UP: _up,
    LegState.REOFFERING: _reoffering,
    LegState.ENDED: _ended,
}


def _to_invite(core: DialogCore, status: int, *, body: bytes = b"", headers=()) -> sip.SipResponse:
    assert core.invite is not None
    return sip.make_response(
        core.invite, status, to_tag="r1", body=body, headers=[("Contact", "<sip:b@192.0.2.9>"), *headers]
    )


def _reinvite_ok(core: DialogCore) -> sip.SipResponse:
    """The peer's 200 to our re-INVITE (the last request the dialog built)."""
    assert core.dialog is not None
    request = core.dialog.create_request("INVITE")  # the same CSeq numbering as ours, one further
    response = sip.make_response(request, 200, to_tag="x", body=_sdp(direction="recvonly"))
    response.headers.set("CSeq", f"{core.dialog.local_seq - 1} INVITE")
    return response


# One way to feed each input (the state machine's public method that makes that move).
DRIVE: dict[LegInput, Callable[[DialogCore], list[dc.Action]]] = {
    LegInput.ANSWER: lambda core: core.answer(NOW, pending=True)[1],
    LegInput.REJECT: lambda core: core.reject(486, "busy", NOW, pending=True),
    LegInput.PROVISIONAL: lambda core: core.response(
        "INVITE", _to_invite(core, 180), NOW, branch="b", cnonce="c"
    ),
    LegInput.CHALLENGED: lambda core: core.response(
        "INVITE",
        _to_invite(core, 401, headers=[("WWW-Authenticate", 'Digest realm="r", nonce="n", algorithm=MD5')]),
        NOW,
        branch="z9hG4bKout2",
        cnonce="c",
    ),
    LegInput.ACCEPTED: lambda core: core.response(
        "INVITE", _to_invite(core, 200, body=_sdp()), NOW, branch="b", cnonce="c"
    ),
    LegInput.DECLINED: lambda core: core.response(
        "INVITE", _to_invite(core, 486), NOW, branch="b", cnonce="c"
    ),
    LegInput.BYE: lambda core: core.request(None, _request("BYE", 5), NOW),
    LegInput.INFO: lambda core: core.request(
        None, _request("INFO", 5, body=b"Signal=5\r\nDuration=160\r\n", ctype="application/dtmf-relay"), NOW
    ),
    LegInput.REINVITE: lambda core: core.request(
        None, _request("INVITE", 5, body=_sdp(direction="sendonly")), NOW
    ),
    LegInput.ACK: lambda core: core.ack(_request("ACK", 1), NOW),
    LegInput.RETRANSMIT: lambda core: core.timer_fired(LegTimer.ACK_WAIT, NOW + 0.5, pending=False),
    LegInput.HOLD: lambda core: core.hold(True, NOW)[1],
    LegInput.REOFFERED: lambda core: core.response("INVITE", _reinvite_ok(core), NOW, branch="b", cnonce="c"),
    LegInput.HANGUP: lambda core: core.hangup("normal_clearing", NOW),
    LegInput.GONE: lambda core: (core.gone(), [])[1],
}

ROWS = [(state, event, new) for state, moves in TABLE.items() for event, new in moves.items()]


@pytest.mark.parametrize(("state", "event", "new"), ROWS, ids=[f"{s.value}-{e.value}" for s, e, _ in ROWS])
def test_every_row_of_the_table(state: LegState, event: LegInput, new: LegState) -> None:
    core = MAKE[state]()
    DRIVE[event](core)
    assert core.state is new


def test_the_table_covers_every_state_and_names_only_real_inputs() -> None:
    assert set(TABLE) == set(LegState)
    assert TABLE[LegState.ENDED] == {}
    assert set(DRIVE) == set(LegInput)


@pytest.mark.parametrize("state", list(LegState))
def test_a_move_the_table_lacks_is_refused_and_changes_nothing(state: LegState) -> None:
    core = MAKE[state]()
    for event in set(LegInput) - set(TABLE[state]):
        with pytest.raises(DialogCoreError):
            core._set_state(event)
        assert core.state is state


def _statuses(actions: list[dc.Action]) -> list[int]:
    return [a.response.status for a in actions if isinstance(a, dc.Respond)]


def _kinds(actions: list[dc.Action]) -> list[type]:
    return [type(a) for a in actions]


# --- inbound ---------------------------------------------------------------------------------------------


def test_answer_sends_the_200_arms_the_ack_wait_and_announces() -> None:
    core = _inbound()
    assert core.await_answer(NOW) == [dc.ArmTimer(LegTimer.NO_ANSWER, NOW + 30.0)]
    ok, actions = core.answer(NOW, pending=True)
    assert ok and _statuses(actions) == [200]
    assert dc.CancelTimer(LegTimer.NO_ANSWER) in actions
    assert dc.ArmTimer(LegTimer.ACK_WAIT, NOW + CONFIG.timers.t1) in actions
    [emit] = [a for a in actions if isinstance(a, dc.Emit)]
    assert isinstance(emit.events[0], CallAnswered) and actions[-1] == dc.Changed()
    assert core.call.state is CallState.ANSWERED
    # A second answer is no move: the call is up already.
    assert core.answer(NOW, pending=True) == (True, [])


def test_answer_is_refused_without_rtp_or_once_the_invite_is_gone() -> None:
    core = _inbound()
    assert core.answer(NOW, pending=False) == (False, [])
    core.port = None
    assert core.answer(NOW, pending=True) == (False, [])
    assert core.state is LegState.RINGING


def test_ringing_without_an_answer_gets_480_and_ends() -> None:
    core = _inbound()
    actions = core.timer_fired(LegTimer.NO_ANSWER, NOW + 30, pending=True)
    assert _statuses(actions) == [480] and actions[-1] == dc.End("no_answer", 480)
    assert core.state is LegState.ENDED
    assert core.timer_fired(LegTimer.NO_ANSWER, NOW + 31, pending=True) == []  # once only


def test_hanging_up_a_ringing_call_declines_it_and_shutdown_says_503() -> None:
    assert _statuses(_inbound().hangup("normal_clearing", NOW, pending=True)) == [603]
    actions = _inbound().hangup("shutdown", NOW, pending=True)
    assert _statuses(actions) == [503] and actions[-1] == dc.End("shutdown", 503)
    # The INVITE's transaction is gone (e.g. its TCP connection): no response, the leg still ends.
    assert _kinds(_inbound().hangup("x", NOW, pending=False)) == [dc.CancelTimer, dc.End]


def test_cancel_while_ringing_is_487() -> None:
    core = _inbound()
    actions = core.reject(487, "cancelled", NOW, pending=True)
    assert _statuses(actions) == [487] and actions[-1] == dc.End("cancelled", 487)
    assert core.reject(487, "cancelled", NOW, pending=True) == []  # a second CANCEL changes nothing


def test_bye_is_answered_and_ends_the_leg() -> None:
    core = _up()
    actions = core.request(None, _request("BYE", 2), NOW)
    assert _statuses(actions) == [200] and actions[-1] == dc.End("remote_bye")


def test_a_request_out_of_cseq_order_gets_500() -> None:
    core = _up()
    core.request(None, _request("INFO", 5), NOW)
    assert _statuses(core.request(None, _request("BYE", 4), NOW)) == [500]
    assert core.state is LegState.UP


@pytest.mark.parametrize(
    ("body", "ctype", "status", "digit"),
    [
        (b"", "application/dtmf-relay", 200, None),
        (b"Signal=#\r\n", "application/dtmf-relay", 200, "#"),
        (b"11", "application/dtmf", 200, "#"),
        (b"Signal=x\r\n", "application/dtmf-relay", 400, None),
        (b"hello", "text/plain", 415, None),
    ],
)
def test_info_digits(body: bytes, ctype: str, status: int, digit: str | None) -> None:
    core = _up()
    actions = core.request(None, _request("INFO", 2, body=body, ctype=ctype), NOW)
    assert _statuses(actions) == [status]
    digits = [e.digit for a in actions if isinstance(a, dc.Emit) for e in a.events if isinstance(e, CallDtmf)]
    assert digits == ([digit] if digit else [])


def test_the_callers_hold_is_answered_recvonly_and_published() -> None:
    core = _up()
    core.ack(_request("ACK", 1), NOW)
    actions = core.request(None, _request("INVITE", 2, body=_sdp(direction="sendonly")), NOW)
    [respond] = [a for a in actions if isinstance(a, dc.Respond)]
    assert respond.response.status == 200 and b"a=recvonly" in respond.response.body
    [apply] = [a for a in actions if isinstance(a, dc.ApplyMedia)]
    assert apply.media.on_hold and not apply.media.direction.sends
    held = [e for a in actions if isinstance(a, dc.Emit) for e in a.events if isinstance(e, CallHeld)]
    assert [(e.held, e.by) for e in held] == [(True, "remote")]
    assert isinstance(actions[-1], dc.ArmTimer) and actions[-1].timer is LegTimer.ACK_WAIT


@pytest.mark.parametrize(
    ("body", "status"), [(b"", 488), (b"v=0\r\nnonsense", 400), (_sdp(pt="9").replace(b" 101", b""), 488)]
)
def test_a_reinvite_without_usable_sdp_is_refused_and_the_call_stays(body: bytes, status: int) -> None:
    core = _up()
    assert _statuses(core.request(None, _request("INVITE", 2, body=body), NOW)) == [status]
    assert core.state is LegState.UP


def test_the_peers_reinvite_while_ours_is_pending_is_491_and_before_the_answer_500() -> None:
    core = _reoffering()
    assert _statuses(core.request(None, _request("INVITE", 5, body=_sdp()), NOW)) == [491]
    assert core.state is LegState.REOFFERING
    ringing = _inbound()
    actions = ringing.request(None, _request("INVITE", 5, body=_sdp()), NOW)
    assert _statuses(actions) == [500] and ringing.state is LegState.RINGING
    [respond] = actions
    assert isinstance(respond, dc.Respond) and respond.response.headers.get("Retry-After") == "1"


def test_requests_after_the_end_get_481() -> None:
    core = _ended()
    for method in ("BYE", "INFO", "INVITE"):
        assert _statuses(core.request(None, _request(method, 9, body=_sdp()), NOW)) == [481]
    assert core.ack(_request("ACK", 1), NOW) == []


def test_the_2xx_is_retransmitted_until_the_ack_then_the_timer_stops() -> None:
    core = _up()
    t1 = CONFIG.timers.t1
    actions = core.timer_fired(LegTimer.ACK_WAIT, NOW + t1, pending=False)
    assert [type(a) for a in actions] == [dc.Send, dc.ArmTimer]
    assert isinstance(actions[0], dc.Send) and actions[0].message.status == 200  # type: ignore[union-attr]
    assert core.ack(_request("ACK", 1), NOW + t1) == [dc.CancelTimer(LegTimer.ACK_WAIT)]
    assert core.timer_fired(LegTimer.ACK_WAIT, NOW + 2 * t1, pending=False) == []


def test_no_ack_in_time_hangs_up_with_bye() -> None:
    core = _up()
    actions = core.timer_fired(LegTimer.ACK_WAIT, NOW + CONFIG.timers.timeout, pending=False)
    [bye] = [a for a in actions if isinstance(a, dc.SendRequest)]
    assert bye.request.method == "BYE" and bye.track and actions[-1] == dc.End("ack_timeout")


def test_a_late_offer_takes_its_answer_from_the_ack() -> None:
    core = _inbound(late_offer=True)
    core.answer(NOW, pending=True)
    actions = core.ack(_request("ACK", 1, body=_sdp(port=4010)), NOW)
    [apply] = [a for a in actions if isinstance(a, dc.ApplyMedia)]
    assert apply.media.remote_port == 4010 and core.late_offer is None


def test_a_late_offer_without_an_answer_in_the_ack_is_hung_up() -> None:
    core = _inbound(late_offer=True)
    core.answer(NOW, pending=True)
    actions = core.ack(_request("ACK", 1), NOW)
    assert actions[-1] == dc.End("media_rejected") and core.state is LegState.ENDED


# --- our hold --------------------------------------------------------------------------------------------


def test_hold_sends_a_sendonly_reinvite_and_the_answer_redirects_rtp() -> None:
    core = _up()
    error, actions = core.hold(True, NOW, moh=None)
    assert error is None
    [send] = [a for a in actions if isinstance(a, dc.SendRequest)]
    assert send.request.method == "INVITE" and b"a=sendonly" in send.request.body
    held = [e for a in actions if isinstance(a, dc.Emit) for e in a.events if isinstance(e, CallHeld)]
    assert [(e.held, e.by) for e in held] == [(True, "local")]
    # Another hold before the answer: refused (RFC 3261 §14.1: one INVITE at a time).
    error, again = core.hold(False, NOW)
    assert error is not None and again == []
    actions = core.response("INVITE", _reinvite_ok(core), NOW, branch="b", cnonce="c")
    assert [type(a) for a in actions] == [dc.Send, dc.ApplyMedia]
    assert actions[1] == dc.ApplyMedia(actions[1].media, keep_codec=True)  # type: ignore[union-attr]
    assert core.state is LegState.UP and core.pending_offer is None


def test_hold_needs_an_answered_call() -> None:
    for state in (LegState.RINGING, LegState.CALLING, LegState.ENDED):
        error, actions = MAKE[state]().hold(True, NOW)
        assert error == "the call is not answered" and actions == []


def test_a_reinvite_that_times_out_leaves_the_call_up() -> None:
    core = _reoffering()
    assert core.timed_out("INVITE", NOW) == [] and core.state is LegState.UP


def test_a_refused_reinvite_leaves_the_call_up() -> None:
    core = _reoffering()
    response = _reinvite_ok(core)
    response.status = 488
    assert core.response("INVITE", response, NOW, branch="b", cnonce="c") == []
    assert core.state is LegState.UP


# --- outbound --------------------------------------------------------------------------------------------


def test_an_outbound_call_is_answered_acked_and_its_dialog_registered() -> None:
    core = _calling()
    assert core.response("INVITE", _to_invite(core, 180), NOW, branch="b", cnonce="c") == []
    early = core.dialog
    assert early is not None
    actions = core.response("INVITE", _to_invite(core, 200, body=_sdp()), NOW, branch="b", cnonce="c")
    kinds = _kinds(actions)
    assert kinds[:3] == [dc.DialogUp, dc.Send, dc.ApplyMedia] and kinds[-1] is dc.Changed
    up = actions[0]
    assert isinstance(up, dc.DialogUp) and up.replaces == early.id and up.dialog is core.dialog
    assert actions[1].message.method == "ACK"  # type: ignore[union-attr]
    assert core.call.state is CallState.ANSWERED and core.state is LegState.UP


def test_a_digest_challenge_is_answered_once() -> None:
    core = _calling()
    challenge = [("Proxy-Authenticate", 'Digest realm="r", nonce="n"')]
    [retry] = core.response(
        "INVITE", _to_invite(core, 407, headers=challenge), NOW, branch="z9hG4bK2", cnonce="c"
    )
    assert isinstance(retry, dc.SendRequest) and retry.request.cseq.number == 2
    assert "Proxy-Authorization" in retry.request.headers
    actions = core.response("INVITE", _to_invite(core, 407, headers=challenge), NOW, branch="b", cnonce="c")
    assert actions == [dc.End("rejected", 407)] and core.state is LegState.ENDED


def test_an_outbound_answer_without_usable_sdp_is_hung_up_with_bye() -> None:
    core = _calling()
    actions = core.response("INVITE", _to_invite(core, 200), NOW, branch="b", cnonce="c")
    [bye] = [a for a in actions if isinstance(a, dc.SendRequest)]
    assert bye.request.method == "BYE" and actions[-1] == dc.End("media_rejected")


def test_hanging_up_a_ringing_outbound_call_cancels_it_and_no_answer_is_408() -> None:
    core = _calling()
    [cancel, end] = core.hangup("transfer_failed", NOW)
    assert isinstance(cancel, dc.SendRequest) and cancel.request.method == "CANCEL" and not cancel.track
    assert end == dc.End("transfer_failed")
    assert _calling().timed_out("INVITE", NOW) == [dc.End("no_answer", 408)]


def test_the_outbound_invite_goes_out_once() -> None:
    core = _calling()
    offer = sip.create_offer(local_address="127.0.0.1", local_port=20002, session_id=9, session_version=1)
    with pytest.raises(DialogCoreError):
        core.start(offer, 20002, branch="b")


def test_a_retransmitted_2xx_is_acked_again() -> None:
    core = _calling()
    ok = _to_invite(core, 200, body=_sdp())
    core.response("INVITE", ok, NOW, branch="b", cnonce="c")
    [ack] = core.stray_ok(ok)
    assert isinstance(ack, dc.Send) and ack.message.method == "ACK"  # type: ignore[union-attr]


def test_an_answer_that_crosses_our_cancel_is_acked_and_ended_with_bye() -> None:
    core = _calling()
    core.response("INVITE", _to_invite(core, 180), NOW, branch="b", cnonce="c")
    core.hangup("transfer_failed", NOW)
    actions = core.response("INVITE", _to_invite(core, 200, body=_sdp()), NOW, branch="b", cnonce="c")
    assert [type(a) for a in actions] == [dc.Send, dc.SendRequest]
    assert actions[0].message.method == "ACK"  # type: ignore[union-attr]
    bye = actions[1]
    assert isinstance(bye, dc.SendRequest) and bye.request.method == "BYE" and not bye.track
    assert core.state is LegState.ENDED
    # The 487 that answers the CANCEL instead: nothing to do.
    other = _calling()
    other.hangup("x", NOW)
    assert other.response("INVITE", _to_invite(other, 487), NOW, branch="b", cnonce="c") == []


def test_a_reinvite_answered_after_our_bye_is_only_acked() -> None:
    core = _reoffering()
    response = _reinvite_ok(core)
    core.hangup("normal_clearing", NOW)
    actions = core.response("INVITE", response, NOW, branch="b", cnonce="c")
    assert [type(a) for a in actions] == [dc.Send] and core.state is LegState.ENDED
