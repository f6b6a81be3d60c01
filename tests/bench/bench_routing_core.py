# Benchmark of the sans-IO routing core (no NATS, no database): how long one matching decision takes in
# memory with many logged-in agents and waiting contacts, and how many decisions one core sustains.
#
#   python tests/bench/bench_routing_core.py            # full table (15,000 agents x 1,000 contacts)
#   python tests/bench/bench_routing_core.py --quick    # small sizes only
#
# Prints a table and writes .bench/routing_core.json as [{"metric","value","unit","goal","better"}].
# Not a test: nothing here asserts a timing.
from __future__ import annotations

import argparse
import gc
import json
import os
import random
import time
from pathlib import Path

from services.routing.core import (
    Accept,
    AgentLogin,
    AgentProfile,
    AnyCommand,
    Channel,
    Configure,
    ContactOffered,
    EndContact,
    Engine,
    Enqueue,
    Output,
    QueueConfig,
    Result,
    Strategy,
    TenantConfig,
)

ROOT = Path(__file__).resolve().parents[2]
# Per-call times are this process's CPU time: on a shared machine wall time mostly measures other
# processes (a preempted 40 us call shows as 4 ms). Wall time of the same calls is reported beside it.
cpu = time.process_time


class Bench:
    def __init__(self, agents: int, skills: int, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.rng = rng
        strategies = list(Strategy)
        queues = [
            QueueConfig(
                queue_id=f"q{i}",
                skills={f"s{i}": 1},
                strategy=strategies[i % len(strategies)],
                wrap_up_s=0,
                offer_timeout_s=30,
            )
            for i in range(skills)
        ]
        profiles = []
        for a in range(agents):
            member = rng.sample(range(skills), k=min(3, skills))
            profiles.append(
                AgentProfile(
                    agent_id=f"a{a:05d}",
                    queues=[f"q{i}" for i in member],
                    skills={f"s{i}": rng.randint(1, 10) for i in member},
                    capacity={Channel.VOICE: 1},
                )
            )
        self.engine = TimedEngine(max_replies=10_000)
        self.now = 1_000_000.0
        self.n = 0
        self.skills = skills
        self.agents = agents
        self.handle(Configure(id="cfg", config=TenantConfig(seats=agents, queues=queues, agents=profiles)))
        for p in profiles:
            self.handle(AgentLogin(id=f"login-{p.agent_id}", agent_id=p.agent_id))

    def handle(self, cmd: AnyCommand) -> Result:
        return self.engine.handle(cmd, self.now)

    def cid(self) -> str:
        self.n += 1
        return f"c{self.n}"

    def enqueue(self) -> list[Output]:
        self.now += 0.001
        r = self.handle(
            Enqueue(id=self.cid(), contact_id=f"k{self.n}", queue_id=f"q{self.rng.randrange(self.skills)}")
        )
        return r.outputs

    def accept_all(self) -> None:
        for offer in list(self.engine.state.offers.values()):
            self.handle(Accept(id=self.cid(), agent_id=offer.agent_id, offer_id=offer.offer_id))

    def fill(self, waiting: int) -> None:
        """Every agent on a call, then `waiting` more contacts in line."""
        for _ in range(self.agents + waiting):
            self.enqueue()
            self.accept_all()
        self.fire_timers()

    def fire_timers(self) -> float:
        """Fire what is due, as the adapter does on its own timer; return the time it took."""
        t = self.engine.next_timer()
        if t is None or t > self.now:
            return 0.0
        t0 = cpu()
        self.engine.handle_timer(self.now)
        return cpu() - t0


def _pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


class Timing:
    def __init__(self) -> None:
        self.calls: list[float] = []  # one engine call that makes a decision (CPU time)
        self.walls: list[float] = []  # the same calls, wall time
        self.matches: list[float] = []  # the matching step alone: choose, then make the offer
        self.flushes: list[float] = []  # publishing positions (timer, at most once a second)
        self.busy = 0.0  # every engine call of the run, for the sustained rate
        self.decisions = 0


class TimedEngine(Engine):
    """The real engine, timing its matching step from the outside."""

    timing: Timing | None = None

    def _match(self) -> None:
        if self.timing is None:
            return super()._match()
        before = len(self._out)
        t0 = cpu()
        super()._match()
        dt = cpu() - t0
        # Only passes that decided something (some passes find nothing to do and take ~1 us).
        if any(isinstance(o, ContactOffered) for o in self._out[before:]):
            self.timing.matches.append(dt)
        return None


def bench_agent_frees_up(b: Bench, rounds: int, timing: Timing) -> None:
    """A connected contact ends; its agent is matched to the best waiting contact it can take. Then the
    offer is accepted and a new contact joins the line, so the line keeps its length."""
    e = b.engine
    connected = sorted(c.contact_id for c in e.state.contacts.values() if c.state.value == "connected")
    b.rng.shuffle(connected)
    for _ in range(rounds):
        b.now += 0.002
        flush = b.fire_timers()
        if flush:
            timing.flushes.append(flush)
            timing.busy += flush
        cmd = EndContact(id=b.cid(), contact_id=connected.pop())
        w0 = time.perf_counter()
        t0 = cpu()
        r = e.handle(cmd, b.now)
        dt = cpu() - t0
        timing.walls.append(time.perf_counter() - w0)
        timing.calls.append(dt)
        timing.busy += dt
        for o in r.outputs:
            if isinstance(o, ContactOffered):
                timing.decisions += 1
                t0 = cpu()
                e.handle(Accept(id=b.cid(), agent_id=o.agent_id, offer_id=o.offer_id), b.now)
                timing.busy += cpu() - t0
                connected.insert(0, o.contact_id)
        t0 = cpu()
        b.enqueue()
        timing.busy += cpu() - t0


def bench_contact_arrives(b: Bench, rounds: int, timing: Timing) -> None:
    """A contact arrives while agents are ready: it is offered to the best one."""
    e = b.engine
    for _ in range(rounds):
        b.now += 0.002
        flush = b.fire_timers()
        if flush:
            timing.flushes.append(flush)
        cmd = Enqueue(id=b.cid(), contact_id=f"k{b.n}", queue_id=f"q{b.rng.randrange(b.skills)}")
        t0 = cpu()
        r = e.handle(cmd, b.now)
        timing.calls.append(cpu() - t0)
        for o in r.outputs:  # answer and end: the agent is ready again for a later round
            if isinstance(o, ContactOffered):
                b.handle(Accept(id=b.cid(), agent_id=o.agent_id, offer_id=o.offer_id))
                b.handle(EndContact(id=b.cid(), contact_id=o.contact_id))


def run_scenario(agents: int, waiting: int, skills: int, rounds: int) -> dict[str, float]:
    """The in-memory scenario, also used by the `routing` benchmark: `agents` logged in over `skills`
    queues, every agent busy and `waiting` contacts in line; then agents free up `rounds` times."""
    t0 = time.perf_counter()
    b = Bench(agents, skills)
    b.fill(waiting)
    setup = time.perf_counter() - t0
    free = Timing()
    assert isinstance(b.engine, TimedEngine)
    b.engine.timing = free
    gc.collect()
    gc.disable()
    try:
        bench_agent_frees_up(b, rounds, free)
    finally:
        gc.enable()
    in_line = sum(1 for c in b.engine.state.contacts.values() if c.state.value == "waiting")
    # What recovery costs: the whole tenant state to bytes and back (indexes and timers rebuilt).
    t0 = time.perf_counter()
    data = b.engine.snapshot()
    t1 = time.perf_counter()
    Engine.restore(data)
    t2 = time.perf_counter()
    # Arrival path: a fresh engine in which every agent is ready.
    a = Bench(agents, skills, seed=11)
    arrive = Timing()
    gc.collect()
    gc.disable()
    try:
        bench_contact_arrives(a, rounds, arrive)
    finally:
        gc.enable()
    return {
        "agents": agents,
        "waiting": in_line,
        "skills": skills,
        "match_p50_us": _pct(free.matches, 50) * 1e6,
        "match_p99_us": _pct(free.matches, 99) * 1e6,
        "free_p50_us": _pct(free.calls, 50) * 1e6,
        "free_p99_us": _pct(free.calls, 99) * 1e6,
        "free_wall_p99_us": _pct(free.walls, 99) * 1e6,
        "arrive_p50_us": _pct(arrive.calls, 50) * 1e6,
        "arrive_p99_us": _pct(arrive.calls, 99) * 1e6,
        "flush_ms": (sum(free.flushes) / len(free.flushes) * 1e3) if free.flushes else 0.0,
        "decisions_per_s": free.decisions / free.busy if free.busy else 0.0,
        "setup_s": setup,
        "snapshot_mb": len(data) / 1e6,
        "snapshot_ms": (t1 - t0) * 1e3,
        "restore_ms": (t2 - t1) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark of the sans-IO routing core")
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--rounds", type=int, default=5000)
    args = parser.parse_args()
    sizes = [(1_000, 100, 10), (5_000, 500, 50)]
    if not args.quick:
        sizes.append((15_000, 1_000, 50))
    rows = [run_scenario(agents, waiting, skills, args.rounds) for agents, waiting, skills in sizes]
    load = os.getloadavg()[0]
    print(
        "routing core, sans-IO, one process on one core: engine calls only, no NATS, no database;"
        f" per-call figures are CPU time (load average {load:.1f} on {os.cpu_count()} cores)"
    )
    header = (
        f"{'agents':>7} {'waiting':>8} {'skills':>6} | {'match p50/p99 us':>17} |"
        f" {'agent frees up p50/p99 us (wall p99)':>37} | {'contact arrives p50/p99 us':>26} |"
        f" {'positions flush ms':>18} | {'decisions/s':>11} | {'snapshot MB, ms; restore ms':>27}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['agents']:>7.0f} {r['waiting']:>8.0f} {r['skills']:>6.0f} |"
            f" {r['match_p50_us']:>8.1f} {r['match_p99_us']:>8.1f} |"
            f" {r['free_p50_us']:>12.1f} {r['free_p99_us']:>12.1f} ({r['free_wall_p99_us']:>9.1f}) |"
            f" {r['arrive_p50_us']:>13.1f} {r['arrive_p99_us']:>12.1f} |"
            f" {r['flush_ms']:>18.2f} | {r['decisions_per_s']:>11.0f} |"
            f" {r['snapshot_mb']:>7.1f} {r['snapshot_ms']:>7.1f} {r['restore_ms']:>11.0f}"
        )
    big = rows[-1]
    figures = [
        {
            "metric": "match_p99_us",
            "value": round(big["match_p99_us"], 1),
            "unit": "us",
            "goal": 50,
            "better": "lower",
        },
        {
            "metric": "agent_free_call_p99_us",
            "value": round(big["free_p99_us"], 1),
            "unit": "us",
            "goal": 100,
            "better": "lower",
        },
        {
            "metric": "arrival_call_p99_us",
            "value": round(big["arrive_p99_us"], 1),
            "unit": "us",
            "goal": 100,
            "better": "lower",
        },
        {
            "metric": "agent_free_call_wall_p99_us",
            "value": round(big["free_wall_p99_us"], 1),
            "unit": "us",
            "goal": 100,
            "better": "lower",
        },
        {
            "metric": "positions_flush_ms",
            "value": round(big["flush_ms"], 2),
            "unit": "ms",
            "goal": 10,
            "better": "lower",
        },
        {
            "metric": "restore_ms",
            "value": round(big["restore_ms"]),
            "unit": "ms",
            "goal": 5000,
            "better": "lower",
        },
        {
            "metric": "snapshot_mb",
            "value": round(big["snapshot_mb"], 2),
            "unit": "MB",
            "goal": None,
            "better": "lower",
        },
        {
            "metric": "decisions_per_s_per_core",
            "value": round(big["decisions_per_s"]),
            "unit": "1/s",
            "goal": 2000,
            "better": "higher",
        },
    ]
    out = ROOT / ".bench" / "routing_core.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(
        f"figures for {big['agents']:.0f} agents x {big['waiting']:.0f} waiting written to {out.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
