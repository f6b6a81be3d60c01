"""A bridge between two legs of one G.711 law carries the payload as it is (no decode, no encode per frame),
and still conceals a lost packet, mutes, and detects in-band digits where no events carry them; legs of
different laws get decoded frames. Real RtpSessions, driven tick by tick (the clock's two passes by hand);
what a leg sends is taken at its `_send`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest

from services.kernel.messages import Event
from services.media.bridge.bridging import Bridge
from services.media.dsp.tones import dtmf_tone
from services.media.rtp.g711 import G711
from services.media.rtp.packet import RtpPacket
from services.media.rtp.session import MediaClock, RtpSession
from services.media.ua.call import Call


class Leg:
    def __init__(self, session: RtpSession) -> None:
        self.session = session
        self.sent: list[bytes] = []
        session._send = self._capture  # type: ignore[method-assign]

    def _capture(self, packet: RtpPacket, now: float) -> None:
        self.sent.append(packet.payload)


@pytest.fixture
async def make_leg() -> AsyncIterator[object]:
    loop = asyncio.get_running_loop()
    transports: list[asyncio.DatagramTransport] = []
    emitted: list[Event] = []

    async def make(law: G711, te_pt: int | None = 101) -> Leg:
        call = Call(call_id=uuid.uuid4(), tenant_id=uuid.uuid4(), created_at=0.0)
        call.answered(0.0)
        session = RtpSession(call, host="127.0.0.1", port=0, emit=emitted.extend, clock=MediaClock())
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
        session._rtp = transport
        session.configure(
            codec=law,
            payload_type=law.payload_type,
            te_pt=te_pt,
            remote=("127.0.0.1", 9),
            sending=True,
            receiving=True,
        )
        leg = Leg(session)
        leg.emitted = emitted  # type: ignore[attr-defined]
        return leg

    yield make
    for transport in transports:
        transport.close()


def _voice(law: G711, frames: int) -> list[bytes]:
    """700 Hz rising in level frame by frame: no two frames alike."""
    t = np.arange(160 * frames) / 8000
    level = 3000 + 200 * np.arange(160 * frames) // 160
    payload = law.encode((level * np.sin(2 * np.pi * 700 * t)).astype(np.int16))
    return [payload[i * 160 : (i + 1) * 160] for i in range(frames)]


def _run(a: Leg, b: Leg, payloads: list[bytes | None], start: float = 1.0) -> None:
    """Each 20 ms: one packet into `a` (None: lost), then the clock's two passes over both legs."""
    for n, payload in enumerate(payloads):
        now = start + n * 0.02
        if payload is not None:
            a.session.jitter.push(n, n * 160, payload, now, samples=160)
        for leg in (a, b):
            leg.session.play(now)
        for leg in (a, b):
            leg.session.tick(now)


def _level(payload: bytes, law: G711) -> float:
    return float(np.sqrt(np.mean(law.decode(payload).astype(np.float64) ** 2)))


async def test_same_law_carries_the_payload_undecoded_and_conceals_a_lost_packet(make_leg) -> None:  # type: ignore[no-untyped-def]
    a, b = await make_leg(G711.PCMU), await make_leg(G711.PCMU)
    bridge = Bridge(a.session, b.session)
    bridge.join()
    assert a.session.payload_out is not None and b.session.payload_out is not None
    voice = _voice(G711.PCMU, 16)
    _run(a, b, [*voice[:8], None, *voice[9:]])
    loud = [p for p in b.sent if _level(p, G711.PCMU) > 100]
    # Every frame heard leaves the other leg octet for octet; the lost slot's place holds the last frame
    # repeated at 0.9 of its level (not silence, not the lost frame).
    heard = [p for p in loud if p in voice]
    assert heard == [p for p in voice if p != voice[8]][: len(heard)] and len(heard) >= 11
    made_up = [p for p in loud if p not in voice]
    assert len(made_up) == 1
    ratio = _level(made_up[0], G711.PCMU) / _level(voice[7], G711.PCMU)
    assert 0.85 < ratio < 0.95
    assert a.session.decoded_frames == 0  # RFC 4733 negotiated, bridged: nothing needed the samples

    # Muted: the other side hears silence, not the caller.
    bridge.mute(a.session.call.call_id, True)
    b.sent.clear()
    _run(a, b, _voice(G711.PCMU, 6), start=2.0)
    assert b.sent and all(p == bytes([G711.PCMU.silence]) * 160 for p in b.sent)

    # Unbridged: the payload hook goes with the bridge, and the leg decodes again (its own prompts,
    # detector).
    bridge.separate()
    assert a.session.payload_out is None and a.session.bridge_out is None
    _run(a, b, _voice(G711.PCMU, 3), start=3.0)
    assert a.session.decoded_frames > 0


async def test_in_band_digits_still_detected_without_events(make_leg) -> None:  # type: ignore[no-untyped-def]
    a, b = await make_leg(G711.PCMU, te_pt=None), await make_leg(G711.PCMU)
    Bridge(a.session, b.session).join()
    assert a.session.payload_out is not None
    tone = G711.PCMU.encode(np.concatenate([dtmf_tone("7", 0.1), np.zeros(800)]).astype(np.int16))
    _run(a, b, [tone[i * 160 : (i + 1) * 160] for i in range(len(tone) // 160)])
    digits = [e.digit for e in a.emitted if type(e).__name__ == "CallDtmf"]  # type: ignore[attr-defined]
    assert digits == ["7"]
    crossed = [p for p in b.sent if p != bytes([G711.PCMU.silence]) * 160]
    assert crossed[:5] == [tone[i * 160 : (i + 1) * 160] for i in range(5)]  # and the tone, as it was


async def test_different_laws_cross_as_samples(make_leg) -> None:  # type: ignore[no-untyped-def]
    a, b = await make_leg(G711.PCMU), await make_leg(G711.PCMA)
    Bridge(a.session, b.session).join()
    assert a.session.payload_out is None and b.session.payload_out is None
    voice = _voice(G711.PCMU, 10)
    _run(a, b, voice)
    loud = [p for p in b.sent if _level(p, G711.PCMA) > 100]
    assert len(loud) >= 4
    expected = G711.PCMA.encode(G711.PCMU.decode(voice[0]))
    assert loud[0] == expected  # decoded and encoded in the other leg's law
