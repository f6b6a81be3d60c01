"""The `record` command (voicemail) over real sockets: a raw SIP caller sends a tone as PCMU RTP; media
writes it after the beep into a WAV under the data dir, ships it to the JetStream bucket sb_voicemails
(removing its file) and only then reports call.record_finished. A key press and
max_seconds end the message; a path leaving the data dir is refused. The silence rule is checked on the
sans-IO core with a scripted clock (5 s of real silence would slow the suite)."""

from __future__ import annotations

import asyncio
import io
import uuid
import wave
from pathlib import Path

import numpy as np

from services.kernel import events as ev
from services.media.features.voicemail import Recording, resolve_under
from services.recording.voicemail_bucket import open_voicemail_bucket, voicemail_object

from .harness import Events, answered_call, send_audio, send_rfc4733, tone_power

TONE_HZ = 700.0  # not a DTMF frequency: the in-band detector stays quiet


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 8000)) / 8000
    return np.sin(2 * np.pi * TONE_HZ * t) * 8000


def _read_wav(path: Path | io.BytesIO) -> np.ndarray:
    with wave.open(str(path) if isinstance(path, Path) else path, "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


async def _shipped(events: Events, done: ev.CallRecordFinished, data_dir: Path) -> np.ndarray:
    """The message as media shipped it (its local file gone by the time the event is out)."""
    assert not (data_dir / done.file).exists()
    bucket = await open_voicemail_bucket(events.nc.jetstream())
    buffer = io.BytesIO()
    await bucket.get(voicemail_object(done.tenant_id, done.call_id), writeinto=buffer)
    buffer.seek(0)
    return _read_wav(buffer)


async def test_record_until_a_key_writes_the_callers_tone(media_edge, infra) -> None:
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    caller = await answered_call(media_edge.port, media_edge.flow_number, events)
    try:
        name = f"voicemail/test-{uuid.uuid4()}.wav"
        cmd = ev.MediaRecord(
            tenant_id=events.tenant, call_id=caller.platform_call_id, file=name, max_seconds=30
        )
        reply = await events.command(cmd)
        assert reply.ok, reply
        await asyncio.sleep(0.4)  # the beep
        await asyncio.to_thread(send_audio, caller, _tone(1.5))
        await asyncio.to_thread(send_rfc4733, caller, "#")
        done = await events.wait_for(ev.CallRecordFinished, lambda e: e.record_id == cmd.id)
        assert done.error is None and done.file == name
        assert 1.5 <= done.seconds <= 3.0, done.seconds
        audio = await _shipped(events, done, infra.data_dir)
        assert abs(len(audio) / 8000 - done.seconds) < 0.01
        loud = audio[np.abs(audio) > 2000]
        assert len(loud) > 8000, "about 1.5 s of the tone is in the file"
        assert tone_power(audio, TONE_HZ) > 0.5
    finally:
        await caller.bye()
        await events.close()


async def test_record_stops_at_max_seconds_and_refuses_paths_outside(media_edge, infra) -> None:
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    caller = await answered_call(media_edge.port, media_edge.flow_number, events)
    try:
        for bad in ("../escape.wav", "/tmp/escape.wav", "voicemail/../../escape.wav", "voicemail/x.txt"):
            refused = await events.command(
                ev.MediaRecord(tenant_id=events.tenant, call_id=caller.platform_call_id, file=bad)
            )
            assert not refused.ok and refused.code == "invalid" and "data directory" in (refused.error or "")
        assert not (infra.data_dir.parent / "escape.wav").exists()
        name = f"voicemail/max-{uuid.uuid4()}.wav"
        cmd = ev.MediaRecord(
            tenant_id=events.tenant, call_id=caller.platform_call_id, file=name, max_seconds=1.0, beep=False
        )
        assert (await events.command(cmd)).ok
        await asyncio.to_thread(send_audio, caller, _tone(2.0), lead_silence=0.0)
        done = await events.wait_for(ev.CallRecordFinished, lambda e: e.record_id == cmd.id)
        assert done.seconds == 1.0
        audio = await _shipped(events, done, infra.data_dir)
        assert len(audio) == 8000 and tone_power(audio[2000:], TONE_HZ) > 0.5
    finally:
        await caller.bye()
        await events.close()


async def test_hangup_ends_the_message_and_keeps_it(media_edge, infra) -> None:
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    caller = await answered_call(media_edge.port, media_edge.flow_number, events)
    name = f"voicemail/bye-{uuid.uuid4()}.wav"
    cmd = ev.MediaRecord(tenant_id=events.tenant, call_id=caller.platform_call_id, file=name, beep=False)
    assert (await events.command(cmd)).ok
    await asyncio.to_thread(send_audio, caller, _tone(1.0), lead_silence=0.0)
    await caller.bye()
    done = await events.wait_for(ev.CallRecordFinished, lambda e: e.record_id == cmd.id)
    assert 1.0 <= done.seconds <= 2.0
    assert len(await _shipped(events, done, infra.data_dir)) == round(done.seconds * 8000)
    await events.close()


def test_silence_ends_the_message_without_its_silent_tail(tmp_path: Path) -> None:
    written: list[np.ndarray] = []
    rec = Recording(
        tenant_id=uuid.uuid4(),
        call_id=uuid.uuid4(),
        record_id=uuid.uuid4(),
        file="vm.wav",
        path=tmp_path / "vm.wav",
        max_seconds=60,
        write=lambda _path, samples: written.append(samples),
    )
    loud = (np.sin(np.arange(160) / 3) * 5000).astype(np.int16)
    now, out = 0.0, []
    for _ in range(100):  # 2 s of sound
        out += rec.heard(loud, now)
        now += 0.02
    while not out and now < 20:
        out += rec.heard(None, now)  # nothing arrives: silence
        now += 0.02
    assert out and 2.0 <= out[0].seconds <= 2.04 and 6.9 < now < 7.1
    assert len(written[0]) == round(out[0].seconds * 8000)


def test_resolve_under_keeps_paths_inside(tmp_path: Path) -> None:
    assert resolve_under(tmp_path, "voicemail/a.wav") == (tmp_path / "voicemail/a.wav").resolve()
    for bad in ("", "..", "../a.wav", "/etc/passwd", "a/../../b.wav", "."):
        assert resolve_under(tmp_path, bad) is None
