"""A service starting while JetStream answers late keeps asking for its streams instead of exiting: under a
whole platform's start at load 19, routing's first `stream_info` took longer than nats-py's 5 s and the
service exited, taking a test stack (and its 36 tests) with it."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeout

from services.kernel.bus import Bus
from services.kernel.subjects import EVENTS_STREAM
from tests.nats_cluster import nats_servers


async def test_streams_are_made_once_a_frozen_server_answers_again(tmp_path: Path) -> None:
    with nats_servers(tmp_path, 1) as cluster:
        server = cluster.servers[0]
        assert server.proc is not None
        nc = await nats.connect(cluster.urls[0], connect_timeout=5)
        try:
            bus = Bus(nc)
            bus.js = nc.jetstream(timeout=0.3)  # each JetStream API request gives up after 0.3 s
            server.proc.send_signal(signal.SIGSTOP)  # the server answers nothing for 1.2 s
            asyncio.get_running_loop().call_later(1.2, server.proc.send_signal, signal.SIGCONT)
            await bus.ensure_streams(within_s=10.0)
            assert (await bus.js.stream_info(EVENTS_STREAM)).config.name == EVENTS_STREAM
        finally:
            server.proc.send_signal(signal.SIGCONT)
            await nc.close()


async def test_a_server_that_never_answers_is_given_up_on_after_the_bound(tmp_path: Path) -> None:
    with nats_servers(tmp_path, 1) as cluster:
        server = cluster.servers[0]
        assert server.proc is not None
        nc = await nats.connect(cluster.urls[0], connect_timeout=5)
        try:
            bus = Bus(nc)
            bus.js = nc.jetstream(timeout=0.3)
            server.proc.send_signal(signal.SIGSTOP)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(NatsTimeout):
                await bus.ensure_streams(within_s=1.0)
            assert 1.0 <= loop.time() - started < 3.0
        finally:
            server.proc.send_signal(signal.SIGCONT)
            await nc.close()
