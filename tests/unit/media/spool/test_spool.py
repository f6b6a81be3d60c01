"""The recording spool: two channels in G.711 without transcoding, chunked and fsynced; a crash (a torn
or corrupt tail) loses at most the last chunk; pauses keep no audio and stay aligned; WAV reassembly."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.media.rtp.g711 import G711
from services.media.spool import SpoolError, SpoolWriter, read_spool, spool, wait_written, write_wav
from services.media.spool.spool import RECORDS


def tone(freq: float, n: int, start: int) -> np.ndarray:
    return 6000 * np.sin(2 * np.pi * freq * (np.arange(n) + start) / 8000)


def feed(writer: SpoolWriter, seconds: float, t0: float = 0.0, law: G711 = G711.PCMU) -> float:
    frames = round(seconds / 0.02)
    for i in range(frames):
        start = writer.position
        writer.write(law.encode(tone(500, 160, start)), law.encode(tone(1200, 160, start)), t0 + i * 0.02)
    return t0 + frames * 0.02


def test_two_channels_stored_as_sent_and_reassembled_as_wav(tmp_path: Path) -> None:
    w = SpoolWriter(tmp_path, "call-1", G711.PCMA, flush_seconds=1.0)
    caller = G711.PCMA.encode(tone(500, 160, 0))
    agent = G711.PCMA.encode(tone(1200, 160, 0))
    w.write(caller, agent, 0.0)
    w.write(caller, None, 0.02)  # the agent sent nothing this frame
    w.close()
    got = read_spool(tmp_path / "call-1")
    assert got.complete and got.law is G711.PCMA and got.samples == 320
    assert got.frames[0:320:2] == caller and got.frames[1:320:2] == agent  # untouched octets
    assert set(got.frames[321::2]) == {G711.PCMA.silence}

    out = tmp_path / "call.wav"
    write_wav(got, out)
    raw = out.read_bytes()
    assert raw[:4] == b"RIFF" and raw[8:12] == b"WAVE"
    tag, channels, rate = struct.unpack_from("<HHI", raw, 20)
    assert (tag, channels, rate) == (6, 2, 8000)
    write_wav(got, tmp_path / "pcm.wav", pcm=True)
    with wave.open(str(tmp_path / "pcm.wav")) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()) == (
            2,
            2,
            8000,
            320,
        )


def test_chunks_are_flushed_on_time(tmp_path: Path) -> None:
    w = SpoolWriter(tmp_path, "c", G711.PCMU, flush_seconds=1.0)
    feed(w, 0.9)
    assert (
        wait_written() and os.path.getsize(tmp_path / "c" / RECORDS) == 0
    )  # still gathering the first chunk
    feed(w, 0.2, 0.9)
    assert wait_written()  # the chunk went to the disk thread, which wrote and fsynced it
    assert read_spool(tmp_path / "c").duration == pytest.approx(1.02, abs=0.03)


def test_a_killed_writer_loses_at_most_the_last_chunk(tmp_path: Path) -> None:
    # A real crash: a child process spools 5.5 s of audio with 1 s chunks and is killed with SIGKILL.
    script = f"""
import os, signal, time, numpy as np
from services.media.rtp.g711 import G711
from services.media.spool import SpoolWriter
w = SpoolWriter({str(tmp_path)!r}, "crash", G711.PCMU, flush_seconds=1.0)
frame = G711.PCMU.encode(np.full(160, 1000))
for i in range(275):
    w.write(frame, frame, i * 0.02)
    if i % 50 == 0:
        time.sleep(0.1)  # a live call has 1 s between chunks: the disk thread writes one long before the next
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[4], timeout=30)
    assert proc.returncode == -9
    got = read_spool(tmp_path / "crash")
    assert got.complete
    assert 4.5 <= got.duration <= 5.5  # flushed chunks survive; the unflushed tail (< 1 s + 1 frame) is gone

    # A torn tail (a write cut mid-record) and a corrupt record: the reader keeps everything before.
    records = tmp_path / "crash" / RECORDS
    data = records.read_bytes()
    records.write_bytes(data + data[:200])
    torn = read_spool(tmp_path / "crash")
    assert not torn.complete and torn.samples == got.samples
    corrupt = bytearray(data)
    corrupt[-5] ^= 0xFF
    records.write_bytes(bytes(corrupt))
    cut = read_spool(tmp_path / "crash")
    assert not cut.complete and got.duration - 1.1 <= cut.duration < got.duration


def test_pause_keeps_no_audio_and_the_timeline_stays_aligned(tmp_path: Path) -> None:
    w = SpoolWriter(tmp_path, "p", G711.PCMU, flush_seconds=0.5)
    t = feed(w, 1.0)
    w.pause(t)
    secret = G711.PCMU.encode(np.full(160, 12345))
    for i in range(50):  # 1 s of card digits
        w.write(secret, secret, t + i * 0.02)
    t += 1.0
    w.resume(t)
    feed(w, 1.0, t)
    w.close()
    assert secret[:16] not in (tmp_path / "p" / RECORDS).read_bytes()
    got = read_spool(tmp_path / "p")
    assert got.duration == pytest.approx(3.0)
    assert got.pauses == [(8000, 16000)]
    assert set(got.frames[2 * 8000 : 2 * 16000]) == {G711.PCMU.silence}
    left = G711.PCMU.decode(got.frames[0::2]).astype(float)
    assert np.sqrt(np.mean(left[16000:] ** 2)) > 3000  # audio after the resume is there


