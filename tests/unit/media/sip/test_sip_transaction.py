"""RFC 3261 §17 transactions driven back to back, client layer <-> server layer, over serialized bytes, with
a hand-stepped clock (now += TICK). Messages can be dropped to exercise retransmissions."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.media.sip import (
    RequestReceived,
    ResponseReceived,
    SipMessage,
    SipRequest,
    SipResponse,
    State,
    TimedOut,
    TimerConfig,
    TransactionError,
    TransactionLayer,
    TransactionTerminated,
    Transmit,
    TransportError,
    build_request,
    make_cancel,
    make_response,
    new_branch,
    parse_datagram,
)
from services.media.sip.transaction import Action, Input, InviteClientTransaction, Timer, TransactionKey

TICK = 0.125  # exact in binary, so timer instants compare exactly


class Peer:
    def __init__(self, name: str, timers: TimerConfig) -> None:
        self.name = name
        self.layer = TransactionLayer(timers)
        self.events: list[tuple[float, Action]] = []
        self.sent: list[tuple[float, SipMessage]] = []

    def sent_at(self, kind: str) -> list[float]:
        """Times at which a message of `kind` (a method, or a status code as text) was transmitted."""
        out = []
        for when, msg in self.sent:
            label = msg.method if isinstance(msg, SipRequest) else str(msg.status)
            if label == kind:
                out.append(when)
        return out

    def of_type(self, kind: type) -> list[Action]:
        return [a for _, a in self.events if isinstance(a, kind)]


class Net:
    """Two transaction layers joined by a lossless (unless told) zero-latency link."""

    def __init__(self, timers: TimerConfig | None = None, *, reliable: bool = False) -> None:
        self.timers = timers or TimerConfig()
        self.reliable = reliable
        self.now = 0.0
        self.client = Peer("client", self.timers)
        self.server = Peer("server", self.timers)
        self.drop: Callable[[Peer, SipMessage], bool] = lambda _peer, _msg: False

    def other(self, peer: Peer) -> Peer:
        return self.server if peer is self.client else self.client

    def handle(self, peer: Peer, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                peer.sent.append((self.now, action.message))
                if self.drop(peer, action.message):
                    continue
                to = self.other(peer)
                received = parse_datagram(bytes(action.message))
                self.handle(to, to.layer.receive(received, self.now, peer=peer.name, reliable=self.reliable))
            else:
                peer.events.append((self.now, action))

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now += TICK
            for peer in (self.client, self.server):
                deadline = peer.layer.next_timer()
                if deadline is not None and deadline <= self.now:
                    self.handle(peer, peer.layer.handle_timer(self.now))

    def send_request(self, request: SipRequest) -> TransactionKey:
        key, actions = self.client.layer.send_request(
            request, self.now, peer="server", reliable=self.reliable
        )
        self.handle(self.client, actions)
        return key

    def respond(self, status: int, *, method: str = "INVITE", to_tag: str = "srv") -> SipResponse:
        """The server TU answers the latest request of `method` it was given."""
        received = [a for a in self.server.of_type(RequestReceived) if isinstance(a, RequestReceived)]
        event = [a for a in received if a.request.method == method][-1]
        assert event.key is not None
        response = make_response(event.request, status, to_tag=to_tag)
        self.handle(self.server, self.server.layer.send_response(event.key, response, self.now))
        return response


def request(method: str = "INVITE", *, branch: str | None = None) -> SipRequest:
    return build_request(
        method,
        "sip:+15550100@127.0.0.1",
        via=f"SIP/2.0/UDP 10.0.0.1:5070;branch={branch or new_branch()};rport",
        from_="<sip:alice@10.0.0.1>;tag=a1",
        to="<sip:+15550100@127.0.0.1>",
        call_id="call-1@10.0.0.1",
        cseq=1,
        contact="<sip:alice@10.0.0.1:5070>",
    )


def no_responses(_peer: Peer, msg: SipMessage) -> bool:
    return isinstance(msg, SipResponse)


# --- INVITE client ---------------------------------------------------------------------------------


def test_timer_a_doubles_and_timer_b_times_out_over_udp() -> None:
    net = Net()
    net.drop = lambda peer, msg: peer is net.client  # nothing reaches the server
    key = net.send_request(request())
    net.advance(40)
    # RFC 3261 §17.1.1.2: A starts at T1 and doubles each time (it is not capped at T2 for INVITE).
    assert net.client.sent_at("INVITE") == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    timed_out = net.client.of_type(TimedOut)
    assert [a.key for a in timed_out] == [key]
    assert [when for when, a in net.client.events if isinstance(a, TimedOut)] == [32.0]
    assert net.client.of_type(TransactionTerminated) == [TransactionTerminated(key)]
    assert len(net.client.layer) == 0 and net.client.layer.next_timer() is None


def test_timer_b_over_tcp_without_retransmissions() -> None:
    net = Net(reliable=True)
    net.drop = lambda peer, msg: peer is net.client
    net.send_request(request())
    net.advance(40)
    assert net.client.sent_at("INVITE") == [0.0]
    assert [when for when, a in net.client.events if isinstance(a, TimedOut)] == [32.0]


def test_configurable_t1_t2() -> None:
    net = Net(TimerConfig(t1=0.25, t2=1.0, t4=2.0))
    net.drop = lambda peer, msg: peer is net.client
    net.send_request(request())
    net.advance(20)
    assert net.client.sent_at("INVITE") == [0.0, 0.25, 0.75, 1.75, 3.75, 7.75, 15.75]
    assert [when for when, a in net.client.events if isinstance(a, TimedOut)] == [16.0]


def test_100_trying_stops_retransmissions_and_2xx_goes_through_accepted() -> None:
    net = Net()
    key = net.send_request(request())
    # The server answered 100 Trying at once (§17.2.1), so the client went to Proceeding.
    assert net.server.sent_at("100") == [0.0]
    assert net.client.layer.state(key) is State.PROCEEDING
    invite_event = net.server.of_type(RequestReceived)[0]
    assert isinstance(invite_event, RequestReceived) and invite_event.key is not None
    server_key = invite_event.key
    net.advance(10)
    assert net.client.sent_at("INVITE") == [0.0]  # no Timer A in Proceeding, and no Timer B
    net.respond(180)
    net.advance(1)
    ok = net.respond(200)
    assert net.client.layer.state(key) is State.ACCEPTED
    assert net.server.layer.state(server_key) is State.ACCEPTED
    statuses = [
        a.response.status for a in net.client.of_type(ResponseReceived) if isinstance(a, ResponseReceived)
    ]
    assert statuses == [100, 180, 200]
    # The UAS core retransmits its 2xx (RFC 6026): it passes through both Accepted states to the UAC's TU.
    net.handle(net.server, net.server.layer.send_response(server_key, ok, net.now))
    statuses = [
        a.response.status for a in net.client.of_type(ResponseReceived) if isinstance(a, ResponseReceived)
    ]
    assert statuses == [100, 180, 200, 200]
    # An INVITE retransmission in Accepted is absorbed, not shown to the TU again.
    net.handle(net.client, [Transmit(key, request(branch=key.branch), "server")])
    assert len(net.server.of_type(RequestReceived)) == 1
    net.advance(33)  # Timers L and M (64*T1)
    assert net.client.layer.state(key) is None and net.server.layer.state(server_key) is None
    assert len(net.client.layer) == 0 and len(net.server.layer) == 0


def test_rejected_invite_is_acked_by_the_transaction_and_retransmissions_absorbed() -> None:
    net = Net()
    acks_dropped = 0

    def drop_first_two_acks(peer: Peer, msg: SipMessage) -> bool:
        nonlocal acks_dropped
        if isinstance(msg, SipRequest) and msg.method == "ACK" and acks_dropped < 2:
            acks_dropped += 1
            return True
        return False

    net.drop = drop_first_two_acks
    key = net.send_request(request())
    net.respond(486)
    # The client transaction built the ACK itself (§17.1.1.3): same branch, CSeq ACK, the response's To.
    ack = next(m for _, m in net.client.sent if isinstance(m, SipRequest) and m.method == "ACK")
    assert ack.top_via.branch == key.branch and ack.cseq.method == "ACK" and ack.to.tag == "srv"
    assert net.client.layer.state(key) is State.COMPLETED
    net.advance(4)
    # Timer G retransmitted the 486 (at T1, then 2*T1); each copy was ACKed again, the TU saw it once.
    assert net.server.sent_at("486") == [0.0, 0.5, 1.5]
    assert net.client.sent_at("ACK") == [0.0, 0.5, 1.5]
    statuses = [
        a.response.status for a in net.client.of_type(ResponseReceived) if isinstance(a, ResponseReceived)
    ]
    assert statuses == [100, 486]
    server_key = net.server.of_type(RequestReceived)[0]
    assert isinstance(server_key, RequestReceived) and server_key.key is not None
    assert net.server.layer.state(server_key.key) is State.CONFIRMED
    assert not any(isinstance(a, RequestReceived) and a.request.method == "ACK" for _, a in net.server.events)
    net.advance(5)  # Timer I (T4) ends the server side
    assert net.server.layer.state(server_key.key) is None
    net.advance(30)  # Timer D (32 s) ends the client side
    assert net.client.layer.state(key) is None
    assert net.client.of_type(TimedOut) == [] and net.server.of_type(TimedOut) == []


@pytest.mark.parametrize("status", [302, 404, 486, 503, 603])
def test_every_error_class_completes_and_acks(status: int) -> None:
    net = Net(reliable=True)
    key = net.send_request(request())
    net.respond(status)
    # Over TCP Timers D and I are zero: both transactions are gone at once.
    assert net.client.layer.state(key) is None and len(net.server.layer) == 0
    assert net.client.sent_at("ACK") == [0.0]


def test_server_absorbs_invite_retransmission_and_repeats_its_last_provisional() -> None:
    net = Net()
    net.drop = lambda peer, msg: isinstance(msg, SipResponse) and msg.status == 100
    net.send_request(request())
    net.advance(0.5)  # Timer A fires once; the server answers with its 100 again
    assert net.client.sent_at("INVITE") == [0.0, 0.5]
    assert net.server.sent_at("100") == [0.0, 0.5]
    assert len(net.server.of_type(RequestReceived)) == 1


def test_timer_h_when_the_ack_never_comes() -> None:
    net = Net()
    net.drop = lambda peer, msg: isinstance(msg, SipRequest) and msg.method == "ACK"
    net.send_request(request())
    net.respond(500)
    net.advance(40)
    # Timer G: T1, doubling, capped at T2 (4 s); Timer H at 64*T1.
    assert net.server.sent_at("500") == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [when for when, a in net.server.events if isinstance(a, TimedOut)] == [32.0]
    assert len(net.server.layer) == 0


# --- non-INVITE ------------------------------------------------------------------------------------


def test_timer_e_doubles_to_t2_then_timer_f() -> None:
    net = Net()
    net.drop = lambda peer, msg: peer is net.client
    key = net.send_request(request("OPTIONS"))
    net.advance(40)
    assert net.client.sent_at("OPTIONS") == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [(when, a.key) for when, a in net.client.events if isinstance(a, TimedOut)] == [(32.0, key)]


def test_timer_e_is_t2_in_proceeding() -> None:
    net = Net()
    net.drop = lambda peer, msg: peer is net.client and net.now > 0
    net.send_request(request("INFO"))
    net.respond(100, method="INFO")
    net.advance(10)
    # After a provisional the request is retransmitted every T2 (§17.1.2.2), still until Timer F.
    assert net.client.sent_at("INFO") == [0.0, 0.5, 4.5, 8.5]


def test_non_invite_final_response_and_absorbed_retransmissions() -> None:
    net = Net()
    key = net.send_request(request("OPTIONS"))
    net.respond(200, method="OPTIONS")
    assert net.client.layer.state(key) is State.COMPLETED
    # A retransmitted request in Completed gets the final response again, not a new TU event.
    net.handle(net.client, [Transmit(key, request("OPTIONS", branch=key.branch), "server")])
    assert net.server.sent_at("200") == [0.0, 0.0]
    assert len(net.server.of_type(RequestReceived)) == 1
    assert [
        a.response.status for a in net.client.of_type(ResponseReceived) if isinstance(a, ResponseReceived)
    ] == [200]
    net.advance(5)  # Timer K (T4)
    assert net.client.layer.state(key) is None
    assert len(net.server.layer) == 1
    net.advance(28)  # Timer J (64*T1)
    assert len(net.server.layer) == 0


def test_non_invite_over_tcp_ends_at_once() -> None:
    net = Net(reliable=True)
    key = net.send_request(request("BYE"))
    net.respond(200, method="BYE")
    assert net.client.layer.state(key) is None and len(net.server.layer) == 0
    assert net.client.of_type(TransactionTerminated) == [TransactionTerminated(key)]


def test_non_invite_retransmission_in_trying_is_discarded() -> None:
    net = Net()
    net.drop = lambda peer, msg: isinstance(msg, SipResponse)
    net.send_request(request("OPTIONS"))
    net.advance(0.5)
    assert net.client.sent_at("OPTIONS") == [0.0, 0.5]
    assert net.server.sent == []  # §17.2.2: nothing to send back yet
    assert len(net.server.of_type(RequestReceived)) == 1


# --- CANCEL, ACK for 2xx, strays ---------------------------------------------------------------------


def test_cancel_matches_the_invite_server_transaction() -> None:
    net = Net()
    invite = request()
    invite_key = net.send_request(invite)
    net.respond(180)
    cancel = make_cancel(invite)
    cancel_key = net.send_request(cancel)
    assert cancel_key.branch == invite_key.branch and cancel_key.method == "CANCEL"
    received = [a for a in net.server.of_type(RequestReceived) if isinstance(a, RequestReceived)]
    cancel_event = received[-1]
    assert cancel_event.request.method == "CANCEL" and cancel_event.key is not None
    server_invite = net.server.layer.find_invite(cancel_event.request)
    assert server_invite is not None and server_invite == received[0].key
    assert net.server.layer.state(server_invite) is State.PROCEEDING
    # The TU answers 200 to the CANCEL and 487 to the INVITE (§9.2).
    net.handle(
        net.server,
        net.server.layer.send_response(
            cancel_event.key, make_response(cancel_event.request, 200, to_tag="srv"), net.now
        ),
    )
    net.handle(
        net.server,
        net.server.layer.send_response(
            server_invite, make_response(received[0].request, 487, to_tag="srv"), net.now
        ),
    )
    responses = [
        (a.key, a.response.status)
        for a in net.client.of_type(ResponseReceived)
        if isinstance(a, ResponseReceived)
    ]
    assert (cancel_key, 200) in responses and (invite_key, 487) in responses
    assert net.client.sent_at("ACK") == [0.0]


def test_cancel_for_an_unknown_invite_finds_nothing() -> None:
    layer = TransactionLayer()
    assert layer.find_invite(make_cancel(request())) is None


def test_a_request_from_another_address_never_matches_a_transaction() -> None:
    # sent-by and branch are the sender's own words: another address copying them gets a transaction of
    # its own (not the first one's retransmitted answer) and its CANCEL finds nothing to cancel.
    layer = TransactionLayer()
    invite = request()
    first = layer.receive(invite, 0.0, peer=("udp", "192.0.2.1", 5060))
    other = layer.receive(parse_datagram(bytes(invite)), 0.1, peer=("udp", "192.0.2.2", 5060))
    keys = [a.key for a in (*first, *other) if isinstance(a, RequestReceived)]
    assert len(keys) == 2 and keys[0] != keys[1]
    assert layer.find_invite(make_cancel(invite), ("udp", "192.0.2.1", 5060)) == keys[0]
    assert layer.find_invite(make_cancel(invite), ("udp", "192.0.2.3", 5060)) is None


def test_ack_for_2xx_matches_no_transaction_and_goes_to_the_tu() -> None:
    net = Net()
    net.send_request(request())
    net.respond(200)
    ack = request("ACK")  # new branch, as §13.2.2.4 requires
    ack.headers.set("CSeq", "1 ACK")
    actions = net.server.layer.receive(ack, net.now, peer="client")
    assert actions == [RequestReceived(None, ack, "client")]


def test_stray_response_goes_to_the_tu_without_a_key() -> None:
    layer = TransactionLayer()
    response = make_response(request(), 200, to_tag="x")
    assert layer.receive(response, 0.0) == [ResponseReceived(None, response)]


def test_rfc2543_requests_without_magic_cookie_are_still_matched() -> None:
    layer = TransactionLayer()
    old = request("OPTIONS")
    old.headers.set("Via", "SIP/2.0/UDP 10.0.0.1:5070")
    first = layer.receive(parse_datagram(bytes(old)), 0.0)
    assert isinstance(first[0], RequestReceived) and first[0].key is not None
    assert layer.receive(parse_datagram(bytes(old)), 0.5) == []  # retransmission absorbed in Trying
    assert len(layer) == 1


# --- misuse, transport errors, the layer's timer ---------------------------------------------------------


def test_illegal_tu_moves_are_refused_with_a_reason() -> None:
    net = Net()
    net.send_request(request("OPTIONS"))
    net.respond(200, method="OPTIONS")
    with pytest.raises(TransactionError, match="not allowed in Completed"):
        net.respond(404, method="OPTIONS")
    net.send_request(request())
    net.respond(200)
    with pytest.raises(TransactionError, match="PROVISIONAL_SENT is not allowed in Accepted"):
        net.respond(180)
    with pytest.raises(TransactionError):
        net.client.layer.send_response(
            TransactionKey("x", "INVITE", "h:5060", True), make_response(request(), 200), 0.0
        )
    with pytest.raises(TransactionError):
        net.client.layer.send_request(request("ACK"), 0.0)


def test_transport_error_ends_the_client_transaction() -> None:
    layer = TransactionLayer()
    key, _ = layer.send_request(request(), 0.0)
    actions = layer.transport_error(key, 0.1)
    assert [type(a) for a in actions] == [TransportError, TransactionTerminated]
    assert len(layer) == 0 and layer.next_timer() is None
    assert layer.transport_error(key, 0.2) == []


def test_layer_next_timer_is_the_earliest_of_all_transactions() -> None:
    layer = TransactionLayer()
    layer.send_request(request("OPTIONS"), 10.0)
    layer.send_request(request("INVITE"), 10.2)
    layer.send_request(request("OPTIONS"), 10.1, reliable=True)
    assert layer.next_timer() == 10.5  # Timer E of the first
    actions = layer.handle_timer(10.5)
    assert [type(a) for a in actions] == [Transmit]
    assert layer.next_timer() == 10.7  # Timer A of the INVITE
    assert layer.handle_timer(10.6) == []
    assert len(layer) == 3


def test_state_table_refuses_illegal_transitions() -> None:
    txn = InviteClientTransaction(
        TransactionKey("z9hG4bKt", "INVITE"), request(), reliable=False, timers=TimerConfig()
    )
    txn.start(0.0)
    with pytest.raises(TransactionError, match="TIMER_D is not allowed in Calling"):
        txn._set_state(Input.TIMER_D)
    assert txn.next_timer() == 0.5 and Timer.B in txn._deadlines


def test_timer_config_is_validated() -> None:
    with pytest.raises(ValueError):
        TimerConfig(t1=5.0, t2=4.0)
    assert TimerConfig().timeout == 32.0
