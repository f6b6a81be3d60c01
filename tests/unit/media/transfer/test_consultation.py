"""The attended transfer's state machine (services/media/features/consult.py, sans-IO): every command and every leg's
end gives the next state, the event's reason and the actions in order; a leg media did not originate is
never hung up; illegal moves are refused with a reason."""

from __future__ import annotations

import uuid

import pytest

from services.media.features.consult import (
    _MOVES,
    Action,
    Consultation,
    ConsultState,
    Party,
    TransferStateError,
    Trigger,
)

A = Action
# The table reads neither the clock nor the random generator (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("no_ambient_clock_or_ids")


def consultation(state: ConsultState = ConsultState.CONSULTING, *, originated: bool = True) -> Consultation:
    return Consultation(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), originated, state)


def test_consult_answered_then_completed() -> None:
    c = consultation(ConsultState.RINGING)
    assert c.on(Trigger.ANSWERED) == [A.STOP_RINGBACK, A.JOIN_AGENT_TARGET]
    assert c.state is ConsultState.CONSULTING and not c.done
    assert c.on(Trigger.COMPLETE) == [A.SEPARATE_AGENT, A.STOP_MUSIC, A.JOIN_CALLER_TARGET]
    assert c.done and c.state is ConsultState.COMPLETED


@pytest.mark.parametrize("originated", [True, False])
def test_cancel_hangs_up_only_a_target_media_originated(originated: bool) -> None:
    c = consultation(originated=originated)
    actions = c.on(Trigger.CANCEL)
    assert (A.HANGUP_TARGET in actions) is originated
    assert actions[0] is A.SEPARATE_AGENT and actions[-2:] == [A.STOP_MUSIC, A.JOIN_AGENT_CALLER]
    assert (c.state, c.reason) == (ConsultState.CANCELLED, "command")


@pytest.mark.parametrize(
    ("state", "party", "next_state", "reason", "actions"),
    [
        (
            ConsultState.CONSULTING,
            Party.AGENT,
            ConsultState.COMPLETED,
            "agent_ended",
            [A.STOP_MUSIC, A.JOIN_CALLER_TARGET],
        ),
        (
            ConsultState.CONSULTING,
            Party.TARGET,
            ConsultState.CANCELLED,
            "target_ended",
            [A.STOP_MUSIC, A.JOIN_AGENT_CALLER],
        ),
        (ConsultState.CONSULTING, Party.CALLER, ConsultState.CANCELLED, "caller_ended", []),
        (
            ConsultState.RINGING,
            Party.CALLER,
            ConsultState.CANCELLED,
            "caller_ended",
            [A.HANGUP_TARGET, A.STOP_RINGBACK],
        ),
        (ConsultState.RINGING, Party.AGENT, ConsultState.CANCELLED, "agent_ended", [A.HANGUP_TARGET]),
        (
            ConsultState.RINGING,
            Party.TARGET,
            ConsultState.CANCELLED,
            "failed",
            [A.STOP_RINGBACK, A.STOP_MUSIC, A.JOIN_AGENT_CALLER],
        ),
    ],
)
def test_a_leg_ending_moves_the_transfer(state, party, next_state, reason, actions) -> None:  # type: ignore[no-untyped-def]
    c = consultation(state)
    trigger = {
        Party.CALLER: Trigger.CALLER_ENDED,
        Party.AGENT: Trigger.AGENT_ENDED,
        Party.TARGET: Trigger.TARGET_ENDED,
    }
    assert c.on(trigger[party]) == actions
    assert (c.state, c.reason) == (next_state, reason)
    assert c.party(getattr(c, party.value)) is party


def test_illegal_moves_are_refused_and_change_nothing() -> None:
    ringing = consultation(ConsultState.RINGING)
    with pytest.raises(TransferStateError, match="cannot complete a transfer that is ringing"):
        ringing.on(Trigger.COMPLETE)
    assert ringing.state is ConsultState.RINGING
    done = consultation()
    done.on(Trigger.COMPLETE)
    for trigger in (Trigger.CANCEL, Trigger.COMPLETE, Trigger.AGENT_ENDED):
        with pytest.raises(TransferStateError):
            done.on(trigger)
    assert done.state is ConsultState.COMPLETED


@pytest.mark.parametrize(("state", "trigger"), list(_MOVES), ids=[f"{s.value}-{t.value}" for s, t in _MOVES])
def test_every_row_of_the_table(state: ConsultState, trigger: Trigger) -> None:
    new, reason, actions = _MOVES[(state, trigger)]
    c = consultation(state)
    assert c.on(trigger) == list(actions)
    assert (c.state, c.reason) == (new, reason)


@pytest.mark.parametrize("state", list(ConsultState))
def test_every_move_the_table_lacks_is_refused(state: ConsultState) -> None:
    for trigger in Trigger:
        if (state, trigger) in _MOVES:
            continue
        c = consultation(state)
        with pytest.raises(TransferStateError):
            c.on(trigger)
        assert c.state is state
