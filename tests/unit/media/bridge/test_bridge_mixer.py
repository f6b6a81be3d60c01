"""The supervisor mix: who hears whom in each mode, checked by a distinct tone per participant, and
saturation instead of wrap-around."""

from __future__ import annotations

import numpy as np
import pytest

from services.media.bridge import Mixer, MonitorMode, Role, hears

FREQ = {Role.CALLER: 500.0, Role.AGENT: 1100.0, Role.SUPERVISOR: 1700.0}


def frame(freq: float, amplitude: float = 6000.0) -> np.ndarray:
    t = np.arange(160) / 8000
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def present(samples: np.ndarray, freq: float) -> bool:
    x = samples.astype(np.float64)
    n = np.arange(len(x))
    power = abs(np.sum(x * np.exp(-2j * np.pi * freq * n / 8000))) ** 2
    # A 6000-peak tone over 160 samples gives (6000 * 160 / 2)^2; demand a tenth of that.
    return bool(power > 0.1 * (6000 * 80) ** 2)


EXPECTED = {
    MonitorMode.NONE: {Role.CALLER: {Role.AGENT}, Role.AGENT: {Role.CALLER}, Role.SUPERVISOR: set()},
    MonitorMode.LISTEN: {
        Role.CALLER: {Role.AGENT},
        Role.AGENT: {Role.CALLER},
        Role.SUPERVISOR: {Role.CALLER, Role.AGENT},
    },
    MonitorMode.WHISPER: {
        Role.CALLER: {Role.AGENT},
        Role.AGENT: {Role.CALLER, Role.SUPERVISOR},
        Role.SUPERVISOR: {Role.CALLER, Role.AGENT},
    },
    MonitorMode.BARGE: {r: set(Role) - {r} for r in Role},
}


@pytest.mark.parametrize("mode", list(MonitorMode))
def test_each_participant_hears_exactly_whom_the_mode_says(mode: MonitorMode) -> None:
    mixer = Mixer(mode=mode)
    out = mixer.mix({role: frame(FREQ[role]) for role in Role})
    for listener in Role:
        heard = {speaker for speaker in Role if present(out[listener], FREQ[speaker])}
        assert heard == EXPECTED[mode][listener], (mode, listener)
        assert listener not in heard  # never yourself
        assert heard == set(hears(mode, listener))


def test_mode_changes_apply_on_the_next_frame_and_absent_participants_are_silence() -> None:
    mixer = Mixer(mode=MonitorMode.LISTEN)
    frames = {role: frame(FREQ[role]) for role in Role}
    assert not present(mixer.mix(frames)[Role.AGENT], FREQ[Role.SUPERVISOR])
    mixer.set_mode(MonitorMode.WHISPER)
    assert present(mixer.mix(frames)[Role.AGENT], FREQ[Role.SUPERVISOR])
    out = mixer.mix({Role.CALLER: frames[Role.CALLER], Role.AGENT: None})
    assert not out[Role.CALLER].any()


def test_mixing_saturates_instead_of_wrapping() -> None:
    mixer = Mixer(mode=MonitorMode.BARGE)
    loud = np.full(160, 30000, dtype=np.int16)
    out = mixer.mix({Role.CALLER: loud, Role.AGENT: loud, Role.SUPERVISOR: -loud})
    assert (out[Role.SUPERVISOR] == 32767).all()  # 60000 clipped, not wrapped negative
    assert (out[Role.CALLER] == 0).all()  # 30000 - 30000
    out = mixer.mix({Role.CALLER: -loud, Role.AGENT: -loud, Role.SUPERVISOR: None})
    assert (out[Role.SUPERVISOR] == -32768).all()
    with pytest.raises(ValueError, match="expected 160"):
        mixer.mix({Role.CALLER: loud[:80]})
