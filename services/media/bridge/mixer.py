# The three-party mix for supervisors, sans-IO: one 20 ms frame of int16 samples per participant in, one
# frame per participant out, each the sum of the participants it hears (never itself), saturated to 16 bits.
# Who hears whom is one 0/1 matrix per mode, so a mode change is a table lookup and the mix is a single
# integer matrix product:
#   none     caller <-> agent (no supervisor on the call)
#   listen   the supervisor hears caller and agent; nobody hears the supervisor
#   whisper  the supervisor hears both; the agent hears caller and supervisor; the caller hears the agent only
#   barge    everybody hears everybody else
from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

__all__ = ["Mixer", "MonitorMode", "Role", "hears"]

Samples = npt.NDArray[np.int16]


class Role(enum.IntEnum):
    CALLER = 0
    AGENT = 1
    SUPERVISOR = 2


class MonitorMode(enum.Enum):
    NONE = "none"
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


# _HEARS[mode][listener] = the roles that listener hears.
_HEARS: dict[MonitorMode, dict[Role, frozenset[Role]]] = {
    MonitorMode.NONE: {
        Role.CALLER: frozenset({Role.AGENT}),
        Role.AGENT: frozenset({Role.CALLER}),
        Role.SUPERVISOR: frozenset(),
    },
    MonitorMode.LISTEN: {
        Role.CALLER: frozenset({Role.AGENT}),
        Role.AGENT: frozenset({Role.CALLER}),
        Role.SUPERVISOR: frozenset({Role.CALLER, Role.AGENT}),
    },
    MonitorMode.WHISPER: {
        Role.CALLER: frozenset({Role.AGENT}),
        Role.AGENT: frozenset({Role.CALLER, Role.SUPERVISOR}),
        Role.SUPERVISOR: frozenset({Role.CALLER, Role.AGENT}),
    },
    MonitorMode.BARGE: {
        Role.CALLER: frozenset({Role.AGENT, Role.SUPERVISOR}),
        Role.AGENT: frozenset({Role.CALLER, Role.SUPERVISOR}),
        Role.SUPERVISOR: frozenset({Role.CALLER, Role.AGENT}),
    },
}


def hears(mode: MonitorMode, listener: Role) -> frozenset[Role]:
    return _HEARS[mode][listener]


def _matrix(mode: MonitorMode) -> npt.NDArray[np.int32]:
    m = np.zeros((len(Role), len(Role)), dtype=np.int32)
    for listener, speakers in _HEARS[mode].items():
        for speaker in speakers:
            assert speaker is not listener  # never yourself: the table is checked at import
            m[listener, speaker] = 1
    return m


_MATRICES = {mode: _matrix(mode) for mode in MonitorMode}


class Mixer:
    """Mixes fixed-size frames. A participant that sent nothing this tick (absent, on hold, lost packet)
    contributes silence."""

    def __init__(self, frame_samples: int = 160, mode: MonitorMode = MonitorMode.NONE) -> None:
        self.frame_samples = frame_samples
        self.mode = mode

    def set_mode(self, mode: MonitorMode) -> None:
        self.mode = mode

    def mix(self, frames: dict[Role, Samples | None]) -> dict[Role, Samples]:
        inputs = np.zeros((len(Role), self.frame_samples), dtype=np.int32)
        for role, frame in frames.items():
            if frame is not None:
                if len(frame) != self.frame_samples:
                    raise ValueError(
                        f"{role.name.lower()} sent {len(frame)} samples, expected {self.frame_samples}"
                    )
                inputs[role] = frame
        mixed = _MATRICES[self.mode] @ inputs  # at most 3 x 32768: no int32 overflow
        out = np.clip(mixed, -32768, 32767).astype(np.int16)
        return {role: out[role] for role in Role}
