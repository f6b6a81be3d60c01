"""Dialogs: creation on both sides, in-dialog requests, route sets, matching and 481, 2xx retransmission."""

from __future__ import annotations

import pytest

from services.media.sip import (
    Dialog,
    DialogError,
    DialogState,
    DialogTable,
    InviteOkRetransmitter,
    LocalAddress,
    SipRequest,
    SipResponse,
    TimerConfig,
    build_request,
    make_response,
    new_branch,
    parse_datagram,
    unmatched_request_status,
)

UAS_ADDR = LocalAddress("127.0.0.1", 5060)
UAC_ADDR = LocalAddress("10.0.0.1", 5070, "TCP")


def invite(record_route: list[str] | None = None) -> SipRequest:
    req = build_request(
        "INVITE",
        "sip:+15550100@127.0.0.1",
        via=f"SIP/2.0/UDP 10.0.0.1:5070;branch={new_branch()}",
        from_='"Alice" <sip:alice@10.0.0.1>;tag=alice-tag',
        to="<sip:+15550100@127.0.0.1>",
        call_id="dlg-1@10.0.0.1",
        cseq=101,
        contact="<sip:alice@10.0.0.1:5070;transport=tcp>",
    )
    for rr in record_route or []:
        req.headers.add("Record-Route", rr)
    return parse_datagram(bytes(req))  # type: ignore[return-value]


def answer(req: SipRequest, status: int, *, contact: str = "<sip:svc@127.0.0.1:5060>") -> SipResponse:
    resp = make_response(req, status, to_tag="svc-tag", headers=[("Contact", contact)])
    return parse_datagram(bytes(resp))  # type: ignore[return-value]


PROXIES = ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]  # as the UAS sees them: nearest first


def test_uas_dialog_from_ringing_then_confirmed() -> None:
    req = invite(PROXIES)
    ringing = answer(req, 180)
    dialog = Dialog.from_uas(req, ringing, address=UAS_ADDR, local_contact="sip:svc@127.0.0.1:5060")
    assert dialog.state is DialogState.EARLY
    assert (dialog.id.call_id, dialog.id.local_tag, dialog.id.remote_tag) == (
        "dlg-1@10.0.0.1",
        "svc-tag",
        "alice-tag",
    )
    assert dialog.route_set == PROXIES
    assert dialog.remote_target == "sip:alice@10.0.0.1:5070;transport=tcp"
    assert dialog.remote_seq == 101
    dialog.confirm()
    assert dialog.state is DialogState.CONFIRMED


def test_uas_builds_bye_with_the_route_set_and_tags() -> None:
    req = invite(PROXIES)
    dialog = Dialog.from_uas(req, answer(req, 200), address=UAS_ADDR, local_contact="sip:svc@127.0.0.1:5060")
    bye = parse_datagram(bytes(dialog.create_request("BYE")))
    assert isinstance(bye, SipRequest)
    assert bye.method == "BYE" and bye.uri == "sip:alice@10.0.0.1:5070;transport=tcp"
    assert bye.headers.get_all("Route") == PROXIES
    assert bye.from_.tag == "svc-tag" and bye.from_.uri == "sip:+15550100@127.0.0.1"
    assert bye.to.tag == "alice-tag" and bye.to.display_name == "Alice"
    assert bye.call_id == "dlg-1@10.0.0.1" and str(bye.cseq) == "1 BYE"
    assert bye.top_via.host == "127.0.0.1" and bye.top_via.port == 5060 and bye.top_via.has_magic_cookie
    assert bye.max_forwards == 70 and bye.contacts == []
    reinvite = parse_datagram(bytes(dialog.create_request("INVITE", body=b"v=0\r\n")))
    assert str(reinvite.cseq) == "2 INVITE"
    assert [c.uri for c in reinvite.contacts] == ["sip:svc@127.0.0.1:5060"]
    info = dialog.create_request(
        "INFO", body=b"Signal=5\r\nDuration=160\r\n", content_type="application/dtmf-relay"
    )
    assert info.cseq.number == 3 and info.content_type == "application/dtmf-relay"


def test_uac_dialog_reverses_record_route_and_acks_the_2xx() -> None:
    req = invite(PROXIES)
    ok = answer(req, 200)
    dialog = Dialog.from_uac(req, ok, address=UAC_ADDR)
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.route_set == list(reversed(PROXIES))
    assert dialog.remote_target == "sip:svc@127.0.0.1:5060"
    assert dialog.local_seq == 101 and dialog.remote_seq is None
    ack = parse_datagram(bytes(dialog.create_ack(101)))
    assert isinstance(ack, SipRequest) and ack.method == "ACK" and str(ack.cseq) == "101 ACK"
    assert ack.top_via.branch != req.top_via.branch  # a new transaction (§13.2.2.4)
    assert ack.top_via.transport == "TCP"
    assert ack.headers.get_all("Route") == list(reversed(PROXIES))
    bye = dialog.create_request("BYE")
    assert bye.cseq.number == 102 and bye.from_.tag == "alice-tag" and bye.to.tag == "svc-tag"


def test_requests_built_by_one_side_match_the_dialog_on_the_other() -> None:
    req = invite()
    ok = answer(req, 200)
    uas = DialogTable()
    uas.add(Dialog.from_uas(req, ok, address=UAS_ADDR))
    uac_dialog = Dialog.from_uac(req, ok, address=UAC_ADDR)
    bye = parse_datagram(bytes(uac_dialog.create_request("BYE")))
    assert isinstance(bye, SipRequest)
    matched = uas.match_request(bye)
    assert matched is not None and matched.receive_request(bye) is None
    assert matched.remote_seq == 102
    uac = DialogTable()
    uac.add(uac_dialog)
    assert uac.match_response(answer(req, 200)) is uac_dialog


