"""Recording benchmark: what recording costs the media worker, and how fast recordings become available.

One machine: embedded PostgreSQL and NATS, one media worker process, the recording service process, and the
media-bridge benchmark's load processes (bench_media_bridge.py: calls bridged two by two on the relay path,
SIP <-> WebRTC PCMU calls through aiortc peers on the WebRTC path; 1 kHz bursts both ways). For each path,
steps of the same calls alternate recording off and on (which goes first alternates too, and the paths
interleave), so a drift in the shared machine's load weighs on both sides alike:

- recording_cpu_overhead_pct (per path, the headline is the worse path): the worker's own CPU time (its
  /proc utime + stime, not wall time: what other processes on the machine take is not counted) per carried
  call with recording on, against the same calls off, per pair of steps. Pairs are added until the 95 %
  interval of the mean (Student's t) is at most --half wide on each side (so the whole interval spans less
  than the 15 % goal) or --max-repeats is reached; mean, median, interval, pooled ratio, pairs and the load
  average during the steps are reported. A pair whose two steps lost unequal shares of their audio (the
  machine starved one of them) did unequal work: it is reported and left out (--loss-gap). It includes the spool's fsync and the chunks' publishing to
  JetStream (services/media/spool/ship.py).
- hangup_to_available_p95_ms: from each recorded call's call.ended to its recording.available, both seen
  by this process on the bus (one clock).
- recordings_finalised_per_s: recordings made available per second after a step's calls all hang up at
  once (a burst of --calls recordings).

Prints a table and writes .bench/recording.json as [{"metric","value","unit","goal","better"}].
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_media_bridge as mb

ROOT = Path(__file__).resolve().parents[2]
OVERHEAD_GOAL = 15.0
AVAILABLE_GOAL_MS = 2000.0


class BusWatch:
    """call.ended and recording.available times of one tenant, from a thread with its own event loop."""

    def __init__(self, nats_url: str, tenant: uuid.UUID) -> None:
        self.ended: dict[str, float] = {}
        self.available: dict[str, float] = {}
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run(nats_url, tenant)), daemon=True)
        self._thread.start()
        self._ready.wait(10)

    async def _run(self, nats_url: str, tenant: uuid.UUID) -> None:
        import nats

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        nc = await nats.connect(nats_url)

        async def on_ended(msg) -> None:  # type: ignore[no-untyped-def]
            self.ended.setdefault(json.loads(msg.data)["call_id"], time.monotonic())

        async def on_available(msg) -> None:  # type: ignore[no-untyped-def]
            self.available.setdefault(json.loads(msg.data)["recording_id"], time.monotonic())

        await nc.subscribe(f"sb.{tenant}.evt.call.ended", cb=on_ended)
        await nc.subscribe(f"sb.{tenant}.evt.recording.available", cb=on_available)
        from services.kernel.waits import flushed

        await flushed(nc)
        self._ready.set()
        await self._stop.wait()
        await nc.close()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


def _start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=out, stderr=out)


def controller(args: argparse.Namespace) -> None:
    from services.kernel import db
    from services.runtime.embedded import (
        APP_ROLE,
        DATABASE,
        EmbeddedNats,
        EmbeddedPostgres,
        Secrets,
        free_port,
    )

    began = time.monotonic()
    data_dir = Path(tempfile.mkdtemp(prefix="sbbench-rec-"))
    secrets_ = Secrets.load_or_create(data_dir)
    pg, nats_server = EmbeddedPostgres(data_dir, secrets_), EmbeddedNats(data_dir, secrets_)
    procs: list[subprocess.Popen[bytes]] = []
    pairs: dict[str, list[tuple[mb.Step, mb.Step]]] = {path: [] for path in args.paths}
    recorded = 0
    latencies: list[float] = []
    rates: list[float] = []
    rec_cpu: list[float] = []
    watch: BusWatch | None = None
    try:
        pg.start()
        nats_server.start()

        async def prepare() -> uuid.UUID:
            await db.bootstrap(
                pg.admin_url, database=DATABASE, app_role=APP_ROLE, app_password=secrets_.pg_app_password
            )
            await db.migrate(pg.owner_url, app_role=APP_ROLE)
            return await mb._seed(pg.owner_url)

        tenant = asyncio.run(prepare())
        port = free_port()
        env = {
            **os.environ,
            "SB_DATABASE_URL": pg.app_url,
            "SB_NATS_URL": nats_server.url,
            "SB_BIND_HOST": "127.0.0.1",
            "SB_SIP_PORT": str(port),
            "SB_DATA_DIR": str(data_dir),
            "SB_LOG_LEVEL": "warning",
            "SB_SIP_RATE": "100000",
            "SB_SIP_BURST": "100000",
            "SB_MEDIA_MAX_CALLS": "5000",
            "SB_MEDIA_MAX_SETUP": "5000",
            "SB_MEDIA_MAX_LAG_MS": "0",
            "SB_MEDIA_MAX_CPU": "0",
            # Below the test stacks' RTP ranges (30000-45000) and the kernel's ephemeral ports (32768+): a
            # benchmark beside the suite must not take a test call's ports (a 503 no_media_port in the IVR e2e).
            "SB_RTP_PORT_MIN": "14000",
            "SB_RTP_PORT_MAX": "15999",
            "SB_TOKEN_SECRET": secrets_.token_secret,
            "SB_RECORDING_FLUSH_S": str(args.flush),
        }
        worker = _start("services.media", env, data_dir / "media.log")
        recorder = _start("services.recording", env, data_dir / "recording.log")
        procs += [worker, recorder]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    break
            time.sleep(0.1)
        time.sleep(2.0)
        watch = BusWatch(nats_server.url, tenant)
        ctx: dict[str, object] = {
            "tenant": tenant,
            "nats": nats_server.url,
            "sip_port": port,
            "pid": worker.pid,
            "data_dir": data_dir,
        }
        calls_of = {"passthrough": args.calls, "pcmu": args.webrtc_calls}
        try:
            for r in range(args.max_repeats):
                todo = [
                    p
                    for p in args.paths
                    if len(_valid(pairs[p], args.loss_gap)) < args.repeats or not _converged(pairs[p], args)
                ]
                if not todo:
                    break
                for path in todo:
                    # Alternate which goes first, so a drift in the machine's load does not favour one side.
                    order = (False, True) if r % 2 == 0 else (True, False)
                    got: dict[bool, mb.Step] = {}
                    for record in order:
                        before = set(watch.available)
                        c0 = mb.cpu_seconds(recorder.pid)
                        step = mb.run_step(ctx, path, calls_of[path], record, args.seconds)
                        got[record] = step
                        if record:
                            waited = time.monotonic() + 15
                            while (
                                len(set(watch.available) - before) < step.carried
                                and time.monotonic() < waited
                            ):
                                time.sleep(0.05)
                            new = [rid for rid in watch.available if rid not in before]
                            ends = [watch.ended[rid] for rid in new if rid in watch.ended]
                            latencies += [
                                (watch.available[rid] - watch.ended[rid]) * 1000
                                for rid in new
                                if rid in watch.ended
                            ]
                            if new and ends:
                                span = max(watch.available[rid] for rid in new) - min(ends)
                                rates.append(len(new) / span if span > 0 else math.nan)
                            rec_cpu.append(mb.cpu_seconds(recorder.pid) - c0)
                            recorded += len(new)
                        print(
                            f"  {path} repeat {r + 1} {'on ' if record else 'off'}: {step.carried} calls, worker "
                            f"{step.cpu:.1f} % of a core ({_per_call(step):.3f} %/call), loss {step.loss:.2f} %, "
                            f"p95 {step.p95:.1f} ms, load {step.loadavg:.1f}",
                            flush=True,
                        )
                    pairs[path].append((got[False], got[True]))
        except KeyboardInterrupt:  # SIGINT or SIGTERM: report the pairs measured so far
            print("  stopped early: reporting the pairs measured so far", flush=True)
    finally:
        if watch is not None:
            watch.close()
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        nats_server.stop()
        pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    report(args, pairs, latencies, rates, rec_cpu, recorded, time.monotonic() - began)


T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 11: 2.20}
T95 |= {12: 2.18, 13: 2.16, 14: 2.14, 15: 2.13, 16: 2.12, 17: 2.11, 18: 2.10, 19: 2.09, 20: 2.09}


def _per_call(step: mb.Step) -> float:
    """The worker's CPU (% of a core) per carried call: a step that carried fewer calls is not cheaper."""
    return step.cpu / step.carried if step.carried else math.nan


