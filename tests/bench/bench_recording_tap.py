# Microbenchmark of the recording tap's per-frame path (issue 21): bridged calls' frames pushed through a
# real `Bridge` (two stand-in legs) into real `SpoolWriter`s, recording on and off, in one thread; CPU time
# (time.thread_time) per call-second of audio (50 frames each way, a chunk flushed every 2 s), best of
# `--rounds` alternate rounds.
# Decoded frames (`bridge_out`: the Opus path, a concealed frame) and G.711 payloads (`payload_out`: same-law
# legs, as the relay taps too). In a loop the caches are warm: the worker pays several times these figures
# per frame (docs/media.md, "Recording overhead"); this one compares code, not the worker.
#
#   python tests/bench/bench_recording_tap.py [--calls 20] [--seconds 20] [--rounds 5]
#
# Not a test: nothing here asserts a timing.
from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.media.bridge.bridging import Bridge
from services.media.rtp.g711 import G711
from services.media.spool import SpoolWriter, wait_written


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


def run(record: bool, payloads: bool, calls: int, seconds: int) -> float:
    """ms of CPU per call-second of audio."""
    directory = Path(tempfile.mkdtemp(prefix="sbbench-tap-"))
    law = G711.PCMU if payloads else None
    bridges = []
    for _ in range(calls):
        bridge = Bridge(_Leg(law), _Leg(law))
        bridge.join()
        if record:
            # Flushed by hand every 2 s of audio below: the loop runs far faster than the call's clock.
            bridge.recorder = SpoolWriter(directory, str(uuid.uuid4()), G711.PCMU, flush_seconds=1e9)
        bridges.append(bridge)
    if payloads and bridges[0].a.payload_out is None:
        return float("nan")  # a tree before same-law payloads crossed the bridge
    rng = np.random.default_rng(1)
    frames = [rng.integers(-3000, 3000, 160).astype(np.int16) for _ in range(50)]
    octets = [G711.PCMU.encode(f) for f in frames]
    started = time.thread_time()
    for n in range(seconds * 50):
        for bridge in bridges:
            a, b = bridge.a, bridge.b
            if payloads:
                a.payload_out(octets[n % 50])
                b.payload_out(octets[(n + 7) % 50])
            else:
                # A new array per frame, as the legs' decoders make them (the bridge's cost includes it).
                a.bridge_out(G711.PCMU.decode(octets[n % 50]))
                b.bridge_out(G711.PCMU.decode(octets[(n + 7) % 50]))
            a.bridge_in.clear()
            b.bridge_in.clear()
            if n % 100 == 99 and bridge.recorder is not None:
                bridge.recorder.flush()  # a chunk: SB_RECORDING_FLUSH_S, 2 s
    cpu = time.thread_time() - started
    wait_written()
    for bridge in bridges:
        bridge.stop_recording()
    return cpu / (calls * seconds) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for payloads in (False, True):
        best = {False: float("inf"), True: float("inf")}
        for _ in range(args.rounds):
            for record in (False, True):
                best[record] = min(best[record], run(record, payloads, args.calls, args.seconds))
        cost = best[True] - best[False]
        print(
            f"{'payloads (same law, relay)' if payloads else 'decoded frames'}: bridge {best[False]:.3f} ms per "
            f"call-second unrecorded, {best[True]:.3f} recorded: the tap {cost:.3f} ms per call-second "
            f"({cost * 1e3 / 50:.2f} us per frame pair, the chunk's flush included)"
        )


if __name__ == "__main__":
    main()
