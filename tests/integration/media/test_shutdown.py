"""Media stops on SIGTERM even when NATS vanished at the same moment (the runtime was killed with -9 and
took its nats-server along): nothing at stop may wait on the bus without a bound."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time

import pytest

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


def test_media_exits_on_sigterm_when_nats_is_gone(infra, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seeded = asyncio.run(_seed(infra.owner_url))
    # A private nats-server: the shared one must stay up for every other test.
    nats = EmbeddedNats(tmp_path, Secrets.load_or_create(tmp_path))
    nats.start()
    clients: list[tuple[UdpSip, RtpReceiver]] = []
    try:
        with start_media(infra, {"SB_NATS_URL": nats.url}) as (port, pid, log_path):
            # Calls in progress (the apology plays), so stopping has calls to end and events to publish.
            for _ in range(3):
                client, rtp = UdpSip(port), RtpReceiver()
                clients.append((client, rtp))
                uri = f"sip:{seeded['number']}@127.0.0.1:{port}"
                client.send(
                    request(
                        "INVITE",
                        uri,
                        local_port=client.local_port,
                        call_id=secrets.token_hex(8),
                        from_tag=secrets.token_hex(4),
                        body=sdp(rtp.port),
                    )
                )
                ok = client.recv_final(5.0)
                assert ok is not None and status_of(ok) == 200
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
