"""Media sockets read on the worker's tick (rtp/tick_reader.py): a burst is drained in one tick, in order,
each datagram with the time the kernel saw it arrive (not the tick's); an RtpSession's socket is read by
the clock and not by the event loop, except while the leg relays (SIP<->SIP), which forwards on receipt."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from typing import Any, cast

import pytest

from services.media.rtp.g711 import G711
from services.media.rtp.packet import RtpPacket
from services.media.rtp.session import MediaClock, RtpSession
from services.media.rtp.tick_reader import MAX_ROUNDS, TickReader
from services.media.ua.call import Call

from .test_media_clock import _free_pair


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


async def test_a_burst_is_drained_in_one_tick_in_order_with_its_arrival_times() -> None:
    reader = TickReader()
    a, b, sender = _udp(), _udp(), _udp()
    got: list[tuple[socket.socket, bytes, float]] = []
    reader.add(a, lambda data, addr, at: got.append((a, data, at)))
    reader.add(b, lambda data, addr, at: got.append((b, data, at)))
    try:
        sent: list[float] = []
        for n in range(5):  # a burst on `a`, 4 ms apart, and one datagram on `b`
            sent.append(time.monotonic())
            sender.sendto(bytes([n]), a.getsockname())
            await asyncio.sleep(0.004)
        sender.sendto(b"b", b.getsockname())
        await asyncio.sleep(0.015)
        now = time.monotonic()
        assert reader.drain(now) == 6 and reader.datagrams == 6
        on_a = [(data, at) for sock, data, at in got if sock is a]
        assert [data for data, _ in on_a] == [bytes([n]) for n in range(5)]  # in order
        assert [data for sock, data, _ in got if sock is b] == [b"b"]
        # Each arrival is when the kernel saw the datagram (on the loop's clock): after its send, before
        # the drain by at least the 15 ms slept, and not the same for the whole burst.
        for (_, at), t in zip(on_a, sent, strict=True):
            assert t - 0.001 <= at <= now - 0.014, (t, at, now)
        assert on_a[-1][1] - on_a[0][1] >= 0.012
        assert reader.drain(time.monotonic()) == 0  # nothing twice
    finally:
        reader.close()
        for sock in (a, b, sender):
            sock.close()


async def test_a_flood_on_one_socket_waits_for_the_next_tick_and_the_others_are_read() -> None:
    reader = TickReader()
    a, b, sender = _udp(), _udp(), _udp()
    got: list[bytes] = []
    reader.add(a, lambda data, addr, at: got.append(data))
    reader.add(b, lambda data, addr, at: got.append(data))
    try:
        for n in range(MAX_ROUNDS + 3):
            sender.sendto(b"a%d" % n, a.getsockname())
        sender.sendto(b"b", b.getsockname())
        await asyncio.sleep(0.01)
        assert reader.drain(time.monotonic()) == MAX_ROUNDS + 1 and b"b" in got
        assert reader.drain(time.monotonic()) == 3
        assert [d for d in got if d.startswith(b"a")] == [b"a%d" % n for n in range(MAX_ROUNDS + 3)]
        # A socket that left the reader is not read again, closed or not.
        reader.remove(a)
        a.close()
        reader.remove(a)
        sender.sendto(b"b2", b.getsockname())
        await asyncio.sleep(0.005)
        assert reader.drain(time.monotonic()) == 1 and got[-1] == b"b2" and reader.count == 1
    finally:
        reader.close()
        for sock in (a, b, sender):
            sock.close()


async def _session(clock: MediaClock) -> RtpSession:
    loop = asyncio.get_running_loop()
    call = Call(call_id=uuid.uuid4(), tenant_id=uuid.uuid4(), created_at=loop.time())
    call.answered(loop.time())
    session = RtpSession(call, host="127.0.0.1", port=_free_pair(), emit=lambda events: None, clock=clock)
    await session.open()
    session.configure(
        codec=G711.PCMU,
        payload_type=0,
        te_pt=101,
        remote=("127.0.0.1", _free_pair()),
        sending=False,
        receiving=True,
    )
    return session


def _rtp(seq: int) -> bytes:
    return bytes(RtpPacket(0, seq, seq * 160, 0x1234, b"\xff" * 160))


async def test_a_session_is_read_on_the_tick_and_a_relaying_one_by_the_loop() -> None:
    clock = MediaClock()
    session = await _session(clock)
    sender = _udp()
    relayed: list[tuple[int, float]] = []
    sock, transport = session._rtp_sock, cast(Any, session._rtp)  # asyncio's selector transport
    assert sock is not None and transport is not None
    try:
        assert clock.reader.holds(sock) and not transport.is_reading()
        clock.remove(session)  # no ticks from here: nothing reads the socket but a drain
        sent = time.monotonic()
        sender.sendto(_rtp(1), ("127.0.0.1", session.port))
        await asyncio.sleep(0.05)
        assert session.rx.received == 0  # the event loop did not read it
        drained_at = time.monotonic()
        assert clock.reader.drain(drained_at) == 1
        assert session.rx.received == 1 and len(session.jitter) == 1
        assert sent - 0.001 <= session.last_rx <= drained_at - 0.049  # its arrival, not the drain's time

        # A relay forwards on receipt: from the next tick on the loop reads the leg, not the clock.
        session.relay_out = lambda packet, now: relayed.append((packet.sequence_number, now))
        session.play(time.monotonic())
        assert not clock.reader.holds(sock) and transport.is_reading()
        sender.sendto(_rtp(2), ("127.0.0.1", session.port))
        for _ in range(100):  # no tick runs: only the event loop can deliver it
            if relayed:
                break
            await asyncio.sleep(0.01)
        assert [seq for seq, _ in relayed] == [2]

        # Unbridged: back on the tick.
        session.relay_out = None
        session.play(time.monotonic())
        assert clock.reader.holds(sock) and not transport.is_reading()
        sender.sendto(_rtp(3), ("127.0.0.1", session.port))
        await asyncio.sleep(0.02)
        assert session.rx.received == 2
        assert clock.reader.drain(time.monotonic()) == 1 and session.rx.received == 3
    finally:
        session.close()
        sender.close()
    assert clock.reader.count == 0  # a closed session's socket left the reader


@pytest.mark.parametrize("relaying", [False, True])
async def test_a_closed_session_leaves_the_reader_whichever_reads_it(relaying: bool) -> None:
    clock = MediaClock()
    session = await _session(clock)
    if relaying:
        session.relay_out = lambda packet, now: None
        session.play(time.monotonic())
    session.close()
    assert clock.reader.count == 0 and not clock.sessions