def test_bad_spools_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="manifest"):
        read_spool(tmp_path / "nothing")
    SpoolWriter(tmp_path, "dup", G711.PCMU).close()
    with pytest.raises(FileExistsError):
        SpoolWriter(tmp_path, "dup", G711.PCMU)


def test_the_chunks_of_many_calls_share_one_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Twelve recorded calls, each flushing 0.1 s chunks: about 50 records written, synced in batches (one
    # syncfs for the whole batch), not one fdatasync per record.
    batches: list[int] = []
    real_sync = spool._sync

    def counted(files: list[Any]) -> None:
        batches.append(len(files))
        real_sync(files)

    monkeypatch.setattr(spool, "_sync", counted)
    writers = [SpoolWriter(tmp_path, f"call-{i}", G711.PCMU, flush_seconds=0.1) for i in range(12)]
    frame = G711.PCMU.encode(tone(500, 160, 0))
    started = time.monotonic()
    for n in range(26):
        for w in writers:
            w.write(frame, frame, n * 0.02)
    elapsed = time.monotonic() - started
    assert wait_written()
    assert all(w.chunks >= 4 for w in writers)
    assert len(batches) <= 2 + elapsed / spool.SYNC_EVERY_S, (batches, elapsed)
    assert max(batches) == 12  # every call's file in one sync
    for w in writers:
        w.close()
        got = read_spool(w.directory)
        assert got.complete and got.samples == 26 * 160


def test_a_killed_writer_of_many_calls_keeps_every_written_chunk(tmp_path: Path) -> None:
    # A real crash with batched syncs: a child process spools four calls, waits until their chunks are
    # written and synced, writes two more chunks each and is killed (SIGKILL) without waiting for them.
    script = f"""
import os, signal, numpy as np
from services.media.rtp.g711 import G711
from services.media.spool import SpoolWriter, wait_written
writers = [SpoolWriter({str(tmp_path)!r}, f"crash-{{i}}", G711.PCMU, flush_seconds=0.2) for i in range(4)]
frame = G711.PCMU.encode(np.full(160, 1000))
for n in range(51):
    for w in writers:
        w.write(frame, frame, n * 0.02)
assert wait_written()
print(*[w.position - w._buffer_samples for w in writers], flush=True)  # samples flushed, now on disk
for n in range(51, 72):
    for w in writers:
        w.write(frame, frame, n * 0.02)
print(*[w.position - w._buffer_samples for w in writers], flush=True)  # handed to the disk thread
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[4],
        timeout=30,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -9, proc.stderr
    synced, handed = ([int(n) for n in line.split()] for line in proc.stdout.splitlines())
    for i in range(4):
        got = read_spool(tmp_path / f"crash-{i}")
        # Everything synced before the wait is there; of the chunks after it, those the disk thread wrote
        # before the kill (it may not have got to them), never more than was flushed.
        assert got.complete and 160 * 40 <= synced[i] <= got.samples <= handed[i], (i, synced, got.samples)


@pytest.mark.parametrize("law", [G711.PCMU, G711.PCMA])
def test_linear_frames_are_stored_as_the_same_octets_as_frames_encoded_one_by_one(
    tmp_path: Path, law: G711
) -> None:
    # A bridge of decoded legs hands the spool samples, encoded once per chunk: the file must hold exactly
    # what encoding every frame on its own gave, through everything the frames can be (an agent who sent
    # nothing, frames of other lengths, floats, a view that is not contiguous, octets mixed in by a relay
    # before a monitor took over, a pause), across chunks.
    rng = np.random.default_rng(7)
    frames: list[tuple[Any, Any]] = []
    for i in range(300):
        caller = rng.integers(-20000, 20000, 160).astype(np.int16)
        agent: Any = rng.integers(-20000, 20000, 160).astype(np.int16)
        if i % 37 == 5:
            agent = None
        elif i % 41 == 7:
            agent = agent[:80]
        elif i % 43 == 9:
            agent = agent.astype(np.float64) * 1.7  # clipped and rounded as the encoder does
        elif i % 47 == 11:
            agent = np.repeat(agent, 2)[::2]  # strided
        frames.append((caller, agent))
    relayed = {60, 61, 200}  # octets, as the relay taps them
    linear = SpoolWriter(tmp_path, "linear", law, flush_seconds=0.5)
    octets = SpoolWriter(tmp_path, "octets", law, flush_seconds=0.5)
    for i, (caller, agent) in enumerate(frames):
        now = i * 0.02
        if i == 120:
            for w in (linear, octets):
                w.pause(now)
        if i == 150:
            for w in (linear, octets):
                w.resume(now)
        encoded = (law.encode(caller), None if agent is None else law.encode(agent))
        octets.write(*encoded, now)
        if i in relayed:
            linear.write(*encoded, now)
        else:
            linear.write_pcm(caller, agent, now)
    first = law.encode(frames[0][0])
    # The writer copies what it is given: a caller reusing its arrays changes nothing written.
    for caller, _ in frames:
        caller[:] = 0
    linear.close()
    octets.close()
    assert linear.chunks == octets.chunks > 4
    assert (tmp_path / "linear" / RECORDS).read_bytes() == (tmp_path / "octets" / RECORDS).read_bytes()
    got = read_spool(tmp_path / "linear")
    assert got.complete and got.pauses == [(120 * 160, 150 * 160)]
    assert got.frames[0:320:2] == first