def _valid(pairs: list[tuple[mb.Step, mb.Step]], loss_gap: float) -> list[tuple[mb.Step, mb.Step]]:
    """The pairs whose two steps did comparable work: both carried their calls' audio (under 50 % loss) and
    lost about as much (within `loss_gap` points). A step starved by the machine (its load generator late,
    a port taken) relays fewer frames and would pass for cheaper."""
    return [
        (off, on)
        for off, on in pairs
        if _per_call(off) > 0
        and not math.isnan(_per_call(on))
        and max(off.loss, on.loss) < 50.0
        and abs(on.loss - off.loss) <= loss_gap
    ]


def _overheads(pairs: list[tuple[mb.Step, mb.Step]]) -> list[float]:
    return [(_per_call(on) - _per_call(off)) / _per_call(off) * 100 for off, on in pairs]


def _interval(values: list[float]) -> tuple[float, float, float]:
    """Mean, standard deviation and the half width of the mean's 95 % interval (Student's t)."""
    n = len(values)
    mean = statistics.fmean(values) if values else math.nan
    sd = statistics.stdev(values) if n > 1 else math.nan
    half = T95.get(n - 1, 2.0) * sd / math.sqrt(n) if n > 1 else math.nan
    return mean, sd, half


def _converged(pairs: list[tuple[mb.Step, mb.Step]], args: argparse.Namespace) -> bool:
    _mean, _sd, half = _interval(_overheads(_valid(pairs, args.loss_gap)))
    return not math.isnan(half) and half <= args.half


