"""Staffing math (switchboard.staffing): the published worked example, properties of Erlang C and A, the
simulator against Erlang C where its assumptions hold, and `switchboard erlang`."""

from __future__ import annotations

import json
import math
import random
import time

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from switchboard import staffing
from switchboard_cli.main import cli
from switchboard_cli.staffing import parse_period

# -- the worked example: 100 calls per 30 min, AHT 180 s, 80 % in 20 s -----------------------------------


def test_worked_example_needs_14_agents_and_20_scheduled_with_30_percent_shrinkage() -> None:
    load = staffing.traffic_erlangs(100, 1800, 180)
    assert load == pytest.approx(10.0)
    result = staffing.agents_for_target(load, 180, 0.80, 20)
    assert result.agents == 14
    assert result.service_level == pytest.approx(0.888, abs=0.0005)
    assert result.p_wait == pytest.approx(0.174, abs=0.0005)
    assert result.occupancy == pytest.approx(0.714, abs=0.0005)
    assert staffing.erlang_c(13, load, 180, 20).service_level < 0.80  # 13 is one too few
    assert staffing.scheduled_with_shrinkage(14, 0.30) == 20


def test_erlang_b_recursion_matches_the_closed_form_where_it_fits() -> None:
    for n, a in [(1, 0.5), (5, 3.0), (10, 7.5), (30, 25.0)]:
        closed = (a**n / math.factorial(n)) / sum(a**k / math.factorial(k) for k in range(n + 1))
        assert staffing.erlang_b(n, a) == pytest.approx(closed, rel=1e-12)


def test_large_loads_do_not_overflow() -> None:
    result = staffing.agents_for_target(10_000.0, 180, 0.9, 20)
    assert result.agents > 10_000
    assert 0.9 <= result.service_level < 1.0
    assert math.isfinite(result.asa_s)


def test_1000_erlangs_is_fast() -> None:
    # A benchmark figure, printed; not a timed assertion (the machine is shared).
    start = time.perf_counter()
    result = staffing.agents_for_target(1000.0, 180, 0.8, 20)
    elapsed_ms = (time.perf_counter() - start) * 1000
    print(f"agents_for_target(1000 Erlangs) = {result.agents} in {elapsed_ms:.2f} ms")
    assert result.agents > 1000


def test_too_few_agents_wait_forever() -> None:
    result = staffing.erlang_c(10, 10.0, 180, 20)
    assert result.p_wait == 1.0
    assert result.service_level == 0.0
    assert math.isinf(result.asa_s)
    assert result.as_dict()["asa_s"] is None


