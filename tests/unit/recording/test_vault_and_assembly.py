"""Recording's sans-IO pieces: sealing (AES-256-GCM bound to tenant and recording), the master key file,
assembling chunks into the two-channel master, and the percentage policy."""

from __future__ import annotations

import hashlib
import os
import struct
import uuid
from pathlib import Path

import numpy as np
import pytest

from services.media.rtp.g711 import G711
from services.media.spool import SpoolWriter
from services.recording.assemble import assemble
from services.recording.policy import purge_after, should_record
from services.recording.vault import LocalMasterKey, VaultError, blob_key_id, open_blob, seal


def tone(freq: float, n: int, start: int) -> np.ndarray:
    return 6000 * np.sin(2 * np.pi * freq * (np.arange(n) + start) / 8000)


def record(tmp_path: Path, seconds: float, *, pause: tuple[float, float] | None = None) -> dict[int, bytes]:
    """Chunks as media's shipper receives them from a real SpoolWriter (one per flush)."""
    chunks: dict[int, bytes] = {}
    w = SpoolWriter(tmp_path, str(uuid.uuid4()), G711.PCMU, flush_seconds=0.5)
    w.on_chunk = lambda n, data: chunks.__setitem__(n, data)
    for i in range(round(seconds / 0.02)):
        now = i * 0.02
        if pause and abs(now - pause[0]) < 1e-9:
            w.pause(now)
        if pause and abs(now - pause[1]) < 1e-9:
            w.resume(now)
        start = w.position
        w.write(G711.PCMU.encode(tone(500, 160, start)), G711.PCMU.encode(tone(1200, 160, start)), now)
    w.close()
    return chunks


def channel_peak(wav: bytes, channel: int, lo: float, hi: float) -> float:
    """The dominant frequency of one channel between lo and hi seconds of a G.711 stereo WAV."""
    data = wav[wav.index(b"data") + 8 :]
    octets = np.frombuffer(data, dtype=np.uint8)[channel::2][int(lo * 8000) : int(hi * 8000)]
    pcm = G711.PCMU.decode(octets.tobytes()).astype(float)
    spectrum = np.abs(np.fft.rfft(pcm))
    return float(np.fft.rfftfreq(len(pcm), 1 / 8000)[int(np.argmax(spectrum[1:])) + 1])


def test_assembled_master_is_two_channel_g711_with_each_party_on_its_side(tmp_path: Path) -> None:
    chunks = record(tmp_path, 2.0)
    assert len(chunks) >= 3
    got = assemble(chunks, "PCMU", declared=len(chunks), cut_short=False)
    assert not got.partial and got.duration_s == pytest.approx(2.0)
    assert got.sha256 == hashlib.sha256(got.wav).hexdigest()
    tag, channels, rate = struct.unpack_from("<HHI", got.wav, 20)
    assert (tag, channels, rate) == (7, 2, 8000)
    assert channel_peak(got.wav, 0, 0.1, 1.9) == pytest.approx(500, abs=5)
    assert channel_peak(got.wav, 1, 0.1, 1.9) == pytest.approx(1200, abs=5)


def test_paused_span_has_no_audio_and_is_reported(tmp_path: Path) -> None:
    got = assemble(record(tmp_path, 3.0, pause=(1.0, 2.0)), "PCMU", declared=None, cut_short=False)
    assert got.pauses == [(pytest.approx(1.0), pytest.approx(2.0))]
    data = np.frombuffer(got.wav[got.wav.index(b"data") + 8 :], dtype=np.uint8)
    paused = data[2 * 8000 + 80 : 2 * 16000 - 80]
    assert set(paused.tolist()) == {G711.PCMU.silence}  # nothing of the paused span, on either channel
    assert channel_peak(got.wav, 0, 2.1, 2.9) == pytest.approx(500, abs=5)


def test_a_missing_chunk_cuts_the_recording_there_and_marks_it_partial(tmp_path: Path) -> None:
    chunks = record(tmp_path, 3.0)
    whole = assemble(chunks, "PCMU", declared=len(chunks), cut_short=False)
    del chunks[2]
    got = assemble(chunks, "PCMU", declared=len(chunks) + 1, cut_short=False)
    assert got.partial and got.missing == [2]
    assert 0 < got.duration_s < whole.duration_s
    lost = assemble({}, "PCMU", declared=None, cut_short=True)
    assert lost.partial and lost.duration_s == 0


