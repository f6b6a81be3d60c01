"""Relay: header rewriting keeps one continuous stream across source switches and wraps; passthrough does
no decoding; PCMU->PCMA keeps a 1 kHz tone; hold and mute replace the payload, keeping the timing."""

from __future__ import annotations

import itertools

import numpy as np

from services.media.bridge import DirectionState, RelayDirection, Resampler, StreamRewriter, g711_to_pcm
from services.media.rtp.g711 import G711
from services.media.rtp.packet import RtpPacket, seq_diff, ts_diff


def tone(
    freq: float, samples: int, rate: int = 8000, start: int = 0, amplitude: float = 8000.0
) -> np.ndarray:
    t = (np.arange(samples) + start) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def relative_power(x: np.ndarray, freq: float, rate: int = 8000) -> float:
    """Goertzel/DFT power at `freq` over the signal's energy: about 1 for a pure tone there, ~0 elsewhere."""
    x = x.astype(np.float64)
    n = np.arange(len(x))
    power = abs(np.sum(x * np.exp(-2j * np.pi * freq * n / rate))) ** 2
    return float(power / (np.sum(x * x) * len(x) / 2))


def source(ssrc: int, seq: int, ts: int, count: int, law: G711 = G711.PCMU, freq: float = 1000.0):  # type: ignore[no-untyped-def]
    for i in range(count):
        payload = law.encode(tone(freq, 160, start=i * 160))
        yield RtpPacket(law.payload_type, (seq + i) & 0xFFFF, (ts + 160 * i) & 0xFFFFFFFF, ssrc, payload)


def direction(src: G711 = G711.PCMU, dst: G711 = G711.PCMU, **kw) -> RelayDirection:  # type: ignore[no-untyped-def]
    return RelayDirection(src, dst, StreamRewriter(0xABCDEF01, first_seq=65530, first_ts=0xFFFFFF00), **kw)


def assert_continuous(out: list[RtpPacket]) -> None:
    for a, b in itertools.pairwise(out):
        assert b.ssrc == a.ssrc == 0xABCDEF01
        assert seq_diff(b.sequence_number, a.sequence_number) == 1
        assert ts_diff(b.timestamp, a.timestamp) == 160


def test_passthrough_rewrites_headers_and_never_decodes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls = []
    monkeypatch.setattr(G711, "decode", lambda self, data: calls.append(data))
    d = direction()
    packets = list(source(1111, 100, 5000, 20))
    out = [d.on_packet(p) for p in packets]
    assert all(o is not None for o in out)
    assert [o.payload for o in out] == [p.payload for p in packets]  # untouched bytes
    assert_continuous(out)  # type: ignore[arg-type]
    # Output started at our numbering and wrapped through 65535 -> 0 and 2^32 -> 0.
    assert out[0].sequence_number == 65530 and out[0].timestamp == 0xFFFFFF00  # type: ignore[union-attr]
    assert any(o.sequence_number < 100 for o in out)  # type: ignore[union-attr]
    assert d.stats.forwarded == 20 and d.stats.decoded == 0 and calls == []


def test_source_switch_keeps_output_continuous_with_a_marker() -> None:
    d = direction()
    first = [d.on_packet(p) for p in source(1111, 65000, 4_000_000_000, 10)]
    # Transfer: another caller, its own SSRC, sequence and timestamp (across their wraps too).
    second = [d.on_packet(p) for p in source(2222, 65533, 0xFFFFFFF0, 10)]
    # Re-INVITE keeping the SSRC but jumping the sequence: also a new timeline.
    third = [d.on_packet(p) for p in source(2222, 20000, 123, 5)]
    out = first + second + third
    assert_continuous(out)  # type: ignore[arg-type]
    assert second[0].marker and third[0].marker and not second[1].marker  # type: ignore[union-attr]
    assert d.rewriter.switches == 2


