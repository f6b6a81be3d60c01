"""From a call's chunks to the master recording (sans-IO): the two-channel G.711 WAV, its SHA-256 and what
the index keeps (duration, pauses, partial)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from services.media.rtp.g711 import G711
from services.media.spool import parse_records, wav_bytes
from services.media.spool.spool import RATE

__all__ = ["Assembled", "assemble"]


@dataclass(frozen=True)
class Assembled:
    wav: bytes
    sha256: str
    duration_s: float
    pauses: list[tuple[float, float]]  # seconds from the start, paused (no audio kept)
    partial: bool
    missing: list[int]  # chunk numbers that never arrived (a partial recording stops before the first)


def assemble(chunks: dict[int, bytes], law: str, *, declared: int | None, cut_short: bool) -> Assembled:
    """Join chunks 0, 1, ... in order up to the first missing one. `declared` is how many the media worker
    says it sent (None when its end marker never came); `cut_short` when the worker was lost."""
    if law not in G711.__members__:
        raise ValueError(f"unknown G.711 law {law!r}")
    expected = declared if declared is not None else (max(chunks) + 1 if chunks else 0)
    missing = [n for n in range(expected) if n not in chunks]
    upto = missing[0] if missing else expected
    contents = parse_records(b"".join(chunks[n] for n in range(upto)), G711[law], "")
    wav = wav_bytes(contents)
    return Assembled(
        wav=wav,
        sha256=hashlib.sha256(wav).hexdigest(),
        duration_s=contents.duration,
        pauses=[(a / RATE, b / RATE) for a, b in contents.pauses],
        partial=cut_short or bool(missing) or not contents.complete,
        missing=missing,
    )
