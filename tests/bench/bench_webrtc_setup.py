# CPU of a WebRTC leg's set-up and teardown, without a platform: N pairs of the media worker's own
# WebRtcLeg (own media path, as in the worker) in this process, one offering and one answering, connected
# over loopback ICE and DTLS-SRTP until our SRTP path is attached, then both closed. Prints the CPU time of
# this thread per pair (time.thread_time: the machine is shared, wall time says little), the objects still
# tracked after the pairs (an ended leg must leave none) and what one full garbage collection then costs.
#
#   python tests/bench/bench_webrtc_setup.py [--pairs 40] [--certificate-lifetime 86400] [--profile]
#
# `--certificate-lifetime 0` makes a DTLS certificate per leg (aiortc's way) for before/after; `--profile`
# prints cProfile (on thread time) of the measured pairs. Not a test: nothing here asserts a timing.
from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import time
from collections.abc import Callable

from services.media.rtp.g711 import G711
from services.media.webrtc import LegState, WebRtcConfig, WebRtcLeg


async def pair(config: WebRtcConfig) -> None:
    connected = [asyncio.Event(), asyncio.Event()]

    def watch(event: asyncio.Event) -> Callable[[LegState], None]:
        return lambda state: event.set() if state is LegState.CONNECTED else None

    browser = WebRtcLeg(config, peer_law=G711.PCMU, on_state=watch(connected[0]))
    server = WebRtcLeg(config, peer_law=G711.PCMU, on_state=watch(connected[1]))
    answer = await server.accept_offer(await browser.create_offer(data_channel=False))
    await browser.accept_answer(answer)
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in connected)), 10)
    # The connection's state and our SRTP path follow the same DTLS event: attached by now.
    assert browser.media is not None and server.media is not None
    await browser.close()
    await server.close()


async def main(pairs: int, lifetime: float, profile: bool) -> None:
    config = WebRtcConfig(own_media=True, dtls_certificate_lifetime_s=lifetime)
    await pair(config)  # imports, the first certificate, aiortc's codec tables
    gc.collect()
    objects = len(gc.get_objects())
    profiler = cProfile.Profile(time.thread_time) if profile else None
    start = time.thread_time()
    if profiler is not None:
        profiler.enable()
    for _ in range(pairs):
        await pair(config)
    if profiler is not None:
        profiler.disable()
    cpu_ms = (time.thread_time() - start) / pairs * 1000
    gc.collect()
    left = len(gc.get_objects()) - objects
    start = time.thread_time()
    gc.collect()
    full_ms = (time.thread_time() - start) * 1000
    print(f"{pairs} pairs, certificate lifetime {lifetime:g} s: {cpu_ms:.2f} ms CPU per pair")
    print(f"objects left after the pairs ended: {left}; a full garbage collection then: {full_ms:.1f} ms")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--certificate-lifetime", type=float, default=86400.0)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.pairs, args.certificate_lifetime, args.profile))
