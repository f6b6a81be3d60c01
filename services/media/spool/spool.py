# The recording tap's local spool: each call's audio as two channels (caller, agent) in the call's G.711
# law, never transcoded, appended in chunks (every `flush_seconds`, by a disk thread off the event loop).
# A chunk is in the file (the page cache) as soon as the disk thread has written it, which a crash of the
# process cannot undo; it is on the disk (a crash of the machine cannot undo it) once the thread has synced
# it, at most SYNC_EVERY_S later, together with every other call's chunks written in that time (one
# syncfs for all of them, not one fdatasync per call and chunk). So a process crash loses at most the chunk
# being gathered and the one being written, a machine crash also the last SYNC_EVERY_S of chunks (docs/
# recording.md, "Crash safety"). The recording service later turns a spool into a stored recording;
# `read_spool` and `write_wav` reassemble one, complete or cut short, into a stereo WAV.
#
# Layout of <spool dir>/<call id>/:
#   manifest.json   written once, atomically (tmp + rename + fsync), before any audio: law, rate, channels
#   audio.sbspool   records, each: header "!4sBBHQII" (magic b"SBSP", kind, 0, 0, start sample, samples,
#                   CRC-32 of the body) + body (AUDIO: interleaved caller/agent octets, 2 per sample)
#
# Pause (record_pause/record_resume): nothing from the paused span is written, not even to the page cache;
# a PAUSE record marks where it began and RESUME where audio starts again. Regulations (PCI DSS for card
# numbers) want the paused audio to never exist on disk, so writing silence would be as good for the
# listener but the gap marker keeps the fact of the pause visible: the reader fills the span with silence
# (the recording stays aligned with the call's clock) and reports the pauses.
from __future__ import annotations

import ctypes
import enum
import fcntl
import json
import logging
import os
import queue
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from services.media.rtp.g711 import G711, as_int16

__all__ = [
    "MANIFEST",
    "RECORDS",
    "RecordKind",
    "RecordReader",
    "SpoolContents",
    "SpoolError",
    "SpoolWriter",
    "parse_records",
    "read_spool",
    "wait_written",
    "wav_bytes",
    "wav_header",
    "write_wav",
]

MANIFEST = "manifest.json"
RECORDS = "audio.sbspool"
MAGIC = b"SBSP"
_HEADER = struct.Struct("!4sBBHQII")
RATE = 8000
CHANNELS = ("caller", "agent")
_INT16 = np.dtype(np.int16)
Samples = npt.NDArray[np.int16]
# How long a written chunk may wait for the disk thread's next sync: the chunks of every call written in
# this time share one sync.
SYNC_EVERY_S = 0.25


class SpoolError(ValueError):
    """A spool that cannot be read (no manifest, unknown version); the message says why."""


class RecordKind(enum.IntEnum):
    AUDIO = 1
    PAUSE = 2
    RESUME = 3