@pytest.mark.parametrize(
    "call",
    [
        lambda: staffing.traffic_erlangs(10, 0, 180),
        lambda: staffing.erlang_c(-1, 1.0, 180),
        lambda: staffing.agents_for_target(10.0, 180, 1.0, 20),
        lambda: staffing.scheduled_with_shrinkage(10, 1.0),
        lambda: staffing.erlang_a(0, 1.0, 180, 60),
        lambda: staffing.simulate([1.0, 0.5], [10.0, 10.0], 1, 20),
    ],
)
def test_bad_input_is_refused(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


# -- properties ------------------------------------------------------------------------------------------

loads = st.floats(min_value=0.1, max_value=500.0)
ahts = st.floats(min_value=10.0, max_value=1200.0)
targets = st.floats(min_value=0.0, max_value=120.0)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(load=loads, aht=ahts, target=targets, extra=st.integers(min_value=1, max_value=40))
def test_service_level_rises_and_waiting_falls_with_agents(
    load: float, aht: float, target: float, extra: int
) -> None:
    n = math.floor(load) + extra
    fewer, more = staffing.erlang_c(n, load, aht, target), staffing.erlang_c(n + 1, load, aht, target)
    assert more.service_level >= fewer.service_level - 1e-12
    assert more.p_wait <= fewer.p_wait + 1e-12
    assert more.asa_s <= fewer.asa_s + 1e-9
    assert 0.0 <= fewer.p_wait <= 1.0 and 0.0 <= fewer.service_level <= 1.0


@settings(max_examples=100, deadline=None, derandomize=True)
@given(agents=st.integers(min_value=1, max_value=500), aht=ahts)
def test_probability_of_waiting_tends_to_one_as_agents_approach_the_load(agents: int, aht: float) -> None:
    waits = [staffing.erlang_c(agents, agents * share, aht, 20).p_wait for share in (0.5, 0.9, 0.99, 0.9999)]
    assert waits == sorted(waits)
    assert waits[-1] > 0.99


@settings(max_examples=100, deadline=None, derandomize=True)
@given(load=loads, aht=ahts, sl=st.floats(min_value=0.05, max_value=0.99), target=targets)
def test_agents_for_target_is_the_fewest_that_meet_it(
    load: float, aht: float, sl: float, target: float
) -> None:
    result = staffing.agents_for_target(load, aht, sl, target)
    assert result.service_level >= sl
    assert result.agents > load
    if result.agents - 1 > load:
        assert staffing.erlang_c(result.agents - 1, load, aht, target).service_level < sl


@settings(max_examples=40, deadline=None, derandomize=True)
@given(load=st.floats(min_value=0.5, max_value=30.0), aht=ahts, extra=st.integers(min_value=1, max_value=8))
def test_erlang_a_with_endless_patience_is_erlang_c(load: float, aht: float, extra: int) -> None:
    n = math.floor(load) + extra
    c = staffing.erlang_c(n, load, aht, 20)
    a = staffing.erlang_a(n, load, aht, patience_s=aht * 1e6, target_s=20)
    assert a.p_wait == pytest.approx(c.p_wait, abs=1e-4)
    assert a.service_level == pytest.approx(c.service_level, abs=1e-4)
    assert a.p_abandon < 1e-4


def test_erlang_a_abandonment_helps_the_callers_who_stay() -> None:
    c = staffing.erlang_c(14, 10.0, 180, 20)
    a = staffing.erlang_a(14, 10.0, 180, 120, 20)
    assert 0.0 < a.p_abandon < 0.1
    assert a.p_wait < c.p_wait
    # Past the load (no Erlang C steady state), Erlang A still settles.
    over = staffing.erlang_a(8, 10.0, 180, 60, 20)
    assert 0.0 < over.p_abandon < 1.0 and over.occupancy < 1.0


# -- the simulator against the formulas ------------------------------------------------------------------

# Tolerance: 2,000 simulated hours (about 400,000 calls) put the sampling error of the service level and
# of P(wait) near 0.003; 0.015 leaves room for any seed while still catching a wrong queue discipline.
TOLERANCE = 0.015


@pytest.mark.parametrize("seed", [1, 2])
def test_simulator_agrees_with_erlang_c_on_poisson_arrivals_and_exponential_handling(seed: int) -> None:
    rng = random.Random(seed)
    arrivals = staffing.poisson_arrivals(rng, 100 / 1800, 2000 * 3600)
    handle = [rng.expovariate(1 / 180) for _ in arrivals]
    simulated = staffing.simulate(arrivals, handle, 14, 20)
    formula = staffing.erlang_c(14, 10.0, 180, 20)
    assert simulated.service_level == pytest.approx(formula.service_level, abs=TOLERANCE)
    assert simulated.p_wait == pytest.approx(formula.p_wait, abs=TOLERANCE)
    assert simulated.occupancy == pytest.approx(formula.occupancy, abs=TOLERANCE)
    assert simulated.asa_s == pytest.approx(formula.asa_s, rel=0.1)


def test_simulator_agrees_with_erlang_a_when_callers_give_up() -> None:
    rng = random.Random(7)
    arrivals = staffing.poisson_arrivals(rng, 100 / 1800, 2000 * 3600)
    handle = [rng.expovariate(1 / 180) for _ in arrivals]
    patience = [rng.expovariate(1 / 120) for _ in arrivals]
    simulated = staffing.simulate(arrivals, handle, 13, 20, patience_s=patience)
    formula = staffing.erlang_a(13, 10.0, 180, 120, 20)
    assert simulated.abandoned / simulated.offered == pytest.approx(formula.p_abandon, abs=TOLERANCE)
    assert simulated.service_level == pytest.approx(formula.service_level, abs=TOLERANCE)
    assert simulated.p_wait == pytest.approx(formula.p_wait, abs=TOLERANCE)


def test_simulator_replays_given_arrivals_exactly() -> None:
    # Two agents, four callers: the third waits for the first free agent, the fourth gives up.
    result = staffing.simulate([0.0, 1.0, 2.0, 3.0], [10.0, 30.0, 5.0, 5.0], 2, 5, patience_s=[9, 9, 9, 9])
    assert (result.answered, result.abandoned, result.waited) == (3, 1, 2)
    assert result.asa_s == pytest.approx(8.0 / 3)  # waits 0, 0, 8
    assert result.answered_within == 2


# -- the CLI ---------------------------------------------------------------------------------------------


def test_cli_erlang_json_gives_the_worked_example() -> None:
    result = CliRunner().invoke(
        cli,
        [
            "erlang",
            "--calls",
            "100",
            "--per",
            "30m",
            "--aht",
            "180",
            "--target",
            "80/20",
            "--shrinkage",
            "30",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["agents"] == 14 and data["scheduled"] == 20 and data["meets_target"] is True
    assert round(data["service_level"], 3) == 0.888
    assert round(data["p_wait"], 3) == 0.174
    assert round(data["occupancy"], 3) == 0.714


def test_cli_erlang_table_and_erlang_a() -> None:
    result = CliRunner().invoke(cli, ["erlang", "--calls", "100", "--aht", "180", "--patience", "120"])
    assert result.exit_code == 0, result.stderr
    assert "Erlang A" in result.stdout and "probability of abandoning" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--calls", "100", "--per", "3x", "--aht", "180"], "expected a period"),
        (["--calls", "100", "--aht", "0"], "--aht"),
        (["--calls", "100", "--aht", "180", "--target", "100/20"], "100 %"),
        (["--calls", "100", "--aht", "180", "--shrinkage", "100"], "--shrinkage"),
    ],
)
def test_cli_erlang_bad_input_is_a_usage_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["erlang", *args])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stdout == ""


def test_parse_period() -> None:
    assert parse_period("30m") == 1800 and parse_period("1h") == 3600 and parse_period("900s") == 900
    assert parse_period("15") == 900
