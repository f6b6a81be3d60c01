"""In-band DTMF detection: all 16 digits through noise and a mu-law round trip, the duration and gap
thresholds, twist, level and frequency limits, chunking, and the talk-off count over minutes of
speech-like signals, chirps, noise and music (none may produce a digit)."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from services.media.dsp.dtmf import (
    FREQUENCIES,
    Digit,
    DtmfBank,
    DtmfConfig,
    DtmfDetector,
    goertzel_power,
    goertzel_power_recursive,
)
from services.media.dsp.tones import digit_frequencies, dtmf_tone, level_to_amplitude
from services.media.rtp.g711 import ulaw_decode, ulaw_encode

ALL_DIGITS = "0123456789*#ABCD"
RATE = 8000


def add_noise(signal: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(signal**2))
    return signal + rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), signal.shape)


def ulaw_round_trip(signal: np.ndarray) -> np.ndarray:
    return ulaw_decode(ulaw_encode(signal)).astype(np.float64)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE))


def run(signal: np.ndarray, chunk: int = 160, config: DtmfConfig | None = None) -> list[Digit]:
    """Feed `signal` in chunks; `now` is the time of each chunk's last sample."""
    detector = DtmfDetector(config)
    digits: list[Digit] = []
    for start in range(0, len(signal), chunk):
        piece = signal[start : start + chunk]
        digits += detector.feed(piece, (start + len(piece)) / RATE)
    return digits


def keyed(digits: str, *, on: float = 0.06, off: float = 0.06, **tone: float) -> np.ndarray:
    parts = [silence(0.05)]
    for digit in digits:
        parts += [dtmf_tone(digit, on, **tone), silence(off)]
    parts.append(silence(0.1))
    return np.concatenate(parts)


def test_matrix_goertzel_equals_the_recursion() -> None:
    rng = np.random.default_rng(0)
    frames = rng.normal(0, 1000, (6, 120))
    frequencies = (*FREQUENCIES, 2418.0, 3266.0)
    closed = goertzel_power(frames, frequencies, RATE)
    recursive = goertzel_power_recursive(frames, frequencies, RATE)
    np.testing.assert_allclose(closed, recursive, rtol=1e-9)
    # A tone of amplitude A exactly on frequency gives (A N / 2)^2.
    tone = 1000 * np.cos(2 * np.pi * 770.0 * np.arange(120) / RATE)
    assert goertzel_power(tone[None, :], (770.0,), RATE)[0, 0] == pytest.approx((1000 * 60) ** 2, rel=0.01)


@pytest.mark.parametrize("digit", list(ALL_DIGITS))
def test_each_digit_through_noise_and_mu_law(digit: str) -> None:
    rng = np.random.default_rng(ALL_DIGITS.index(digit))
    for trial in range(3):
        clean = np.concatenate([silence(0.1), dtmf_tone(digit, 0.05, phase=trial * 2.1), silence(0.1)])
        signal = ulaw_round_trip(add_noise(clean, 20.0, rng))
        digits = run(signal)
        assert [d.digit for d in digits] == [digit]
        # The tone began at 0.1 s; windows are 5 ms apart and 15 ms long.
        assert digits[0].start == pytest.approx(0.1, abs=0.016)
        assert digits[0].at >= 0.1 + 0.035


def test_a_dialled_string_comes_out_exactly() -> None:
    rng = np.random.default_rng(1)
    signal = ulaw_round_trip(add_noise(keyed(ALL_DIGITS * 2, on=0.05, off=0.05), 20.0, rng))
    assert "".join(d.digit for d in run(signal)) == ALL_DIGITS * 2


@pytest.mark.parametrize("chunk", [1, 7, 80, 160, 333, 8000, 10**6])
def test_chunking_does_not_change_the_result(chunk: int) -> None:
    signal = ulaw_round_trip(keyed("159#", on=0.045, off=0.045))
    digits = run(signal, chunk=chunk)
    assert "".join(d.digit for d in digits) == "159#"
    reference = run(signal, chunk=160)
    assert [round(d.start, 4) for d in digits] == [round(d.start, 4) for d in reference]


def test_duration_threshold_40ms_always_20ms_never() -> None:
    rng = np.random.default_rng(2)
    for offset in range(0, 40, 3):  # every alignment of the tone against the 5 ms window grid
        for duration, expected in ((0.040, 1), (0.023, 0), (0.020, 0)):
            clean = np.concatenate([silence(0.05), np.zeros(offset), dtmf_tone("8", duration), silence(0.1)])
            signal = ulaw_round_trip(add_noise(clean, 20.0, rng))
            assert len(run(signal)) == expected, (offset, duration)


