"""Prompts: WAV and raw G.711 files, text rendered by espeak-ng (cached on disk), music on hold.

Everything comes out as 8 kHz mono int16 numpy arrays. Rendered text is cached under
<data_dir>/prompts/<sha256(voice|rate|text)>.wav; decoded prompts are also kept in a small memory cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import wave
from collections import OrderedDict
from pathlib import Path

import numpy as np
import numpy.typing as npt

from services.kernel.log import get_logger
from services.media.rtp.g711 import alaw_decode, ulaw_decode

__all__ = ["APOLOGY", "PromptError", "PromptStore", "decode_wav", "music_on_hold", "resample"]

# espeak-ng renders a 5 s prompt in about 30 ms: a minute means it is stuck.
RENDER_TIMEOUT_S = 60.0

log = get_logger()
RATE = 8000
APOLOGY = "Sorry, this number is not configured yet. Goodbye."
Samples = npt.NDArray[np.int16]
MAX_TEXT = 2000


class PromptError(ValueError):
    pass


def resample(samples: npt.NDArray[np.float64], rate: int, target: int = RATE) -> npt.NDArray[np.float64]:
    """Linear-interpolation resampling (prompts are speech; a low-pass first avoids most aliasing)."""
    if rate == target or len(samples) == 0:
        return samples
    if rate > target:
        # A short moving average as a cheap anti-alias filter before decimating.
        width = max(1, round(rate / target))
        kernel = np.ones(width) / width
        samples = np.convolve(samples, kernel, mode="same")
    count = int(len(samples) * target / rate)
    positions = np.arange(count) * (rate / target)
    out: npt.NDArray[np.float64] = np.interp(positions, np.arange(len(samples)), samples)
    return out


def decode_wav(data: bytes) -> Samples:
    try:
        with wave.open(io.BytesIO(data)) as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise PromptError(f"not a PCM WAV file: {exc}") from None
    if width == 2:
        pcm = np.frombuffer(frames, dtype="<i2").astype(np.float64)
    elif width == 1:
        pcm = (np.frombuffer(frames, dtype=np.uint8).astype(np.float64) - 128.0) * 256.0
    elif width == 4:
        pcm = np.frombuffer(frames, dtype="<i4").astype(np.float64) / 65536.0
    else:
        raise PromptError(f"unsupported WAV sample width {width}")
    if channels > 1:
        pcm = pcm[: len(pcm) - len(pcm) % channels].reshape(-1, channels).mean(axis=1)
    out = resample(pcm, rate)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def music_on_hold(seconds: float = 8.0) -> Samples:
    """A gentle generated pattern: a slow arpeggio of soft tones with short gaps."""
    notes = (392.0, 494.0, 587.0, 784.0, 587.0, 494.0)
    note_len = int(0.4 * RATE)
    t = np.arange(note_len) / RATE
    envelope = np.minimum(1.0, np.minimum(t, t[::-1]) * 20)
    pieces = [np.sin(2 * np.pi * f * t) * envelope * 3000 for f in notes]
    pattern = np.concatenate([*pieces, np.zeros(int(0.6 * RATE))])
    reps = max(1, int(seconds * RATE / len(pattern)))
    return np.tile(pattern, reps).astype(np.int16)


class PromptStore:
    def __init__(self, data_dir: Path, *, memory_items: int = 64) -> None:
        self.root = Path(data_dir)
        self.cache_dir = self.root / "prompts"
        self._memory: OrderedDict[str, Samples] = OrderedDict()
        self._memory_items = memory_items
        self._moh = music_on_hold()
        self._locks: dict[str, asyncio.Lock] = {}
        self.renders = 0  # espeak-ng runs: the disk cache makes a prompt render once per data dir

    @property
    def moh(self) -> Samples:
        return self._moh

    def _remember(self, key: str, samples: Samples) -> Samples:
        self._memory[key] = samples
        self._memory.move_to_end(key)
        while len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)
        return samples

    @staticmethod
    def text_key(text: str, voice: str, rate: int) -> str:
        return hashlib.sha256(f"{voice}|{rate}|{text}".encode()).hexdigest()

    async def text(self, text: str, *, voice: str = "en-us", rate: int = 160) -> Samples:
        if not text.strip() or len(text) > MAX_TEXT:
            raise PromptError(f"text must be 1-{MAX_TEXT} characters")
        if not all(c.isalnum() or c in "-_+" for c in voice) or not 80 <= rate <= 450:
            raise PromptError("invalid voice or rate")
        key = self.text_key(text, voice, rate)
        cached = self._memory.get(key)
        if cached is not None:
            return cached
        path = self.cache_dir / f"{key}.wav"
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if not path.exists():
                await self._render(text, voice, rate, path)
        self._locks.pop(key, None)
        return self._remember(key, decode_wav(path.read_bytes()))

    async def _render(self, text: str, voice: str, rate: int, path: Path) -> None:
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise PromptError("espeak-ng is not installed")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.renders += 1
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        proc = await asyncio.create_subprocess_exec(
            binary,
            "-v",
            voice,
            "-s",
            str(rate),
            "-w",
            str(tmp),
            "--",
            text,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), RENDER_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            tmp.unlink(missing_ok=True)
            raise PromptError(f"espeak-ng did not finish within {RENDER_TIMEOUT_S:g} s") from None
        if proc.returncode != 0 or not tmp.exists():
            tmp.unlink(missing_ok=True)
            raise PromptError(f"espeak-ng failed: {err.decode(errors='replace').strip()[:200]}")
        tmp.replace(path)  # atomic: a concurrent reader never sees half a file

    async def warm(self, texts: list[str]) -> None:
        """Render (or load from disk) prompts every call may need, so no caller waits for espeak-ng."""
        for text in texts:
            try:
                await self.text(text)
            except PromptError as exc:
                log.warning("prompt_warmup_failed", text=text[:40], error=str(exc))

    def file(self, name: str) -> Samples:
        """A prompt file under <data_dir> (WAV, or raw .ulaw/.pcmu/.alaw/.pcma at 8 kHz)."""
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise PromptError("prompt files must be under the data directory")
        key = f"file:{path}:{path.stat().st_mtime_ns if path.exists() else 0}"
        cached = self._memory.get(key)
        if cached is not None:
            return cached
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PromptError(f"cannot read {name}: {exc.strerror}") from None
        suffix = path.suffix.lower()
        if suffix in (".ulaw", ".pcmu", ".ul"):
            samples = ulaw_decode(data).astype(np.int16)
        elif suffix in (".alaw", ".pcma", ".al"):
            samples = alaw_decode(data).astype(np.int16)
        else:
            samples = decode_wav(data)
        return self._remember(key, samples)
