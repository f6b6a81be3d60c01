"""The worker's one 20 ms clock with two real RtpSessions bridged on loopback: a frame one leg plays into
the bridge goes out on the other leg in the same tick, whichever of the two the clock ticks first (it
waited a whole tick when the receiving leg ticked first: 20 ms of delay in that direction); and the
in-band DTMF detector runs only where a digit could come no other way."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import numpy as np
import pytest

from services.kernel.messages import Event
from services.media.bridge.bridging import Bridge
from services.media.dsp.tones import dtmf_tone
from services.media.rtp.g711 import G711
from services.media.rtp.jitter_buffer import Frame, FrameKind, JitterBuffer
from services.media.rtp.packet import RtpPacket
from services.media.rtp.session import MediaClock, RtpSession
from services.media.ua.call import Call


def _free_pair() -> int:
    """An even port whose odd neighbour (RTCP) is free too."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1] & ~1
        try:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
            ):
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


async def _leg(clock: MediaClock, emitted: list[Event], *, te_pt: int | None) -> RtpSession:
    loop = asyncio.get_running_loop()
    call = Call(call_id=uuid.uuid4(), tenant_id=uuid.uuid4(), created_at=loop.time())
    call.answered(loop.time())
    session = RtpSession(call, host="127.0.0.1", port=_free_pair(), emit=emitted.extend, clock=clock)
    await session.open()
    # The peer is a port nobody reads: what was sent is seen through _send below.
    session.configure(
        codec=G711.PCMU,
        payload_type=0,
        te_pt=te_pt,
        remote=("127.0.0.1", _free_pair()),
        sending=True,
        receiving=True,
    )
    return session


def _feed(session: RtpSession, samples: np.ndarray, now: float) -> None:
    payload = G711.PCMU.encode(samples.astype(np.int16))
    for n in range(len(payload) // 160):
        session.jitter.push(n, n * 160, payload[n * 160 : (n + 1) * 160], now, samples=160)


class _PlayedJitter:
    """A leg's jitter buffer that notes when it plays audio. A wrapper, not a patched method: the buffer may
    be mypyc-compiled (services/media/native.py), whose methods cannot be replaced."""

    def __init__(self, inner: JitterBuffer, played: list[float]) -> None:
        self._inner = inner
        self._played = played

    def pop(self, now: float) -> Frame | None:
        frame = self._inner.pop(now)
        if frame is not None and frame.kind is FrameKind.AUDIO:
            self._played.append(now)
        return frame

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.parametrize("receiver_first", [True, False])
async def test_a_bridged_frame_goes_out_in_the_tick_it_was_played(receiver_first: bool) -> None:
    clock = MediaClock()
    emitted: list[Event] = []
    speaker = await _leg(clock, emitted, te_pt=101)
    listener = await _leg(clock, emitted, te_pt=101)
    if receiver_first:  # the clock ticks in the order legs were added
        clock.remove(speaker)
        clock.add(speaker)
    assert next(iter(clock.sessions.values())) is (listener if receiver_first else speaker)
    Bridge(speaker, listener).join()

    played: list[float] = []
    sent_loud: list[float] = []
    send = listener._send

    def recording_send(packet: RtpPacket, now: float) -> None:
        if packet.payload != bytes([G711.PCMU.silence]) * 160:
            sent_loud.append(now)
        send(packet, now)

    speaker.jitter = _PlayedJitter(speaker.jitter, played)  # type: ignore[assignment]
    listener._send = recording_send  # type: ignore[method-assign]
    try:
        t = np.arange(160 * 8) / 8000
        _feed(speaker, 8000 * np.sin(2 * np.pi * 1000 * t), asyncio.get_running_loop().time())
        for _ in range(100):
            await asyncio.sleep(0.02)
            if len(sent_loud) >= 8:
                break
        assert len(played) == 8
        # Each frame left in the tick (same `now`) that played it. The slot after the eighth is missing:
        # its concealment (the last frame fading, loud too) may go out before the loop above looks, on a
        # busy machine; it is no played frame.
        assert sent_loud[: len(played)] == played
    finally:
        speaker.close()
        listener.close()


async def test_in_band_dtmf_only_where_no_events_carry_the_digit() -> None:
    clock = MediaClock()
    emitted: list[Event] = []
    # Bridged with RFC 4733 negotiated: skipped. Bridged without events, or unbridged (the call's own
    # prompts and collection) with them: detected.
    bridged_events = await _leg(clock, emitted, te_pt=101)
    bridged_plain = await _leg(clock, emitted, te_pt=None)
    alone_events = await _leg(clock, emitted, te_pt=101)
    others = [await _leg(clock, emitted, te_pt=101) for _ in range(2)]
    Bridge(bridged_events, others[0]).join()
    Bridge(bridged_plain, others[1]).join()
    legs = (bridged_events, bridged_plain, alone_events)
    try:
        tone = np.concatenate([dtmf_tone("5", 0.1), np.zeros(800)])
        now = asyncio.get_running_loop().time()
        for leg in legs:
            _feed(leg, tone, now)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if all(len(leg.jitter) == 0 for leg in legs):
                break
        await asyncio.sleep(0.06)
        digits = {
            e.call_id: e.digit  # type: ignore[attr-defined]
            for e in emitted
            if type(e).__name__ == "CallDtmf"
        }
        assert digits == {bridged_plain.call.call_id: "5", alone_events.call.call_id: "5"}
    finally:
        for leg in (*legs, *others):
            leg.close()
