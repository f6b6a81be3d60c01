"""Slots shared through the real NATS KV (services/kernel/slots.py): a burst of takers in one process goes
through the KV in a batch (one read and one write for all of them, not two round trips each), and two
processes taking at once never pass the limit together."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from services.kernel.bus import connect
from services.kernel.slots import Entry, Slots, slot_key


class CountedSlots(Slots):
    """Slots that count their reads of and compare-and-set writes to the KV."""

    writes = 0
    reads = 0

    async def _write(self, key: str, entry: Entry, revision: int) -> bool:
        self.writes += 1
        return await super()._write(key, entry, revision)

    async def _read(self, key: str) -> tuple[Entry, int]:
        self.reads += 1
        return await super()._read(key)


async def _released(slots: Slots, key: str) -> None:
    for _ in range(100):
        if key not in slots.claimed:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the release never reached the KV")


async def test_a_key_written_by_this_process_alone_is_not_read_before_each_write(infra: Any) -> None:
    """An agent's legs (a limit of a few, so no claim): each take and each release is one compare-and-set
    on the entry this process wrote last, not a read and a write; once another process writes the key, the
    next write fails on the revision, the entry is read again, and the limit still holds for both."""
    buses = [await connect(infra.nats_url, name=f"slots-known-{i}") for i in range(2)]
    first, second = CountedSlots(), CountedSlots()
    await first.attach(buses[0].js)
    await second.attach(buses[1].js)
    key = slot_key("webrtc-legs", uuid.uuid4(), "agent")
    try:
        for _ in range(5):
            assert await first.acquire(key, 2)
            first.release(key)
            await _released(first, key)
        assert first.reads == 1 and first.writes == 10
        assert await first.acquire(key, 2)
        assert await second.acquire(key, 2)  # written behind the first's back
        assert not await first.acquire(key, 2)  # its known entry is stale: read again, and refused
        assert first.reads == 2 and first.count(key) == 1 and second.count(key) == 1
        second.release(key)
        await _released(second, key)
        assert await first.acquire(key, 2) and first.count(key) == 2
    finally:
        for slots in (first, second):
            await slots.stop()
        for bus in buses:
            await bus.close()


async def test_a_burst_of_takers_shares_kv_writes_and_stops_at_the_limit(infra: Any) -> None:
    bus = await connect(infra.nats_url, name="slots-test")
    slots = CountedSlots()
    await slots.attach(bus.js)
    key = slot_key("tenant-calls", uuid.uuid4())
    try:
        answers = await asyncio.gather(*(slots.acquire(key, 20) for _ in range(30)))
        assert sorted(answers) == [False] * 10 + [True] * 20 and slots.count(key) == 20
        # Twenty takers one at a time wrote twenty times; in batches it takes a handful at most.
        assert slots.writes <= 3
    finally:
        await slots.stop()
        await bus.close()


async def test_two_processes_taking_at_once_never_pass_the_limit_together(infra: Any) -> None:
    buses = [await connect(infra.nats_url, name=f"slots-test-{i}") for i in range(2)]
    first, second = Slots(), Slots()
    await first.attach(buses[0].js)
    await second.attach(buses[1].js)
    key = slot_key("tenant-calls", uuid.uuid4())
    try:
        answers = await asyncio.gather(
            *(slots.acquire(key, 25) for _ in range(20) for slots in (first, second))
        )
        assert answers.count(True) == 25 and first.count(key) + second.count(key) == 25
        # A slot given back is there for the other process again.
        first.release(key)
        for _ in range(100):
            if await second.acquire(key, 25):
                break
            await asyncio.sleep(0.02)  # the release reaches the KV within moments
        assert second.count(key) + first.count(key) == 25
    finally:
        for slots in (first, second):
            await slots.stop()
        for bus in buses:
            await bus.close()


async def test_far_from_the_limit_slots_come_out_of_a_claim_without_a_kv_round_trip(infra: Any) -> None:
    buses = [await connect(infra.nats_url, name=f"slots-claim-{i}") for i in range(2)]
    first, second = CountedSlots(), CountedSlots()
    await first.attach(buses[0].js)
    await second.attach(buses[1].js)
    key = slot_key("tenant-calls", uuid.uuid4())
    try:
        # One call at a time, as INVITEs come: the first asks the KV and claims headroom; most of the
        # next ones are taken out of the claim (its top-ups are written in the background).
        for _ in range(40):
            assert await first.acquire(key, 1000)
        assert first.count(key) == 40 and first.writes <= 12
        assert first.claimed[key] > 40
        # Near a limit there is no headroom: every slot is its own compare-and-set, and the limit holds.
        small = slot_key("tenant-calls", uuid.uuid4())
        writes = first.writes
        assert [await first.acquire(small, 5) for _ in range(6)] == [True] * 5 + [False]
        assert first.writes - writes >= 5 and first.claimed[small] == 5
        # Claims count for the other process: with 40 held and headroom claimed, it gets at most the rest.
        answers = [await second.acquire(key, 60) for _ in range(30)]
        assert answers.count(True) <= 60 - 40
        # Released calls give their claim back at the next write: then the other process gets them.
        for _ in range(40):
            first.release(key)
        for _ in range(100):
            if first.claimed.get(key, 0) == 0:
                break
            await asyncio.sleep(0.02)
        assert first.claimed.get(key, 0) == 0
        more = [await second.acquire(key, 60) for _ in range(60)]
        assert second.count(key) == 60 and more.count(True) == 60 - answers.count(True)
    finally:
        for slots in (first, second):
            await slots.stop()
        for bus in buses:
            await bus.close()