def _path_metric(
    path: str, every: list[tuple[mb.Step, mb.Step]], args: argparse.Namespace
) -> dict[str, object]:
    pairs = _valid(every, args.loss_gap)
    overheads = _overheads(pairs)
    mean, sd, half = _interval(overheads)
    on_cpu = sum(_per_call(on) for _, on in pairs)
    off_cpu = sum(_per_call(off) for off, _ in pairs)
    loads = [step.loadavg for pair in every for step in pair]
    return {
        "metric": f"recording_cpu_overhead_pct_{'relay' if path == 'passthrough' else 'webrtc'}",
        "value": round(mean, 1),
        "unit": "% more worker CPU per call",
        "goal": OVERHEAD_GOAL,
        "better": "lower",
        "spread": {
            "min": round(min(overheads), 1) if overheads else None,
            "max": round(max(overheads), 1) if overheads else None,
            "stdev": round(sd, 1) if not math.isnan(sd) else None,
            "median": round(statistics.median(overheads), 1) if overheads else None,
            "ci95": [round(mean - half, 1), round(mean + half, 1)] if not math.isnan(half) else None,
            "pooled": round((on_cpu / off_cpu - 1) * 100, 1) if off_cpu else None,
            "pairs": len(overheads),
            "pairs_rejected": len(every) - len(pairs),  # unequal loss between the two steps (_valid)
            "converged": not math.isnan(half) and half <= args.half,
        },
        "cpu_pct_per_call_off": round(off_cpu / len(pairs), 3) if pairs else None,
        "flush_s": args.flush,
        "loadavg": [round(min(loads), 1), round(max(loads), 1)] if loads else None,
        "calls": args.calls if path == "passthrough" else args.webrtc_calls,
        "path": "passthrough (relay, SIP <-> SIP)"
        if path == "passthrough"
        else "WebRTC PCMU (SIP <-> aiortc)",
    }


