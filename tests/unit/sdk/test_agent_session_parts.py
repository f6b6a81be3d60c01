"""The pieces of the SDK's headless agent that need no server: decoding the protocol's messages, the audio
file loader, the player's frames, the WAV recorder, and one contact's leg against a real aiortc peer on
loopback (the caller's side stands in for the media worker)."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from switchboard import agent_events as ae
from switchboard._agent_audio import (
    AgentLeg,
    PlayerTrack,
    WavRecorder,
    answer_clock_rate,
    load_audio,
    record_path,
)
from switchboard.agent import AgentClosedError, AgentSession, is_loopback_host, websocket_url
from switchboard.ice_hosts import set_host_addresses


def _share(samples: np.ndarray, frequency: float, rate: int) -> float:
    x = samples.astype(np.float64)
    n = np.arange(len(x))
    power = abs(np.sum(x * np.exp(-2j * np.pi * frequency * n / rate))) ** 2
    return float(power / ((np.sum(x * x) * len(x) / 2) or 1.0))


def _write_wav(path: Path, rate: int, channels: int, frequency: float, seconds: float) -> None:
    t = np.arange(int(rate * seconds)) / rate
    tone = (8000 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    frames = np.repeat(tone[:, None], channels, axis=1) if channels > 1 else tone
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())


def test_events_decode_typed_and_leniently() -> None:
    offer = ae.decode_event(
        b'{"v": 1, "type": "contact_offer", "contact_id": "c1", "offer_id": "o1", "expires_at": 12.5,'
        b' "context": {"caller": {"number": "+15550100", "name": ""}, "dialled": "+15550123",'
        b' "queue": {"id": "q", "name": "Support"}, "attributes": {"account": "42"},'
        b' "ivr": {"flow": "main@3", "path": ["greet", "menu"], "digits": "2"},'
        b' "waited": {"ivr_s": 12, "queue_s": 3.1}, "history": {"today": 2, "last": []},'
        b' "future_field": true}}'
    )
    assert isinstance(offer, ae.ContactOffer)
    assert offer.context.caller.number == "+15550100" and offer.context.queue.name == "Support"  # type: ignore[union-attr]
    assert offer.context.ivr.path == ["greet", "menu"] and offer.context.waited.ivr_s == 12.0  # type: ignore[union-attr]
    assert offer.context.transfer is None and offer.context.history.today == 2
    # A context this SDK cannot read still rings (the offer is kept, the context is empty).
    odd = ae.decode_event(
        b'{"v":1,"type":"contact_offer","contact_id":"c","offer_id":"o","context":{"caller":7}}'
    )
    assert isinstance(odd, ae.ContactOffer) and odd.context.caller.number == ""
    ack = ae.decode_event(b'{"v":1,"type":"ack","ref":"r1","state":"available"}')
    assert ack == ae.Ack(ref="r1", data={"state": "available"})
    error = ae.decode_event(b'{"v":1,"type":"error","code":"state","reason":"not now","ref":"r2"}')
    assert error == ae.ErrorMessage(code="state", reason="not now", ref="r2")
    assert ae.decode_event(b'{"v":1,"type":"surprise","x":1}') == ae.Unknown(kind="surprise", data={"x": 1})
    # A known type with a wrong shape is Unknown, not an exception.
    assert isinstance(ae.decode_event(b'{"v":1,"type":"contact_ended"}'), ae.Unknown)
    ready = ae.decode_event(b'{"v":1,"type":"ready","agent_id":"a","tenant_id":"t","expires_at":1}')
    assert isinstance(ready, ae.Ready) and ready.ice_servers == []


def test_urls_and_paths() -> None:
    assert websocket_url("http://127.0.0.1:8080/") == "ws://127.0.0.1:8080/v1/ws"
    assert websocket_url("https://cc.example/base") == "wss://cc.example/base/v1/ws"
    with pytest.raises(ValueError):
        websocket_url("ftp://x")
    assert is_loopback_host("http://127.0.0.1:1") and is_loopback_host("http://localhost")
    assert is_loopback_host("http://[::1]:8080") and not is_loopback_host("https://cc.example")
    assert record_path("out/{contact_id}.wav", "c-1") == Path("out/c-1.wav")
    assert record_path("{x}-{contact_id}.wav", "c") == Path("{x}-c.wav")  # other braces are kept


def test_answer_clock_rate() -> None:
    pcmu = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 126\r\na=rtpmap:0 PCMU/8000\r\n"
    opus = "m=audio 9 UDP/TLS/RTP/SAVPF 96 0\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
    assert answer_clock_rate(pcmu) == 8000 and answer_clock_rate(opus) == 48000
    assert answer_clock_rate("m=audio 9 RTP/AVP 8\r\n") == 8000  # a static type without rtpmap


@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (16000, 1), (8000, 1)])
def test_load_audio_resamples_any_wav(tmp_path: Path, rate: int, channels: int) -> None:
    path = tmp_path / "tone.wav"
    _write_wav(path, rate, channels, 600.0, 1.0)
    for target in (8000, 48000):
        samples = load_audio(path, target)
        assert samples.dtype == np.int16
        assert abs(len(samples) - target) <= target * 0.02  # one second, give or take the resampler's edge
        assert _share(samples[: target // 2], 600.0, target) > 0.8


async def test_player_frames_play_once_or_loop() -> None:
    player = PlayerTrack(8000)
    silent = await player.recv()
    assert silent.sample_rate == 8000 and silent.samples == 160
    assert not silent.to_ndarray().any()
    player.play(np.arange(1, 201, dtype=np.int16))  # 200 samples: one frame and a part
    first, second, third = [await player.recv() for _ in range(3)]
    assert list(first.to_ndarray().reshape(-1)[:3]) == [1, 2, 3]
    assert list(second.to_ndarray().reshape(-1)[:40]) == list(range(161, 201))
    assert not second.to_ndarray().reshape(-1)[40:].any() and not third.to_ndarray().any()
    assert (second.pts, third.pts) == (320, 480) and not player.playing
    player.play(np.arange(1, 101, dtype=np.int16), loop=True)
    looped = (await player.recv()).to_ndarray().reshape(-1)
    assert list(looped[98:102]) == [99, 100, 1, 2] and player.playing
    # Paced: 10 more frames take about 200 ms of wall time.
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(10):
        await player.recv()
    assert 0.15 < loop.time() - start < 0.5


def test_wav_recorder(tmp_path: Path) -> None:
    recorder = WavRecorder(tmp_path / "deep" / "r.wav", 8000)
    recorder.write(np.full(800, 1000, dtype=np.int16))
    recorder.close()
    assert recorder.seconds == 0.1 and abs(recorder.rms - 1000) < 1e-6
    with wave.open(str(tmp_path / "deep" / "r.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 8000, 800)


async def test_leg_plays_and_records_against_an_aiortc_peer(tmp_path: Path) -> None:
    """The agent's leg offers (no ICE server, loopback host candidates), a plain aiortc peer answers with
    PCMU and plays 600 Hz; the leg records it after start() and plays its file (1 kHz) to the peer."""
    set_host_addresses(["127.0.0.1"])
    _write_wav(tmp_path / "agent.wav", 22050, 2, 1000.0, 3.0)
    leg = AgentLeg("c-1", [], play=tmp_path / "agent.wav", record=str(tmp_path / "rec-{contact_id}.wav"))
    caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    caller_player = PlayerTrack(8000)
    t = np.arange(8000 * 4) / 8000
    caller_player.play((8000 * np.sin(2 * np.pi * 600 * t)).astype(np.int16))
    transceiver = caller.addTransceiver(caller_player, direction="sendrecv")
    heard: list[np.ndarray] = []
    readers: list[asyncio.Future[None]] = []

    @caller.on("track")
    def on_track(track) -> None:  # type: ignore[no-untyped-def]
        async def read() -> None:
            while True:
                try:
                    frame = await track.recv()
                except Exception:
                    return
                heard.append(frame.to_ndarray().reshape(-1).copy())

        readers.append(asyncio.ensure_future(read()))

    try:
        # PCMU, as the media worker answers a leg bridged to a G.711 caller (preferences before the offer).
        pcmu = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/PCMU"]
        transceiver.setCodecPreferences(pcmu)
        await caller.setRemoteDescription(RTCSessionDescription(await leg.create_offer(), "offer"))
        await caller.setLocalDescription(await caller.createAnswer())
        await leg.accept_answer("leg-1", caller.localDescription.sdp)
        assert leg.rate == 8000
        assert await asyncio.wait_for(leg.wait_connected(), 10)
        before = len(heard)
        await asyncio.sleep(0.5)
        # Before start(): the caller hears silence and nothing is recorded.
        assert not np.concatenate(heard[before:]).any() if heard[before:] else True
        leg.start()
        start_heard = len(heard)
        await asyncio.sleep(1.5)
        recorder = await leg.close()
        assert recorder is not None and recorder.path == tmp_path / "rec-c-1.wav"
        assert 1.0 < recorder.seconds < 2.0 and recorder.rms > 1000
        with wave.open(str(recorder.path)) as w:
            recorded = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        assert _share(recorded[800:], 600.0, 8000) > 0.5
        agent_audio = np.concatenate(heard[start_heard:])
        assert _share(agent_audio[1600:], 1000.0, 8000) > 0.5
        assert await leg.close() is None  # once
    finally:
        await leg.close()
        await caller.close()
        set_host_addresses(None)


async def test_an_offer_withdrawn_while_its_leg_waits_for_the_answer_ends_quietly() -> None:
    """The leg's offer is answered after the offer was withdrawn (the caller hung up during a slow set-up: 7 s
    at load 22): the leg is already closed, so the answer is dropped, not applied to a closed connection
    (aiortc raised InvalidStateError in a task nobody awaited), and nothing is accepted."""
    set_host_addresses(["127.0.0.1"])
    session = AgentSession("http://127.0.0.1:9", "token", auto_answer=True)
    caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sent: list[str] = []

    async def request(command: str, **fields: object) -> dict[str, object]:
        sent.append(command)
        assert command == "offer"
        await caller.setRemoteDescription(RTCSessionDescription(str(fields["sdp"]), "offer"))
        await caller.setLocalDescription(await caller.createAnswer())
        # Meanwhile the offer was withdrawn: the session ends its leg (as on `contact_withdrawn`).
        session._offers.pop("c-1", None)
        await session._end_leg("c-1")
        return {"leg_id": "leg-1", "sdp": caller.localDescription.sdp}

    session.request = request  # type: ignore[method-assign]
    offer = ae.ContactOffer(contact_id="c-1", offer_id="c-1#0", audio="webrtc")
    session._offers["c-1"] = offer
    try:
        await asyncio.wait_for(session._ring(offer), 10)
        assert sent == ["offer"] and session._legs == {}
    finally:
        await caller.close()
        set_host_addresses(None)


async def test_a_socket_dropping_before_the_accept_is_acked_leaves_the_leg_up() -> None:
    """The contact's `contact_connected` comes before the accept's ack (contacts replies once routing has
    answered and the step is saved; the bridge is quicker): a socket dropping then fails the pending accept,
    and that must not end the leg the contact is connected on (it did: media ended the leg with the socket's
    cut, 14 ms after the bridge, and the caller was requeued at once, `agent_connection_lost`, instead of
    after the grace, `agent_disconnected`)."""
    set_host_addresses(["127.0.0.1"])
    session = AgentSession("http://127.0.0.1:9", "token", auto_answer=True)
    caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sent: list[str] = []

    async def request(command: str, **fields: object) -> dict[str, object]:
        sent.append(command)
        if command == "accept":
            raise AgentClosedError("the socket closed (1006 )")
        await caller.setRemoteDescription(RTCSessionDescription(str(fields["sdp"]), "offer"))
        await caller.setLocalDescription(await caller.createAnswer())
        return {"leg_id": "leg-1", "sdp": caller.localDescription.sdp}

    session.request = request  # type: ignore[method-assign]
    offer = ae.ContactOffer(contact_id="c-1", offer_id="c-1#0", audio="webrtc")
    session._offers["c-1"] = offer
    try:
        await asyncio.wait_for(session._ring(offer), 10)
        assert sent == ["offer", "accept"]
        leg = session.leg("c-1")
        assert leg is not None and not leg.finished.is_set()
        error = session._events.get_nowait()
        assert isinstance(error, ae.ErrorMessage) and error.code == "AgentClosedError"
    finally:
        await session._end_leg("c-1")
        await caller.close()
        set_host_addresses(None)
