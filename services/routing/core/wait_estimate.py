# Expected wait: position * AHT / staffed slots, AHT from a rolling window of recent handle times.
#
# A contact at position p waits for p slots to free up; with N staffed slots (agents logged in, not away,
# at a site that takes work, times their capacity for the queue's channel) one frees up about every
# AHT / N seconds. Handle time = talk + wrap-up, measured from accept to the end of wrap-up. With no
# history the queue's default AHT is used; with nobody staffed the wait is unknown (None).
from __future__ import annotations

import math

__all__ = ["average_handle_time", "expected_wait", "record_handle_time"]


def average_handle_time(samples: list[float], default_s: float) -> float:
    if not samples:
        return default_s
    return sum(samples) / len(samples)


def record_handle_time(samples: list[float], handle_s: float, window: int) -> None:
    samples.append(max(0.0, handle_s))
    if len(samples) > window:
        del samples[: len(samples) - window]


def expected_wait(position: int, aht_s: float, staffed_slots: int, round_s: int) -> int | None:
    """Seconds, rounded up to a multiple of `round_s` so that small changes do not flood events."""
    if staffed_slots <= 0:
        return None
    raw = position * aht_s / staffed_slots
    return math.ceil(raw / round_s - 1e-9) * round_s
