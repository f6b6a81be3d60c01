"""Tenants shared among the workers of one service by partition: the coordinator's and the IVR's scale-out.

A tenant belongs to partition `token_partition(tenant, N)` (N = `SB_PARTITION_COUNT`, default 16): FNV-1a
of the tenant token, the same function NATS computes in `{{partition(N,1)}}`. Two pieces:

- **Events by partition.** A work-queue stream `SBP_<name>` sources SB_EVENTS (the service's event types
  only, from the moment it is made) with each subject rewritten by the server to
  `sbp.<name>.<partition>.sb.<tenant>.evt.<domain>.<event>`; a worker reads partition k through the durable
  consumer `<name>-p<k>` filtered on `sbp.<name>.<k>.>` (Bus.consume with a PartitionSource). Stream order
  is kept, so the events of one tenant (and so of one contact or call) reach one consumer in order, and an
  event leaves the queue only when it is acknowledged (after its step was applied and saved).
- **Leases.** A worker owns a partition while it holds the key `<name>.n<N>.p<k>` in the KV bucket
  `sb_partition_owners` (TTL LEASE_TTL_S), refreshed every LEASE_REFRESH_S with a compare-and-set on the
  revision. Worker i of n takes its home partitions (k % n == i) at once, any other partition that nobody
  holds once it has run for a lease's TTL (so workers started together split the partitions instead of the
  fastest taking all), and gives a non-home partition back as soon as its home worker asks for it (the key
  `<name>.n<N>.want<k>`). A worker killed with -9 stops refreshing: its leases expire within LEASE_TTL_S and
  the others take them on their next tick.
- **Membership, when nobody numbers the workers** (`SB_WORKER_INDEX=auto`: a Kubernetes Deployment, an
  autoscaler). Each worker also keeps the key `<name>.n<N>.w.<worker id>` alive; i and n are its rank
  among the live workers' ids (sorted) and their number, read again every tick. A worker that joins gets
  its share handed back by the others; one that dies leaves it to the others once its key expired.

Taking a partition recreates its consumer: the work queue still holds every event the lost worker had not
acknowledged, and a fresh consumer starts at the oldest of them, in order, at once (not after the ack wait).

`PartitionedEvents` puts the two together for a service (the coordinator, the IVR): a partition's saved
state restored, then its consumer opened, on gain; the consumer stopped, then the state dropped, on loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

from nats.js.api import (
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
    SubjectTransform,
)
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from .bus import Bus
from .log import get_logger
from .messages import Event
from .metrics import figure_gauge, read_before_beats
from .serving import Consumer, EventHandler, PartitionSource, call_key
from .subjects import EVENTS_STREAM

__all__ = [
    "DEFAULT_PARTITION_COUNT",
    "LEASE_BUCKET",
    "LEASE_REFRESH_S",
    "LEASE_TTL_S",
    "Leases",
    "PartitionedEvents",
    "Partitioning",
    "ensure_partition_stream",
    "home_partitions",
    "partition_source",
    "token_partition",
]

DEFAULT_PARTITION_COUNT = 16
LEASE_BUCKET = "sb_partition_owners"
LEASE_TTL_S = 3.0
LEASE_REFRESH_S = 1.0
# Unacknowledged events older than this are dropped from a partition's queue (nobody consumed them).
QUEUE_MAX_AGE_S = 24 * 3600.0
STOP_STEP_S = 2.0

_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193

log = get_logger()

PARTITIONS_HELD = figure_gauge(
    "partitions_held",
    "Partitions whose lease this process holds, by lease name (routing, contacts, ivr): across a "
    "service's processes they add up to the partition count once a takeover is over",
    ("lease",),
)


def token_partition(token: str, count: int) -> int:
    """The partition NATS's `partition(count, 1)` puts a subject token in: FNV-1a (32 bit), mod count.

    The server decides where messages go; this mirror tells a worker which saved state belongs to the
    partitions it takes. A test checks it against the real server."""
    h = _FNV32_OFFSET
    for byte in token.encode():
        h = ((h ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return h % count


def home_partitions(index: int, workers: int, count: int) -> set[int]:
    """Worker `index` of `workers`: the partitions it takes at once and keeps (the others take its share
    only while it is away)."""
    return {p for p in range(count) if p % workers == index}


@dataclass(frozen=True)
class Partitioning:
    """How one process of a partitioned service is placed: read from the environment by the service."""

    name: str  # the stream, consumers and lease keys are named after it (tests give each stack its own)
    count: int
    index: int | None  # None: from the live workers' ids (SB_WORKER_INDEX=auto)
    workers: int
    worker_id: str

    def home(self) -> set[int] | None:
        """The home partitions, or None when they follow the membership."""
        return None if self.index is None else home_partitions(self.index, self.workers, self.count)

    def leases(self, bus: Bus, on_gain: Hook, on_lose: Hook) -> Leases:
        """This process's leases over all the partitions, its home ones first."""
        return Leases(
            bus,
            name=self.name,
            worker_id=self.worker_id,
            partitions=range(self.count),
            home=self.home(),
            on_gain=on_gain,
            on_lose=on_lose,
            count=self.count,
        )

    @classmethod
    def from_env(cls, name: str, env: dict[str, str] | None = None) -> Partitioning | None:
        """None unless SB_WORKER_COUNT is set (the single-process default reads SB_EVENTS directly).
        SB_WORKER_INDEX (0-based, or "auto": from the live workers), SB_PARTITION_COUNT (16), SB_WORKER_ID
        (default <name>-<host>-<index>-<pid>)."""
        env = dict(os.environ) if env is None else env
        if not env.get("SB_WORKER_COUNT"):
            return None
        auto = env.get("SB_WORKER_INDEX", "0").strip() == "auto"
        try:
            workers = int(env["SB_WORKER_COUNT"])
            index = 0 if auto else int(env.get("SB_WORKER_INDEX", "0"))
            count = int(env.get("SB_PARTITION_COUNT", str(DEFAULT_PARTITION_COUNT)))
        except ValueError as exc:
            raise ValueError(
                f"SB_WORKER_COUNT, SB_WORKER_INDEX and SB_PARTITION_COUNT are numbers: {exc}"
            ) from None
        if not 1 <= workers <= count <= 1024 or not 0 <= index < workers:
            raise ValueError(
                f"need 1 <= SB_WORKER_COUNT ({workers}) <= SB_PARTITION_COUNT ({count}) <= 1024"
                f" and 0 <= SB_WORKER_INDEX ({index}) < SB_WORKER_COUNT"
            )
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"{name!r}: a partitioned consumer's name is letters, digits, '-' and '_'")
        where = "auto" if auto else index
        worker_id = env.get("SB_WORKER_ID") or f"{name}-{socket.gethostname()}-{where}-{os.getpid()}"
        return cls(
            name=name, count=count, index=None if auto else index, workers=workers, worker_id=worker_id
        )

    def owner_of(self, tenant_id: uuid.UUID | str) -> int:
        return token_partition(str(tenant_id), self.count)

    def stream(self) -> str:
        return f"SBP_{self.name}"


