"""SupervisorCore: restart back-off (0.5 s doubling to 30 s), reset after 60 s of healthy running, stop."""

from __future__ import annotations

import pytest

from services.runtime.supervisor_core import ChildState, Policy, RestartScheduled, Start, SupervisorCore


def crash(core: SupervisorCore, name: str, now: float, code: int = 1) -> RestartScheduled:
    actions = core.exited(name, code, now)
    assert len(actions) == 1
    report = actions[0]
    assert isinstance(report, RestartScheduled)
    return report


def test_start_starts_every_child_once() -> None:
    core = SupervisorCore(["api", "media"])
    assert core.start(100.0) == [Start("api", 0), Start("media", 0)]
    assert core.running() == ["api", "media"]
    assert core.next_timer() is None
    assert core.handle_timer(200.0) == []


def test_needs_a_child() -> None:
    with pytest.raises(ValueError):
        SupervisorCore([])


def test_crash_restarts_after_half_a_second_not_before() -> None:
    core = SupervisorCore(["media"])
    core.start(0.0)
    report = crash(core, "media", 3.0, code=-9)
    assert (report.returncode, report.delay_s, report.restarts, report.ran_for_s) == (-9, 0.5, 1, 3.0)
    assert core.state("media") is ChildState.WAITING
    assert core.next_timer() == 3.5
    assert core.handle_timer(3.49) == []
    assert core.handle_timer(3.5) == [Start("media", 1)]
    assert core.state("media") is ChildState.RUNNING
    assert core.next_timer() is None


def test_back_off_doubles_up_to_thirty_seconds() -> None:
    core = SupervisorCore(["ivr"])
    now = 0.0
    core.start(now)
    delays = []
    for _ in range(10):
        now += 1.0  # crashes one second after each start
        report = crash(core, "ivr", now)
        delays.append(report.delay_s)
        now = report.delay_s + now
        assert core.handle_timer(now) == [Start("ivr", report.restarts)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert core.restarts("ivr") == 10  # never given up on


def test_sixty_seconds_of_healthy_running_resets_the_back_off() -> None:
    core = SupervisorCore(["routing"])
    now = 0.0
    core.start(now)
    for _ in range(5):  # back-off grows to 16 s
        now += 1.0
        report = crash(core, "routing", now)
        now += report.delay_s
        core.handle_timer(now)
    now += 59.9
    assert crash(core, "routing", now).delay_s == 16  # 59.9 s is not yet healthy
    now += 16
    core.handle_timer(now)
    now += 60.0
    assert crash(core, "routing", now).delay_s == 0.5
    now += 0.5
    core.handle_timer(now)
    now += 1.0
    assert crash(core, "routing", now).delay_s == 1


def test_children_back_off_independently() -> None:
    core = SupervisorCore(["api", "media"])
    core.start(0.0)
    crash(core, "api", 1.0)
    core.handle_timer(1.5)
    assert crash(core, "api", 2.0).delay_s == 1
    assert crash(core, "media", 2.0).delay_s == 0.5
    assert core.next_timer() == 2.5
    assert core.handle_timer(2.5) == [Start("media", 1)]
    assert core.handle_timer(3.0) == [Start("api", 2)]


def test_a_custom_policy_is_honoured() -> None:
    core = SupervisorCore(["x"], Policy(initial_backoff_s=1.0, max_backoff_s=3.0, healthy_after_s=10.0))
    core.start(0.0)
    assert crash(core, "x", 1.0).delay_s == 1.0
    core.handle_timer(2.0)
    assert crash(core, "x", 3.0).delay_s == 2.0
    core.handle_timer(5.0)
    assert crash(core, "x", 6.0).delay_s == 3.0
    core.handle_timer(9.0)
    assert crash(core, "x", 19.0).delay_s == 1.0


def test_stop_prevents_every_further_start() -> None:
    core = SupervisorCore(["api", "media"])
    core.start(0.0)
    crash(core, "media", 1.0)
    core.stop()
    assert core.state("media") is ChildState.STOPPED
    assert core.next_timer() is None
    assert core.handle_timer(100.0) == []
    assert core.exited("api", 0, 2.0) == []  # exits while stopping are expected, not crashes
    assert core.state("api") is ChildState.STOPPED
    assert core.running() == []


def test_an_exit_of_a_child_that_is_not_running_is_ignored() -> None:
    core = SupervisorCore(["api"])
    core.start(0.0)
    crash(core, "api", 1.0)
    assert core.exited("api", 1, 1.2) == []  # already waiting for its restart
    assert core.next_timer() == 1.5


def test_a_failed_spawn_counts_as_a_crash() -> None:
    core = SupervisorCore(["api"])
    core.start(0.0)
    actions = core.start_failed("api", 0.0)
    assert actions == [RestartScheduled("api", -1, 0.0, 0.5, 1)]
