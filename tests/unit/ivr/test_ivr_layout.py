"""The interpreter's dispatch tables cover every node kind of the flow format, and a call saved by an older
IVR process (state version 1, continuations as strings) resumes in this one."""

from __future__ import annotations

import typing
import uuid

import msgspec
from switchboard.flowdef import flow as flowdef

from services.ivr.kinds import AFTER_PROMPT, ANSWERED, RUN
from services.ivr.state import STATE_VERSION, AskAgain, CallState, Continue, Finish, GoTo, decode_state


def test_every_node_kind_has_a_module() -> None:
    kinds = set(typing.get_args(flowdef.Node))
    assert kinds and set(RUN) == kinds
    # A kind that asks for digits must know what to do with them; one that plays a prompt of its own and
    # then acts must say how.
    assert set(ANSWERED) == {
        flowdef.Menu,
        flowdef.DynamicMenu,
        flowdef.Collect,
        flowdef.Survey,
        flowdef.Callback,
    }
    assert set(AFTER_PROMPT) == {flowdef.Voicemail, flowdef.Transfer, flowdef.Hangup}


def _saved_v1(after: str) -> bytes:
    state = CallState(tenant_id=uuid.uuid4(), call_id=uuid.uuid4(), flow="f", version=1, started_at=0.0)
    raw = msgspec.to_builtins(state)
    raw.update(v=1, after=after)
    return msgspec.json.encode(raw)


def test_a_version_1_state_is_read() -> None:
    cases = {
        "next:menu": GoTo(node="menu"),
        "collect": AskAgain(),
        "record": Continue(),
        "transfer": Continue(),
        "hangup": Continue(),
        "finish:callback": Finish(outcome="callback", result="callback"),
        "": None,
        "music": None,
    }
    for text, expected in cases.items():
        state = decode_state(_saved_v1(text))
        assert state.after == expected, text
        assert state.v == STATE_VERSION


def test_a_continuation_survives_a_round_trip() -> None:
    state = CallState(
        tenant_id=uuid.uuid4(),
        call_id=uuid.uuid4(),
        flow="f",
        version=1,
        started_at=0.0,
        after=GoTo(node="x"),
    )
    assert decode_state(msgspec.json.encode(state)).after == GoTo(node="x")