def test_sealed_recording_opens_only_for_its_tenant_and_id_and_detects_any_flipped_bit() -> None:
    key, key_id = os.urandom(32), uuid.uuid4()
    tenant, rid = uuid.uuid4(), uuid.uuid4()
    blob = seal(key, key_id, tenant, rid, b"RIFF audio")
    assert blob_key_id(blob) == key_id and b"RIFF audio" not in blob
    assert open_blob(key, tenant, rid, blob) == b"RIFF audio"
    with pytest.raises(VaultError):
        open_blob(key, uuid.uuid4(), rid, blob)  # another tenant's name
    with pytest.raises(VaultError):
        open_blob(key, tenant, uuid.uuid4(), blob)  # moved under another recording
    with pytest.raises(VaultError):
        open_blob(os.urandom(32), tenant, rid, blob)  # another key
    for at in (5, 30, len(blob) - 1):
        bad = bytearray(blob)
        bad[at] ^= 0x01
        with pytest.raises(VaultError):
            open_blob(key, tenant, rid, bytes(bad))


def test_master_key_file_is_made_0600_and_a_readable_or_short_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    master = LocalMasterKey.load_or_create(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600" and len(path.read_bytes()) == 32
    assert LocalMasterKey.load_or_create(path).key_id == master.key_id  # loaded, not remade
    wrapped = master.wrap(b"k" * 32, b"ctx")
    assert master.unwrap(wrapped, b"ctx") == b"k" * 32
    with pytest.raises(VaultError):
        master.unwrap(wrapped, b"other context")
    path.chmod(0o644)
    with pytest.raises(VaultError, match="readable by others"):
        LocalMasterKey.load_or_create(path)
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 16)
    short.chmod(0o600)
    with pytest.raises(VaultError, match="32 bytes"):
        LocalMasterKey.load_or_create(short)


def test_percentage_policy_is_stable_per_contact_and_close_to_the_share() -> None:
    ids = [uuid.UUID(int=i * 7919 + 13) for i in range(4000)]
    assert all(should_record(100, i) for i in ids) and not any(should_record(0, i) for i in ids)
    share = sum(should_record(30, i) for i in ids) / len(ids)
    assert 0.27 < share < 0.33
    assert [should_record(30, i) for i in ids[:50]] == [should_record(30, i) for i in ids[:50]]


def test_purge_after_adds_the_retention_days() -> None:
    from datetime import UTC, datetime, timedelta

    ended = datetime(2026, 1, 1, tzinfo=UTC)
    assert purge_after(ended, 30) == ended + timedelta(days=30)
    assert purge_after(ended, None) is None


def test_segments_swapped_dropped_or_cut_off_never_open() -> None:
    from services.recording.vault import Opener, Sealer

    key, key_id, tenant, rid = os.urandom(32), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    plain = os.urandom(1000)
    sealer = Sealer(key, key_id, tenant, rid, segment=100)
    blob = b"".join(sealer.update(plain[i : i + 37]) for i in range(0, len(plain), 37)) + sealer.finish()
    header, size = 4 + 16 + 7 + 4, 100 + 16
    segments = [blob[header + i : header + i + size] for i in range(0, len(blob) - header, size)]
    assert len(segments) == 10 and len(segments[-1]) == size  # 1000 = 10 full segments, the last marked last
    opener = Opener(key, tenant, rid)
    pieces = [opener.feed(blob[i : i + 50]) for i in range(0, len(blob), 50)] + [opener.finish()]
    assert b"".join(pieces) == plain and max(len(p) for p in pieces) <= 100
    head = blob[:header]
    bad = {
        "swapped": head + segments[1] + segments[0] + b"".join(segments[2:]),
        "dropped": head + segments[0] + b"".join(segments[2:]),
        "cut after a segment": head + b"".join(segments[:5]),
        "last repeated": head + b"".join(segments) + segments[-1],
    }
    for why, tampered in bad.items():
        with pytest.raises(VaultError):
            open_blob(key, tenant, rid, tampered)
            pytest.fail(why)
    empty = Sealer(key, key_id, tenant, rid)
    assert open_blob(key, tenant, rid, empty.update(b"") + empty.finish()) == b""


def test_recordings_sealed_whole_before_segments_still_open() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, key_id, tenant, rid = os.urandom(32), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    header = b"SBR1" + key_id.bytes + os.urandom(12)
    old = header + AESGCM(key).encrypt(header[-12:], b"RIFF old", header + tenant.bytes + rid.bytes)
    assert blob_key_id(old) == key_id and open_blob(key, tenant, rid, old) == b"RIFF old"
    with pytest.raises(VaultError):
        open_blob(key, uuid.uuid4(), rid, old)
