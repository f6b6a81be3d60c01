"""The inbound INVITE's set-up core (services/media/ua/setup.py): every path through its table, no sockets,
no database, no clock."""

from __future__ import annotations

import ipaddress
import uuid

import pytest

from services.media import sip
from services.media.ua import setup as core
from services.media.ua.setup import TABLE, Input, InviteSetup, SetupConfig, SetupError, Step
from services.media.ua.store import NumberRoute, Trunk

TENANT = uuid.UUID("01a00000-0000-7000-8000-000000000001")
CONFIG = SetupConfig(host="127.0.0.1", realm="switchboard", auth_secret=b"k" * 32, max_calls=10, min_se=90)
PCMU = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\n"
)
PCMU += b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
G722 = b"v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9\r\n"


def _invite(
    *headers: str, body: bytes = PCMU, user: str = "+15550100200", ctype: str = "application/sdp"
) -> sip.SipRequest:
    extra = "".join(f"{h}\r\n" for h in headers)
    head = (
        f"INVITE sip:{user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKa\r\n"
        "From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        "Contact: <sip:a@192.0.2.7:5070>\r\n"
        f"{extra}" + (f"Content-Type: {ctype}\r\n" if body else "") + f"Content-Length: {len(body)}\r\n\r\n"
    )
    request = sip.parse_datagram(head.encode() + body)
    assert isinstance(request, sip.SipRequest)
    return request


def _route(*, queue: bool = True, trunks: tuple[Trunk, ...] = (), limit: int = 5) -> NumberRoute:
    return NumberRoute(
        tenant_id=TENANT,
        number_id=uuid.uuid4(),
        e164="+15550100200",
        flow_id=None,
        queue_id=uuid.uuid4() if queue else None,
        max_concurrent_calls=limit,
        trunks=trunks,
    )


def _setup(invite: sip.SipRequest | None = None) -> InviteSetup:
    return InviteSetup(
        invite or _invite(),
        "192.0.2.7",
        CONFIG,
        to_tag="t0",
        session_id=42,
        local=sip.LocalAddress("127.0.0.1", 5060, "UDP"),
        contact_uri="sip:127.0.0.1:5060",
    )


def _to_slot(setup: InviteSetup, route: NumberRoute | None = None) -> None:
    assert setup.received() == [core.LookUpRoute("+15550100200")]
    assert setup.route_found(route or _route(), calls=0, now=1000.0) == [core.TakePort()]
    assert setup.port_taken(20000) == [core.TakeSlot(TENANT, 5)]
    assert setup.state is Step.LIMITING


def test_a_call_is_set_up_step_by_step_and_waits_for_its_answer() -> None:
    setup = _setup()
    _to_slot(setup)
    ring, opened = setup.slot_taken(True, pending=True)
    assert isinstance(ring, core.Ring) and ring.response.status == 180 and ring.timer is None
    assert ring.dialog.id.call_id == "c" and opened == core.OpenRtp(20000)
    announce, follow = setup.rtp_opened(20000, pending=True, ended=False)
    assert isinstance(announce, core.Announce) and announce.codec == "PCMU"
    assert isinstance(announce.answer, sip.Answer) and b"m=audio 20000 " in bytes(announce.answer.sdp)
    assert follow == core.AwaitAnswer() and setup.state is Step.SET_UP


def test_a_number_routed_nowhere_plays_the_unrouted_message() -> None:
    setup = _setup()
    _to_slot(setup, _route(queue=False))
    setup.slot_taken(True, pending=True)
    assert setup.rtp_opened(20000, pending=True, ended=False)[-1] == core.PlayUnrouted()


def test_another_rtp_port_than_asked_is_the_one_in_the_answer() -> None:
    setup = _setup()
    _to_slot(setup)
    setup.slot_taken(True, pending=True)
    announce = setup.rtp_opened(20002, pending=True, ended=False)[0]
    assert isinstance(announce, core.Announce) and isinstance(announce.answer, sip.Answer)
    assert b"m=audio 20002 " in bytes(announce.answer.sdp)


def test_a_late_offer_gets_our_offer() -> None:
    setup = _setup(_invite(body=b""))
    _to_slot(setup)
    setup.slot_taken(True, pending=True)
    announce = setup.rtp_opened(20000, pending=True, ended=False)[0]
    assert isinstance(announce, core.Announce) and isinstance(announce.answer, sip.SessionDescription)
    assert announce.codec == ""


@pytest.mark.parametrize(
    ("invite", "status"),
    [
        (_invite(ctype="text/plain", body=b"hello"), 415),
        (_invite(user="alice"), 404),
        (_invite(user="+1234"), 404),  # too short to be a number
    ],
)
def test_the_requests_own_faults_are_answered_and_not_recorded(invite: sip.SipRequest, status: int) -> None:
    setup = _setup(invite)
    actions = setup.received()
    assert [type(a) for a in actions] == [core.Respond] and actions[0].status == status  # type: ignore[union-attr]
    assert setup.state is Step.REFUSED


