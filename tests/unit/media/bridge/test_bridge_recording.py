"""The bridge's recording tap stores exactly the octets it always did (each frame in the call's law, the
caller's paired with the agent's latest), however the frames cross: as samples (decoded legs, encoded by the
spool once per chunk), as G.711 payloads (same-law legs), or mixed (a concealed frame crosses as samples
between payloads), on either side of the recording's left channel."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.media.bridge.bridging import Bridge
from services.media.rtp.g711 import G711
from services.media.spool import SpoolWriter, read_spool


@dataclass
class _Call:
    call_id: uuid.UUID


class _Leg:
    def __init__(self, law: G711 | None) -> None:
        self.call = _Call(uuid.uuid4())
        self.bridge_in: Any = None
        self.bridge_out: Any = None
        self.payload_out: Any = None
        self.payload_law = law


@pytest.mark.parametrize("law", [G711.PCMU, G711.PCMA])
@pytest.mark.parametrize("same_law", [True, False])
@pytest.mark.parametrize("a_left", [True, False])
def test_the_tap_stores_each_frame_as_encoded_on_its_own(
    tmp_path: Path, law: G711, same_law: bool, a_left: bool
) -> None:
    rng = np.random.default_rng(3)
    a, b = _Leg(law if same_law else None), _Leg(law)
    bridge = Bridge(a, b, law=law)
    bridge.join()
    assert (a.payload_out is not None) is same_law
    bridge.a_left = a_left
    bridge.recorder = SpoolWriter(tmp_path, "tap", law, flush_seconds=0.3)
    expected = SpoolWriter(tmp_path, "expected", law, flush_seconds=0.3)
    latest: dict[bool, bytes | None] = {True: None, False: None}  # the agent's last frame, by a_left
    for n in range(200):
        # Side a speaks every frame, side b skips one now and then (the caller's frame then pairs with
        # silence); a same-law leg hands payloads, except a concealed frame now and then (samples).
        for leg in (a, b) if n % 2 else (b, a):
            if leg is b and n % 17 == 3:
                continue
            samples = rng.integers(-30000, 30000, 160).astype(np.int16)
            if leg.payload_out is not None and n % 11 != 5:
                leg.payload_out(law.encode(samples))
            else:
                leg.bridge_out(samples)
            octets = law.encode(samples)
            if (leg is a) != a_left:
                latest[a_left] = octets
            else:
                expected.write(octets, latest[a_left], n * 0.02)
                latest[a_left] = None
            for side in (a, b):
                side.bridge_in.clear()
        if n == 150:  # a monitor's frame for side a, as samples
            bridge.tap(a, np.zeros(160, dtype=np.int16))
            if a_left:
                expected.write(law.encode(np.zeros(160, dtype=np.int16)), latest[True], 150 * 0.02)
                latest[True] = None
            else:
                latest[False] = law.encode(np.zeros(160, dtype=np.int16))
    bridge.stop_recording()
    expected.close()
    assert bridge.recorder is None
    # Chunks are cut by time (the bridge's clock, the loop's here), so compare the audio, not the records.
    got, want = read_spool(tmp_path / "tap"), read_spool(tmp_path / "expected")
    assert got.complete and got.samples == want.samples > 180 * 160
    assert got.frames == want.frames
