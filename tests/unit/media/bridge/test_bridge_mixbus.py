"""The monitored bridge's bus: legs push and pull on their own ticks; each listener gets exactly the
speakers its mode allows (by a distinct tone per participant), absent speakers are silence, a mode change
never replays audio kept from before it, and queues stay bounded."""

from __future__ import annotations

import numpy as np
import pytest

from services.media.bridge.mixbus import MAX_QUEUED, MixBus
from services.media.bridge.mixer import MonitorMode, Role

FREQ = {Role.CALLER: 500.0, Role.AGENT: 1100.0, Role.SUPERVISOR: 1700.0}


def frame(freq: float, n: int = 160) -> np.ndarray:
    t = np.arange(n) / 8000
    return (6000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def heard(samples: np.ndarray | None) -> set[Role]:
    if samples is None:
        return set()
    x = samples.astype(np.float64)
    n = np.arange(len(x))
    out = set()
    for role, freq in FREQ.items():
        if abs(np.sum(x * np.exp(-2j * np.pi * freq * n / 8000))) ** 2 > 0.1 * (6000 * 80) ** 2:
            out.add(role)
    return out


EXPECTED = {
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


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_each_listener_pulls_exactly_the_speakers_of_its_mode(mode: MonitorMode) -> None:
    bus = MixBus(mode)
    for _ in range(3):  # legs tick in any order: push all, then pull all
        for role in Role:
            bus.push(role, frame(FREQ[role]))
        for listener in Role:
            assert heard(bus.pull(listener)) == EXPECTED[mode][listener], (mode, listener)
    assert all(bus.pull(listener) is None for listener in Role)  # drained: the leg sends its own silence


def test_a_missing_speaker_is_silence_and_pulls_interleave_with_pushes() -> None:
    bus = MixBus(MonitorMode.BARGE)
    bus.push(Role.CALLER, frame(FREQ[Role.CALLER]))
    assert heard(bus.pull(Role.SUPERVISOR)) == {Role.CALLER}  # the agent said nothing this tick
    assert not bus.pending(Role.SUPERVISOR)
    bus.push(Role.AGENT, frame(FREQ[Role.AGENT]))
    assert heard(bus.pull(Role.SUPERVISOR)) == {Role.AGENT}
    assert heard(bus.pull(Role.CALLER)) == {Role.AGENT}


def test_mode_change_drops_what_the_new_mode_does_not_allow_and_never_replays_old_audio() -> None:
    bus = MixBus(MonitorMode.LISTEN)
    bus.push(Role.SUPERVISOR, frame(FREQ[Role.SUPERVISOR]))  # nobody hears the supervisor in listen
    assert not bus.pending(Role.AGENT) and not bus.pending(Role.CALLER)
    bus.set_mode(MonitorMode.BARGE)
    assert bus.pull(Role.CALLER) is None  # the supervisor's listen-time frame was never kept
    bus.push(Role.SUPERVISOR, frame(FREQ[Role.SUPERVISOR]))
    assert heard(bus.pull(Role.CALLER)) == {Role.SUPERVISOR}
    bus.push(Role.SUPERVISOR, frame(FREQ[Role.SUPERVISOR]))
    bus.set_mode(MonitorMode.WHISPER)  # the caller may no longer hear it: the queued frame goes
    assert bus.pull(Role.CALLER) is None
    assert heard(bus.pull(Role.AGENT)) == {Role.SUPERVISOR}


def test_queues_are_bounded_and_odd_frames_are_fitted() -> None:
    bus = MixBus(MonitorMode.BARGE)
    for _ in range(MAX_QUEUED * 3):
        bus.push(Role.CALLER, frame(FREQ[Role.CALLER]))
    pulled = 0
    while bus.pull(Role.AGENT) is not None:
        pulled += 1
    assert pulled == MAX_QUEUED
    bus.push(Role.AGENT, frame(FREQ[Role.AGENT], n=240))
    out = bus.pull(Role.CALLER)
    assert out is not None and len(out) == 160 and heard(out) == {Role.AGENT}