def test_no_route_and_failed_trunk_checks_are_not_recorded() -> None:
    setup = _setup()
    setup.received()
    assert setup.route_found(None, calls=0, now=1000.0) == [core.Respond(404, "Not Found (no such number)")]
    digest = Trunk(
        id=uuid.uuid4(),
        name="pbx",
        allowed_ips=(ipaddress.ip_network("203.0.113.0/24"),),
        username="pbx",
        realm="switchboard",
        ha1_sha256="0" * 64,
        ha1_md5="0" * 32,
        outbound_host=None,
        outbound_port=None,
    )
    challenged = _setup()
    challenged.received()
    actions = challenged.route_found(_route(trunks=(digest,)), calls=0, now=1000.0)
    assert len(actions) == 1 and isinstance(actions[0], core.Respond) and actions[0].status == 401
    assert any(name == "WWW-Authenticate" for name, _ in actions[0].headers)


@pytest.mark.parametrize(
    ("invite", "calls", "status", "cause"),
    [
        (_invite(), 10, 503, "capacity"),
        (_invite("Session-Expires: 60", "Supported: timer"), 0, 422, "session_interval_too_small"),
        (_invite(body=b"v=0\r\nnonsense"), 0, 400, "bad_sdp"),
    ],
)
def test_refusals_after_the_trunk_checks_are_recorded(
    invite: sip.SipRequest, calls: int, status: int, cause: str
) -> None:
    setup = _setup(invite)
    setup.received()
    respond, refused = setup.route_found(_route(), calls=calls, now=1000.0)
    assert isinstance(respond, core.Respond) and respond.status == status
    assert refused == core.Refused(status, cause)


def test_no_port_and_no_common_codec() -> None:
    setup = _setup()
    setup.received()
    setup.route_found(_route(), calls=0, now=1000.0)
    assert setup.port_taken(None) == [
        core.Respond(503, "Service Unavailable (no media port)"),
        core.Refused(503, "no_media_port"),
    ]
    codec = _setup(_invite(body=G722))
    codec.received()
    codec.route_found(_route(), calls=0, now=1000.0)
    release, respond, refused = codec.port_taken(20000)
    assert release == core.ReleasePort(20000) and isinstance(respond, core.Respond) and respond.status == 488
    assert refused == core.Refused(488, "no_common_codec")


def test_the_tenant_limit_gives_486_and_the_port_back() -> None:
    setup = _setup()
    _to_slot(setup)
    assert setup.slot_taken(False, pending=True) == [
        core.ReleasePort(20000),
        core.Respond(486, "Busy Here (tenant call limit)"),
        core.Refused(486, "tenant_call_limit"),
    ]


def test_a_cancel_while_waiting_gives_back_what_was_taken() -> None:
    routing = _setup()
    routing.received()
    assert routing.gone() == [] and routing.state is Step.ABANDONED
    denied = _setup()
    _to_slot(denied)
    assert denied.slot_taken(False, pending=False) == [core.ReleasePort(20000)]
    granted = _setup()
    _to_slot(granted)
    assert granted.slot_taken(True, pending=False) == [core.ReleaseSlot(TENANT), core.ReleasePort(20000)]
    assert granted.state is Step.ABANDONED
    opening = _setup()
    _to_slot(opening)
    opening.slot_taken(True, pending=True)
    assert opening.rtp_opened(20000, pending=False, ended=False) == [core.CloseRtp(finish=True)]
    ended = _setup()
    _to_slot(ended)
    ended.slot_taken(True, pending=True)
    assert ended.rtp_opened(20000, pending=False, ended=True) == [core.CloseRtp(finish=False)]


def test_no_rtp_sockets_rejects_the_leg() -> None:
    setup = _setup()
    _to_slot(setup)
    setup.slot_taken(True, pending=True)
    assert setup.rtp_opened(None, pending=True, ended=False) == [core.Reject(503, "no_media_port")]
    assert setup.state is Step.REFUSED


def test_inputs_out_of_order_are_refused() -> None:
    setup = _setup()
    with pytest.raises(SetupError, match="port_taken is not allowed in received"):
        setup.port_taken(20000)
    setup.received()
    setup.gone()
    with pytest.raises(SetupError):
        setup.route_found(_route(), calls=0, now=1000.0)


def test_the_table_every_wait_can_be_refused_or_abandoned_and_the_ends_are_final() -> None:
    for step, moves in TABLE.items():
        if step in (Step.SET_UP, Step.REFUSED, Step.ABANDONED):
            assert moves == {}
        else:
            assert moves[Input.REFUSE] is Step.REFUSED and moves[Input.GONE] is Step.ABANDONED
    reachable = {Step.RECEIVED} | {target for moves in TABLE.values() for target in moves.values()}
    assert reachable == set(Step)
