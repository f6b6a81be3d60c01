"""Partition leases (services/kernel/partitioned.py) when their worker is starved: a refresh that comes later
than the TTL finds the key expired. Nobody took the partition, so the worker keeps it (same state, still
answering) instead of dropping it and rebuilding it a claim round later; a partition another worker took
meanwhile is still given up. Seen under load (load average 12 on 2 cores): routing dropped all 16
partitions 5 s after taking them, and commands sent in the gap found no responder."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from services.kernel.bus import connect
from services.kernel.partitioned import LEASE_REFRESH_S, Leases

TTL_S = 1.0


def _leases(bus: Any, bucket: str, worker: str, events: list[tuple[str, int]], home: set[int]) -> Leases:
    async def gain(p: int) -> None:
        events.append(("gain", p))

    async def lose(p: int) -> None:
        events.append(("lose", p))

    return Leases(
        bus,
        name="leasetest",
        worker_id=worker,
        partitions=[0],
        home=home,
        on_gain=gain,
        on_lose=lose,
        count=1,
        bucket=bucket,
        ttl=TTL_S,
    )


async def _starve(seconds: float) -> None:
    time.sleep(seconds)  # noqa: ASYNC251 -- the whole event loop stands still, as under a starved CPU
    await asyncio.sleep(0)


async def test_a_lease_that_expired_while_its_worker_was_starved_is_kept(infra: Any) -> None:
    bus = await connect(infra.nats_url, name="lease-test")
    bucket = f"lease_test_{uuid.uuid4().hex[:8]}"
    events: list[tuple[str, int]] = []
    a = _leases(bus, bucket, "a", events, home={0})
    try:
        await a.start()
        assert events == [("gain", 0)] and 0 in a.owned
        before = a.owned[0]
        await _starve(TTL_S + 1.5)  # the key expires meanwhile
        await asyncio.sleep(LEASE_REFRESH_S * 2.5)
        assert events == [("gain", 0)], events  # never lost, never rebuilt
        assert a.owned.get(0, before) != before  # refreshed since
        entry = await (await bus.js.key_value(bucket)).get("leasetest.n1.p0")
        assert entry.value == b"a"
    finally:
        await a.stop()
        await bus.js.delete_key_value(bucket)
        await bus.close()


async def test_a_lease_another_worker_took_meanwhile_is_given_up(infra: Any) -> None:
    bus = await connect(infra.nats_url, name="lease-test")
    bucket = f"lease_test_{uuid.uuid4().hex[:8]}"
    a_events: list[tuple[str, int]] = []
    b_events: list[tuple[str, int]] = []
    a = _leases(bus, bucket, "a", a_events, home={0})
    b = _leases(bus, bucket, "b", b_events, home=set())
    try:
        await a.start()
        await b.start()
        b._started -= TTL_S  # settled: b takes any partition nobody holds
        await _starve(TTL_S + 1.5)
        await b._claim_round()  # b's claim reaches the server before a's late refresh
        assert b_events == [("gain", 0)]
        await asyncio.sleep(LEASE_REFRESH_S * 1.5)
        # a's late refresh finds b's key: a stops using the partition (its home: it asks for it back later).
        assert a_events[:2] == [("gain", 0), ("lose", 0)], a_events
    finally:
        await b.stop()
        await a.stop()
        await bus.js.delete_key_value(bucket)
        await bus.close()


async def test_a_refresh_whose_answer_was_lost_keeps_the_lease(infra: Any) -> None:
    """An update of ours went through but its answer did not come back (a timeout under load): the next
    refresh, with the revision we still hold, is refused, yet the key is ours. Kept, not dropped."""
    bus = await connect(infra.nats_url, name="lease-test")
    bucket = f"lease_test_{uuid.uuid4().hex[:8]}"
    events: list[tuple[str, int]] = []
    a = _leases(bus, bucket, "a", events, home={0})
    try:
        await a.start()
        kv = await bus.js.key_value(bucket)
        await kv.update("leasetest.n1.p0", b"a", last=a.owned[0])  # ours, behind the worker's back
        await asyncio.sleep(LEASE_REFRESH_S * 2.5)
        assert events == [("gain", 0)], events
        assert 0 in a.owned and (await kv.get("leasetest.n1.p0")).value == b"a"
    finally:
        await a.stop()
        await bus.js.delete_key_value(bucket)
        await bus.close()