class _DiskThread:
    """Appends and syncs away from the caller's thread. An fsync takes milliseconds (4 ms at p95 on these
    disks) and spools are written from the media worker's event loop, where each one delayed every call's
    audio (the media-bridge benchmark saw 130-700 ms p95 with recording on). One thread, first in first
    out, so each file's records keep their order. Appends are written at once and synced in batches: at
    most SYNC_EVERY_S after the first unsynced one, and before any other job (a close, a `wait`), so that
    whoever waits for the thread finds everything before on the disk."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | tuple[BinaryIO, bytes]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.syncs = 0  # batches synced (tests, docs/recording.md)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="spool-disk", daemon=True)
                self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._start()
        self._jobs.put(job)

    def append(self, file: BinaryIO, data: bytes) -> None:
        self._start()
        self._jobs.put((file, data))

    def wait(self, timeout: float = 10.0) -> bool:
        """Until everything submitted before has been done (and every append before synced)."""
        done = threading.Event()
        self.submit(done.set)
        return done.wait(timeout)

    def _run(self) -> None:
        dirty: dict[int, BinaryIO] = {}
        sync_at = 0.0
        while True:
            try:
                job = self._jobs.get(timeout=max(0.0, sync_at - time.monotonic()) if dirty else None)
            except queue.Empty:
                job = None
            if isinstance(job, tuple):
                file, data = job
                try:
                    file.write(data)
                    file.flush()
                except Exception:  # a full or failing disk loses this record, never the call
                    logging.getLogger(__name__).exception("spool_write_failed")
                    continue
                if not dirty:
                    sync_at = time.monotonic() + SYNC_EVERY_S
                dirty[id(file)] = file
                continue
            if dirty:
                files, dirty = list(dirty.values()), {}
                try:
                    _sync(files)
                except Exception:
                    logging.getLogger(__name__).exception("spool_sync_failed")
                self.syncs += 1
            if job is not None:
                try:
                    job()
                except Exception:
                    logging.getLogger(__name__).exception("spool_job_failed")


_disk = _DiskThread()
_libc = ctypes.CDLL(None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)


def wait_written(timeout: float = 10.0) -> bool:
    """Until every record handed to the disk thread so far is written and synced (tests, shutdown)."""
    return _disk.wait(timeout)


def _sync(files: list[BinaryIO]) -> None:
    """Each file's data and what finding it needs (its new size), on the disk. One file: fdatasync (less
    journal work than fsync). Several: one syncfs of their filesystem (the spools are one directory), about
    a seventh of the time and CPU of an fdatasync each on these disks (20 files: 2 ms against 5-15 ms)."""
    if len(files) > 1 and _syncfs is not None:
        by_device: dict[int, list[BinaryIO]] = {}
        for file in files:
            by_device.setdefault(os.fstat(file.fileno()).st_dev, []).append(file)
        failed: list[BinaryIO] = []
        for group in by_device.values():
            if len(group) > 1 and _syncfs(group[0].fileno()) == 0:
                continue
            failed += group
        files = failed
    for file in files:
        os.fdatasync(file.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolWriter:
    """One call's spool. Feed one frame per 20 ms per call with `write(caller, agent, now)` (either side
    None when it sent nothing: silence); `now` is a monotonic time used only to decide when to flush."""

    def __init__(
        self,
        spool_dir: Path,
        call_id: str,
        law: G711,
        *,
        flush_seconds: float = 1.0,
        started_at: float = 0.0,
        tenant_id: str = "",
    ) -> None:
        self.directory = Path(spool_dir) / call_id
        self.directory.mkdir(parents=True, exist_ok=False)  # a call id is spooled once
        self.law = law
        self.flush_seconds = flush_seconds
        self.position = 0  # samples since the start of the tap, paused spans included
        self.paused = False
        # The chunk being gathered, one channel each; interleaved once per flush (per frame it is only two
        # appends: recording every call must cost little on the media worker's loop).
        self._caller = bytearray()
        self._agent = bytearray()
        # Frames that came as linear samples (`write_pcm`: a bridge whose legs hand it decoded audio), kept
        # as 16-bit samples and encoded once per chunk (`_settle`): one table lookup over a chunk costs less
        # than a hundredth of one per frame, and G.711 is sample by sample, so the octets are the same.
        self._caller_pcm = bytearray()
        self._agent_pcm = bytearray()
        self._buffer_samples = 0
        self._last_flush: float | None = None
        manifest = {
            "version": 1,
            "call_id": call_id,
            "law": law.name,
            "rate": RATE,
            "channels": list(CHANNELS),
            "started_at": started_at,
            # Whose call: a media worker restarted after a crash ships what its spool kept (ship.py).
            "tenant_id": tenant_id,
        }
        tmp = self.directory / (MANIFEST + ".tmp")
        with open(tmp, "w") as f:
            json.dump(manifest, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / MANIFEST)
        self._file = open(self.directory / RECORDS, "ab")
        # Held while the spool is written: a restarted worker (or a neighbour sharing the data dir) can tell a
        # live spool from one its writer left behind (the kernel drops the lock when the process dies).
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        _fsync_dir(self.directory)
        self._unsynced: list[bytes] = []  # records appended since the last sync, handed to the disk thread
        # Each synced batch of records is also a chunk for the recording service (numbered from 0, in
        # order); media's shipper sets this to publish them (services/media/spool/ship.py).
        self.on_chunk: Callable[[int, bytes], None] | None = None
        self.chunks = 0

    def write(self, caller: bytes | None, agent: bytes | None, now: float) -> None:
        if self._caller_pcm:
            self._settle()  # the samples before these octets go first
        if caller is not None and agent is not None and len(caller) == len(agent) and not self.paused:
            # Both sides spoke a frame of the same length (nearly every frame): two appends, nothing more;
            # this runs for every recorded call 50 times a second on the media worker's loop.
            self._caller += caller
            self._agent += agent
            samples = len(caller)
            self._buffer_samples += samples
            self.position += samples
            if self._last_flush is None:
                self._last_flush = now
            elif now - self._last_flush >= self.flush_seconds:
                self.flush(now)
            return
        samples = max(len(caller or b""), len(agent or b""))
        if samples == 0:
            return
        if self.paused:
            self.position += samples  # the clock runs on; the audio is never kept
            return
        silence = bytes((self.law.silence,))
        for channel, octets in ((self._caller, caller or b""), (self._agent, agent or b"")):
            channel += octets
            channel += silence * (samples - len(octets))
        self._gathered(samples, now)

    def write_pcm(self, caller: Samples, agent: Samples | None, now: float) -> None:
        """`write` for linear frames (agent None: silence), kept as 16-bit samples and encoded in the call's
        law once per chunk (G.711 is sample by sample: the same octets as encoding each frame). The frames
        are copied at once (holding them until the flush kept numpy from reusing their memory: measured
        slower, bench_recording_tap.py)."""
        if (
            agent is not None
            and not self.paused
            and caller.dtype is _INT16
            and agent.dtype is _INT16
            and caller.nbytes == agent.nbytes
        ):
            # Nearly every frame of a bridged WebRTC call: two appends of 320 octets, nothing encoded here.
            size = len(self._caller_pcm)
            try:
                self._caller_pcm += caller.data
                self._agent_pcm += agent.data
            except TypeError:  # a frame that is not contiguous: the long way below
                del self._caller_pcm[size:]
            else:
                self._gathered(caller.nbytes >> 1, now)
                return
        left = b"" if caller is None else as_int16(caller).tobytes()
        right = b"" if agent is None else as_int16(agent).tobytes()
        samples = max(len(left), len(right)) // 2
        if samples == 0:
            return
        if self.paused:
            self.position += samples  # the clock runs on; the audio is never kept
            return
        for channel, data in ((self._caller_pcm, left), (self._agent_pcm, right)):
            channel += data
            channel += bytes(2 * samples - len(data))  # 0: what both laws encode as their silence
        self._gathered(samples, now)

    def _gathered(self, samples: int, now: float) -> None:
        self._buffer_samples += samples
        self.position += samples
        if self._last_flush is None:
            self._last_flush = now
        elif now - self._last_flush >= self.flush_seconds:
            self.flush(now)

    def _settle(self) -> None:
        """The gathered samples, encoded, onto the end of the gathered octets."""
        for channel, pcm in ((self._caller, self._caller_pcm), (self._agent, self._agent_pcm)):
            channel += self.law.encode(np.frombuffer(pcm, dtype=np.int16))
            pcm.clear()

    def pause(self, now: float) -> None:
        if self.paused:
            return
        self.flush(now)
        self._append(RecordKind.PAUSE, self.position, 0, b"")
        self._sync()
        self.paused = True

    def resume(self, now: float) -> None:
        if not self.paused:
            return
        self.paused = False
        self._append(RecordKind.RESUME, self.position, 0, b"")
        self._sync()
        self._last_flush = now

    def flush(self, now: float | None = None) -> None:
        """Append the gathered audio as one record and fsync: from here on a crash cannot lose it."""
        if self._caller_pcm:
            self._settle()
        if self._buffer_samples:
            body = np.empty(2 * self._buffer_samples, dtype=np.uint8)
            body[0::2] = np.frombuffer(self._caller, dtype=np.uint8)
            body[1::2] = np.frombuffer(self._agent, dtype=np.uint8)
            start = self.position - self._buffer_samples  # the gathered samples are the last ones
            self._append(RecordKind.AUDIO, start, self._buffer_samples, body.tobytes())
            self._caller.clear()
            self._agent.clear()
            self._buffer_samples = 0
            self._sync()
        if now is not None:
            self._last_flush = now

    def _append(self, kind: RecordKind, start: int, samples: int, body: bytes) -> None:
        self._unsynced.append(_HEADER.pack(MAGIC, kind, 0, 0, start, samples, zlib.crc32(body)) + body)

    def _sync(self) -> None:
        data, self._unsynced = b"".join(self._unsynced), []
        if not data:
            return
        _disk.append(self._file, data)
        if self.on_chunk is not None:
            self.on_chunk(self.chunks, data)
        self.chunks += 1

    def close(self) -> None:
        """Everything written and on disk before it returns (a reader may open the spool right after)."""
        if not self._file.closed:
            self.flush()
            file = self._file
            _disk.submit(file.close)
            if not _disk.wait():
                raise SpoolError(f"the spool {self.directory} could not be written within 10 s")


@dataclass
class SpoolContents:
    law: G711
    call_id: str
    frames: bytes  # interleaved caller/agent octets, paused spans filled with silence
    pauses: list[tuple[int, int]] = field(default_factory=list)  # (start sample, end sample)
    complete: bool = True  # False when the file ends in a torn or corrupt record (a crash)

    @property
    def samples(self) -> int:
        return len(self.frames) // 2

    @property
    def duration(self) -> float:
        return self.samples / RATE


def read_spool(directory: Path) -> SpoolContents:
    """Reassemble a spool, stopping at the first torn or corrupt record (what a crash leaves)."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise SpoolError(f"{directory} has no readable manifest: {exc}") from None
    if manifest.get("version") != 1 or manifest.get("law") not in G711.__members__:
        raise SpoolError(f"{directory}: unsupported spool manifest {manifest!r}")
    law = G711[manifest["law"]]
    try:
        data = (directory / RECORDS).read_bytes()
    except FileNotFoundError:
        data = b""
    return parse_records(data, law, str(manifest.get("call_id", "")))