def report(
    args: argparse.Namespace,
    pairs: dict[str, list[tuple[mb.Step, mb.Step]]],
    latencies: list[float],
    rates: list[float],
    rec_cpu: list[float],
    recorded: int,
    took: float,
) -> None:
    per_path = [_path_metric(path, got, args) for path, got in pairs.items()]
    # The headline: the worse path, with its own spread.
    worst = max(per_path, key=lambda m: -math.inf if math.isnan(m["value"]) else m["value"])  # type: ignore[arg-type]
    p95 = mb._p95(latencies)
    rate = statistics.fmean([r for r in rates if not math.isnan(r)]) if rates else math.nan
    metrics: list[dict[str, object]] = [
        {**worst, "metric": "recording_cpu_overhead_pct", "worst_of": [m["metric"] for m in per_path]},
        *per_path,
        {
            "metric": "hangup_to_available_p95_ms",
            "value": round(p95, 1),
            "unit": "ms",
            "goal": AVAILABLE_GOAL_MS,
            "better": "lower",
            "samples": len(latencies),
            "p50": round(sorted(latencies)[len(latencies) // 2], 1) if latencies else None,
        },
        {
            "metric": "recordings_finalised_per_s",
            "value": round(rate, 1),
            "unit": "recordings/s (a burst of hang-ups)",
            "goal": None,
            "better": "higher",
        },
        {
            "metric": "recording_service_cpu_s_per_recording",
            "value": round(sum(rec_cpu) / max(1, recorded), 4),
            "unit": "CPU s",
            "goal": None,
            "better": "lower",
        },
    ]
    loadavg = os.getloadavg()
    print(
        f"\nrecording benchmark ({took:.0f} s; {args.calls} relay / {args.webrtc_calls} WebRTC calls, "
        f"{args.seconds:.0f} s steps, {os.cpu_count()} cores shared; load average now {loadavg[0]:.1f})"
    )
    for path, got in pairs.items():
        valid = _valid(got, args.loss_gap)
        for off, on in got:
            change = (
                (_per_call(on) - _per_call(off)) / _per_call(off) * 100 if _per_call(off) > 0 else math.nan
            )
            print(
                f"  {path:11s} off {_per_call(off):.3f}  on {_per_call(on):.3f} %/call  -> {change:+.1f} %  "
                f"(loss {off.loss:.1f} / {on.loss:.1f} %{'' if (off, on) in valid else ', rejected'})"
            )
    print(f"{'metric':40s} {'value':>10s}  goal")
    for m in metrics:
        print(
            f"{m['metric']:40s} {m['value']!s:>10s}  {m['goal'] if m['goal'] is not None else '-'} {m['unit']}"
        )
    for m in per_path:
        print(f"  {m['metric']}: {m['spread']}, load {m['loadavg']}")
    out = ROOT / ".bench"
    out.mkdir(exist_ok=True)
    (out / "recording.json").write_text(json.dumps(metrics, indent=2) + "\n")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)  # a stop on a time budget still reports what was measured
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=40, help="relay calls per step (default 40)")
    parser.add_argument("--webrtc-calls", type=int, default=8, help="WebRTC calls per step (default 8)")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per step")
    parser.add_argument("--repeats", type=int, default=6, help="off/on pairs per path at least (default 6)")
    parser.add_argument(
        "--max-repeats", type=int, default=16, help="off/on pairs tried per path at most (default 16)"
    )
    parser.add_argument(
        "--half",
        type=float,
        default=5.0,
        help="add pairs until the 95 %% interval of the mean is at most this many points each side (default 5)",
    )
    parser.add_argument(
        "--loss-gap",
        type=float,
        default=5.0,
        help="a pair counts only if its two steps' loss differs by at most this many points (default 5)",
    )
    parser.add_argument(
        "--paths", default="passthrough,pcmu", help="passthrough (relay) and/or pcmu (WebRTC)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="20 relay / 6 WebRTC calls, 3 s steps, 2-3 pairs"
    )
    parser.add_argument(
        "--flush", type=float, default=2.0, help="media's SB_RECORDING_FLUSH_S: seconds per chunk (default 2)"
    )
    args = parser.parse_args()
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = set(args.paths) - {"passthrough", "pcmu"}
    if unknown or not args.paths:
        parser.error(f"--paths: passthrough and/or pcmu, not {sorted(unknown)}")
    if args.quick:
        args.calls, args.webrtc_calls, args.seconds, args.repeats, args.max_repeats = 20, 6, 3.0, 2, 3
    args.max_repeats = max(args.max_repeats, args.repeats)
    controller(args)


if __name__ == "__main__":
    main()
