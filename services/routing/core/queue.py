# Per-queue ordered structures: the line of waiting contacts (service order) and the agents that can take
# one more contact of the queue right now (strategy order). Both are sorted lists kept with bisect, so a
# match reads from the front instead of scanning the tenant, and iteration order never depends on hashing.
from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

__all__ = ["AgentIndex", "QueueLine"]


class QueueLine:
    """Contacts in line for one queue, ordered by (-priority, arrival seq)."""

    __slots__ = ("_ids", "_keys")

    def __init__(self) -> None:
        self._keys: list[tuple[int, int]] = []
        self._ids: list[str] = []

    def add(self, key: tuple[int, int], contact_id: str) -> None:
        i = bisect.bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            raise ValueError(f"contact {contact_id} is already in line")
        self._keys.insert(i, key)
        self._ids.insert(i, contact_id)

    def remove(self, key: tuple[int, int]) -> None:
        i = bisect.bisect_left(self._keys, key)
        if i == len(self._keys) or self._keys[i] != key:
            raise KeyError(key)
        del self._keys[i]
        del self._ids[i]

    def position(self, key: tuple[int, int]) -> int:
        """1-based place in line of the contact with this key (which must be in line)."""
        i = bisect.bisect_left(self._keys, key)
        if i == len(self._keys) or self._keys[i] != key:
            raise KeyError(key)
        return i + 1

    def __contains__(self, key: tuple[int, int]) -> bool:
        i = bisect.bisect_left(self._keys, key)
        return i < len(self._keys) and self._keys[i] == key

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        # No copy: callers stop iterating before they change the line (or take a list first).
        return iter(self._ids)

    def ids(self) -> list[str]:
        return list(self._ids)


class AgentIndex:
    """Agents that can take a contact of one queue now, sorted by the queue's strategy key (every key
    ends with the agent id, so ties break the same way on every run)."""

    __slots__ = ("_key_of", "_keys")

    def __init__(self) -> None:
        self._keys: list[tuple[Any, ...]] = []
        self._key_of: dict[str, tuple[Any, ...]] = {}

    def put(self, agent_id: str, key: tuple[Any, ...]) -> None:
        old = self._key_of.get(agent_id)
        if old == key:
            return
        if old is not None:
            self._drop(old)
        bisect.insort(self._keys, key)
        self._key_of[agent_id] = key

    def discard(self, agent_id: str) -> None:
        old = self._key_of.pop(agent_id, None)
        if old is not None:
            self._drop(old)

    def _drop(self, key: tuple[Any, ...]) -> None:
        i = bisect.bisect_left(self._keys, key)
        del self._keys[i]

    def __contains__(self, agent_id: str) -> bool:
        return agent_id in self._key_of

    def __len__(self) -> int:
        return len(self._keys)

    def ordered(self) -> Iterator[str]:
        """Agent ids in strategy order (the id is the last element of every key). No copy: callers stop
        iterating before they change the index."""
        for key in self._keys:
            yield key[-1]

    def ordered_after(self, cursor: str | None) -> Iterator[str]:
        """For round robin (keys are (agent_id,)): ids after `cursor`, then wrapping around."""
        keys = self._keys
        start = 0 if cursor is None else bisect.bisect_right(keys, (cursor,))
        for i in range(start, len(keys)):
            yield keys[i][-1]
        for i in range(start):
            yield keys[i][-1]
