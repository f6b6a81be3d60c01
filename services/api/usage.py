"""Seat usage (sans-IO): purchased seats integrated over a period from the seat ledger, in seat-seconds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Interval", "integrate"]


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime
    seats: int

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def integrate(ledger: Sequence[tuple[datetime, int]], start: datetime, end: datetime) -> list[Interval]:
    """Intervals of constant purchased seats within [start, end).

    `ledger` is (at, seats_after) in time order. Before the first entry the tenant did not exist, so that
    time is not counted. Intervals with zero seats are kept so the timeline has no holes once it begins.
    """
    if end <= start:
        return []
    intervals: list[Interval] = []
    seats: int | None = None
    cursor = start
    for at, seats_after in ledger:
        if at <= start:
            seats = seats_after
            continue
        if at >= end:
            break
        if seats is not None and at > cursor:
            intervals.append(Interval(cursor, at, seats))
        cursor = max(cursor, at)
        seats = seats_after
    if seats is not None and end > cursor:
        intervals.append(Interval(cursor, end, seats))
    return _merge(intervals)


def _merge(intervals: list[Interval]) -> list[Interval]:
    # Two entries with the same seats (e.g. purchase then release back) read better as one interval.
    merged: list[Interval] = []
    for iv in intervals:
        if merged and merged[-1].seats == iv.seats and merged[-1].end == iv.start:
            merged[-1] = Interval(merged[-1].start, iv.end, iv.seats)
        else:
            merged.append(iv)
    return merged
