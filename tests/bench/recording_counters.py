# The media worker with counters around what recording adds to it, for bench_media_bridge.py
# `--recording-counters` (issue 21: where a recorded call's extra CPU goes). Not a test.
#
#   python tests/bench/recording_counters.py OUT.jsonl    # runs `python -m services.media`, counting
#
# Every 0.5 s a line goes to OUT: the worker's main-thread CPU time (its thread CPU clock), every thread's
# CPU time from /proc/self/task (the spool's disk thread by name), and for each layer of the recording path
# its call count and CPU time (the main thread's CPU clock read before and after): the bridge's tap
# (`Bridge._tap`: decoded frames; `Bridge._tap_payload`: relayed or same-law payloads, each including the
# spool's `write`/`write_pcm`), the spool's `flush` (a chunk: encode, interleave, CRC, hand to the disk
# thread and the shipper) and the shipper's JetStream publish (its coroutine's own steps). Reading a thread
# CPU clock is a system call (about 0.7 us here, as much as a tap): what one timed call costs the counters
# themselves is measured at start (`overhead_ns`, a timed no-op) and taken off in `breakdown`. A wall
# clock would be cheaper but counts the time the worker sat preempted (at load 20 a flush read 1-2.5 ms).
from __future__ import annotations

import json
import os
import runpy
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import Any

LAYERS = ("tap", "tap_payload", "flush", "publish")
ROOT = Path(__file__).resolve().parents[2]


def _install(counts: dict[str, int]) -> None:
    from services.media.bridge import bridging
    from services.media.spool import ship, spool

    clock = time.thread_time_ns

    def timed(cls: Any, name: str, key: str) -> None:
        original = getattr(cls, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return original(*args, **kwargs)
            finally:
                counts[key + "_ns"] += clock() - started
                counts[key + "_n"] += 1

        setattr(cls, name, wrapper)

    def nothing() -> None:
        return None

    class Probe:
        pass

    Probe.nothing = staticmethod(nothing)  # type: ignore[attr-defined]
    counts["probe_n"] = counts["probe_ns"] = 0
    timed(Probe, "nothing", "probe")
    for _ in range(20000):
        Probe.nothing()  # type: ignore[attr-defined]
    counts["overhead_ns"] = counts["probe_ns"] // counts["probe_n"]

    timed(bridging.Bridge, "_tap", "tap")
    timed(bridging.Bridge, "_tap_payload", "tap_payload")
    timed(spool.SpoolWriter, "flush", "flush")

    class Steps:
        """An awaitable timing only its coroutine's own steps (not the waits between them)."""

        def __init__(self, awaitable: Awaitable[Any]) -> None:
            self.awaitable = awaitable

        def __await__(self) -> Generator[Any, Any, Any]:
            it = self.awaitable.__await__()
            value: Any = None
            error: BaseException | None = None
            while True:
                started = clock()
                try:
                    yielded = it.throw(error) if error is not None else it.send(value)
                except StopIteration as stop:
                    counts["publish_ns"] += clock() - started
                    return stop.value
                counts["publish_ns"] += clock() - started
                try:
                    value, error = (yield yielded), None
                except BaseException as exc:  # handed on to the coroutine, as asyncio would
                    value, error = None, exc

    publish: Callable[..., Awaitable[None]] = ship._publish

    async def counted_publish(*args: Any, **kwargs: Any) -> None:
        counts["publish_n"] += 1
        await Steps(publish(*args, **kwargs))

    ship._publish = counted_publish  # type: ignore[assignment]


def _threads() -> dict[str, float]:
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    cpu: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(tid), "other")
        cpu[name] = cpu.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return cpu


def run(out: Path) -> None:
    sys.path.insert(0, str(ROOT))  # run as a script: the services package is the repository's
    counts = {f"{layer}_{unit}": 0 for layer in LAYERS for unit in ("n", "ns")}
    _install(counts)
    main = time.pthread_getcpuclockid(threading.get_ident())

    def dump() -> None:
        with open(out, "a") as f:
            while True:
                time.sleep(0.5)
                line = {
                    "t": time.monotonic(),
                    "main": time.clock_gettime(main),
                    **counts,
                    "threads": _threads(),
                }
                f.write(json.dumps(line) + "\n")
                f.flush()

    threading.Thread(target=dump, name="counters", daemon=True).start()
    sys.argv = ["services.media"]
    runpy.run_module("services.media", run_name="__main__", alter_sys=True)


def breakdown(out: Path, start: float, end: float, calls: int) -> dict[str, float]:
    """Per call-second over [start, end]: each layer's ms and count, the main thread's and the spool disk
    thread's CPU ms (the disk thread at the kernel's 10 ms accounting granularity)."""
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    if len(rows) < 2 or calls <= 0:
        return {}
    first = min(rows, key=lambda r: abs(r["t"] - start))
    last = min(rows, key=lambda r: abs(r["t"] - end))
    per = calls * max(1e-9, last["t"] - first["t"])
    got = {"main_ms": (last["main"] - first["main"]) * 1e3 / per}
    overhead = last.get("overhead_ns", 0)
    for layer in LAYERS:
        n = last[f"{layer}_n"] - first[f"{layer}_n"]
        # The publish's steps are timed each (several per publish): their overhead is not taken off.
        ns = last[f"{layer}_ns"] - first[f"{layer}_ns"] - (0 if layer == "publish" else n * overhead)
        got[f"{layer}_ms"] = max(0, ns) / 1e6 / per
        got[f"{layer}_n"] = n / per
    got["overhead_us"] = overhead / 1e3
    disk = last["threads"].get("spool-disk", 0.0) - first["threads"].get("spool-disk", 0.0)
    got["disk_ms"] = disk * 1e3 / per
    return got


if __name__ == "__main__":
    run(Path(sys.argv[1]))
