# CPU of a WebRTC leg's set-up and teardown, without a platform: N pairs of the media worker's own
# WebRtcLeg (own media path, as in the worker) in this process, one offering and one answering, connected
# over loopback ICE and DTLS-SRTP until our SRTP path is attached, then both closed. Prints the CPU time of
# this thread per pair (time.thread_time: the machine is shared, wall time says little), the objects still
# tracked after the pairs (an ended leg must leave none) and what one full garbage collection then costs.
#
#   python tests/bench/bench_webrtc_setup.py [--pairs 40] [--certificate-lifetime 86400] [--profile]
#
# `--certificate-lifetime 0` makes a DTLS certificate per leg (aiortc's way) for before/after; `--profile`
# prints cProfile (on thread time) of the measured pairs.
#
#   python tests/bench/bench_webrtc_setup.py --worker [--legs 100]
#
# The same through the media worker (`python -m services.media` on embedded PostgreSQL and NATS): a leg of
# this process offers through `webrtc_offer`, connects (ICE, DTLS-SRTP), and is hung up by `hangup`, one
# leg after another; the worker's CPU (utime + stime from /proc, all threads) over the legs, less its idle
# rate, per leg. BENCH_PROFILE=<file> runs the worker under cProfile (CPU time) and writes its stats there.
# Not a test: nothing here asserts a timing.
from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from services.media.rtp.g711 import G711
from services.media.webrtc import LegState, WebRtcConfig, WebRtcLeg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: `tests` importable (worker())


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


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def worker_legs(nats_url: str, tenant: uuid.UUID, pid: int, legs: int) -> None:
    import nats

    from services.kernel import events as ev
    from services.kernel.messages import Reply, decode, encode

    nc = await nats.connect(nats_url)
    config = WebRtcConfig(own_media=True)

    async def leg_through_the_worker(n: int) -> None:
        connected = asyncio.Event()
        browser = WebRtcLeg(
            config,
            peer_law=G711.PCMU,
            on_state=lambda s: connected.set() if s is LegState.CONNECTED else None,
        )
        leg_id = uuid.uuid4()
        offer = ev.MediaWebRtcOffer(
            tenant_id=tenant,
            leg_id=leg_id,
            agent_id=f"a{n}",
            sdp=await browser.create_offer(data_channel=False),
        )
        reply = decode(
            (await nc.request(f"sb.{tenant}.cmd.media.webrtc_offer", encode(offer), timeout=10)).data, Reply
        )
        if not reply.ok:
            raise SystemExit(f"offer refused: {reply.error}")
        await browser.accept_answer(str(reply.data["sdp"]))
        await asyncio.wait_for(connected.wait(), 10)
        hangup = ev.MediaHangup(tenant_id=tenant, call_id=leg_id)
        reply = decode(
            (await nc.request(f"sb.{tenant}.cmd.media.hangup", encode(hangup), timeout=10)).data, Reply
        )
        if not reply.ok:
            raise SystemExit(f"hangup refused: {reply.error}")
        await browser.close()

    for n in range(3):  # the worker's first legs: imports, the certificate
        await leg_through_the_worker(n)
    await asyncio.sleep(1.0)
    idle_start, idle_cpu = time.monotonic(), cpu_seconds(pid)
    await asyncio.sleep(2.0)
    idle_rate = (cpu_seconds(pid) - idle_cpu) / (time.monotonic() - idle_start)
    start, cpu = time.monotonic(), cpu_seconds(pid)
    for n in range(legs):
        await leg_through_the_worker(n)
    await asyncio.sleep(1.0)  # the worker closes its legs in the background
    elapsed = time.monotonic() - start
    used = cpu_seconds(pid) - cpu - idle_rate * elapsed
    print(
        f"{legs} legs through the worker: {used / legs * 1000:.2f} ms of the worker's CPU per leg (offer, "
        f"connect, hang-up; idle {idle_rate * 1000:.1f} ms/s taken out), load {os.getloadavg()[0]:.1f}"
    )
    await nc.close()


def worker(legs: int) -> None:
    from services.kernel import db
    from services.runtime.embedded import APP_ROLE, DATABASE, free_port
    from tests.bench.bench_media_bridge import _seed
    from tests.bench.platform_procs import BenchPlatform, wait_udp_bound

    with BenchPlatform("sbbench-legs-") as platform:
        pg, secrets = platform.pg, platform.secrets

        async def prepare() -> uuid.UUID:
            await db.bootstrap(
                pg.admin_url, database=DATABASE, app_role=APP_ROLE, app_password=secrets.pg_app_password
            )
            await db.migrate(pg.owner_url, app_role=APP_ROLE)
            return await _seed(pg.owner_url)

        tenant = asyncio.run(prepare())
        port = free_port()
        env = {
            **os.environ,
            "SB_DATABASE_URL": pg.app_url,
            "SB_NATS_URL": platform.nats.url,
            "SB_BIND_HOST": "127.0.0.1",
            "SB_SIP_PORT": str(port),
            "SB_DATA_DIR": str(platform.data_dir),
            "SB_LOG_LEVEL": "warning",
            "SB_MEDIA_MAX_LAG_MS": "0",
            "SB_MEDIA_MAX_CPU": "0",
            "SB_TOKEN_SECRET": secrets.token_secret,
        }
        log = open(platform.data_dir / "media.log", "ab")
        # BENCH_PROFILE=path: the worker under cProfile in CPU time (bench_media_bridge's worker-profile role).
        profile = os.environ.get("BENCH_PROFILE")
        bridge_bench = str(ROOT / "tests" / "bench" / "bench_media_bridge.py")
        media = platform.spawn(
            [
                sys.executable,
                *(
                    [bridge_bench, "--role", "worker-profile", profile]
                    if profile
                    else ["-m", "services.media"]
                ),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if not wait_udp_bound(port, 30):
            raise SystemExit(f"the media worker did not start: see {platform.data_dir / 'media.log'}")
        time.sleep(1.0)
        asyncio.run(worker_legs(platform.nats.url, tenant, media.pid, legs))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--certificate-lifetime", type=float, default=86400.0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--worker", action="store_true", help="legs through the media worker instead")
    parser.add_argument("--legs", type=int, default=100)
    args = parser.parse_args()
    if args.worker:
        worker(args.legs)
    else:
        asyncio.run(main(args.pairs, args.certificate_lifetime, args.profile))
