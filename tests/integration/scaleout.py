"""Helpers for the scale-out tests (two workers of one service, one killed with -9): the workers as real
processes, their partition leases read from the bus, and a responder that answers media's and routing's
commands for the test's tenants as those services would (the bus-level driver of tests/integration/ivr)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.js.errors import BucketNotFoundError, KeyNotFoundError

from services.kernel.bus import Bus
from services.kernel.messages import Event, Reply, encode
from services.kernel.partitioned import LEASE_BUCKET, home_partitions, token_partition
from services.routing.partitions import tenant_commands_subject
from tests.service_procs import start_services

PARTITIONS = 4  # few partitions: the tests pick tenants for each worker's home


@dataclass
class Workers:
    name: str  # the partitioned consumer's name (stream SBP_<name>, leases <name>.n<N>.p<k>)
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]
    infra: Any
    specs: list[tuple[str, Path, dict[str, str]]]

    def restart(self, index: int) -> None:
        """Start worker `index` again, as its supervisor would: same id, same home."""
        self.procs[index] = start_services(self.infra, [self.specs[index]])[0]

    def kill(self, index: int) -> float:
        """kill -9 worker `index`; returns the monotonic time of the kill."""
        proc = self.procs[index]
        os.kill(proc.pid, signal.SIGKILL)
        at = time.monotonic()
        proc.wait(timeout=5)
        return at

    def home_of(self, tenant_id: uuid.UUID) -> int:
        """The worker whose home the tenant's partition is (numbered, or ranked by id: the same here)."""
        p = token_partition(str(tenant_id), PARTITIONS)
        return next(i for i in range(len(self.procs)) if p in home_partitions(i, len(self.procs), PARTITIONS))


@contextmanager
def workers(infra: Any, module: str, name_env: str, count: int = 2, **extra: str) -> Iterator[Workers]:
    """`count` processes of `module` sharing PARTITIONS partitions under a fresh name (set in `name_env`)."""
    name = f"w{uuid.uuid4().hex[:10]}"
    procs: list[subprocess.Popen[bytes]] = []
    logs = [infra.data_dir / f"{name}-{i}.log" for i in range(count)]
    specs = [
        (
            module,
            logs[i],
            {
                name_env: name,
                "SB_WORKER_COUNT": str(count),
                "SB_WORKER_INDEX": str(i),
                "SB_PARTITION_COUNT": str(PARTITIONS),
                "SB_WORKER_ID": f"{name}-{i}",
                # The admin user: each test's partition queue has a fresh name (SBP_<name>), and the
                # services' users are allowed only the default ones (services/runtime/bususers.py).
                "SB_NATS_URL": infra.nats_url,
                **extra,
            },
        )
        for i in range(count)
    ]
    try:
        procs = start_services(infra, specs)
        w = Workers(name, procs, logs, infra, specs)
        yield w
        procs = w.procs
    finally:
        # Killed, not stopped: their leases and queue are this test's alone (drop_stream removes the queue),
        # and a graceful stop of each partition's consumer only adds seconds.
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)


async def owners(bus: Bus, name: str) -> dict[int, str]:
    """Partition -> the worker id holding its lease (none before the first worker made the bucket)."""
    try:
        kv = await bus.js.key_value(LEASE_BUCKET)
    except BucketNotFoundError:
        return {}
    found: dict[int, str] = {}
    for p in range(PARTITIONS):
        try:
            entry = await kv.get(f"{name}.n{PARTITIONS}.p{p}")
        except KeyNotFoundError:
            continue
        if entry.value:
            found[p] = entry.value.decode()
    return found


async def wait_for(check: Callable[[], Any], timeout: float, what: str) -> float:
    """Poll an async `check` every 50 ms until it returns something true; returns the seconds it took."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


async def all_moved(bus: Bus, name: str, survivor: str, killed: float, within: float = 5.0) -> None:
    """Every partition is on `survivor` within `within` s of the kill (monotonic `killed`). Each lease
    expires 3 s after its own last refresh, so the survivor's one-second tick may take the last of a dead
    worker's partitions a tick after the first."""

    async def check() -> bool:
        return set((await owners(bus, name)).values()) == {survivor}

    await wait_for(check, max(0.1, killed + within - time.monotonic()), f"every partition on {survivor}")


async def homes_owned(bus: Bus, w: Workers) -> None:
    """Every worker holds exactly its home partitions."""
    n = len(w.procs)
    want = {p: f"{w.name}-{i}" for i in range(n) for p in home_partitions(i, n, PARTITIONS)}

    async def check() -> bool:
        return await owners(bus, w.name) == want

    await wait_for(check, 15.0, f"the workers of {w.name} hold their home partitions")


Reaction = Callable[[str, dict[str, Any]], list[Event]]


@dataclass
class Responder:
    """Answers media and routing commands of `tenants` with ok, records them as (service.name, payload),
    and publishes what `react(name, payload)` returns (the events media or routing would publish)."""

    bus: Bus
    tenants: list[uuid.UUID]
    react: Reaction
    commands: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def start(self) -> None:
        for t in self.tenants:
            await self.bus.nc.subscribe(f"sb.{t}.cmd.media.>", cb=self._on)
            await self.bus.nc.subscribe(tenant_commands_subject(t), cb=self._on)

    async def _on(self, msg: Any) -> None:
        # A media command's name is the subject's fifth token (Bus.request may add the call after it).
        media = ".cmd.media." in msg.subject
        name = (
            ("media." + msg.subject.split(".")[4]) if media else ("routing." + msg.subject.rsplit(".", 1)[-1])
        )
        data = json.loads(msg.data)
        self.commands.append((name, data))
        await msg.respond(encode(Reply(ok=True)))
        for event in self.react(name, data):
            await self.bus.publish(event)

    def ids(self, name: str, call_id: uuid.UUID) -> set[str]:
        """The distinct command ids of `name` sent for a call (a retry reuses its id; a second run would not)."""
        return {c["id"] for n, c in self.commands if n == name and c.get("call_id") == str(call_id)}


async def drop_stream(bus: Bus, name: str) -> None:
    """The partitioned work queue of a test's workers (it would keep sourcing the session's events)."""
    try:
        await asyncio.wait_for(bus.js.delete_stream(f"SBP_{name}"), 5.0)
    except Exception:
        pass