def partition_source(part: Partitioning, p: int) -> PartitionSource:
    return PartitionSource(stream=part.stream(), prefix=f"sbp.{part.name}.{p}")


async def ensure_partition_stream(bus: Bus, part: Partitioning, event_types: Iterable[type[Event]]) -> None:
    """The work queue that sources SB_EVENTS into partitions (made once, by the first worker)."""
    transforms = [
        SubjectTransform(
            src=f"sb.*.evt.{kind.domain}.{kind.name}",
            dest=f"sbp.{part.name}.{{{{partition({part.count},1)}}}}.sb.{{{{wildcard(1)}}}}"
            f".evt.{kind.domain}.{kind.name}",
        )
        for kind in event_types
    ]
    try:
        info = await bus.js.stream_info(part.stream())
    except NotFoundError:
        pass
    else:
        # Keep its start point (a changed partition count needs a new name: docs/operators.md), but source
        # the event types this release consumes: a work queue made by an older release would otherwise
        # never carry a newly consumed type (the coordinator's `call.dtmf`).
        await _update_sources(bus, info.config, transforms)
        return
    start = datetime.datetime.now(datetime.UTC)
    config = StreamConfig(
        name=part.stream(),
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_age=QUEUE_MAX_AGE_S,
        num_replicas=int(os.environ.get("SB_JETSTREAM_REPLICAS", "1") or 1),
        sources=[StreamSource(name=EVENTS_STREAM, opt_start_time=start, subject_transforms=transforms)],
    )
    try:
        await bus.js.add_stream(config)
    except Exception as exc:  # another worker made it meanwhile
        await bus.js.stream_info(part.stream())
        log.debug("partition_stream_exists", stream=part.stream(), detail=str(exc)[:120])