def test_inter_digit_gap() -> None:
    rng = np.random.default_rng(3)
    tone = dtmf_tone("5", 0.08)
    two_presses = np.concatenate([silence(0.05), tone, silence(0.04), tone, silence(0.1)])
    one_with_dropout = np.concatenate([silence(0.05), tone, silence(0.01), tone, silence(0.1)])
    assert [d.digit for d in run(ulaw_round_trip(add_noise(two_presses, 20.0, rng)))] == ["5", "5"]
    assert [d.digit for d in run(ulaw_round_trip(add_noise(one_with_dropout, 20.0, rng)))] == ["5"]
    # A different key straight after, without silence, still needs the gap of the first one.
    straight = np.concatenate([silence(0.05), dtmf_tone("1", 0.08), dtmf_tone("9", 0.08), silence(0.1)])
    assert [d.digit for d in run(straight)] == ["1", "9"]


@pytest.mark.parametrize(
    ("low_db", "high_db", "detected"),
    [
        (-10.0, -16.0, True),  # normal twist: low group 6 dB louder
        (-10.0, -20.0, False),  # 10 dB: beyond the 8 dB limit
        (-13.0, -10.0, True),  # reverse twist: high group 3 dB louder
        (-16.0, -10.0, False),  # 6 dB: beyond the 4 dB limit
    ],
)
def test_twist_limits(low_db: float, high_db: float, detected: bool) -> None:
    for digit in "1D":
        signal = ulaw_round_trip(keyed(digit, low_dbm0=low_db, high_dbm0=high_db))
        assert [d.digit for d in run(signal)] == ([digit] if detected else [])


@pytest.mark.parametrize(("level", "detected"), [(-3.0, True), (-25.0, True), (-36.0, False)])
def test_level_limits(level: float, detected: bool) -> None:
    signal = ulaw_round_trip(keyed("0", low_dbm0=level, high_dbm0=level))
    assert [d.digit for d in run(signal)] == (["0"] if detected else [])


@pytest.mark.parametrize(
    ("offset", "detected"), [(-0.015, True), (0.015, True), (-0.035, False), (0.035, False)]
)
def test_frequency_tolerance(offset: float, detected: bool) -> None:
    rng = np.random.default_rng(4)
    for digit in ALL_DIGITS:
        clean = keyed(digit, low_offset=offset, high_offset=-offset)
        digits = run(ulaw_round_trip(add_noise(clean, 25.0, rng)))
        assert [d.digit for d in digits] == ([digit] if detected else []), digit


def test_detection_holds_down_to_15_db_snr() -> None:
    rng = np.random.default_rng(5)
    for digit in ALL_DIGITS:
        signal = ulaw_round_trip(add_noise(keyed(digit, on=0.05), 15.0, rng))
        assert [d.digit for d in run(signal)] == [digit]


