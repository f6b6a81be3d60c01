"""The shared-slot decision (services/kernel/slots.py): counts of other holders add up while their lease
is fresh, this holder's own count comes from itself, and nothing passes the limit."""

from __future__ import annotations

import asyncio

from services.kernel.slots import Slots, decide, slot_key


def test_other_holders_count_while_their_lease_is_fresh() -> None:
    entry = {"a": (2, 100.0), "b": (1, 90.0)}
    assert decide(entry, "me", 0, 4, 101.0, 15.0) == {"a": (2, 100.0), "b": (1, 90.0), "me": (1, 101.0)}
    assert decide(entry, "me", 1, 4, 101.0, 15.0) is None  # 2 + 1 + 1 held: a fifth would pass 4
    # b's process stopped renewing 15 s ago: its call no longer counts, and its count is dropped.
    assert decide(entry, "me", 1, 4, 105.0, 15.0) == {"a": (2, 100.0), "me": (2, 105.0)}


def test_a_holders_own_stored_count_is_replaced_by_its_own_knowledge() -> None:
    # After a release the stored count of `me` is stale (3); what `me` holds now (1) is what counts.
    assert decide({"me": (3, 100.0)}, "me", 1, 2, 100.5, 15.0) == {"me": (2, 100.5)}
    assert decide({}, "me", 0, 0, 0.0, 15.0) is None


def test_local_slots_without_a_bus() -> None:
    async def run() -> None:
        slots, key = Slots(), slot_key("tenant-calls", "t1")
        assert [await slots.acquire(key, 2) for _ in range(3)] == [True, True, False]
        slots.release(key)
        assert await slots.acquire(key, 2)
        slots.release(key)
        slots.release(key)
        assert slots.mine == {}

    asyncio.run(run())
