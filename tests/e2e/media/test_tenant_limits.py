"""A tenant's concurrent-call limit holds over every media worker and every kind of call (issue #17, item 5),
and a widget token holds one call at a time: the SIP front and two workers as real subprocesses, real
PostgreSQL and NATS, SIP callers on sockets, web callers as aiortc peers offering over NATS.

A tenant with limit 4 and a queue number (its calls ring until answered): eight simultaneous INVITEs give
four calls (spread over both workers) and four 486; an outbound call and a web caller are refused too; once
a call is cancelled, a web caller takes its place and SIP is refused again."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
import uuid
from collections.abc import Iterator

import asyncpg
import nats
import pytest

from services.kernel import events as ev
from services.kernel.ids import new_id
from services.kernel.messages import Reply, decode, encode
from services.media.webrtc import WebRtcConfig, WebRtcLeg
from tests.e2e.media.test_hostile_sip import Front, running_front
from tests.e2e.media.test_media_sharding import _registrations
from tests.integration.media.sipclient import header, request, sdp, status_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

LIMIT = 4


@pytest.fixture(scope="module")
def front(infra) -> Iterator[Front]:  # type: ignore[no-untyped-def]
    with running_front(infra, workers=2) as running:
        yield running


async def _tenant(owner_url: str, limit: int) -> tuple[uuid.UUID, str]:
    """A tenant with `limit` concurrent calls and a queue number (calls to it ring, waiting for an agent)."""
    conn = await asyncpg.connect(owner_url)
    try:
        tenant, queue, number = new_id(), new_id(), f"+1666{secrets.randbelow(10**7):07d}"
        await conn.execute(
            "INSERT INTO tenants (id, name, admin_email, max_concurrent_calls) VALUES ($1, 'limits', 'l@example.com', $2)",
            tenant,
            limit,
        )
        await conn.execute("INSERT INTO queues (id, tenant_id, name) VALUES ($1, $2, 'q')", queue, tenant)
        await conn.execute(
            "INSERT INTO numbers (id, tenant_id, e164, queue_id) VALUES ($1, $2, $3, $4)",
            new_id(),
            tenant,
            number,
            queue,
        )
        return tenant, number
    finally:
        await conn.close()


class SipCall:
    def __init__(self, port: int, number: str) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        local = self.sock.getsockname()[1]
        uri = f"sip:{number}@127.0.0.1:{port}"
        same = {"call_id": secrets.token_hex(8), "via_branch": "z9hG4bK" + secrets.token_hex(6)}
        same["from_tag"] = secrets.token_hex(4)
        self.invite = request("INVITE", uri, local_port=local, body=sdp(4000), **same)
        self.cancel = request("CANCEL", uri, local_port=local, **same)
        self.statuses: list[int] = []

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, ("127.0.0.1", self.port))

    def read(self) -> None:
        while True:
            try:
                reply = self.sock.recv(65536)
            except BlockingIOError:
                return
            if (header(reply, "CSeq") or "").endswith("INVITE"):
                self.statuses.append(status_of(reply))


async def _settle(calls: list[SipCall], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for call in calls:
            call.read()
        if all(any(s == 180 or s >= 300 for s in c.statuses) for c in calls):
            return
        await asyncio.sleep(0.02)


async def _command(nc: nats.NATS, command: ev.MediaOriginate | ev.MediaWebRtcOffer, name: str) -> Reply:
    msg = await nc.request(f"sb.{command.tenant_id}.cmd.media.{name}", encode(command), timeout=10)
    return decode(msg.data, Reply)


async def _web_offer(nc: nats.NATS, tenant: uuid.UUID, owner: str) -> tuple[Reply, WebRtcLeg]:
    leg = WebRtcLeg(WebRtcConfig(), on_audio=lambda samples: None)
    offer = ev.MediaWebRtcOffer(
        tenant_id=tenant, leg_id=uuid.uuid4(), agent_id=owner, sdp=await leg.create_offer()
    )
    return await _command(nc, offer, "webrtc_offer"), leg


async def test_the_limit_holds_over_workers_and_over_sip_web_and_outbound_calls(front: Front, infra) -> None:  # type: ignore[no-untyped-def]
    tenant, number = await _tenant(infra.owner_url, LIMIT)
    nc = await nats.connect(infra.nats_url)
    browsers: list[WebRtcLeg] = []
    calls = [SipCall(front.port, number) for _ in range(2 * LIMIT)]
    try:
        # The first four one after the other: the front spreads them, two on each worker...
        for call in calls[:LIMIT]:
            call.send(call.invite)
            await _settle([call], 5.0)
            await asyncio.sleep(0.3)  # its registration lists it: the other worker is now less loaded
        regs = await _registrations(nc, front.site)
        held = [r.worker_id for r in regs.values() for c in r.calls if c.tenant_id == tenant]
        assert sorted(held.count(w) for w in set(held)) == [LIMIT // 2] * 2, regs
        # ...then four at once, to both workers, each of which holds only two of the tenant's calls.
        for call in calls[LIMIT:]:
            call.send(call.invite)
        await _settle(calls, 10.0)
        ringing = [c for c in calls if 180 in c.statuses]
        busy = [c for c in calls if 486 in c.statuses]
        assert (ringing, busy) == (calls[:LIMIT], calls[LIMIT:]), [c.statuses for c in calls]

        outbound = ev.MediaOriginate(
            tenant_id=tenant, call_id=uuid.uuid4(), to="sip:desk@127.0.0.1:9"
        )  # straight to a phone: no trunk needed
        reply = await _command(nc, outbound, "originate")
        assert not reply.ok and "limit" in (reply.error or ""), reply
        reply, leg = await _web_offer(nc, tenant, f"widget:{uuid.uuid4()}")
        browsers.append(leg)
        assert not reply.ok and reply.code == "limit", reply

        # One caller gives up: its place goes to a web caller, and SIP is refused again.
        ringing[0].send(ringing[0].cancel)
        await asyncio.sleep(0.5)  # the worker's release reaches the shared count
        token_owner = f"widget:{uuid.uuid4()}"
        reply, leg = await _web_offer(nc, tenant, token_owner)
        browsers.append(leg)
        assert reply.ok, reply
        late = SipCall(front.port, number)
        late.send(late.invite)
        await _settle([late], 5.0)
        assert 486 in late.statuses and 180 not in late.statuses, late.statuses

        # One call per widget token at a time, whichever worker gets the second offer.
        ringing[1].send(ringing[1].cancel)
        await asyncio.sleep(0.5)
        reply, leg = await _web_offer(nc, tenant, token_owner)
        browsers.append(leg)
        assert not reply.ok and reply.code == "limit" and "widget token" in (reply.error or ""), reply
    finally:
        for call in calls:
            call.send(call.cancel)
        for leg in browsers:
            await leg.close()
        await nc.close()


async def test_a_widget_key_holds_at_most_its_own_limit(front: Front, infra) -> None:  # type: ignore[no-untyped-def]
    tenant, _ = await _tenant(infra.owner_url, 10)
    limited, open_key = new_id(), new_id()
    conn = await asyncpg.connect(infra.owner_url)
    try:
        for key_id, limit in ((limited, 1), (open_key, None)):
            await conn.execute(
                """INSERT INTO widget_keys (id, tenant_id, public_key, queue_ids, max_concurrent_calls)
                   VALUES ($1, $2, $3, ARRAY[$4::uuid], $5)""",
                key_id,
                tenant,
                f"pk_{secrets.token_urlsafe(24)}",
                new_id(),
                limit,
            )
    finally:
        await conn.close()
    nc = await nats.connect(infra.nats_url)
    legs: list[WebRtcLeg] = []
    try:
        first, leg = await _web_offer(nc, tenant, f"widget:{limited}:{uuid.uuid4()}")
        legs.append(leg)
        assert first.ok, first
        # Another token of the same key: refused by the key's limit (1), whichever worker answers.
        second, leg = await _web_offer(nc, tenant, f"widget:{limited}:{uuid.uuid4()}")
        legs.append(leg)
        assert not second.ok and second.code == "limit" and "widget key" in (second.error or ""), second
        # A key without a limit of its own is held only by the tenant's.
        other, leg = await _web_offer(nc, tenant, f"widget:{open_key}:{uuid.uuid4()}")
        legs.append(leg)
        assert other.ok, other
    finally:
        for leg in legs:
            await leg.close()
        await nc.close()
