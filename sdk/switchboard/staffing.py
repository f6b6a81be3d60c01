"""Staffing math: Erlang C, Erlang A and a discrete-event what-if simulator (docs/reporting.md).

Pure functions, no I/O and no clock: the CLI (`switchboard erlang`) and the reporting service both import
this module, so it lives in the SDK (which has no server dependency) and is written once.

Erlang C uses the Erlang B recursion B(0) = 1, B(n) = A·B(n-1) / (n + A·B(n-1)) and
C = n·B / (n - A·(1 - B)): no factorial or power of A is ever formed, so 10,000 Erlangs do not overflow.
Erlang A (M/M/n+M, callers give up after an exponential patience) is solved exactly on its birth-death
chain, truncated where the tail probability is below 1e-15.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ErlangA",
    "ErlangC",
    "SimulationResult",
    "agents_for_target",
    "erlang_a",
    "erlang_b",
    "erlang_c",
    "poisson_arrivals",
    "scheduled_with_shrinkage",
    "simulate",
    "traffic_erlangs",
]

MAX_AGENTS = 100_000


def traffic_erlangs(calls: float, period_s: float, aht_s: float) -> float:
    """Offered load A = arrival rate x handle time."""
    if calls < 0 or period_s <= 0 or aht_s <= 0:
        raise ValueError("calls must be >= 0, the period and the handle time > 0")
    return calls * aht_s / period_s


def erlang_b(agents: int, load: float) -> float:
    """Blocking probability of M/M/n/n by the recursion (stable for any load)."""
    if agents < 0 or load < 0:
        raise ValueError("agents and load must be >= 0")
    b = 1.0
    for n in range(1, agents + 1):
        b = load * b / (n + load * b)
    return b


def _c_from_b(agents: int, load: float, b: float) -> float:
    if agents <= load:
        return 1.0  # the queue grows without bound: everyone waits
    return agents * b / (agents - load * (1.0 - b))


@dataclass(frozen=True)
class ErlangC:
    agents: int
    load_erlangs: float
    aht_s: float
    target_s: float
    p_wait: float
    service_level: float  # share answered within target_s
    asa_s: float  # mean wait of all callers (math.inf when agents <= load)
    occupancy: float

    def as_dict(self) -> dict[str, object]:
        return {
            "agents": self.agents,
            "load_erlangs": self.load_erlangs,
            "aht_s": self.aht_s,
            "target_s": self.target_s,
            "p_wait": self.p_wait,
            "service_level": self.service_level,
            "asa_s": None if math.isinf(self.asa_s) else self.asa_s,
            "occupancy": self.occupancy,
        }


def _erlang_c(agents: int, load: float, aht_s: float, target_s: float, b: float) -> ErlangC:
    if load == 0:
        return ErlangC(agents, 0.0, aht_s, target_s, 0.0, 1.0, 0.0, 0.0)
    c = _c_from_b(agents, load, b)
    if agents <= load:
        return ErlangC(agents, load, aht_s, target_s, 1.0, 0.0, math.inf, 1.0 if agents else 0.0)
    gap = agents - load
    sl = 1.0 - c * math.exp(-gap * target_s / aht_s)
    return ErlangC(agents, load, aht_s, target_s, c, max(0.0, sl), c * aht_s / gap, load / agents)


def erlang_c(agents: int, load: float, aht_s: float, target_s: float = 20.0) -> ErlangC:
    """Erlang C figures for `agents` answering `load` Erlangs with handle time `aht_s`."""
    if agents < 0 or load < 0 or aht_s <= 0 or target_s < 0:
        raise ValueError("agents, load and target must be >= 0 and the handle time > 0")
    return _erlang_c(agents, load, aht_s, target_s, erlang_b(agents, load))


def agents_for_target(load: float, aht_s: float, sl_target: float, target_s: float) -> ErlangC:
    """The fewest agents whose service level at `target_s` reaches `sl_target` (0 < sl_target < 1)."""
    if not 0.0 < sl_target < 1.0:
        raise ValueError("the service-level target must be between 0 and 1 (exclusive)")
    if load < 0 or aht_s <= 0 or target_s < 0:
        raise ValueError("load and target must be >= 0 and the handle time > 0")
    if load == 0:
        return _erlang_c(0, 0.0, aht_s, target_s, 1.0)
    # One pass of the recursion: B(n) for n = 1, 2, ... until the target is met.
    b = 1.0
    for n in range(1, MAX_AGENTS + 1):
        b = load * b / (n + load * b)
        if n > load:
            result = _erlang_c(n, load, aht_s, target_s, b)
            if result.service_level >= sl_target:
                return result
    raise ValueError(f"more than {MAX_AGENTS} agents needed")


def scheduled_with_shrinkage(agents: int, shrinkage: float) -> int:
    """Agents to schedule so that `agents` are on the phones when a share `shrinkage` is away."""
    if not 0.0 <= shrinkage < 1.0:
        raise ValueError("shrinkage must be in [0, 1)")
    # Rounded to 9 places first: 14 / 0.7 is 20.000000000000004 in binary floating point.
    return math.ceil(round(agents / (1.0 - shrinkage), 9))


@dataclass(frozen=True)
class ErlangA:
    agents: int
    load_erlangs: float
    aht_s: float
    patience_s: float
    target_s: float
    p_wait: float
    p_abandon: float
    service_level: float  # share of offered callers answered within target_s
    avg_wait_s: float  # mean time in queue of every caller (answered or not), by Little's law
    occupancy: float

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def erlang_a(agents: int, load: float, aht_s: float, patience_s: float, target_s: float = 20.0) -> ErlangA:
    """M/M/n+M: like Erlang C, but a waiting caller hangs up after an exponential patience (mean
    `patience_s`). Stable for any agents/load ratio (abandonment bounds the queue)."""
    if agents < 1 or load < 0 or aht_s <= 0 or patience_s <= 0 or target_s < 0:
        raise ValueError("agents >= 1, load and target >= 0, handle time and patience > 0")
    lam, mu, theta = load / aht_s, 1.0 / aht_s, 1.0 / patience_s
    # Unnormalised stationary weights, relative to state 0, kept in log space against overflow.
    logs = [0.0]
    for j in range(1, agents + 1):
        logs.append(logs[-1] + math.log(lam / (j * mu)) if lam > 0 else -math.inf)
    k = 0
    while True:
        k += 1
        rate = agents * mu + k * theta
        logs.append(logs[-1] + math.log(lam / rate) if lam > 0 else -math.inf)
        if k > 10 and (lam < rate and logs[-1] - max(logs) < math.log(1e-15)):
            break
        if k > 1_000_000:
            raise ValueError("the queue does not settle: check patience and load")
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    total = sum(weights)
    probs = [w / total for w in weights]
    queue = probs[agents:]  # queue[k] = P(k callers waiting), arrivals see these (PASTA)
    p_wait = sum(queue)
    lq = sum(i * p for i, p in enumerate(queue))
    p_abandon = theta * lq / lam if lam > 0 else 0.0
    busy = sum(min(j, agents) * p for j, p in enumerate(probs))
    served_within = _erlang_a_answered_within(agents, mu, theta, target_s, queue)
    return ErlangA(
        agents=agents,
        load_erlangs=load,
        aht_s=aht_s,
        patience_s=patience_s,
        target_s=target_s,
        p_wait=p_wait,
        p_abandon=p_abandon,
        service_level=(1.0 - p_wait) + served_within,
        avg_wait_s=lq / lam if lam > 0 else 0.0,
        occupancy=busy / agents,
    )


def _erlang_a_answered_within(
    agents: int, mu: float, theta: float, t: float, queue: Sequence[float]
) -> float:
    """P(an arrival waits, then reaches an agent within t), by uniformization of the tagged caller's chain:
    with j callers ahead it moves to j-1 at rate n·mu + j·theta (an agent frees or someone ahead gives up),
    reaches an agent from j = 0 at rate n·mu, and gives up itself at rate theta."""
    kmax = len(queue) - 1
    if t <= 0 or kmax < 0:
        return 0.0
    uniform = agents * mu + kmax * theta + theta
    # f[j] = P(served by the current horizon | j ahead); start at horizon 0: nothing served yet.
    steps_mean = uniform * t
    terms = int(steps_mean + 10.0 * math.sqrt(steps_mean) + 20)
    f = [0.0] * (kmax + 1)
    acc = [0.0] * (kmax + 1)
    log_poisson = -steps_mean  # log P(N = 0)
    for m in range(terms + 1):
        weight = math.exp(log_poisson)
        for j in range(kmax + 1):
            acc[j] += weight * f[j]
        # One uniformized step: f_{m+1}[j] = sum over moves from j of P(move) * f_m[target].
        new = [0.0] * (kmax + 1)
        for j in range(kmax + 1):
            forward = agents * mu + j * theta
            ahead = 1.0 if j == 0 else f[j - 1]
            stay = 1.0 - (forward + theta) / uniform
            new[j] = (forward * ahead) / uniform + stay * f[j]
        f = new
        log_poisson += math.log(steps_mean) - math.log(m + 1) if steps_mean > 0 else -math.inf
    return sum(p * a for p, a in zip(queue, acc, strict=True))


# -- the what-if simulator --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationResult:
    offered: int
    answered: int
    abandoned: int
    answered_within: int
    waited: int
    service_level: float  # answered within target / offered
    p_wait: float
    asa_s: float  # mean wait of answered callers
    occupancy: float
    abandoned_long: int = 0  # of the abandoned, those who waited at least `short_abandon_s`

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def poisson_arrivals(rng: random.Random, rate_per_s: float, duration_s: float) -> list[float]:
    """Arrival times of a Poisson process over [0, duration_s)."""
    times: list[float] = []
    now = rng.expovariate(rate_per_s)
    while now < duration_s:
        times.append(now)
        now += rng.expovariate(rate_per_s)
    return times


def simulate(
    arrivals: Sequence[float],
    handle_s: Sequence[float],
    agents: int,
    target_s: float,
    *,
    patience_s: Sequence[float] | None = None,
    short_abandon_s: float = 0.0,
) -> SimulationResult:
    """First-come first-served queue with `agents` identical agents: each caller arrives at arrivals[i]
    (sorted), needs handle_s[i] seconds of an agent and, with `patience_s`, hangs up after patience_s[i]
    seconds of waiting. Deterministic for given inputs: draw them from a seeded `random.Random` (or replay
    a tenant's own arrivals and handle times)."""
    if agents < 1:
        raise ValueError("at least one agent")
    if len(handle_s) != len(arrivals) or (patience_s is not None and len(patience_s) != len(arrivals)):
        raise ValueError("arrivals, handle times and patience must have the same length")
    free_at = [0.0] * agents  # a heap of the times each agent becomes free
    answered = abandoned = abandoned_long = within = waited = 0
    total_wait = busy = 0.0
    previous = -math.inf
    for i, arrival in enumerate(arrivals):
        if arrival < previous:
            raise ValueError("arrivals must be sorted")
        previous = arrival
        # FIFO with identical agents: the caller gets the agent that frees first, once every caller ahead
        # has been placed (or has given up before reaching one, which frees nothing).
        start = max(arrival, free_at[0])
        wait = start - arrival
        if wait > 0:
            waited += 1
        if patience_s is not None and wait > patience_s[i]:
            abandoned += 1
            abandoned_long += patience_s[i] >= short_abandon_s
            continue
        heapq.heapreplace(free_at, start + handle_s[i])
        answered += 1
        total_wait += wait
        busy += handle_s[i]
        if wait <= target_s:
            within += 1
    offered = len(arrivals)
    span = (max(free_at) - arrivals[0]) if offered else 0.0
    return SimulationResult(
        offered=offered,
        answered=answered,
        abandoned=abandoned,
        answered_within=within,
        waited=waited,
        service_level=within / offered if offered else 1.0,
        p_wait=waited / offered if offered else 0.0,
        asa_s=total_wait / answered if answered else 0.0,
        occupancy=busy / (agents * span) if span > 0 else 0.0,
        abandoned_long=abandoned_long,
    )
