"""Concurrency limits that hold across processes, counted by the media workers: a tenant's calls, a widget
token's one call, an agent's WebRTC legs (docs/security.md, "Limits").

One JetStream KV entry per limited thing (bucket `sb_slots`) holds each process's count and when it last
wrote it: `{"<holder>": [count, wall_ts]}`. Taking a slot reads the entry, adds up the counts of the other
holders whose lease is fresh, adds this process's own and writes its count + 1 with compare-and-set on the
entry's revision; a concurrent writer makes the write fail and the check runs again on what it wrote.
The entry a process wrote last stands in for the read before its next write to that key (the
compare-and-set fails if anyone wrote since, and the entry is read then). A
holder's count is a lease: every process rewrites its non-zero counts every `lease / 3` seconds, and a
count older than `lease` (its process died or hangs) no longer counts. So a killed worker's calls stop
counting after at most `lease` seconds, never before.

Far from the limit a process writes a claim, not just its count: what it holds plus some headroom
(`headroom`: an eighth of what is left free, at most 16), and takes the next slots out of its claim without
asking the KV. So at high call rates a new call does not wait for two KV round trips (a tenant at 200
calls/s spent its INVITE -> 180 tail there, docs/media.md). Claims count like calls for every other process,
so the limit still holds across processes; near it the headroom is zero and every slot is one
compare-and-set as before. A claim follows the calls: every release and every renewal rewrites it as what
is held plus the headroom then, so what a process claims beyond its calls is given back at its next write
(another process may meanwhile be refused a slot that is free but claimed: at most an eighth of what was
free, for moments).

`decide` and `headroom` are the sans-IO core (no clock, no NATS); `Slots` is the asyncio adapter. Without a
bus (a process on its own, in tests) `Slots` counts locally, which is exact for one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
import uuid

import msgspec
from nats.js.api import KeyValueConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from services.kernel.log import get_logger

__all__ = ["BUCKET", "LEASE_S", "Slots", "decide", "headroom", "slot_key", "tenant_slot"]

log = get_logger()

BUCKET = "sb_slots"
LEASE_S = 15.0
_ATTEMPTS = 20
KNOWN_KEYS = 4096  # keys whose last written entry is remembered (Slots._known)

Entry = dict[str, tuple[int, float]]  # holder -> (count, wall time of its last write)


def decide(entry: Entry, holder: str, mine: int, limit: int, now: float, lease: float) -> Entry | None:
    """The entry with `holder` holding one more slot (`mine` + 1), or None when that would pass `limit`.
    Counts of other holders older than `lease` are dropped (their process is gone)."""
    live = {h: (n, ts) for h, (n, ts) in entry.items() if h != holder and n > 0 and now - ts < lease}
    if sum(n for n, _ in live.values()) + mine + 1 > limit:
        return None
    return {**live, holder: (mine + 1, now)}


MAX_HEADROOM = 16


def headroom(limit: int, others: int, mine: int) -> int:
    """Slots a holder with `mine` in use may claim beyond them, `others` being held elsewhere: an eighth
    of what is free (none for small limits or near the limit), at most MAX_HEADROOM."""
    return max(0, min(MAX_HEADROOM, (limit - others - mine) // 8))


def slot_key(*parts: object) -> str:
    """A KV key for a limited thing named by `parts` (any text: tenant ids, agent ids, token ids)."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:40]


def tenant_slot(tenant_id: uuid.UUID) -> str:
    """A tenant's concurrent calls: inbound SIP, outbound, web callers, on every media worker."""
    return slot_key("tenant-calls", tenant_id)


_entry = msgspec.json.Decoder(dict[str, tuple[int, float]])


