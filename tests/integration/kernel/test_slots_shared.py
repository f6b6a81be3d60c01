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
    """Slots that count their compare-and-set writes to the KV."""

    writes = 0

    async def _write(self, key: str, entry: Entry, revision: int) -> bool:
        self.writes += 1
        return await super()._write(key, entry, revision)


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