class RecordReader:
    """Spool records fed in pieces (a file read in blocks, or a call's chunks in order) into audio, with
    the same result as reading them whole: what a recording an hour long needs, without holding it."""

    def __init__(self, law: G711) -> None:
        self.law = law
        self._silence = bytes([law.silence])
        self._rest = b""  # the start of a record whose end is in the next piece
        self.samples = 0  # frames (two octets: caller, agent) produced so far
        self.pauses: list[tuple[int, int]] = []
        self._paused_at: int | None = None
        self.complete = True  # False once a torn or corrupt record is met: nothing after it counts
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        """The interleaved caller/agent octets these records add, paused spans filled with silence."""
        if not self.complete or self.finished:
            return b""
        data = self._rest + data if self._rest else data
        out = bytearray()
        pos = 0
        while len(data) - pos >= _HEADER.size:
            magic, kind, _, _, start, samples, crc = _HEADER.unpack_from(data, pos)
            if magic != MAGIC or kind not in RecordKind._value2member_map_:
                self.complete = False
                break
            end = pos + _HEADER.size + 2 * samples
            if end > len(data):
                break  # the rest of this record is in the next piece
            body = data[pos + _HEADER.size : end]
            if zlib.crc32(body) != crc:
                self.complete = False
                break
            pos = end
            if start > self.samples:  # a paused span (or a gap): silence, aligned
                out += self._silence * (2 * (start - self.samples))
                self.samples = start
            if kind == RecordKind.AUDIO:
                out += body
                self.samples += samples
            elif kind == RecordKind.PAUSE:
                self._paused_at = start
            elif kind == RecordKind.RESUME and self._paused_at is not None:
                self.pauses.append((self._paused_at, start))
                self._paused_at = None
        self._rest = data[pos:] if self.complete else b""
        return bytes(out)

    def finish(self) -> None:
        """No more pieces: a record left half is a torn one; a pause never resumed lasts to the end."""
        if self.finished:
            return
        self.finished = True
        if self._rest:
            self.complete = False
            self._rest = b""
        if self._paused_at is not None:  # paused until the end: the pause is kept, its audio never existed
            self.pauses.append((self._paused_at, max(self._paused_at, self.samples)))
            self._paused_at = None


