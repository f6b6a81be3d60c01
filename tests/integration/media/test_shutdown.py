"""Media stops on SIGTERM even when NATS vanished at the same moment (the runtime was killed with -9 and
took its nats-server along): nothing at stop may wait on the bus without a bound."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from typing import Any

import pytest
from nats import connect as nats_connect

from services.kernel.waits import flushed
from services.runtime.embedded import EmbeddedNats, Secrets

from .conftest import _seed, start_media
from .sipclient import RtpReceiver, UdpSip, request, sdp, status_of


def _exited_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True  # reaped already
        if done == pid:
            return True
        time.sleep(0.1)
    return False


def _answered_calls(port: int, number: str, count: int) -> list[tuple[UdpSip, RtpReceiver]]:
    """`count` calls to `number`, each answered (200), left up."""
    calls: list[tuple[UdpSip, RtpReceiver]] = []
    for _ in range(count):
        client, rtp = UdpSip(port), RtpReceiver()
        calls.append((client, rtp))
        client.send(
            request(
                "INVITE",
                f"sip:{number}@127.0.0.1:{port}",
                local_port=client.local_port,
                call_id=secrets.token_hex(8),
                from_tag=secrets.token_hex(4),
                body=sdp(rtp.port),
            )
        )
        ok = client.recv_final(5.0)
        assert ok is not None and status_of(ok) == 200
    return calls


def test_media_exits_on_sigterm_when_nats_is_gone(infra, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seeded = asyncio.run(_seed(infra.owner_url))
    # A private nats-server: the shared one must stay up for every other test.
    nats = EmbeddedNats(tmp_path, Secrets.load_or_create(tmp_path))
    nats.start()
    clients: list[tuple[UdpSip, RtpReceiver]] = []
    try:
        with start_media(infra, {"SB_NATS_URL": nats.url}) as (port, pid, log_path):
            # Calls in progress (the apology plays), so stopping has calls to end and events to publish.
            clients += _answered_calls(port, seeded["number"], 3)
            assert nats.proc is not None
            nats.proc.kill()  # kill -9: no goodbye to its clients
            nats.proc.wait(5)
            os.kill(pid, signal.SIGTERM)
            if not _exited_within(pid, 30.0):
                pytest.fail(f"media still running 30 s after SIGTERM; log:\n{log_path.read_text()[-3000:]}")
    finally:
        for client, rtp in clients:
            client.close()
            rtp.close()
        nats.stop()


async def test_calls_live_at_sigterm_get_a_bye_and_call_ended_before_media_exits(infra, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Media's stop ran in a task of its own while run_service closed the bus: the calls' BYEs went out but
    their call.ended could be lost with the connection. Now main stops its calls before it returns."""
    seeded = await _seed(infra.owner_url)
    ended: list[bytes] = []
    nc = await nats_connect(infra.nats_url)

    async def take(msg: Any) -> None:
        ended.append(msg.data)

    await nc.subscribe(f"sb.{seeded['tenant']}.evt.call.ended", cb=take)
    await flushed(nc)
    clients: list[tuple[UdpSip, RtpReceiver]] = []
    try:
        # The SIP exchanges below block this loop: the events wait in the socket until it runs again.
        with start_media(infra) as (port, pid, log_path):
            clients += _answered_calls(port, seeded["number"], 2)
            os.kill(pid, signal.SIGTERM)
            assert _exited_within(pid, 30.0), log_path.read_text()[-3000:]
            for _ in range(40):
                if len(ended) >= 2:
                    break
                await asyncio.sleep(0.05)
            assert len(ended) == 2, (ended, log_path.read_text()[-3000:])
    finally:
        await nc.close()
        for client, rtp in clients:
            client.close()
            rtp.close()
