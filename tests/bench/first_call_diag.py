# Diagnostics of the first-call benchmark (tests/bench/bench_first_call.py): which step each failed call
# failed at, and, with --timeline, every service's event-loop lag and every process's CPU second by second
# (what a collapse looks like from inside, where the end-of-step averages hide it).
from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(#\d+)?")


def failure_step(caller: dict[str, Any], agent: dict[str, Any] | None) -> str | None:
    """The first step a call failed at, or None if it went all the way. The caller's side first (it
    comes first in time: the INVITE), then the agent's (its records say which stage raised), then what
    only the caller saw after an agent finished its part (the platform's BYE that never came)."""
    error = str(caller.get("error", ""))
    if not caller.get("ok") and "t_200" not in caller:
        if error.startswith("503"):
            return "INVITE: 503 (media's admission shed it)"
        return f"INVITE: {error or 'no answer'}"
    if agent is None:
        return (
            "no offer reached an agent (queued until the caller gave up)"
            if not caller.get("ok")
            else ("no agent record (the caller was released)")
        )
    if not agent.get("ok"):
        reason = _ID.sub("<id>", str(agent.get("error", "")))
        stage, _, rest = reason.partition(": ")
        # "accept: AgentCommandError: accept refused: contacts_timeout: the contacts ..." -> the code only
        code = re.search(r"refused: ([a-z_]+)", rest)
        # the counts in parentheses ("(12 frames played, ...)") stay in the agent's record, not in the key
        return f"agent {stage}: {code.group(1) if code else re.sub(r' [(].*[)]$', '', rest)[:80]}"
    if not caller.get("ok"):
        return f"caller after the agent's wrap-up: {error}"
    return None


def failures_by_step(
    calls: list[dict[str, Any]], by_contact: dict[str, dict[str, Any]], by_caller: dict[str, str]
) -> dict[str, int]:
    """How many calls failed at each step, most first."""
    counts: dict[str, int] = {}
    for c in calls:
        step = failure_step(c, by_contact.get(by_caller.get(c["caller"], "")))
        if step is not None:
            counts[step] = counts.get(step, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


async def probe_loop(path: str, name: str) -> None:
    """Every 20 ms a sleep, and how late it woke; once a second one line with the window's worst and mean
    lateness and the process's CPU (cores) over it."""
    loop = asyncio.get_running_loop()
    out = open(path, "a", buffering=1)  # noqa: ASYNC230  (a diagnostic's own log: one short line a second)
    lags: list[float] = []
    cpu0, wall0 = time.process_time(), loop.time()
    while True:
        at = loop.time() + 0.02
        await asyncio.sleep(0.02)
        now = loop.time()
        lags.append(now - at)
        if now - wall0 >= 1.0:
            cpu = time.process_time()
            row = {
                "t": time.time(),
                "service": name,
                "lag_max": max(lags),
                "lag_mean": sum(lags) / len(lags),
                "cores": (cpu - cpu0) / (now - wall0),
            }
            out.write(json.dumps(row) + "\n")
            lags, cpu0, wall0 = [], cpu, now


# A service's main run with probe_loop on its event loop, started on the first loop that runs
# (asyncio.run's), before the service's own code; services/ is not changed.
LAG_PROBE = """
import asyncio, runpy
from tests.bench.first_call_diag import probe_loop
PATH, SERVICE = %r, %r
_run_forever = asyncio.BaseEventLoop.run_forever
_started = []

def run_forever(self):
    if not _started:
        _started.append(self.create_task(probe_loop(PATH, SERVICE)))
    return _run_forever(self)

asyncio.BaseEventLoop.run_forever = run_forever
runpy.run_module("services." + SERVICE, run_name="__main__")
"""


class Timeline:
    """Once a second, every process's CPU (cores over the second) and the machine's busy cores; the
    services' own loop-lag lines come from their probes' files. `window(t0, t1)` sums a step up."""

    def __init__(self, cpu_now: Any, psutil: Any, probe_dir: Path) -> None:
        self.cpu_now = cpu_now
        self.psutil = psutil
        self.probe_dir = probe_dir
        self.rows: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        before, t_before = self.cpu_now(), time.monotonic()
        machine_before = self.psutil.cpu_times()
        while True:
            await asyncio.sleep(1.0)
            now, t_now = self.cpu_now(), time.monotonic()
            machine = self.psutil.cpu_times()
            wall = t_now - t_before
            busy = (sum(machine) - machine.idle - machine.iowait) - (
                sum(machine_before) - machine_before.idle - machine_before.iowait
            )
            self.rows.append(
                {
                    "t": time.time(),
                    "machine_busy_cores": busy / wall,
                    **{k: (now[k] - before.get(k, now[k])) / wall for k in now},
                }
            )
            before, t_before, machine_before = now, t_now, machine

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def lags(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for path in sorted(self.probe_dir.glob("lag-*.jsonl")):
            rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return rows

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        """Per service: the worst second's loop lag and the busiest second's CPU within [t0, t1]; the
        machine's busy cores at their highest."""
        cpu: dict[str, float] = {}
        for row in self.rows:
            if t0 <= row["t"] <= t1:
                for k, v in row.items():
                    if k != "t":
                        cpu[k] = max(cpu.get(k, 0.0), v)
        lag: dict[str, float] = {}
        for row in self.lags():
            if t0 <= row["t"] <= t1:
                lag[row["service"]] = max(lag.get(row["service"], 0.0), row["lag_max"])
        return {"peak_cores": cpu, "worst_lag_s": lag}

    def dump(self, path: Path, t0: float) -> None:
        """Every second of the run, the processes' CPU and the services' lag side by side (t from t0)."""
        by_second: dict[int, dict[str, Any]] = {}
        for row in self.rows:
            by_second.setdefault(int(row["t"] - t0), {}).update(
                {f"cores.{k}": round(v, 3) for k, v in row.items() if k != "t"}
            )
        for row in self.lags():
            s = by_second.setdefault(int(row["t"] - t0), {})
            s[f"lag_max.{row['service']}"] = round(row["lag_max"], 3)
        path.write_text("\n".join(json.dumps({"s": s, **v}) for s, v in sorted(by_second.items())) + "\n")