def parse_records(data: bytes, law: G711, call_id: str) -> SpoolContents:
    """Spool records (a file's bytes, or a call's chunks joined in order) into audio, stopping at the first
    torn or corrupt record."""
    reader = RecordReader(law)
    frames = reader.feed(data)
    reader.finish()
    return SpoolContents(law, call_id, frames, reader.pauses, reader.complete)


def write_wav(contents: SpoolContents, path: Path, *, pcm: bool = False) -> None:
    """`wav_bytes` written atomically to `path`."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(wav_bytes(contents, pcm=pcm))
    os.replace(tmp, path)


def wav_header(law: G711, samples: int) -> bytes:
    """The header of a stereo G.711 WAV of `samples` frames (format 7 mu-law / 6 A-law, 8 bits, with the
    `fact` chunk non-PCM formats need): what precedes the frames, so a writer can stream them after it."""
    tag = 7 if law is G711.PCMU else 6
    fmt = struct.pack("<HHIIHHH", tag, 2, RATE, RATE * 2, 2, 8, 0)
    body = 2 * samples  # always even: no pad byte
    riff = 4 + (8 + len(fmt)) + 12 + 8 + body
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"fact"
        + struct.pack("<II", 4, samples)
        + b"data"
        + struct.pack("<I", body)
    )


def wav_bytes(contents: SpoolContents, *, pcm: bool = False) -> bytes:
    """Stereo WAV, left caller, right agent: G.711 as stored (`wav_header`), or decoded to 16-bit PCM
    (format 1) for players without G.711."""
    if not pcm:
        return wav_header(contents.law, contents.samples) + contents.frames
    body = contents.law.decode(contents.frames).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 2, RATE, RATE * 4, 4, 16)
    riff = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(body)) + body
    )
    return b"RIFF" + struct.pack("<I", len(riff)) + riff
