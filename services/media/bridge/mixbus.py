# The monitored bridge's three-way bus, sans-IO: each participant pushes its decoded 20 ms frames as they
# arrive and pulls the frame to send on its own tick. The legs tick on one shared clock but not in lockstep
# (a SIP leg's jitter buffer, aiortc's bursts), so every listener keeps a short queue per speaker it hears;
# a pull takes the head of each and mixes them with Mixer (who hears whom is the mode's matrix). A speaker
# with nothing queued counts as silence; a listener with nothing queued from anyone gets None (the leg sends
# its own silence). Frames are only queued for listeners that hear the speaker in the current mode, so a mode
# change never plays audio kept from before it.
from __future__ import annotations

import collections

import numpy as np
import numpy.typing as npt

from services.media.bridge.mixer import Mixer, MonitorMode, Role, hears

__all__ = ["MAX_QUEUED", "MixBus"]

Samples = npt.NDArray[np.int16]
# Frames waiting per (listener, speaker); beyond it the oldest go (the speaker's clock runs ahead). Legs push
# on the shared 20 ms tick (a WebRTC leg's bursts wait in its own inbox first), so whatever stays here is
# only delay: 3 frames bound it at 60 ms, as in the two-party bridge.
MAX_QUEUED = 3


class MixBus:
    def __init__(self, mode: MonitorMode, *, frame_samples: int = 160, max_queued: int = MAX_QUEUED) -> None:
        self.mixer = Mixer(frame_samples, mode)
        self.frame_samples = frame_samples
        self._queues: dict[tuple[Role, Role], collections.deque[Samples]] = {
            (listener, speaker): collections.deque(maxlen=max_queued)
            for listener in Role
            for speaker in Role
            if listener is not speaker
        }

    @property
    def mode(self) -> MonitorMode:
        return self.mixer.mode

    def set_mode(self, mode: MonitorMode) -> None:
        self.mixer.set_mode(mode)
        for (listener, speaker), queue in self._queues.items():
            if speaker not in hears(mode, listener):
                queue.clear()

    def push(self, speaker: Role, samples: Samples) -> None:
        frame = self._fit(samples)
        for listener in Role:
            if listener is not speaker and speaker in hears(self.mode, listener):
                self._queues[(listener, speaker)].append(frame)

    def pending(self, listener: Role) -> bool:
        return any(self._queues[(listener, speaker)] for speaker in hears(self.mode, listener))

    def pull(self, listener: Role) -> Samples | None:
        """The next frame `listener` hears (the mix of the heads of its queues), or None: nothing queued."""
        if not self.pending(listener):
            return None
        frames: dict[Role, Samples | None] = {}
        for speaker in hears(self.mode, listener):
            queue = self._queues[(listener, speaker)]
            frames[speaker] = queue.popleft() if queue else None
        return self.mixer.mix(frames)[listener]

    def _fit(self, samples: Samples) -> Samples:
        """Frames of another length (a leg that delivers 10 ms or 30 ms) are cut or padded to one frame."""
        n = self.frame_samples
        if len(samples) == n:
            return samples
        out = np.zeros(n, dtype=np.int16)
        out[: min(n, len(samples))] = samples[:n]
        return out
