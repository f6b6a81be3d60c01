"""The blind transfer's state machine (services/media/features/transfer.py, sans-IO): every row of its table,
the order in which the ring wait's outcomes count, and illegal moves refused."""

from __future__ import annotations

import pytest

from services.media.features.transfer import (
    _MOVES,
    BlindTransfer,
    TransferAction,
    TransferError,
    TransferState,
    TransferTrigger,
)
from services.media.ua.call import CallState

A, S, T = TransferAction, TransferState, TransferTrigger


def at(state: TransferState) -> BlindTransfer:
    return BlindTransfer("+15550100300", 30.0, state=state)


@pytest.mark.parametrize(
    ("state", "trigger", "new", "actions"),
    [(s, t, new, list(actions)) for (s, t), (new, actions) in _MOVES.items()],
    ids=[f"{s.value}-{t.value}" for s, t in _MOVES],
)
def test_every_row_of_the_table(
    state: TransferState, trigger: TransferTrigger, new: TransferState, actions: list[TransferAction]
) -> None:
    transfer = at(state)
    assert transfer.on(trigger) == actions
    assert transfer.state is new


def test_the_happy_path_rings_then_bridges_and_links_the_legs() -> None:
    transfer = at(S.DIALLING)
    assert transfer.on(T.DIALLED) == [A.PLAY_RINGBACK]
    assert transfer.waited(caller_ended=False, target=CallState.ANSWERED) == [A.STOP_RINGBACK, A.BRIDGE]
    assert transfer.on(T.BRIDGED) == [A.LINK]
    assert transfer.state is S.BRIDGED and transfer.outcome == ""


@pytest.mark.parametrize(
    ("caller_ended", "target", "outcome", "code", "actions"),
    [
        # The caller leaving counts first, even if the outside number answered meanwhile.
        (True, CallState.ANSWERED, "the caller hung up", "ended", [A.HANGUP_TARGET]),
        (False, None, "+15550100300 did not take the call", "transfer_failed", [A.STOP_RINGBACK]),
        (False, CallState.ENDED, "+15550100300 did not take the call", "transfer_failed", [A.STOP_RINGBACK]),
        (
            False,
            CallState.RINGING,
            "+15550100300 did not answer within 30 s",
            "transfer_failed",
            [A.HANGUP_TARGET, A.STOP_RINGBACK],
        ),
    ],
)
def test_the_ring_waits_outcome(
    caller_ended: bool, target: CallState | None, outcome: str, code: str, actions: list[TransferAction]
) -> None:
    transfer = at(S.RINGING)
    assert transfer.waited(caller_ended=caller_ended, target=target) == actions
    assert (transfer.state, transfer.outcome, transfer.code) == (S.FAILED, outcome, code)


def test_a_failed_bridge_hangs_the_outside_leg_up_with_the_bridges_reason() -> None:
    transfer = at(S.BRIDGING)
    assert transfer.on(T.BRIDGE_FAILED, "codec mismatch") == [A.HANGUP_TARGET]
    assert (transfer.outcome, transfer.code) == ("codec mismatch", "transfer_failed")
    other = at(S.BRIDGING)
    other.on(T.BRIDGE_FAILED)
    assert other.outcome == "the legs could not be bridged"


@pytest.mark.parametrize("state", list(TransferState))
def test_a_move_the_table_lacks_is_refused_and_changes_nothing(state: TransferState) -> None:
    for trigger in TransferTrigger:
        if (state, trigger) in _MOVES:
            continue
        transfer = at(state)
        with pytest.raises(TransferError):
            transfer.on(trigger)
        assert transfer.state is state


def test_the_end_states_take_nothing() -> None:
    assert not [key for key in _MOVES if key[0] in (S.BRIDGED, S.FAILED)]
