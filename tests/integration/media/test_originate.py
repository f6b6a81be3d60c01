"""originate towards a trunk that demands digest auth (407, answered with the trunk's stored HA1), over
UDP and over TCP, against a small trunk written here with our own SIP core; and the trunk refusing a
wrong password (no second retry, the call ends with the trunk's status)."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
import uuid
from dataclasses import dataclass, field

import asyncpg
import pytest

from services.kernel import events as ev
from services.kernel.ids import new_id
from services.media import sip
from services.media.sip.auth import Credentials, build_challenge, compute_ha1, verify_authorization

from .harness import Events
from .sipclient import RtpReceiver, sdp

REALM = "carrier.example"
SECRET = b"trunk-side-secret"


@dataclass
class FakeTrunk:
    """A UAS that challenges the first INVITE with 407, then checks the credentials."""

    transport: str  # "udp" | "tcp"
    password: str
    rtp_port: int
    received: list[sip.SipRequest] = field(default_factory=list)
    auth_ok: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        kind = socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        if self.transport == "tcp":
            self.sock.listen(1)
        self.conn: socket.socket | None = None
        self.peer: tuple[str, int] | None = None
        self.parser = sip.StreamParser()

    def recv(self, timeout: float = 5.0) -> sip.SipMessage | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.transport == "udp":
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data, self.peer = self.sock.recvfrom(65536)
                except TimeoutError:
                    return None
                return sip.parse_datagram(data)
            if self.conn is None:
                self.sock.settimeout(timeout)
                self.conn, self.peer = self.sock.accept()
            message = self.parser.next_message()
            if message is not None:
                return message
            self.conn.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.conn.recv(65536)
            except TimeoutError:
                return None
            if not data:
                return None
            self.parser.feed(data)
        return None

    def send(self, message: sip.SipMessage) -> None:
        if self.transport == "udp":
            assert self.peer is not None
            self.sock.sendto(bytes(message), self.peer)
        else:
            assert self.conn is not None
            self.conn.sendall(bytes(message))

    def request(self, method: str) -> sip.SipRequest:
        while True:
            message = self.recv()
            assert message is not None, f"no {method} from the media service"
            if isinstance(message, sip.SipRequest) and message.method == method:
                self.received.append(message)
                return message

    def run(self) -> None:
        """Blocking: challenge, check, answer; then wait for the BYE and confirm it."""
        first = self.request("INVITE")
        challenge = build_challenge(REALM, SECRET, time.time(), algorithm="SHA-256")
        self.send(sip.make_response(first, 407, to_tag="t1", headers=[("Proxy-Authenticate", challenge)]))
        self.request("ACK")
        second = self.request("INVITE")
        value = second.headers.get("Proxy-Authorization") or ""
        ha1 = compute_ha1("outbound", REALM, self.password, "SHA-256")
        result = verify_authorization(
            value,
            method="INVITE",
            realm=REALM,
            secret=SECRET,
            now=time.time(),
            credentials=Credentials(username="outbound", ha1=(("SHA-256", ha1),)),
            request_uri=second.uri,
        )
        self.auth_ok.append(result.ok)
        if not result.ok:
            challenge = build_challenge(REALM, SECRET, time.time(), algorithm="SHA-256")
            self.send(
                sip.make_response(second, 407, to_tag="t2", headers=[("Proxy-Authenticate", challenge)])
            )
            self.request("ACK")
            return
        contact = f"<sip:trunk@127.0.0.1:{self.port}" + (
            ";transport=tcp>" if self.transport == "tcp" else ">"
        )
        self.send(
            sip.make_response(
                second, 200, to_tag="t3", headers=[("Contact", contact)], body=sdp(self.rtp_port)
            )
        )
        self.request("ACK")
        bye = self.request("BYE")
        self.send(sip.make_response(bye, 200))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.sock.close()


async def _tenant_with_trunk(owner_url: str, trunk: FakeTrunk) -> uuid.UUID:
    conn = await asyncpg.connect(owner_url)
    tenant = new_id()
    try:
        await conn.execute(
            "INSERT INTO tenants (id, name, admin_email) VALUES ($1, 'originate', 'o@example.com')", tenant
        )
        await conn.execute(
            """INSERT INTO sip_trunks (id, tenant_id, name, allowed_ips, username, realm, ha1_sha256, ha1_md5,
                                       outbound_host, outbound_port, outbound_transport)
               VALUES ($1, $2, 'carrier', '{127.0.0.0/8}', 'outbound', $3, $4, $5, '127.0.0.1', $6, $7)""",
            new_id(),
            tenant,
            REALM,
            compute_ha1("outbound", REALM, "right-password", "SHA-256"),
            compute_ha1("outbound", REALM, "right-password", "MD5"),
            trunk.port,
            trunk.transport,
        )
    finally:
        await conn.close()
    return tenant


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_originate_answers_the_trunks_digest_challenge(media_edge, infra, transport: str) -> None:
    rtp = RtpReceiver()
    trunk = FakeTrunk(transport, "right-password", rtp.port)
    tenant = await _tenant_with_trunk(infra.owner_url, trunk)
    events = await Events.connect(media_edge.nats_url, tenant)
    serving = asyncio.create_task(asyncio.to_thread(trunk.run))
    try:
        call_id = uuid.uuid4()
        reply = await events.command(
            ev.MediaOriginate(tenant_id=tenant, call_id=call_id, to="+15550123", caller_id="+15550100")
        )
        assert reply.ok, reply.error
        await events.wait_for(ev.CallAnswered, lambda e: e.call_id == call_id)
        first, second = trunk.received[0], trunk.received[2]
        assert trunk.auth_ok == [True]
        assert first.call_id == second.call_id and second.cseq.number == first.cseq.number + 1
        assert first.top_via.transport == transport.upper()
        await asyncio.to_thread(rtp.receive_for, 0.5)
        assert rtp.packets  # media flows to the SDP the trunk answered with
        assert (await events.command(ev.MediaHangup(tenant_id=tenant, call_id=call_id))).ok
        await asyncio.wait_for(serving, 10)
        ended = await events.wait_for(ev.CallEnded, lambda e: e.call_id == call_id)
        assert ended.cause == "normal_clearing"
    finally:
        serving.cancel()
        trunk.close()
        rtp.close()
        await events.close()


async def test_originate_with_wrong_credentials_ends_with_the_trunks_status(media_edge, infra) -> None:
    rtp = RtpReceiver()
    trunk = FakeTrunk("udp", "another-password", rtp.port)
    tenant = await _tenant_with_trunk(infra.owner_url, trunk)
    events = await Events.connect(media_edge.nats_url, tenant)
    serving = asyncio.create_task(asyncio.to_thread(trunk.run))
    try:
        call_id = uuid.uuid4()
        reply = await events.command(
            ev.MediaOriginate(
                tenant_id=tenant, call_id=call_id, to="+15550124", caller_id=secrets.token_hex(3)
            )
        )
        assert reply.ok
        ended = await events.wait_for(ev.CallEnded, lambda e: e.call_id == call_id)
        assert (ended.cause, ended.sip_status) == ("rejected", 407)
        await asyncio.wait_for(serving, 10)
        assert trunk.auth_ok == [False]
        assert [r.method for r in trunk.received] == ["INVITE", "ACK", "INVITE", "ACK"]  # one retry only
    finally:
        serving.cancel()
        trunk.close()
        rtp.close()
        await events.close()