def test_unknown_dialog_is_481_and_ack_is_dropped() -> None:
    table = DialogTable()
    bye = build_request(
        "BYE",
        "sip:svc@127.0.0.1",
        via=f"SIP/2.0/UDP 10.0.0.1;branch={new_branch()}",
        from_="<sip:alice@10.0.0.1>;tag=a",
        to="<sip:svc@127.0.0.1>;tag=nope",
        call_id="unknown",
        cseq=2,
    )
    assert table.match_request(bye) is None
    assert unmatched_request_status(bye) == 481
    ack = build_request(
        "ACK",
        "sip:svc@127.0.0.1",
        via="SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa",
        from_="<sip:a@b>;tag=a",
        to="<sip:svc@c>;tag=x",
        call_id="unknown",
        cseq=1,
    )
    assert unmatched_request_status(ack) is None
    fresh = invite()
    assert unmatched_request_status(fresh) is None  # no To tag: a new call, not a lost dialog


def test_out_of_order_cseq_is_500_and_reinvite_refreshes_the_target() -> None:
    req = invite()
    dialog = Dialog.from_uas(req, answer(req, 200), address=UAS_ADDR)
    uac = Dialog.from_uac(req, answer(req, 200), address=UAC_ADDR)
    uac.local_contact = "sip:alice@10.0.0.99:5070"
    reinvite = uac.create_request("INVITE")
    assert dialog.receive_request(reinvite) is None
    assert dialog.remote_target == "sip:alice@10.0.0.99:5070"
    old = uac.create_request("INFO")
    old.headers.set("CSeq", "50 INFO")
    assert dialog.receive_request(old) == 500


def test_uac_early_dialog_confirmed_or_terminated_by_the_final_response() -> None:
    req = invite(PROXIES)
    early = Dialog.from_uac(req, answer(req, 183), address=UAC_ADDR)
    assert early.state is DialogState.EARLY
    ok = make_response(req, 200, to_tag="svc-tag", headers=[("Contact", "<sip:svc@127.0.0.2>")])
    ok.headers.remove("Record-Route")
    ok.headers.add("Record-Route", "<sip:only.example.com;lr>")
    early.receive_response("INVITE", ok)
    assert early.state is DialogState.CONFIRMED
    assert early.route_set == ["<sip:only.example.com;lr>"]  # recomputed from the 2xx
    assert early.remote_target == "sip:svc@127.0.0.2"
    rejected = Dialog.from_uac(req, answer(req, 180), address=UAC_ADDR)
    rejected.receive_response("INVITE", answer(req, 486))
    assert rejected.terminated
    gone = Dialog.from_uac(req, answer(req, 200), address=UAC_ADDR)
    gone.receive_response("BYE", answer(req, 481))
    assert gone.terminated
    with pytest.raises(DialogError):
        gone.create_request("BYE")
    with pytest.raises(DialogError, match="terminated -> confirmed"):
        gone.confirm()


def test_strict_router_becomes_the_request_uri() -> None:
    req = invite(["<sip:strict.example.com>", "<sip:p1.example.com;lr>"])
    dialog = Dialog.from_uas(req, answer(req, 200), address=UAS_ADDR)
    bye = dialog.create_request("BYE")
    assert bye.uri == "sip:strict.example.com"
    assert bye.headers.get_all("Route") == [
        "<sip:p1.example.com;lr>",
        "<sip:alice@10.0.0.1:5070;transport=tcp>",
    ]


def test_dialogs_need_tags_and_a_contact() -> None:
    req = invite()
    no_tag = make_response(req, 200)
    with pytest.raises(DialogError, match="To tag"):
        Dialog.from_uas(req, no_tag, address=UAS_ADDR)
    with pytest.raises(DialogError):
        Dialog.from_uas(req, make_response(req, 100), address=UAS_ADDR)
    no_contact = invite()
    no_contact.headers.remove("Contact")
    with pytest.raises(DialogError, match="Contact"):
        Dialog.from_uas(no_contact, answer(no_contact, 200), address=UAS_ADDR)
    with pytest.raises(DialogError, match="use create_ack"):
        Dialog.from_uas(req, answer(req, 200), address=UAS_ADDR).create_request("ACK")


def test_2xx_retransmitted_until_ack_over_udp() -> None:
    req = invite()
    ok = answer(req, 200)
    retransmitter = InviteOkRetransmitter(ok, 0.0)
    now, sent = 0.0, []
    while now < 10:
        now += 0.125
        deadline = retransmitter.next_timer()
        if deadline is not None and deadline <= now:
            sent += [now for _ in retransmitter.handle_timer(now)]
    assert sent == [0.5, 1.5, 3.5, 7.5]  # T1, doubling up to T2
    retransmitter.ack_received()
    assert retransmitter.next_timer() is None and retransmitter.handle_timer(20.0) == []


def test_2xx_without_ack_times_out_and_tcp_does_not_retransmit() -> None:
    ok = answer(invite(), 200)
    udp = InviteOkRetransmitter(ok, 0.0, timers=TimerConfig(t1=0.5))
    for t in range(1, 40):
        udp.handle_timer(float(t))
    assert udp.timed_out and udp.next_timer() is None
    tcp = InviteOkRetransmitter(ok, 0.0, reliable=True)
    assert tcp.next_timer() == 32.0
    assert tcp.handle_timer(10.0) == []
    tcp.handle_timer(32.0)
    assert tcp.timed_out
