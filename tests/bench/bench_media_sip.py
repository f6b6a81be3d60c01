# Benchmark of the media service's SIP edge (`media-sip`): the media service runs as its own process
# against embedded PostgreSQL and NATS; SIPp (Debian sip-tester) is the load generator on loopback.
#
#   1. call rate: SIPp `uac` (INVITE, 180, 200, ACK, BYE) stepping the rate; the highest rate with zero
#      failed calls, and the p95 INVITE -> 180 time at that rate (SIPp response-time distribution);
#   2. concurrent calls with audio: SIPp `uac_pcap` plays G.711 for 9 s on N calls at once, answered over
#      NATS; CPU % of the media process per call, and loss/jitter from the call.quality events (one per leg, at its end).
#
#   python tests/bench/bench_media_sip.py [--quick]
#
# Prints a table and writes .bench/media-sip.json as [{"metric","value","unit","goal","better"}].
# Not a test: nothing here asserts a timing. Both processes share the machine's cores.
from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats
import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: `tests` importable

from services.kernel import db  # noqa: E402
from services.kernel.events import CallArrived, CallQuality, MediaAnswer  # noqa: E402
from services.kernel.ids import new_id  # noqa: E402
from services.kernel.messages import decode, encode  # noqa: E402
from services.media import native  # noqa: E402
from services.runtime.embedded import APP_ROLE, DATABASE, free_port  # noqa: E402
from tests.bench.platform_procs import BenchPlatform  # noqa: E402
from tests.sipp_uac import sipp_command, sipp_scenario  # noqa: E402

PCAPS = Path("/usr/share/sip-tester")
NUMBER = "+15557770001"  # no flow: answered, apology, or the caller hangs up first
FLOW_NUMBER = "+15557770002"  # has a queue: waits for an answer command


def _scenario_180(workdir: Path) -> Path:
    text = sipp_scenario("uac")
    text = text.replace('<send retrans="500">', '<send retrans="500" start_rtd="1">', 1)
    text = text.replace('<recv response="180" optional="true">', '<recv response="180" rtd="1">', 1)
    path = workdir / "uac180.xml"
    path.write_text(text)
    return path


async def _seed(owner_url: str) -> None:
    conn = await asyncpg.connect(owner_url)
    try:
        tenant, queue = new_id(), new_id()
        await conn.execute(
            "INSERT INTO tenants (id, name, admin_email, max_concurrent_calls) VALUES ($1, 'bench', 'b@x.io', 100000)",
            tenant,
        )
        await conn.execute("INSERT INTO queues (id, tenant_id, name) VALUES ($1, $2, 'q')", queue, tenant)
        await conn.execute(
            "INSERT INTO numbers (id, tenant_id, e164) VALUES ($1, $2, $3)", new_id(), tenant, NUMBER
        )
        await conn.execute(
            "INSERT INTO numbers (id, tenant_id, e164, queue_id) VALUES ($1, $2, $3, $4)",
            new_id(),
            tenant,
            FLOW_NUMBER,
            queue,
        )
    finally:
        await conn.close()


