# Packet loss concealment for the jitter buffer's MISSING slots, on decoded 8 kHz audio, for G.711 legs
# (SIP and WebRTC), which carry no concealment of their own: the last frame heard, repeated at a falling
# level, then silence. One repeated frame covers an isolated late packet nearly unheard; a longer gap fades
# out instead of buzzing. Opus legs conceal with libopus's own PLC instead (webrtc/opus.py), which
# continues the decoder's signal and keeps its state in step for the packet after the gap.
from __future__ import annotations

import numpy as np

from services.media.rtp.g711 import G711, Samples

__all__ = ["Concealer"]

# The level of the 1st, 2nd, ... repeat; after the last one the gap is silent.
FADE = (0.9, 0.5, 0.25)


class Concealer:
    def __init__(self) -> None:
        self._last: Samples | None = None
        # A payload heard but not decoded (a bridge carrying G.711 as it is): decoded only if it must be
        # repeated.
        self._last_payload: tuple[bytes, G711] | None = None
        self._repeats = 0
        self.concealed = 0  # frames made up, for the leg's counters

    def heard(self, samples: Samples) -> None:
        """A frame decoded from a packet: the one to repeat if the next goes missing."""
        self._last = samples
        self._last_payload = None
        self._repeats = 0

    def heard_payload(self, payload: bytes, law: G711) -> None:
        """The same for a G.711 payload that nobody decoded."""
        self._last_payload = (payload, law)
        self._repeats = 0

    def conceal(self) -> Samples | None:
        """A frame for a missing slot, or None once the gap has faded out (or nothing was heard yet)."""
        if self._last_payload is not None:
            payload, law = self._last_payload
            self._last, self._last_payload = law.decode(payload), None
        if self._last is None or self._repeats >= len(FADE):
            return None
        gain = FADE[self._repeats]
        self._repeats += 1
        self.concealed += 1
        return (self._last.astype(np.float32) * gain).astype(np.int16)
