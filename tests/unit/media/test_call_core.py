"""The media service's sans-IO cores: the per-source rate limiter and the per-call logic. The call takes
`now` with every input and derives its events' ids from its call id: reading the clock or the id generator
raises here (tests/conftest.py)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from services.kernel.events import CallCollected, CallDtmf, CallEnded, CallPlayFinished
from services.media.ua.call import FRAME, TYPE_AHEAD_S, Call
from services.media.ua.ratelimit import SourceLimiter, Verdict

pytestmark = pytest.mark.usefixtures("no_ambient_clock_or_ids")


def test_limiter_rejects_then_ignores_a_flood_and_spares_others() -> None:
    lim = SourceLimiter(rate=10, burst=5, ban_after=3, ban_seconds=10)
    verdicts = [lim.check("10.0.0.1", 0.0) for _ in range(10)]
    assert verdicts[:5] == [Verdict.ALLOW] * 5
    assert verdicts[5:7] == [Verdict.REJECT] * 2
    assert verdicts[7:] == [Verdict.IGNORE] * 3
    assert lim.check("10.0.0.2", 0.0) is Verdict.ALLOW
    assert lim.check("10.0.0.1", 9.9) is Verdict.IGNORE
    assert lim.check("10.0.0.1", 10.1) is Verdict.ALLOW


def test_limiter_bans_a_source_above_its_rate_even_when_half_gets_through() -> None:
    # 100 requests/s against 50/s: every other request is allowed by the refill; it is still a flood.
    lim = SourceLimiter(rate=50, burst=100, ban_after=50, ban_seconds=60)
    verdicts = [lim.check("10.0.0.1", i / 100) for i in range(800)]
    first_ban = verdicts.index(Verdict.IGNORE)
    assert 200 < first_ban < 400 and set(verdicts[first_ban:]) == {Verdict.IGNORE}
    # Just under the rate, for as long: never refused.
    steady = [lim.check("10.0.0.2", i / 45) for i in range(800)]
    assert set(steady) == {Verdict.ALLOW}
    # A burst and then quiet: the refill forgives the rejections of the burst.
    burst = [lim.check("10.0.0.3", 0.0) for _ in range(120)]
    assert burst.count(Verdict.REJECT) == 20 and Verdict.IGNORE not in burst
    assert lim.check("10.0.0.3", 3.0) is Verdict.ALLOW
    assert [lim.check("10.0.0.3", 3.0) for _ in range(130)].count(Verdict.IGNORE) == 0


def _call() -> Call:
    call = Call(call_id=uuid.uuid4(), tenant_id=uuid.uuid4(), created_at=0.0)
    call.answered(0.0)
    return call


def test_collect_max_digits_terminator_and_timeouts() -> None:
    call = _call()
    cid = uuid.uuid4()
    call.collect(
        collect_id=cid,
        min_digits=1,
        max_digits=3,
        terminator="#",
        first_digit_timeout=5,
        inter_digit_timeout=2,
        now=0.0,
    )
    assert call.tick(4.9) == []
    events = call.digit("1", "rfc4733", 1.0) + call.digit("2", "rfc4733", 1.5)
    assert [type(e) for e in events] == [CallDtmf, CallDtmf]
    events = call.digit("#", "rfc4733", 2.0)
    done = [e for e in events if isinstance(e, CallCollected)]
    assert done[0].digits == "12" and done[0].reason == "terminator" and done[0].collect_id == cid

    call.collect(
        collect_id=uuid.uuid4(),
        min_digits=1,
        max_digits=2,
        terminator=None,
        first_digit_timeout=5,
        inter_digit_timeout=2,
        now=10.0,
    )
    assert [e.reason for e in call.tick(15.1) if isinstance(e, CallCollected)] == ["first_digit_timeout"]
    call.collect(
        collect_id=uuid.uuid4(),
        min_digits=1,
        max_digits=4,
        terminator=None,
        first_digit_timeout=5,
        inter_digit_timeout=2,
        now=20.0,
    )
    call.digit("7", "inband", 21.0)
    assert call.tick(22.9) == []
    ended = [e for e in call.tick(23.1) if isinstance(e, CallCollected)]
    assert ended[0].digits == "7" and ended[0].reason == "inter_digit_timeout"


def test_a_digit_interrupts_an_interruptible_prompt_and_duplicates_are_merged() -> None:
    call = _call()
    pid = uuid.uuid4()
    call.play(np.ones(FRAME * 10, dtype=np.int16), play_id=pid, now=0.0, interruptible=True)
    frame, _ = call.next_frame(0.02)
    assert frame is not None and frame[0] == 1
    events = call.digit("5", "rfc4733", 0.04)
    finished = [e for e in events if isinstance(e, CallPlayFinished)]
    assert finished[0].reason == "interrupted" and finished[0].digit == "5" and finished[0].play_id == pid
    assert call.digit("5", "inband", 0.08) == []  # the same press seen in-band
    assert call.next_frame(0.1)[0] is None


def test_prompt_end_and_call_end_events() -> None:
    call = _call()
    call.play(np.ones(FRAME * 2 + 10, dtype=np.int16), play_id=uuid.uuid4(), now=0.0)
    events = []
    for i in range(4):
        events += call.next_frame(i * 0.02)[1]
    assert [e.reason for e in events if isinstance(e, CallPlayFinished)] == ["done"]
    ended = [e for e in call.end("remote_bye", 12.5) if isinstance(e, CallEnded)]
    assert ended[0].cause == "remote_bye" and ended[0].duration == 12.5
    assert call.end("again", 13.0) == []


def _collect(call: Call, now: float, *, max_digits: int = 3, prompt: np.ndarray | None = None) -> uuid.UUID:
    cid = uuid.uuid4()
    call.collect(
        collect_id=cid,
        min_digits=1,
        max_digits=max_digits,
        terminator="#",
        first_digit_timeout=5,
        inter_digit_timeout=2,
        now=now,
        prompt=prompt,
    )
    return cid


def test_the_digit_that_interrupts_a_prompt_is_kept_for_the_next_collect() -> None:
    call = _call()
    call.play(np.ones(FRAME * 10, dtype=np.int16), play_id=uuid.uuid4(), now=0.0, interruptible=True)
    call.digit("4", "rfc4733", 0.04)
    assert call.pending_digit == "4"
    # The next collect starts with it (its prompt is skipped: the caller answered already) ...
    cid = _collect(call, 1.0, max_digits=2, prompt=np.ones(FRAME * 50, dtype=np.int16))
    assert call.playback is None and call.pending_digit is None
    done = [e for e in call.digit("2", "rfc4733", 1.5) if isinstance(e, CallCollected)]
    assert done[0].collect_id == cid and done[0].digits == "42" and done[0].reason == "max_digits"
    # ... and may complete at once.
    call.play(np.ones(FRAME * 10, dtype=np.int16), play_id=uuid.uuid4(), now=0.0, interruptible=True)
    call.digit("9", "rfc4733", 2.0)
    events = call.collect(
        collect_id=uuid.uuid4(),
        min_digits=1,
        max_digits=1,
        terminator=None,
        first_digit_timeout=5,
        inter_digit_timeout=2,
        now=2.5,
    )
    assert [(e.digits, e.reason) for e in events if isinstance(e, CallCollected)] == [("9", "max_digits")]
    # A typed-ahead terminator with nothing collected does not end the collection.
    call.play(np.ones(FRAME * 10, dtype=np.int16), play_id=uuid.uuid4(), now=0.0, interruptible=True)
    call.digit("#", "rfc4733", 3.0)
    assert [
        e
        for e in call.collect(
            collect_id=uuid.uuid4(),
            min_digits=1,
            max_digits=3,
            terminator="#",
            first_digit_timeout=5,
            inter_digit_timeout=2,
            now=3.1,
        )
        if isinstance(e, CallCollected)
    ] == []
    call.stop(3.2)


def test_a_kept_digit_is_dropped_by_a_plain_play_hold_and_the_end() -> None:
    for drop in ("play", "hold", "end"):
        call = _call()
        call.play(np.ones(FRAME * 10, dtype=np.int16), play_id=uuid.uuid4(), now=0.0, interruptible=True)
        call.digit("7", "rfc4733", 0.04)
        assert call.pending_digit == "7"
        if drop == "play":
            call.play(np.ones(FRAME, dtype=np.int16), play_id=None, now=0.5)
        elif drop == "hold":
            call.hold(True, by="local", now=0.5)
        else:
            call.end("remote_bye", 1.0)
        assert call.pending_digit is None, drop
        if drop != "end":
            _collect(call, 1.0)
            assert call.collection is not None and call.collection.digits == "", drop
    # A digit pressed while nothing listens (the IVR still starting) is typed ahead only briefly: a collect
    # soon after takes it, a collect later must not see a stale press.
    call = _call()
    call.digit("3", "datachannel", 10.0)
    _collect(call, 10.0 + TYPE_AHEAD_S)
    assert call.collection is not None and call.collection.digits == "3"
    call = _call()
    call.digit("3", "datachannel", 10.0)
    _collect(call, 10.1 + TYPE_AHEAD_S)
    assert call.collection is not None and call.collection.digits == ""
    assert call.pending_digit is None


def test_events_carry_the_input_time_and_ids_derived_from_the_call() -> None:
    a, b = _call(), _call()
    b.call_id = a.call_id  # the same call seen twice (a test of determinism, not a real case)
    events_a = a.digit("1", "rfc4733", 3.25) + a.end("remote_bye", 4.5)
    events_b = b.digit("1", "rfc4733", 3.25) + b.end("remote_bye", 4.5)
    assert [e.ts for e in events_a] == [3.25, 4.5]
    assert isinstance(events_a[0], CallDtmf) and isinstance(events_a[1], CallEnded)
    assert len({e.id for e in events_a}) == 2
    assert [e.id for e in events_a] == [e.id for e in events_b]


def test_a_calls_state_moves_only_through_its_table() -> None:
    from services.media.ua.call import CALL_TABLE, CallState

    ringing_then_ended = Call(call_id=uuid.uuid4(), tenant_id=uuid.uuid4(), created_at=0.0)
    assert [type(e).__name__ for e in ringing_then_ended.end("cancelled", 1.0)] == ["CallEnded"]
    assert ringing_then_ended.answered(2.0) == [] and ringing_then_ended.state is CallState.ENDED
    call = Call(call_id=uuid.uuid4(), tenant_id=uuid.uuid4(), created_at=0.0)
    assert len(call.answered(1.0)) == 1 and call.answered(1.5) == []  # answered once
    assert len(call.end("normal_clearing", 2.0)) == 1 and call.end("normal_clearing", 3.0) == []
    assert CALL_TABLE[CallState.ENDED] == {} and call.state is CallState.ENDED
