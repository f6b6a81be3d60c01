"""From a call's chunks to the master recording (sans-IO): the two-channel G.711 WAV, its SHA-256 and what
the index keeps (duration, pauses, partial).

A recording is assembled in two passes over its chunks, so it is never held whole (an hour is 58 MB): the
first (`Survey`) learns how long it is and where it stops, which the WAV header must say before any audio;
the second (`Frames`) produces the audio after that header, piece by piece, for the sealer."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from services.media.rtp.g711 import G711
from services.media.spool import RecordReader, wav_header
from services.media.spool.spool import RATE

__all__ = ["Assembled", "Frames", "InOrder", "Plan", "Survey", "assemble"]

# Chunks that arrive ahead of a missing one wait this many at most; beyond, the missing one is taken as lost
# (media publishes them in order: only a chunk that never came leaves such a gap).
REORDER_WINDOW = 64


class InOrder:
    """Chunks in stream order -> chunks in number order from 0, stopping before the first one missing."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit  # how many there should be (None: unknown, as many as come)
        self.next = 0
        self._early: dict[int, bytes] = {}
        self.seen: set[int] = set()
        self.cut = False  # a chunk is missing: nothing after it is used

    @property
    def done(self) -> bool:
        return self.cut or (self.limit is not None and self.next >= self.limit)

    def push(self, number: int, data: bytes) -> list[bytes]:
        self.seen.add(number)
        if self.done or number < self.next:
            return []  # after the end, or a duplicate
        self._early[number] = data
        ready = []
        while self.next in self._early and not self.done:
            ready.append(self._early.pop(self.next))
            self.next += 1
        if len(self._early) > REORDER_WINDOW:
            self.cut = True
        if self.done:
            self._early.clear()
        return ready

    def missing(self) -> list[int]:
        """Once every chunk has been pushed: the numbers that never came (the first cuts the recording)."""
        upto = self.limit if self.limit is not None else (max(self.seen) + 1 if self.seen else 0)
        return [n for n in range(self.next, upto) if n not in self.seen]


@dataclass(frozen=True)
class Plan:
    """What the first pass learnt: chunks 0..chunks-1 make `samples` frames."""

    law: G711
    chunks: int
    samples: int
    pauses: list[tuple[float, float]]  # seconds from the start, paused (no audio kept)
    partial: bool
    missing: list[int]  # chunk numbers that never arrived (a partial recording stops before the first)

    @property
    def duration_s(self) -> float:
        return self.samples / RATE

    @property
    def wav_size(self) -> int:
        return len(wav_header(self.law, self.samples)) + 2 * self.samples


class Survey:
    """Pass 1. `declared` is how many chunks the media worker says it sent (None when its end marker never
    came); `cut_short` when the worker was lost."""

    def __init__(self, law: str, *, declared: int | None, cut_short: bool) -> None:
        if law not in G711.__members__:
            raise ValueError(f"unknown G.711 law {law!r}")
        self.law = G711[law]
        self.order = InOrder(declared)
        self.reader = RecordReader(self.law)
        self.cut_short = cut_short

    @property
    def done(self) -> bool:
        return self.order.done

    def push(self, number: int, data: bytes) -> None:
        for chunk in self.order.push(number, data):
            self.reader.feed(chunk)

    def plan(self) -> Plan:
        self.reader.finish()
        missing = self.order.missing()
        return Plan(
            law=self.law,
            chunks=self.order.next,
            samples=self.reader.samples,
            pauses=[(a / RATE, b / RATE) for a, b in self.reader.pauses],
            partial=self.cut_short or bool(missing) or self.order.cut or not self.reader.complete,
            missing=missing,
        )


@dataclass
class Frames:
    """Pass 2: the WAV as pieces (its header first), exactly as long as the plan says, and its SHA-256."""

    plan: Plan
    order: InOrder = field(init=False)
    reader: RecordReader = field(init=False)
    emitted: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    def __post_init__(self) -> None:
        self.order = InOrder(self.plan.chunks)
        self.reader = RecordReader(self.plan.law)

    @property
    def done(self) -> bool:
        return self.order.done

    def header(self) -> bytes:
        return self._out(wav_header(self.plan.law, self.plan.samples))

    def push(self, number: int, data: bytes) -> bytes:
        frames = b"".join(self.reader.feed(chunk) for chunk in self.order.push(number, data))
        room = 2 * (self.plan.samples - self.emitted)
        frames = frames[:room]
        self.emitted += len(frames) // 2
        return self._out(frames)

    def finish(self, piece: int = 64 * 1024) -> list[bytes]:
        """Silence up to the planned length, should the second pass have found less (never expected)."""
        short = 2 * (self.plan.samples - self.emitted)
        silence = bytes([self.plan.law.silence])
        self.emitted = self.plan.samples
        return [self._out(silence * min(piece, short - at)) for at in range(0, short, piece)]

    def _out(self, data: bytes) -> bytes:
        self.digest.update(data)
        return data


@dataclass(frozen=True)
class Assembled:
    wav: bytes
    sha256: str
    duration_s: float
    pauses: list[tuple[float, float]]
    partial: bool
    missing: list[int]


def assemble(chunks: dict[int, bytes], law: str, *, declared: int | None, cut_short: bool) -> Assembled:
    """Both passes over chunks held in memory (short recordings, tests)."""
    survey = Survey(law, declared=declared, cut_short=cut_short)
    for n in sorted(chunks):
        survey.push(n, chunks[n])
    plan = survey.plan()
    frames = Frames(plan)
    pieces = [frames.header()] + [frames.push(n, chunks[n]) for n in sorted(chunks)] + frames.finish()
    return Assembled(
        wav=b"".join(pieces),
        sha256=frames.digest.hexdigest(),
        duration_s=plan.duration_s,
        pauses=plan.pauses,
        partial=plan.partial,
        missing=plan.missing,
    )