def test_reordering_and_loss_pass_through_unchanged_in_shape() -> None:
    d = direction()
    packets = list(source(1, 10, 0, 6))
    order = [0, 2, 1, 3, 5]  # 1 late, 4 lost
    out = {i: d.on_packet(packets[i]) for i in order}
    base = out[0].sequence_number  # type: ignore[union-attr]
    for i, o in out.items():
        assert seq_diff(o.sequence_number, base) == i  # type: ignore[union-attr]
        assert ts_diff(o.timestamp, out[0].timestamp) == 160 * i  # type: ignore[union-attr]


def test_pcmu_to_pcma_keeps_a_1khz_tone() -> None:
    d = direction(G711.PCMU, G711.PCMA)
    out = [d.on_packet(p) for p in source(7, 0, 0, 25)]
    assert all(o.payload_type == 8 for o in out)  # type: ignore[union-attr]
    audio = np.concatenate([G711.PCMA.decode(o.payload) for o in out])  # type: ignore[union-attr]
    assert relative_power(audio, 1000) > 0.95
    assert relative_power(audio, 700) < 0.001
    assert d.stats.translated == 25 and d.stats.decoded == 0


def test_telephone_events_are_remapped_or_dropped() -> None:
    d = direction(event_types=(101, 126))
    event = RtpPacket(101, 50, 800, 9, b"\x05\x0a\x00\xa0", marker=True)
    out = d.on_packet(event)
    assert out is not None and out.payload_type == 126 and out.payload == event.payload
    assert direction(event_types=(101, None)).on_packet(event) is None
    assert d.on_packet(RtpPacket(99, 51, 960, 9, b"x")) is None  # unknown payload type


def test_hold_plays_music_and_mute_sends_silence_without_breaking_the_stream() -> None:
    played = [0]

    def music(n: int) -> np.ndarray:  # a continuous 440 Hz tone, as a music-on-hold source would be
        played[0] += n
        return tone(440, n, start=played[0] - n)

    d = direction()
    packets = iter(source(1, 0, 0, 40))
    out = [d.on_packet(next(packets)) for _ in range(5)]
    d.hold(music)
    held = [d.on_packet(next(packets)) for _ in range(10)]
    held += [d.fill() for _ in range(5)]  # the held party stopped sending: our clock fills in
    d.mute()
    muted = [d.on_packet(next(packets)) for _ in range(5)]
    d.resume()
    resumed = [d.on_packet(next(packets)) for _ in range(5)]
    assert d.state is DirectionState.FLOWING
    assert_continuous(out + held + muted + resumed)  # type: ignore[arg-type]
    heard_on_hold = np.concatenate([g711_to_pcm(G711.PCMU, p.payload) for p in held])  # type: ignore[union-attr]
    assert relative_power(heard_on_hold[:1600], 440) > 0.3
    assert relative_power(heard_on_hold, 1000) < 0.01
    assert all(set(p.payload) == {0xFF} for p in muted)  # type: ignore[union-attr]
    heard_after = np.concatenate([g711_to_pcm(G711.PCMU, p.payload) for p in resumed])  # type: ignore[union-attr]
    assert relative_power(heard_after, 1000) > 0.9


def test_resampling_8k_48k_round_trip_keeps_the_tone() -> None:
    up, down = Resampler(8000, 48000), Resampler(48000, 8000)
    signal = tone(1000, 8000)
    wide = np.concatenate([up(signal[i : i + 160]) for i in range(0, 8000, 160)])
    assert len(wide) == 48000
    assert relative_power(wide[4800:], 1000, 48000) > 0.9
    back = np.concatenate([down(wide[i : i + 960]) for i in range(0, 48000, 960)])
    assert len(back) == 8000
    assert relative_power(back[800:], 1000) > 0.9
    # A 6 kHz tone at 48 kHz is above the 8 kHz band: filtered out, not folded to 2 kHz.
    high = Resampler(48000, 8000)(tone(6000, 48000, 48000))
    assert np.sqrt(np.mean(high[400:].astype(float) ** 2)) < 0.05 * 8000