class Slots:
    """Counted slots per key for this process (`holder`), shared with other processes through `kv`."""

    def __init__(self, holder: str | None = None, *, lease: float = LEASE_S) -> None:
        self.holder = holder or uuid.uuid4().hex
        self.lease = lease
        self.mine: dict[str, int] = {}
        self.claimed: dict[str, int] = {}  # what the KV says we hold (>= mine), per key
        self._limits: dict[str, int] = {}  # the last limit asked per key, for the claim's headroom
        self._kv: KeyValue | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._queued: dict[str, list[tuple[int, asyncio.Future[bool]]]] = {}
        self._dirty: set[str] = set()
        # Per key, the entry and revision of this process's last write: the next compare-and-set is tried
        # on it without reading the KV first (a key only this process writes, like an agent's legs, then
        # costs one round trip per take or release instead of two); a write that fails on the revision
        # means someone else wrote, and the entry is read again.
        self._known: dict[str, tuple[Entry, int]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def attach(self, js: JetStreamContext, replicas: int = 1) -> None:
        """Share the counts through the bucket (`js`: a JetStream context) and start renewing them."""
        try:
            self._kv = await js.key_value(BUCKET)
        except BucketNotFoundError:
            self._kv = await js.create_key_value(
                KeyValueConfig(bucket=BUCKET, history=1, ttl=self.lease * 4, replicas=replicas)
            )
        self._task = asyncio.get_running_loop().create_task(self._writer())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def count(self, key: str) -> int:
        return self.mine.get(key, 0)

    async def acquire(self, key: str, limit: int) -> bool:
        """One more slot for `key` unless `limit` slots are held (by every process together)."""
        if limit <= 0:
            return False
        if self._kv is None:
            if self.count(key) >= limit:
                return False
            self.mine[key] = self.count(key) + 1
            return True
        self._limits[key] = limit
        mine = self.count(key)
        if mine < min(self.claimed.get(key, 0), limit):
            # Out of our claim: no KV round trip. The claim is topped up in the background when half used.
            self.mine[key] = mine + 1
            if self.claimed[key] - self.mine[key] <= MAX_HEADROOM // 2:
                self._dirty.add(key)
                self._wake.set()
            return True
        # This process's takers of one key go through the KV one batch at a time: whoever holds the lock
        # takes for every taker queued so far in one read and one write. One at a time, a queue that a
        # pause had built (at 200 calls/s a 50 ms garbage collection queues ten INVITEs) drained at two
        # KV round trips per call, and that drain was the tail of INVITE -> 180.
        taker: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queued.setdefault(key, []).append((limit, taker))
        try:
            async with self._locks.setdefault(key, asyncio.Lock()):
                if not taker.done():
                    batch = self._queued.pop(key, [])
                    if all(other is not taker for _limit, other in batch):
                        batch.append((limit, taker))  # a batch whose taker was cancelled left it out
                    # Shielded: the batch answers the other takers too, even if this one is cancelled.
                    await asyncio.shield(self._take(key, batch))
        except asyncio.CancelledError:
            if not taker.done():
                taker.cancel()  # a batch still to come skips it
            elif not taker.cancelled() and taker.exception() is None and taker.result():
                self.release(key)  # taken for a caller who is gone
            raise
        return taker.result()

    async def _take(self, key: str, batch: list[tuple[int, asyncio.Future[bool]]]) -> None:
        """One slot for each taker of `batch` that fits under its limit, in their order, in one
        compare-and-set; each taker's future gets its answer (or the bus's error)."""
        batch = [(limit, taker) for limit, taker in batch if not taker.done()]
        try:
            for _ in range(_ATTEMPTS):
                known = self._known.pop(key, None)
                entry, revision = known or await self._read(key)
                now = time.time()
                mine = self.count(key)
                answers: list[bool] = []
                wanted: Entry | None = None
                for limit, _taker in batch:
                    more = decide(entry, self.holder, mine, limit, now, self.lease)
                    answers.append(more is not None)
                    if more is not None:
                        wanted, mine = more, mine + 1
                claim = mine
                if wanted is not None:
                    others = sum(n for h, (n, _ts) in wanted.items() if h != self.holder)
                    claim = mine + headroom(self._limits.get(key, 0), others, mine)
                    wanted[self.holder] = (claim, now)
                if wanted is None or await self._write(key, wanted, revision):
                    if wanted is not None:
                        # Counted on what is held now: releases may have come in while the write was out.
                        self.mine[key] = self.count(key) + sum(answers)
                        self.claimed[key] = max(claim, self.mine[key])
                    for (_limit, taker), answer in zip(batch, answers, strict=True):
                        if not taker.done():
                            taker.set_result(answer)
                        elif answer:
                            self.release(key)  # its caller was cancelled while the write was out
                    return
                if known is None:  # another process wrote first (on what this one knew: read it now)
                    await asyncio.sleep(random.uniform(0.001, 0.01))
            log.warning("slot_contended", key=key)
        except Exception as exc:
            for _limit, taker in batch:
                if not taker.done():
                    taker.set_exception(exc)
            return
        for _limit, taker in batch:
            if not taker.done():
                taker.set_result(False)  # refused rather than risk passing the limit

    def release(self, key: str) -> None:
        """Give back one slot of `key` (now locally; the shared count follows within moments)."""
        n = self.count(key)
        if n <= 1:
            self.mine.pop(key, None)
        else:
            self.mine[key] = n - 1
        if self._kv is not None:
            self._dirty.add(key)
            self._wake.set()

    async def _read(self, key: str) -> tuple[Entry, int]:
        assert self._kv is not None
        try:
            got = await asyncio.wait_for(self._kv.get(key), 2.0)
        except KeyNotFoundError:
            return {}, 0
        try:
            return (_entry.decode(got.value) if got.value else {}), int(got.revision or 0)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return {}, int(got.revision or 0)  # unreadable: overwritten by the next write

    async def _write(self, key: str, entry: Entry, revision: int) -> bool:
        assert self._kv is not None
        data = msgspec.json.encode(entry)
        try:
            if revision:
                written = await asyncio.wait_for(self._kv.update(key, data, last=revision), 2.0)
            else:
                written = await asyncio.wait_for(self._kv.create(key, data), 2.0)
        except KeyWrongLastSequenceError:
            return False
        except Exception as exc:  # nats' own errors for a create that lost the race, and timeouts
            if "wrong last sequence" in str(exc).lower() or "key exists" in str(exc).lower():
                return False
            raise
        self._known[key] = (entry, int(written))
        if len(self._known) > KNOWN_KEYS:
            del self._known[next(iter(self._known))]  # the longest unwritten
        return True

    async def _set_mine(self, key: str) -> None:
        """Write this process's claim of `key` anew: what it holds plus the headroom now (after a release,
        to top a claim up, or to renew the lease)."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            for _ in range(_ATTEMPTS):
                known = self._known.pop(key, None)
                entry, revision = known or await self._read(key)
                now = time.time()
                entry = {h: v for h, v in entry.items() if h != self.holder and now - v[1] < self.lease}
                others = sum(n for n, _ts in entry.values())
                mine = self.count(key)
                claim = mine + headroom(self._limits.get(key, 0), others, mine) if mine else 0
                if claim < self.claimed.get(key, 0):
                    # Lowered here before the write: no slot may be taken out of what is being given back.
                    self.claimed[key] = max(claim, self.count(key))
                    claim = self.claimed[key]
                if claim:
                    entry[self.holder] = (claim, now)
                if await self._write(key, entry, revision):
                    if claim:
                        self.claimed[key] = max(claim, self.count(key))
                    else:
                        self.claimed.pop(key, None)
                    return
                if known is None:
                    await asyncio.sleep(random.uniform(0.001, 0.01))

    async def _writer(self) -> None:
        """Releases as they come, and every held count renewed every lease / 3."""
        renew_at = time.monotonic() + self.lease / 3
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, renew_at - time.monotonic()))
            self._wake.clear()
            if time.monotonic() >= renew_at:
                self._dirty |= set(self.mine)
                renew_at = time.monotonic() + self.lease / 3
            keys, self._dirty = self._dirty, set()
            for key in keys:
                try:
                    await self._set_mine(key)
                except Exception as exc:  # the bus reconnects by itself; the next renewal writes it
                    log.warning("slot_write_failed", error=str(exc) or type(exc).__name__)