async def _update_sources(bus: Bus, config: StreamConfig, transforms: list[SubjectTransform]) -> None:
    """Add these transforms to the work queue's SB_EVENTS source if it lacks some. Only ever added: during a
    rolling update an older worker that restarts must not take a newer one's types away (it acknowledges
    what it does not know). The server resumes the source after the last event it sourced: nothing is
    sourced twice, and events of a new type published before the update are not sourced."""
    for source in config.sources or []:
        if source.name != EVENTS_STREAM:
            continue
        have = {(t.src, t.dest): t for t in source.subject_transforms or []}
        missing = [t for t in transforms if (t.src, t.dest) not in have]
        if not missing:
            return
        source.subject_transforms = [*have.values(), *missing]
        await bus.js.update_stream(config)
        log.info("partition_stream_sources_updated", stream=config.name, added=len(missing))
        return


Hook = Callable[[int], Awaitable[None]]


class Leases:
    """Which partitions this worker owns (module docstring): `on_gain(p)` runs once a lease is ours (its
    events may be consumed from then on), `on_lose(p)` when it is no longer (stop consuming, forget state)."""

    def __init__(
        self,
        bus: Bus,
        *,
        name: str,
        worker_id: str,
        partitions: Iterable[int],
        home: set[int] | None,
        on_gain: Hook,
        on_lose: Hook,
        count: int,
        bucket: str = LEASE_BUCKET,
        ttl: float = LEASE_TTL_S,
        key: Callable[[int], str] | None = None,
    ) -> None:
        self.bus = bus
        self.worker_id = worker_id
        self.partitions = sorted(partitions)
        # None: worker i of the n live ones (membership), recomputed every tick.
        self.fixed_home = home
        self.home: set[int] = set() if home is None else home
        self._count = count
        self.on_gain = on_gain
        self.on_lose = on_lose
        self.bucket = bucket
        self.ttl = ttl
        self._key = key or (lambda p: f"{name}.n{count}.p{p}")
        self._want_prefix = f"{name}.n{count}.want"
        self._member = f"{name}.n{count}.w."
        self.owned: dict[int, int] = {}  # partition -> revision of our lease
        self._kv: KeyValue | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = 0.0
        self._gave_back: dict[int, float] = {}  # partition -> when we handed it to its home worker
        self._name = name
        self._unread: Callable[[], None] | None = None

    async def start(self) -> None:
        try:
            self._kv = await self.bus.js.key_value(self.bucket)
        except BucketNotFoundError:
            self._kv = await self.bus.js.create_key_value(
                KeyValueConfig(bucket=self.bucket, ttl=self.ttl, history=1)
            )
        self._started = time.monotonic()
        self._unread = read_before_beats(lambda: PARTITIONS_HELD.labels(self._name).set(len(self.owned)))
        await self._claim_round()
        self._tasks = [asyncio.create_task(self._refresh_loop()), asyncio.create_task(self._claim_loop())]

    async def freeze(self) -> None:
        """Take no more partitions (a stopping worker); the leases held are still refreshed."""
        for task in self._tasks[1:]:
            task.cancel()
        await asyncio.gather(*self._tasks[1:], return_exceptions=True)

    async def stop(self) -> None:
        """Stop refreshing and hand every lease over at once (bounded), without calling on_lose."""
        if self._unread is not None:
            self._unread()
            PARTITIONS_HELD.labels(self._name).set(0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        owned, self.owned = self.owned, {}
        kv = self._kv
        if kv is None or not owned:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(
                    *(kv.delete(self._key(p), last=r) for p, r in owned.items()), return_exceptions=True
                ),
                STOP_STEP_S,
            )

    async def _refresh_loop(self) -> None:
        assert self._kv is not None
        while True:
            await asyncio.sleep(LEASE_REFRESH_S)
            for p, rev in list(self.owned.items()):
                try:
                    new = await self._kv.update(self._key(p), self.worker_id.encode(), last=rev)
                except KeyWrongLastSequenceError:
                    if self.owned.get(p) != rev:
                        continue  # released meanwhile
                    back = await self._take_back(p)
                    if back is None:  # somebody else has it now
                        await self._drop(p, "lease_lost")
                    elif p in self.owned:
                        self.owned[p] = back
                    continue
                except Exception as exc:  # the bus reconnects by itself; the lease may still be ours
                    log.warning("partition_refresh_failed", partition=p, error=f"{type(exc).__name__}: {exc}")
                    continue
                if p in self.owned:
                    self.owned[p] = new

    async def _take_back(self, p: int) -> int | None:
        """Our refresh was refused. Our lease ran out because this process was starved past the TTL (a refresh
        came late) and the key is simply gone: nobody took the partition, so take it back (create: only while absent) instead of
        dropping the partition's state and answering no one until the next claim round rebuilt it. A key
        another worker holds, or released (a delete marker: it owned the partition meanwhile), is theirs:
        None. The revision of the lease taken back otherwise."""
        assert self._kv is not None
        key, me = self._key(p), self.worker_id.encode()
        try:
            entry = await self._kv.get(key)
            # Still ours under a newer revision: an update of ours went through but its answer was lost.
            return entry.revision if entry.value == me and entry.revision is not None else None
        except KeyNotFoundError as exc:
            if getattr(exc, "op", None) is not None:
                return None  # a delete or purge marker, not an expiry
        try:
            rev = await self._kv.create(key, me)
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            return None
        log.warning("lease_taken_back", partition=p, worker=self.worker_id)
        return rev

    async def _claim_loop(self) -> None:
        while True:
            await asyncio.sleep(LEASE_REFRESH_S)
            try:
                await self._claim_round()
            except Exception as exc:
                log.warning("partition_claim_failed", error=f"{type(exc).__name__}: {exc}")

    async def _membership(self) -> None:
        """Say we are alive, and take worker i of n's share (i: our rank among the live ids)."""
        assert self._kv is not None
        await self._kv.put(self._member + self.worker_id.replace(".", "_"), b"1")
        live = sorted(
            key[len(self._member) :]
            for key, _ in await self.bus.kv_latest(self.bucket)
            if key.startswith(self._member)
        )
        me = self.worker_id.replace(".", "_")
        if me in live:
            self.home = {p for p in range(self._count) if p % len(live) == live.index(me)}

    async def _claim_round(self) -> None:
        assert self._kv is not None
        if self.fixed_home is None:
            await self._membership()
        now = time.monotonic()
        settled = now - self._started >= self.ttl
        gained: list[int] = []
        for p in self.partitions:
            if p in self.owned:
                if p not in self.home and await self._wanted(p):
                    await self._release(p)
                continue
            if p in self.home:
                if await self._claim(p, own_key_ok=True):
                    gained.append(p)
                else:
                    await self._kv.put(self._want(p), self.worker_id.encode())
            elif settled and now - self._gave_back.get(p, -1e9) > 2 * self.ttl:
                # (Not one just given back: its home worker takes it on its next tick, and taking it again
                # as an orphan first would hand it to and fro.)
                if await self._claim(p, own_key_ok=False):
                    gained.append(p)
        # Together: a worker taking many partitions at once recovers them side by side.
        await asyncio.gather(*(self._gain(p) for p in gained))

    async def _claim(self, p: int, *, own_key_ok: bool) -> bool:
        assert self._kv is not None
        key, me = self._key(p), self.worker_id.encode()
        try:
            try:
                rev = await self._kv.create(key, me)
            except KeyNotFoundError:  # it expired between create's two steps: free now
                rev = await self._kv.create(key, me)
        except KeyWrongLastSequenceError:
            if not own_key_ok:
                return False
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                return False
            if entry.value != me or entry.revision is None:
                return False
            try:
                rev = await self._kv.update(key, me, last=entry.revision)
            except KeyWrongLastSequenceError:
                return False
        self.owned[p] = rev
        log.info("partition_gained", partition=p, worker=self.worker_id)
        return True

    async def _gain(self, p: int) -> None:
        try:
            await self.on_gain(p)
        except Exception:
            log.exception("partition_gain_failed", partition=p)
            await self._release(p)

    def _want(self, p: int) -> str:
        return f"{self._want_prefix}{p}"

    async def _wanted(self, p: int) -> bool:
        assert self._kv is not None
        try:
            entry = await self._kv.get(self._want(p))
        except KeyNotFoundError:
            return False
        return bool(entry.value) and entry.value != self.worker_id.encode()

    async def _release(self, p: int) -> None:
        """Give a partition to its home worker: stop using it, then delete the lease (checked revision)."""
        rev = self.owned.get(p)
        self._gave_back[p] = time.monotonic()
        await self._drop(p, "partition_released")
        assert self._kv is not None
        with contextlib.suppress(Exception):
            await self._kv.delete(self._key(p), last=rev)

    async def _drop(self, p: int, why: str) -> None:
        self.owned.pop(p, None)
        log.warning(why, partition=p, worker=self.worker_id)
        try:
            await self.on_lose(p)
        except Exception:
            log.exception("partition_lose_failed", partition=p)


