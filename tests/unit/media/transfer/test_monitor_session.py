"""The supervisor monitor's state machine (services/media/features/monitor.py, sans-IO): starting in a mode,
changing it, and each way it ends, with the actions in order; illegal moves refused."""

from __future__ import annotations

import pytest

from services.media.bridge.mixer import MonitorMode
from services.media.features.monitor import (
    _MOVES,
    MonitorAction,
    MonitorError,
    MonitorSession,
    MonitorState,
    MonitorTrigger,
)

A, S, T = MonitorAction, MonitorState, MonitorTrigger
WATCHING = (S.LISTENING, S.WHISPERING, S.BARGING)


@pytest.mark.parametrize(("state", "trigger"), list(_MOVES), ids=[f"{s.value}-{t.value}" for s, t in _MOVES])
def test_every_row_of_the_table(state: MonitorState, trigger: MonitorTrigger) -> None:
    new, reason, actions = _MOVES[(state, trigger)]
    session = MonitorSession(state)
    assert session.on(trigger, "hangup") == list(actions)
    assert session.state is new and session.reason == (reason or "hangup")


def test_a_monitor_starts_attached_in_its_mode_and_changes_it() -> None:
    session = MonitorSession()
    assert session.mode is MonitorMode.NONE
    assert session.on(T.WHISPER) == [A.STOP_SUPERVISOR_PROMPTS, A.ATTACH, A.LOG]
    assert session.mode is MonitorMode.WHISPER
    assert session.on(T.WHISPER) == []  # the same mode again changes nothing, says nothing
    assert session.on(T.BARGE) == [A.SET_MODE, A.LOG] and session.mode is MonitorMode.BARGE


@pytest.mark.parametrize(
    ("trigger", "reason", "actions"),
    [
        (T.UNMONITOR, "command", [A.RELEASE, A.REJOIN, A.LOG]),
        (T.SUPERVISOR_ENDED, "ended", [A.RELEASE, A.REJOIN, A.LOG]),
        (T.UNBRIDGED, "unbridged", [A.RELEASE, A.LOG]),
        (T.CALL_ENDED, "hangup", [A.RELEASE, A.LOG, A.HANGUP_PHONE]),
    ],
)
def test_each_way_a_monitor_ends(trigger: MonitorTrigger, reason: str, actions: list[MonitorAction]) -> None:
    for state in WATCHING:
        session = MonitorSession(state)
        assert session.on(trigger, "hangup") == actions
        assert (session.state, session.reason, session.mode) == (S.ENDED, reason, MonitorMode.NONE)


@pytest.mark.parametrize("state", list(MonitorState))
def test_a_move_the_table_lacks_is_refused_and_changes_nothing(state: MonitorState) -> None:
    for trigger in MonitorTrigger:
        if (state, trigger) in _MOVES:
            continue
        session = MonitorSession(state)
        with pytest.raises(MonitorError):
            session.on(trigger)
        assert session.state is state


def test_an_idle_monitor_cannot_end_and_an_ended_one_takes_nothing() -> None:
    assert {t for s, t in _MOVES if s is S.IDLE} == {T.LISTEN, T.WHISPER, T.BARGE}
    assert not [key for key in _MOVES if key[0] is S.ENDED]