def test_talk_off_over_minutes_of_speech_music_chirps_and_noise(
    synth: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(2026)
    sets = {
        "speech-like vowels": synth.speech_like(150.0, rng),
        "music chords": synth.music(60.0, rng),
        "chirps": synth.chirps(45.0, rng),
        "noise": synth.noises(30.0, rng),
    }
    total_seconds = 0.0
    false_digits: dict[str, list[str]] = {}
    for name, signal in sets.items():
        digits = run(ulaw_round_trip(signal), chunk=4000)
        false_digits[name] = [d.digit for d in digits]
        total_seconds += len(signal) / RATE
    with capsys.disabled():
        summary = ", ".join(f"{name}: {len(found)}" for name, found in false_digits.items())
        print(
            f"\nDTMF talk-off: {sum(map(len, false_digits.values()))} false digits in "
            f"{total_seconds / 60:.1f} min ({summary})"
        )
    assert total_seconds >= 240
    assert false_digits == {name: [] for name in sets}


def test_digits_are_still_found_inside_speech(synth: ModuleType) -> None:
    rng = np.random.default_rng(6)
    speech = synth.speech_like(3.0, rng)
    mixed = speech.copy()
    at = [0.5, 1.4, 2.3]
    for digit, when in zip("3#7", at, strict=True):
        start = round(when * RATE)
        tone = dtmf_tone(digit, 0.07, low_dbm0=-8, high_dbm0=-6)
        mixed[start : start + len(tone)] = tone + 0.1 * mixed[start : start + len(tone)]
    digits = run(ulaw_round_trip(mixed))
    assert [d.digit for d in digits] == ["3", "#", "7"]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_no_digits_from_espeak_speech(tmp_path: Path) -> None:
    text = (
        "Thank you for calling. Press one for sales, two for support, or stay on the line. "
        "Your call is important to us. Please hold while we connect you to the next available agent."
    )
    digits: list[str] = []
    for voice in ("en", "en+f3", "en+m7"):
        out = tmp_path / f"{voice}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True, timeout=30)
        with wave.open(str(out)) as handle:
            rate = handle.getframerate()
            raw = np.frombuffer(handle.readframes(handle.getnframes()), dtype=np.int16).astype(np.float64)
        # Decimate to 8 kHz by linear interpolation: good enough to test talk-off, not for listening.
        times = np.arange(0, len(raw) / rate, 1 / RATE)
        signal = np.interp(times, np.arange(len(raw)) / rate, raw)
        digits += [d.digit for d in run(ulaw_round_trip(signal), chunk=4000)]
    assert digits == []


def test_a_bank_finds_what_one_detector_per_channel_finds(synth: ModuleType) -> None:
    rng = np.random.default_rng(8)
    seconds = 2.0
    channels = [
        ulaw_round_trip(add_noise(keyed("0123", on=0.05, off=0.07), 20.0, rng)),
        ulaw_round_trip(keyed("#*", on=0.2, off=0.3)),
        ulaw_round_trip(synth.speech_like(seconds, rng)),
        np.zeros(round(seconds * RATE)),
        ulaw_round_trip(add_noise(keyed("D9", on=0.04, off=0.05), 15.0, rng)),
    ]
    length = round(seconds * RATE)
    rows = np.stack([np.pad(c, (0, max(0, length - len(c))))[:length] for c in channels])
    bank = DtmfBank(len(rows))
    alone = [DtmfDetector() for _ in rows]
    from_bank: list[tuple[int, str, float, float]] = []
    from_alone: list[tuple[int, str, float, float]] = []
    for start in range(0, length, 160):
        now = (start + 160) / RATE
        block = rows[:, start : start + 160]
        from_bank += [(c, d.digit, round(d.start, 6), d.at) for c, d in bank.feed(block, now)]
        for c, detector in enumerate(alone):
            from_alone += [(c, d.digit, round(d.start, 6), d.at) for d in detector.feed(block[c], now)]
    assert sorted(from_bank) == sorted(from_alone)
    in_time_order = sorted(from_bank, key=lambda found: found[2])
    assert {c: "".join(d for ch, d, _, _ in in_time_order if ch == c) for c in range(5)} == {
        0: "0123",
        1: "#*",
        2: "",
        3: "",
        4: "D9",
    }


def test_bank_channels_are_reusable_and_shapes_checked() -> None:
    bank = DtmfBank(2)
    tone = np.concatenate([dtmf_tone("6", 0.06), silence(0.1)])
    rows = np.stack([tone, np.zeros_like(tone)])
    found = [
        c for start in range(0, len(tone) - 159, 160) for c, _ in bank.feed(rows[:, start : start + 160], 1.0)
    ]
    assert found == [0]
    bank.reset(0)
    again = [
        (c, d.digit)
        for start in range(0, len(tone) - 159, 160)
        for c, d in bank.feed(rows[::-1, start : start + 160], 2.0)
    ]
    assert again == [(1, "6")]
    with pytest.raises(ValueError, match="expected 2 rows"):
        bank.feed(np.zeros((3, 160)), 3.0)
    with pytest.raises(ValueError, match="at least one channel"):
        DtmfBank(0)


def test_frequencies_and_levels_of_the_generator() -> None:
    assert digit_frequencies("5") == (770.0, 1336.0) and digit_frequencies("d") == (941.0, 1633.0)
    # mu-law full scale (32768) is +3.17 dBm0; the G.711 digital milliwatt agrees: its samples
    # at 22.5 and 67.5 degrees decode to 8828 and 20860, i.e. a peak near 22,700.
    assert level_to_amplitude(0.0) == pytest.approx(22_748, rel=0.001)
    assert level_to_amplitude(3.17) == pytest.approx(32_768)
    with pytest.raises(ValueError, match="not a DTMF digit"):
        digit_frequencies("x")


def test_reset_and_config_validation() -> None:
    detector = DtmfDetector()
    detector.feed(dtmf_tone("2", 0.03), 0.03)
    detector.reset()
    assert detector.feed(np.concatenate([dtmf_tone("2", 0.03), silence(0.1)]), 0.13) == []
    with pytest.raises(ValueError, match="too low"):
        DtmfConfig(rate=4000)
    with pytest.raises(ValueError, match="hop"):
        DtmfConfig(hop=0)
    with pytest.raises(ValueError, match="min_on_windows"):
        DtmfConfig(min_on_windows=1)
