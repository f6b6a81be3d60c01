# The core's timers: one heap of (when, kind, key, key2) entries. Entries are never cancelled; the engine
# checks each against the state when it comes due, so the heap can always be rebuilt from the state and
# the firing order depends only on the entries (never on the order they were armed).
from __future__ import annotations

import enum
import heapq

__all__ = ["TimerKind", "Timers"]


class TimerKind(enum.IntEnum):
    OFFER = 0  # offer timeout (ring-no-answer)
    WRAP = 1  # wrap-up end
    CONTACT = 2  # a waiting contact's next step: expansion, window end, spill, overflow, callback expiry
    POSITIONS = 3  # publish changed positions and expected waits
    LINK = 4  # an agent's socket lease ends, or its grace after losing the socket


Entry = tuple[float, int, str, str]


class Timers:
    __slots__ = ("_armed", "_heap")

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._armed: set[Entry] = set()

    def arm(self, when: float, kind: TimerKind, key: str, key2: str = "") -> None:
        entry: Entry = (when, int(kind), key, key2)
        if entry not in self._armed:
            self._armed.add(entry)
            heapq.heappush(self._heap, entry)

    def peek(self) -> Entry | None:
        return self._heap[0] if self._heap else None

    def pop(self) -> Entry:
        entry = heapq.heappop(self._heap)
        self._armed.discard(entry)
        return entry

    def is_armed(self, when: float, kind: TimerKind, key: str, key2: str = "") -> bool:
        return (when, int(kind), key, key2) in self._armed

    def __len__(self) -> int:
        return len(self._heap)
