"""Rollups (sans-IO): what a fact adds to the 15-minute counters every report sums (migration 0024).

A contact row contributes one vector to its queue's bucket, one to its agent's and one to its IVR flow's.
When a batch changes a row, the rollups get (contribution after) - (contribution before), so they stay the
exact sum over the rows whatever order the events come in. An agent's states are spans between
consecutive state rows: a new row moves the seconds of the span it splits (`state_deltas`); the latest
row's span is open and is added when a report is read.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from .facts import ContactRow

__all__ = [
    "AGENT_FIELDS",
    "BUCKET_S",
    "IVR_FIELDS",
    "NODE_FIELDS",
    "QUEUE_FIELDS",
    "STATES",
    "Deltas",
    "bucket_of",
    "contact_deltas",
    "state_deltas",
]

BUCKET_S = 900
# Column order of each rollup table's additive part (the store writes them in this order).
QUEUE_FIELDS = (
    "offered",
    "answered",
    "answered_within",
    "abandoned_short",
    "abandoned_long",
    "wait_sum",
    "handle_sum",
    "handled",
    "transfers",
    "repeat_24h",
    "repeat_7d",
    "survey_n",
    "survey_sum",
)
# Agent states that count as time (logged out is not time at work); each is a column `<state>_s`.
STATES = ("available", "away", "reserved", "on_contact", "wrap_up")
AGENT_FIELDS = ("handled", "handle_sum", "wrapped", "talk_sum", "transfers", *(f"{s}_s" for s in STATES))
IVR_FIELDS = ("completed", "self_served", "transferred", "abandoned", "survey_n", "survey_sum")
NODE_FIELDS = ("visits", "reached", "failed", "seconds_sum")
_STATE_INDEX = {s: AGENT_FIELDS.index(f"{s}_s") for s in STATES}
_NO_STATES = (0.0,) * len(STATES)


def bucket_of(ts: float) -> float:
    """The start (epoch seconds) of the 15-minute bucket holding `ts`."""
    return ts - ts % BUCKET_S


# A rollup row's key: its dimensions (queue, agent or flow; a flow's node), then its bucket's start last.
RollupKey = tuple[str, float] | tuple[str, str, float]


class Deltas:
    """Signed changes per rollup table and key, summed over a batch (one upsert per table)."""

    def __init__(self) -> None:
        self.queue: dict[RollupKey, list[float]] = defaultdict(lambda: [0.0] * len(QUEUE_FIELDS))
        self.agent: dict[RollupKey, list[float]] = defaultdict(lambda: [0.0] * len(AGENT_FIELDS))
        self.ivr: dict[RollupKey, list[float]] = defaultdict(lambda: [0.0] * len(IVR_FIELDS))
        self.node: dict[RollupKey, list[float]] = defaultdict(lambda: [0.0] * len(NODE_FIELDS))

    @staticmethod
    def _add(table: dict[RollupKey, list[float]], key: RollupKey, vector: Sequence[float], sign: int) -> None:
        acc = table[key]
        for i, value in enumerate(vector):
            if value:
                acc[i] += sign * value

    @staticmethod
    def rows(table: dict[RollupKey, list[float]]) -> list[tuple[RollupKey, list[float]]]:
        """The keys whose change is not zero (a row that changed nothing a report sees writes nothing)."""
        return [(k, v) for k, v in table.items() if any(abs(x) > 1e-9 for x in v)]


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _queue_part(row: ContactRow) -> tuple[RollupKey, tuple[float, ...]] | None:
    if row.queue_id is None or row.queued_at is None:
        return None
    answered = row.answered_at is not None
    abandoned = not answered and row.abandon_wait_s is not None
    wait = _ts(row.answered_at) - _ts(row.queued_at) if row.answered_at is not None else 0.0
    vector = (
        1,
        int(answered),
        int(answered and bool(row.sl_met)),
        int(abandoned and row.abandon_long is False),
        int(abandoned and bool(row.abandon_long)),
        wait,
        row.handle_s or 0.0,
        int(row.handle_s is not None),
        row.transfers,
        int(answered and row.repeat_24h),
        int(answered and row.repeat_7d),
        row.survey_n,
        row.survey_score or 0.0,
    )
    return (row.queue_id, bucket_of(_ts(row.queued_at))), vector


def _agent_part(row: ContactRow) -> tuple[RollupKey, tuple[float, ...]] | None:
    if row.agent_id is None or row.answered_at is None:
        return None
    vector = (
        1,
        row.handle_s or 0.0,
        int(row.handle_s is not None),
        row.talk_s or 0.0,
        row.transfers,
        *_NO_STATES,
    )
    return (row.agent_id, bucket_of(_ts(row.answered_at))), vector


def _ivr_part(row: ContactRow) -> tuple[RollupKey, tuple[float, ...]] | None:
    start = row.arrived_at or row.queued_at
    if row.ivr_flow is None or start is None:
        return None
    outcome = row.ivr_outcome
    vector = (
        1,
        int(outcome == "self_served"),
        int(outcome == "transferred"),
        int(outcome == "abandoned"),
        row.survey_n,
        row.survey_score or 0.0,
    )
    return (row.ivr_flow, bucket_of(_ts(start))), vector


def contact_deltas(deltas: Deltas, before: ContactRow | None, after: ContactRow) -> None:
    """Add to `deltas` what changing a contact row from `before` (None: new) to `after` changes."""
    for table, part in ((deltas.queue, _queue_part), (deltas.agent, _agent_part), (deltas.ivr, _ivr_part)):
        new = part(after)
        if before is not None:
            old = part(before)
            if old == new:
                continue  # most steps of a contact change one table's part, not all three
            if old is not None:
                Deltas._add(table, old[0], old[1], -1)
        if new is not None:
            Deltas._add(table, new[0], new[1], +1)


def _spans(deltas: Deltas, agent: str, rows: Sequence[tuple[float, object, str]], sign: int) -> None:
    """Each closed span (a row to the next) into the agent's buckets, split at bucket edges."""
    for (start, _, state), (end, _, _) in itertools.pairwise(rows):
        column = _STATE_INDEX.get(state)
        if column is None or end <= start:
            continue
        at = start
        while at < end:
            bucket = bucket_of(at)
            upto = min(end, bucket + BUCKET_S)
            deltas.agent[(agent, bucket)][column] += sign * (upto - at)
            at = upto


def state_deltas(
    deltas: Deltas,
    agent: str,
    stored: Sequence[tuple[float, object, str]],
    new: Sequence[tuple[float, object, str]],
) -> None:
    """The seconds moved by inserting `new` state rows (time, event id, state) among `stored`: the
    agent's stored rows from the last one before the earliest new row onwards, sorted."""
    merged = sorted([*stored, *new], key=lambda r: (r[0], r[1]))
    _spans(deltas, agent, stored, -1)
    _spans(deltas, agent, merged, +1)


def epoch(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