def _sipp(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    cmd = [*sipp_command(), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _failures(workdir: Path) -> dict[str, int]:
    """Why SIPp's calls failed, from its -trace_stat file: a 503 is an unexpected message for the
    `uac` scenario (clean shedding); retransmission limits and receive timeouts are unanswered calls."""
    out = {"failed": 0, "rejected_503": 0, "timeouts": 0}
    for path in workdir.glob("uac180_*_.csv"):
        with open(path) as f:
            rows = list(csv.reader(f, delimiter=";"))
        path.unlink()
        if len(rows) < 2:
            continue
        last = dict(zip(rows[0], rows[-1], strict=False))

        def count(name: str, last: dict[str, str] = last) -> int:
            try:
                return int(last.get(name, "0") or 0)
            except ValueError:
                return 0

        out["failed"] += count("FailedCall(C)")
        out["rejected_503"] += count("FailedUnexpectedMessage(C)")
        out["timeouts"] += count("FailedMaxUDPRetrans(C)") + count("FailedTimeoutOnRecv(C)")
    return out


def _p95_ms(workdir: Path, started: float) -> float | None:
    values: list[float] = []
    for path in workdir.glob("*_rtt.csv"):
        with open(path) as f:
            for row in csv.reader(f, delimiter=";"):
                try:
                    values.append(float(row[1]))
                except (IndexError, ValueError):
                    continue
        if os.environ.get("BENCH_KEEP_RTT"):  # for a diagnosis: SIPp's per-call times, named by start
            shutil.copy(path, Path(os.environ["BENCH_KEEP_RTT"]) / f"{started:.3f}-{path.name}")
        path.unlink()
    if not values:
        return None
    values.sort()
    return values[min(len(values) - 1, int(0.95 * len(values)))]


MAX_RUNS = 4
AGREE = 0.10  # two runs agree when they differ by at most 10 % of the smaller
RESOLUTION_MS = 1.0  # SIPp's response times are whole milliseconds: closer than that is agreement too
CPS_200 = 200


def agreed(values: list[float], resolution: float = 0.0) -> bool:
    """Whether the last two of `values` agree within AGREE (or within the measurement's resolution)."""
    if len(values) < 2:
        return False
    a, b = values[-2:]
    return abs(a - b) <= max(AGREE * min(a, b), resolution)


def spread_pct(values: list[float]) -> float:
    return 100.0 * (max(values) - min(values)) / min(values) if len(values) > 1 and min(values) > 0 else 0.0


@dataclass
class RateStep:
    rate: int
    ok: bool
    p95_runs: list[float]
    failures: dict[str, int]

    @property
    def p95(self) -> float | None:
        """The mean of the last two runs (they agree), or the only run."""
        runs = self.p95_runs[-2:]
        return sum(runs) / len(runs) if runs else None


def _rate_run(port: int, workdir: Path, scenario: Path, rate: int, seconds: float) -> RateStep:
    calls = int(rate * seconds)
    started = time.time()
    result = _sipp(
        [
            "-sf",
            str(scenario),
            "-s",
            NUMBER,
            f"127.0.0.1:{port}",
            "-m",
            str(calls),
            "-r",
            str(rate),
            "-l",
            str(rate * 4),
            "-timeout",
            str(int(seconds * 4 + 10)),
            "-timeout_error",
            "-trace_rtt",
            "-trace_stat",
            "-fd",
            "1",
            "-rtt_freq",
            "1",
            "-max_socket",
            "5000",
        ],
        workdir,
        timeout=seconds * 4 + 30,
    )
    p95 = _p95_ms(workdir, started)
    return RateStep(rate, result.returncode == 0, [] if p95 is None else [p95], _failures(workdir))


def call_rate(port: int, workdir: Path, rates: list[int], seconds: float) -> tuple[list[RateStep], list[str]]:
    """Each rate until it fails; a passing rate is run again until two runs agree on p95 INVITE -> 180
    (at most MAX_RUNS; every run must pass)."""
    scenario = _scenario_180(workdir)
    steps, rows = [], []
    shed_steps = 0
    for rate in rates:
        step = _rate_run(port, workdir, scenario, rate, seconds)
        while step.ok and len(step.p95_runs) < MAX_RUNS and not agreed(step.p95_runs, RESOLUTION_MS):
            time.sleep(1.0)
            again = _rate_run(port, workdir, scenario, rate, seconds)
            step.ok, step.failures = again.ok, again.failures
            step.p95_runs += again.p95_runs
        steps.append(step)
        runs = ", ".join(f"{v:.1f}" for v in step.p95_runs)
        rows.append(
            f"  {rate:5d} calls/s x {int(rate * seconds):5d}: {'ok' if step.ok else 'FAILED':6s} p95 INVITE->180 "
            f"{step.p95 if step.p95 is not None else float('nan'):.2f} ms over {len(step.p95_runs)} runs "
            f"({runs}; spread {spread_pct(step.p95_runs):.0f} %); failed {step.failures['failed']} "
            f"(503 {step.failures['rejected_503']}, unanswered {step.failures['timeouts']})"
        )
        print(rows[-1], flush=True)
        if not step.ok:
            # Past capacity the edge should shed with 503, never leave a caller unanswered: one more
            # step above shows that it still does, then stop.
            shed_steps += 1
            if step.failures["timeouts"] or shed_steps >= 2:
                break
            time.sleep(3.0)
            continue
        time.sleep(1.0)
    return steps, rows


async def concurrent_audio_run(
    port: int, pid: int, nats_url: str, workdir: Path, calls: int
) -> dict[str, float]:
    (workdir / "pcap").unlink(missing_ok=True)
    (workdir / "pcap").symlink_to(PCAPS)
    nc = await nats.connect(nats_url)
    quality: list[CallQuality] = []
    ours: set[object] = set()

    async def on_arrived(msg) -> None:  # type: ignore[no-untyped-def]
        event = decode(msg.data, CallArrived)
        if event.to_e164 != FLOW_NUMBER:
            return
        ours.add(event.call_id)
        cmd = MediaAnswer(tenant_id=event.tenant_id, call_id=event.call_id)
        await nc.request(f"sb.{event.tenant_id}.cmd.media.answer", encode(cmd), timeout=5)

    async def on_quality(msg) -> None:  # type: ignore[no-untyped-def]
        q = decode(msg.data, CallQuality)
        if q.call_id in ours:
            quality.append(q)

    await nc.subscribe("sb.*.evt.call.arrived", cb=on_arrived)
    await nc.subscribe("sb.*.evt.call.quality", cb=on_quality)
    proc = psutil.Process(pid)
    proc.cpu_percent(None)
    loop = asyncio.get_running_loop()
    run = loop.run_in_executor(
        None,
        lambda: _sipp(
            [
                "-sn",
                "uac_pcap",
                "-s",
                FLOW_NUMBER,
                f"127.0.0.1:{port}",
                "-m",
                str(calls),
                "-r",
                str(max(1, calls // 2)),
                "-l",
                str(calls),
                "-timeout",
                "60",
                "-timeout_error",
                "-max_socket",
                "5000",
            ],
            workdir,
            timeout=90,
        ),
    )
    await asyncio.sleep(4.0)  # all calls up and playing
    proc.cpu_percent(None)
    await asyncio.sleep(4.0)
    cpu = proc.cpu_percent(None)
    result = await run
    for _ in range(40):
        if len(quality) >= calls:
            break
        await asyncio.sleep(0.1)
    await nc.close()
    loss = sum(q.loss_percent for q in quality) / len(quality) if quality else float("nan")
    jitter = sum(q.jitter_ms for q in quality) / len(quality) if quality else float("nan")
    return {
        "calls": calls,
        "ok": float(result.returncode == 0),
        "cpu_percent": cpu,
        "loss_percent": loss,
        "jitter_ms": jitter,
        "reports": len(quality),
    }


def concurrent_audio(port: int, pid: int, nats_url: str, workdir: Path, calls: int) -> dict[str, float]:
    """The audio step until two runs agree on CPU per call (at most MAX_RUNS): the mean of the last two."""
    runs: list[dict[str, float]] = []
    per_call: list[float] = []
    while len(runs) < MAX_RUNS and not agreed(per_call):
        if runs:
            time.sleep(3.0)  # the last run's calls end
        runs.append(asyncio.run(concurrent_audio_run(port, pid, nats_url, workdir, calls)))
        per_call.append(runs[-1]["cpu_percent"] / calls)
        print(f"  concurrent audio run {len(runs)}: {runs[-1]['cpu_percent']:.1f} % of a core", flush=True)
    last = runs[-2:]
    audio = {k: sum(r[k] for r in last) / len(last) for k in runs[-1]}
    audio["ok"] = float(all(r["ok"] for r in last))
    audio["runs"] = len(runs)
    audio["spread_pct"] = spread_pct(per_call)
    return audio


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--audio-only",
        action="store_true",
        help="skip the call-rate steps: concurrent audio only (CPU per call)",
    )
    parser.add_argument("--audio-calls", type=int, help="concurrent calls with audio (20 quick, else 100)")
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        sys.exit("sipp (Debian sip-tester) is not installed")
    with BenchPlatform("sbbench-") as platform:
        pg, nats_server, data_dir, secrets_ = platform.pg, platform.nats, platform.data_dir, platform.secrets

        async def prepare() -> None:
            await db.bootstrap(
                pg.admin_url, database=DATABASE, app_role=APP_ROLE, app_password=secrets_.pg_app_password
            )
            await db.migrate(pg.owner_url, app_role=APP_ROLE)
            await _seed(pg.owner_url)

        asyncio.run(prepare())
        port = free_port()
        env = {
            **os.environ,
            "SB_DATABASE_URL": pg.app_url,
            "SB_NATS_URL": nats_server.url,
            "SB_SIP_PORT": str(port),
            "SB_DATA_DIR": str(data_dir),
            "SB_LOG_LEVEL": "warning",
            "SB_SIP_RATE": "100000",
            "SB_SIP_BURST": "100000",
            "SB_MEDIA_MAX_CALLS": "3000",
            "SB_TOKEN_SECRET": secrets_.token_secret,
        }
        log = open(data_dir / "media.log", "ab")
        proc = platform.spawn(
            [sys.executable, "-m", "services.media"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    break  # bound by the service
            time.sleep(0.1)
        time.sleep(1.0)
        load_before = os.getloadavg()
        rates = [50, 100, 200] if args.quick else [50, 100, 200, 300, 400, 600, 800]
        steps, rows = (
            ([], []) if args.audio_only else call_rate(port, data_dir, rates, 2.0 if args.quick else 4.0)
        )
        if steps:
            time.sleep(10.0)  # let a saturated edge drain its backlog before the audio phase
        calls = args.audio_calls or (20 if args.quick else 100)
        audio = concurrent_audio(port, proc.pid, nats_server.url, data_dir, calls)
        load_after = os.getloadavg()

    best_step: RateStep | None = None
    for st in steps:  # the highest rate with zero failures below the first failing one
        if not st.ok:
            break
        best_step = st
    best = best_step.rate if best_step is not None else 0
    p95 = best_step.p95 if best_step is not None else None
    at_200 = next((st for st in steps if st.rate == CPS_200), None)
    per_call = audio["cpu_percent"] / audio["calls"] if audio["calls"] else float("nan")
    per_core = 100.0 / per_call if per_call > 0 else float("nan")
    metrics = [
        {
            "metric": "max_cps_zero_failures",
            "value": best,
            "unit": "calls/s",
            "goal": 200,
            "better": "higher",
        },
        {
            "metric": "invite_to_180_p95_ms",  # at max_cps_zero_failures
            "value": round(p95, 2) if p95 is not None else None,
            "unit": "ms",
            "goal": None,
            "better": "lower",
        },
        {
            # The goal's rate, whatever the top clean rate is (a failed 200 calls/s step still reports).
            "metric": "invite_to_180_p95_ms_at_200cps",
            "value": round(at_200.p95, 2) if at_200 is not None and at_200.p95 is not None else None,
            "unit": "ms",
            "goal": 5,
            "better": "lower",
        },
        {
            "metric": "invite_to_180_p95_spread_pct_at_200cps",
            "value": round(spread_pct(at_200.p95_runs), 1) if at_200 is not None else None,
            "unit": "%",
            "goal": 10,
            "better": "lower",
        },
        {
            "metric": "concurrent_calls_per_core_g711",
            "value": round(per_core, 1),
            "unit": "calls/core",
            "goal": 150,
            "better": "higher",
        },
        {
            "metric": "cpu_percent_per_call_g711",
            "value": round(per_call, 3),
            "unit": "% of a core",
            "goal": None,
            "better": "lower",
        },
        {
            "metric": "cpu_spread_pct_g711",
            "value": round(audio["spread_pct"], 1),
            "unit": "%",
            "goal": 10,
            "better": "lower",
        },
        {
            "metric": "audio_loss_percent",
            "value": round(audio["loss_percent"], 3),
            "unit": "%",
            "goal": 0.1,
            "better": "lower",
        },
        {
            "metric": "audio_jitter_ms",
            "value": round(audio["jitter_ms"], 2),
            "unit": "ms",
            "goal": None,
            "better": "lower",
        },
    ]
    print(
        "media-sip (media service: 1 process, 1 core at most; SIPp: 1 process, same machine); load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; media per-packet code {native.status()}"
    )
    print("call rate steps:")
    print("\n".join(rows))
    print(
        f"concurrent audio: {int(audio['calls'])} calls, sipp ok={bool(audio['ok'])}, media CPU "
        f"{audio['cpu_percent']:.1f} % (mean of the last two of {int(audio['runs'])} runs, spread "
        f"{audio['spread_pct']:.0f} %), {int(audio['reports'])} quality reports"
    )
    print(f"{'metric':34s} {'value':>10s} {'unit':12s} {'goal':>6s}")
    for m in metrics:
        print(f"{m['metric']:34s} {m['value']!s:>10s} {m['unit']:12s} {m['goal']!s:>6s}")
    out = ROOT / ".bench"
    out.mkdir(exist_ok=True)
    (out / "media-sip.json").write_text(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
