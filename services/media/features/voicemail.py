"""The `record` command's core (voicemail), sans-IO: what the caller says after the beep, frame by frame,
until max_seconds, a key press, a long silence or the hang-up; then one WAV file and call.record_finished.

The RTP adapter feeds one 20 ms frame per tick (`heard`; zeros when nothing arrived, so the recording
keeps real time); `write` is the only IO, handed in by the adapter.
"""

from __future__ import annotations

import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from services.kernel.events import CallRecordFinished

__all__ = ["SILENCE_RMS", "SILENCE_S", "Recording", "beep", "resolve_under", "write_wav"]

Samples = npt.NDArray[np.int16]
RATE = 8000
# Below this level a frame counts as silence (G.711 noise floor is far lower; speech far higher).
SILENCE_RMS = 300.0
# This long without sound ends a message: the caller has finished but not hung up.
SILENCE_S = 5.0
BEEP_S = 0.3
BEEP_HZ = 1000.0


def beep() -> Samples:
    t = np.arange(int(BEEP_S * RATE)) / RATE
    return (np.sin(2 * np.pi * BEEP_HZ * t) * 8000).astype(np.int16)


def resolve_under(root: Path, name: str) -> Path | None:
    """`name` as a path under `root`, or None when it would leave it (absolute, `..`, a symlink out)."""
    if not name or "\x00" in name:
        return None
    base = root.resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base) or path == base:
        return None
    return path


def write_wav(path: Path, samples: Samples) -> None:
    """8 kHz mono 16-bit PCM WAV, written beside and renamed so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    with wave.open(str(partial), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.astype("<i2").tobytes())
    partial.replace(path)


@dataclass
class Recording:
    tenant_id: uuid.UUID
    call_id: uuid.UUID
    record_id: uuid.UUID
    file: str  # as the command named it (relative to the data dir): what the event reports
    path: Path
    max_seconds: float
    write: Callable[[Path, Samples], None] = write_wav
    silence_s: float = SILENCE_S
    frames: list[Samples] = field(default_factory=list)
    started_at: float | None = None  # the first recorded frame (after the beep)
    last_sound_at: float | None = None
    done: bool = False

    @property
    def seconds(self) -> float:
        return sum(len(f) for f in self.frames) / RATE

    def heard(self, samples: Samples | None, now: float) -> list[CallRecordFinished]:
        """One 20 ms frame of the caller (None: nothing arrived, recorded as silence)."""
        if self.done:
            return []
        if self.started_at is None:
            self.started_at = self.last_sound_at = now
        frame = samples if samples is not None else np.zeros(160, dtype=np.int16)
        self.frames.append(frame)
        if samples is not None and float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) >= SILENCE_RMS:
            self.last_sound_at = now
        if self.seconds >= self.max_seconds:
            return self.finish("max_seconds", now)
        assert self.last_sound_at is not None
        if now - self.last_sound_at >= self.silence_s:
            return self.finish("silence", now)
        return []

    def finish(self, reason: str, now: float) -> list[CallRecordFinished]:
        """Stop (a key, the hang-up, max_seconds, silence): write the file and report it."""
        if self.done:
            return []
        self.done = True
        audio = np.concatenate(self.frames) if self.frames else np.zeros(0, dtype=np.int16)
        if reason == "silence":
            # The trailing silence is not part of the message.
            keep = max(0, len(audio) - int(self.silence_s * RATE))
            audio = audio[:keep]
        error: str | None = None
        try:
            self.write(self.path, audio)
        except OSError as exc:
            error = f"the recording cannot be written: {exc}"
        return [
            CallRecordFinished(
                tenant_id=self.tenant_id,
                id=uuid.uuid5(self.record_id, "finished"),  # once per recording: never random
                ts=now,
                call_id=self.call_id,
                record_id=self.record_id,
                file="" if error else self.file,
                seconds=0.0 if error else round(len(audio) / RATE, 3),
                error=error,
            )
        ]