class PartitionedEvents:
    """A partitioned service's events (the module docstring): its leases, and for each partition it holds
    the durable consumer of that partition's work queue, opened once `restore(p)` has brought the
    partition's saved state back and stopped before `forget(p)` drops it. The service serves its commands
    itself, answering only for the tenants `owns` says are its own (`Bus.serve(..., accept=owns)`)."""

    def __init__(
        self,
        bus: Bus,
        part: Partitioning,
        events: Sequence[type[Event]],
        handler: EventHandler,
        *,
        restore: Hook,
        forget: Callable[[int], None],
        key: Callable[[Event], Hashable] | None = call_key,
    ) -> None:
        self.bus = bus
        self.part = part
        self.events = list(events)
        self.handler = handler
        self.restore = restore
        self.forget = forget
        self.key = key
        self.leases: Leases | None = None
        self._consumers: dict[int, Consumer] = {}

    def owns(self, subject: str, data: bytes) -> bool:
        """Whether the tenant of this command subject (`sb.<tenant>.cmd...`) is in a partition held here."""
        held = self.leases.owned if self.leases is not None else {}
        return token_partition(subject.split(".", 2)[1], self.part.count) in held

    async def start(self) -> None:
        await ensure_partition_stream(self.bus, self.part, self.events)
        self.leases = self.part.leases(self.bus, self._gain, self._lose)
        await self.leases.start()

    async def freeze(self) -> None:
        """Take no more partitions, and stop reading those held (their handlers finish, or are cancelled
        unacknowledged, bounded) while their leases are still refreshed."""
        if self.leases is not None:
            await self.leases.freeze()
        for p in list(self._consumers):
            await self._consumers.pop(p).stop()

    async def stop(self) -> None:
        """Hand every lease over at once (after `freeze` and the service's own stop)."""
        if self.leases is not None:
            await self.leases.stop()

    async def _gain(self, p: int) -> None:
        await self.restore(p)
        self._consumers[p] = await self.bus.consume(
            self.events,
            durable=f"{self.part.name}-p{p}",
            handler=self.handler,
            key=self.key,
            source=partition_source(self.part, p),
        )

    async def _lose(self, p: int) -> None:
        consumer = self._consumers.pop(p, None)
        if consumer is not None:
            await consumer.stop()
        self.forget(p)
