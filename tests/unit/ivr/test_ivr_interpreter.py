"""The interpreter, node by node, with an explicit clock: prompts, digits, retries, timeouts, conditions in a
time zone, lookups (signed; error and timeout branches), queue treatment, callbacks, voicemail, transfers,
surveys, subflows, hang-up, and resuming from saved state."""

from __future__ import annotations

import json
import uuid

import msgspec
import pytest

from services.ivr.interpreter import SORRY, CommandFailed, Interpreter
from services.ivr.lookup import LookupRequest, LookupResult, verify
from services.ivr.nodes.callback import next_time
from services.ivr.state import Phase
from services.kernel.events import (
    CallCollected,
    CallDtmf,
    CallEnded,
    CallPlayFinished,
    CallRecordFinished,
    IvrCallbackRequested,
    IvrCompleted,
    IvrNodeEntered,
    IvrNodeExited,
    IvrSurveyAnswered,
    MediaCollect,
    MediaHangup,
    MediaPlay,
    MediaRecord,
    MediaTransfer,
    RoutingCallback,
    RoutingCancel,
    RoutingEnqueue,
    RoutingTask,
)

from .ivr_harness import CALL, NOON_MONDAY, TENANT, Call, flow_of

# The interpreter takes `now` and derives its commands' ids from its saved state: reading the clock or the
# id generator raises (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("no_ambient_clock_or_ids")

MENU = """\
name: m
start: greet
fallback: agents
nodes:
  greet: {type: play, prompt: {say: "Hello {caller}"}, next: menu}
  menu:
    type: menu
    prompt: {say: "1 sales, 0 agent"}
    options: {"1": sales, "0": agents}
    retries: 1
    on_fail: bye
  sales: {type: queue, queue: sales, skills: {spanish: 3}, priority: 70, attributes: {intent: sales}}
  agents: {type: queue, queue: support}
  bye: {type: hangup, prompt: {say: "Goodbye"}}
"""


def test_play_then_menu_digit_to_queue_with_screen_pop() -> None:
    call = Call(flow_of(MENU))
    play = call.one(MediaPlay)
    assert play.text == "Hello +15551230000" and play.interruptible
    assert call.one(IvrNodeEntered).node == "greet"
    call.finish_play(2.0)
    collect = call.one(MediaCollect)
    assert collect.text == "1 sales, 0 agent" and collect.max_digits == 1 and collect.terminator is None
    call.press("1", 3.0)
    enqueue = call.enqueued()
    assert (enqueue.queue, enqueue.priority, enqueue.skills) == ("sales", 70, {"spanish": 3})
    attrs = enqueue.attributes
    assert (
        attrs["intent"] == "sales" and attrs["ivr.path"] == "greet>menu>sales" and attrs["ivr.digits"] == "1"
    )
    steps = json.loads(attrs["ivr.steps"])
    assert [s["node"] for s in steps] == ["greet", "menu", "sales"]
    assert steps[0]["seconds"] == 2.0 and steps[1]["seconds"] == 3.0 and steps[1]["digits"] == "1"
    exited = [o for o in call.out if isinstance(o, IvrNodeExited)]
    assert [(e.node, e.digits, e.result) for e in exited] == [("menu", "1", "1"), ("sales", "", "queued")]
    # The IVR's step ends at the queue: the coordinator enqueues and plays the music (none sent from here).
    completed = call.one(IvrCompleted)
    assert completed.outcome == "transferred" and completed.attributes == attrs
    wait = call.handed()
    assert wait.music.tone == "moh" and wait.music.loop and wait.announce_every == 60.0
    assert wait.callback_offer is None and wait.max_wait is None and wait.fallback == "agents"
    assert not call.has(RoutingEnqueue) and not call.has(MediaPlay)
    assert call.ivr.done


def test_menu_invalid_then_timeout_then_on_fail() -> None:
    call = Call(flow_of(MENU))
    call.finish_play()
    call.press("7")
    assert call.one(MediaPlay).text == "Sorry, that is not a valid choice."
    call.finish_play()
    call.press("")  # no input: retries (1) used up -> on_fail
    assert call.node == "bye"
    assert call.one(MediaPlay).text == "Goodbye"
    call.finish_play()
    assert call.has(MediaHangup)
    done = call.one(IvrCompleted)
    assert done.outcome == "self_served" and done.path == ["greet", "menu", "bye"]
    assert call.ivr.done and call.ivr.next_timer() is None


def test_media_never_answers_so_timers_move_the_call_on() -> None:
    call = Call(flow_of(MENU))
    deadline = call.ivr.next_timer()
    assert deadline is not None and deadline > NOON_MONDAY
    call.timer()  # the greeting's finish never came: go on anyway
    assert call.has(MediaCollect)
    call.timer()  # no collect answer either: a timeout, then a retry prompt
    assert call.one(MediaPlay).text == "Sorry, I did not hear a choice."


COLLECT = """\
name: c
start: acct
nodes:
  acct:
    type: collect
    prompt: {say: "Enter your account number then hash"}
    into: account
    min_digits: 4
    max_digits: 8
    pattern: "[0-9]+"
    invalid_prompt: {say: "That account number is not valid."}
    next: q
    on_fail: q
  q: {type: queue, queue: s}
"""


def test_collect_min_max_pattern_and_retries() -> None:
    call = Call(flow_of(COLLECT))
    collect = call.one(MediaCollect)
    assert (collect.min_digits, collect.max_digits, collect.terminator) == (4, 8, "#")
    call.press("12")
    assert call.one(MediaPlay).text == "That account number is not valid."
    call.finish_play()
    call.press("12*4")  # fails the pattern
    call.finish_play()
    call.press("123456")
    assert call.ivr.state.attributes["account"] == "123456"
    assert call.enqueued().attributes["account"] == "123456"


BRANCH = """\
name: b
timezone: America/New_York
start: set
calendars:
  office:
    hours: {mon: ["09:00-17:00"], sat: ["10:00-12:00"]}
    holidays: ["2026-12-25"]
  london: {timezone: Europe/London, hours: {mon: ["09:00-17:00"]}}
nodes:
  set: {type: set, attributes: {segment: "gold-{caller}"}, next: br}
  br:
    type: branch
    rules:
      - when: {holiday: office}
        next: holiday
      - when: {attribute: vip, equals: "true"}
        next: vip
      - when: {caller: "^\\\\+44"}
        next: uk
      - when: {dialled: "1111$", open: london}
        next: london_open
      - when: {open: office}
        next: open
    default: closed
  holiday: {type: hangup}
  vip: {type: hangup}
  uk: {type: hangup}
  london_open: {type: hangup}
  open: {type: hangup}
  closed: {type: hangup}
"""


def _ended_at(flow, when: float, **kw) -> str:  # type: ignore[no-untyped-def]
    call = Call(flow, now=when, **kw)
    return call.one(IvrCompleted).path[-1]


def test_set_and_branch_conditions_in_the_tenant_time_zone() -> None:
    flow = flow_of(BRANCH)
    call = Call(flow)
    assert call.ivr.state.attributes["segment"] == "gold-+15551230000"
    # Monday 12:00 UTC = 07:00 New York (closed) but 12:00 London (open, and the dialled number matches).
    assert _ended_at(flow, NOON_MONDAY) == "london_open"
    # Monday 15:00 UTC = 10:00 New York: London is still open and comes first in the rules.
    assert _ended_at(flow, NOON_MONDAY + 3 * 3600) == "london_open"
    # Monday 18:00 UTC = 13:00 New York, 18:00 London (closed): the office rule.
    assert _ended_at(flow, NOON_MONDAY + 6 * 3600) == "open"
    # Monday 23:00 UTC = 18:00 New York: closed.
    assert _ended_at(flow, NOON_MONDAY + 11 * 3600) == "closed"
    # Saturday 16:00 UTC = 11:00 New York: Saturday hours.
    assert _ended_at(flow, NOON_MONDAY + 5 * 86400 + 4 * 3600) == "open"
    # Christmas day, New York time: the holiday rule wins even within hours.
    christmas_noon_ny = 1798218000.0  # 2026-12-25 17:00 UTC = 12:00 New York
    assert _ended_at(flow, christmas_noon_ny) == "holiday"
    assert _ended_at(flow, NOON_MONDAY, attributes={"vip": "true"}) == "vip"
    assert _ended_at(flow, NOON_MONDAY, caller="+447700900000") == "uk"


LOOKUP = """\
name: l
start: crm
fallback: q
nodes:
  crm:
    type: lookup
    url: https://crm.example/caller
    send: {phone: "{caller}", line: "{dialled}"}
    results: {vip: is_vip, name: name}
    prefix: crm_
    timeout: 1.5
    next: seg
    on_error: q
  seg:
    type: dynamic_menu
    variants:
      - when: {attribute: crm_vip, equals: "true"}
        prompt: {say: "Hello {crm_name}, press 1 for your manager"}
        options: {"1": vipq, "0": q}
    prompt: {say: "1 sales 2 support 0 agent"}
    options: {"1": q, "2": q, "0": q}
    on_fail: q
  vipq: {type: queue, queue: vip}
  q: {type: queue, queue: s}
"""


def test_lookup_is_signed_and_results_become_attributes_then_dynamic_menu() -> None:
    secret = b"tenant-secret"
    call = Call(flow_of(LOOKUP), secret=secret)
    req = call.one(LookupRequest)
    assert req.method == "POST" and req.url == "https://crm.example/caller" and req.timeout == 1.5
    assert json.loads(req.body) == {"phone": "+15551230000", "line": "+15550001111"}
    ts = req.headers["X-Switchboard-Timestamp"]
    assert verify(secret, ts, req.headers["X-Switchboard-Signature"], req.body, NOON_MONDAY)
    assert not verify(b"other", ts, req.headers["X-Switchboard-Signature"], req.body, NOON_MONDAY)
    assert not verify(secret, ts, req.headers["X-Switchboard-Signature"], req.body + b" ", NOON_MONDAY)
    assert not verify(secret, ts, req.headers["X-Switchboard-Signature"], req.body, NOON_MONDAY + 3600)
    body = msgspec.json.encode({"is_vip": True, "name": "Ann", "ignored": 1})
    call.send(LookupResult(id=req.id, status=200, body=body), 0.2)
    assert call.ivr.state.attributes["crm_vip"] == "true" and "crm_ignored" not in call.ivr.state.attributes
    assert call.one(MediaCollect).text == "Hello Ann, press 1 for your manager"
    call.press("1")
    assert call.enqueued().queue == "vip"


def test_dynamic_menu_default_variant_for_other_callers() -> None:
    call = Call(flow_of(LOOKUP))
    req = call.one(LookupRequest)
    call.send(LookupResult(id=req.id, status=200, body=b'{"is_vip": false}'))
    assert call.one(MediaCollect).text == "1 sales 2 support 0 agent"
    call.press("2")
    assert call.enqueued().queue == "s"


def test_lookup_timeout_error_and_bad_answers_take_the_fallback_branch() -> None:
    for result in (None, LookupResult(id=uuid.uuid4(), status=500), "bad-json", "not-object"):
        call = Call(flow_of(LOOKUP))
        req = call.one(LookupRequest)
        if result is None:
            assert call.ivr.next_timer() == NOON_MONDAY + 1.5
            call.timer()  # no answer within the node's timeout
        elif result == "bad-json":
            call.send(LookupResult(id=req.id, status=200, body=b"{nope"))
        elif result == "not-object":
            call.send(LookupResult(id=req.id, status=200, body=b"[1, 2]"))
        else:
            call.send(LookupResult(id=req.id, status=500))
        assert call.enqueued().queue == "s", result
        assert call.ivr.state.attributes["crm_lookup_error"]
    # A late answer for an old request changes nothing.
    call = Call(flow_of(LOOKUP))
    assert call.send(LookupResult(id=uuid.uuid4(), status=200, body=b"{}")) == []


QUEUE = """\
name: q
start: q
nodes:
  q:
    type: queue
    queue: support
    music: {file: music.wav}
    announce_every: 30
    callback_after: 45
    max_wait: 600
    on_timeout: vm
  vm: {type: voicemail, queue: support, prompt: {say: "Leave a message"}, max_seconds: 60}
"""


def test_queue_node_hands_the_wait_to_the_coordinator_with_its_terms() -> None:
    """The node's music, announcements (in the tenant's language), callback offer and maximum wait go to the
    coordinator, which keeps the caller company (services/contacts/queue_wait.py); the IVR's step ends."""
    call = Call(flow_of(QUEUE), language="es")
    wait = call.handed()
    assert (wait.music.file, wait.music.loop, wait.music.tone) == ("music.wav", True, None)
    assert (wait.announce_every, wait.language, wait.callback_after, wait.callback_digit) == (
        30.0,
        "es",
        45.0,
        "1",
    )
    assert wait.callback_offer is not None and wait.callback_offer.interruptible
    assert "press 1" in (wait.callback_offer.text or "")
    assert (wait.max_wait, wait.on_timeout, wait.on_callback, wait.fallback, wait.scope) == (
        600.0,
        "vm",
        "",
        "",
        "",
    )
    assert wait.enqueue.queue == "support" and wait.enqueue.attributes["ivr.path"] == "q"
    assert call.ivr.done and call.ivr.next_timer() is None
    # Nothing the caller does reaches this flow run any more.
    assert call.send(CallDtmf(tenant_id=TENANT, call_id=CALL, digit="1", source="rfc4733")) == []


def test_queue_max_wait_continues_at_on_timeout_which_becomes_a_task() -> None:
    """The coordinator's `ivr.run` at on_timeout: a new run of the flow at that node, with its own ids."""
    flow = flow_of(QUEUE)
    first = Call(flow)
    learned = first.enqueued().attributes
    call = Interpreter.new(
        flow,
        version=3,
        tenant_id=TENANT,
        call_id=CALL,
        caller="+15551230000",
        dialled="+15550001111",
        now=NOON_MONDAY + 600,
        attributes=learned,
        run_id=uuid.uuid4(),
    )
    out = call.start(NOON_MONDAY + 600, at="vm")
    play = next(o for o in out if isinstance(o, MediaPlay))
    assert play.text == "Leave a message" and call.state.node == "vm"
    assert play.id not in {o.id for o in first.out}  # never answered from a reply cache as the first run's
    rec = next(
        o
        for o in call.handle(
            CallPlayFinished(tenant_id=TENANT, call_id=CALL, play_id=play.id), NOON_MONDAY + 603
        )
        if isinstance(o, MediaRecord)
    )
    out = call.handle(
        CallRecordFinished(tenant_id=TENANT, call_id=CALL, record_id=rec.id, file=rec.file, seconds=12.0),
        NOON_MONDAY + 620,
    )
    task = next(o for o in out if isinstance(o, RoutingTask))
    assert task.queue == "support" and task.file == rec.file and task.attributes["queue"] == "support"


def test_caller_hangs_up_in_the_flow_is_abandoned() -> None:
    call = Call(flow_of(MENU))
    call.send(CallEnded(tenant_id=TENANT, call_id=CALL, cause="remote_bye", duration=5.0))
    assert call.one(IvrCompleted).outcome == "abandoned" and not call.has(RoutingCancel)


CALLBACK = """\
name: cb
start: cb
nodes:
  cb: {type: callback, queue: sales, next: bye}
  bye: {type: hangup}
"""


def test_callback_confirm_caller_number() -> None:
    call = Call(flow_of(CALLBACK))
    assert "1 5 5 5 1 2 3 0 0 0 0" in (call.one(MediaCollect).text or "")
    call.press("1")
    cb = call.one(RoutingCallback)
    assert (cb.number, cb.queue, cb.keep_place) == ("+15551230000", "sales", False)
    assert call.has(MediaHangup)


def test_callback_capture_another_number_with_invalid_entry() -> None:
    call = Call(flow_of(CALLBACK))
    call.press("2")
    collect = call.one(MediaCollect)
    assert (collect.min_digits, collect.max_digits, collect.terminator) == (7, 15, "#")
    call.press("12")
    call.finish_play()
    call.press("447700900123")
    assert call.one(RoutingCallback).number == "+447700900123"


TRANSFER = """\
name: t
start: m
nodes:
  m: {type: menu, prompt: {say: x}, options: {"1": out, "2": agent, "3": queue}, on_fail: queue}
  out: {type: transfer, to: number, target: "+15559990000", prompt: {say: "Transferring"}}
  agent: {type: transfer, to: agent, target: "agent-42", on_fail: queue}
  queue: {type: transfer, to: queue, target: billing}
"""


def test_transfer_to_number_agent_and_queue() -> None:
    call = Call(flow_of(TRANSFER))
    call.press("1")
    assert call.one(MediaPlay).text == "Transferring"
    call.finish_play()
    assert call.one(MediaTransfer).to == "+15559990000"
    assert call.one(IvrCompleted).outcome == "transferred"

    call = Call(flow_of(TRANSFER))
    call.press("2")
    wait = call.handed()
    assert wait.enqueue.preferred_agent_id == "agent-42" and wait.enqueue.queue == ""
    # Should routing refuse (agent unknown), the coordinator continues at the node's on_fail.
    assert wait.fallback == "queue" and wait.music.tone == "moh" and wait.announce_every is None
    assert call.one(IvrCompleted).outcome == "transferred" and call.ivr.done

    call = Call(flow_of(TRANSFER))
    call.press("3")
    assert call.enqueued().queue == "billing" and call.handed().fallback == ""
    assert call.one(IvrCompleted).attributes["transfer"] == "queue:billing"


SURVEY = """\
name: s
start: sv
nodes:
  sv:
    type: survey
    questions:
      - {prompt: {say: "Rate us 1 to 5"}, into: csat}
      - {prompt: {say: "Press 1 if solved, 0 if not"}, into: solved, min: 0, max: 1}
      - {prompt: {say: "Recommend us, 0 to 9"}, into: nps, min: 0, max: 9}
    next: bye
  bye: {type: hangup, prompt: {say: Thanks}}
"""


def test_survey_records_answers_in_range_only() -> None:
    call = Call(flow_of(SURVEY))
    answered = call.press("4")
    (event,) = [o for o in answered if isinstance(o, IvrSurveyAnswered)]  # for reporting's averages
    assert (event.question, event.score, event.min, event.max, event.node) == ("csat", 4, 1, 5, "sv")
    assert not any(isinstance(o, IvrSurveyAnswered) for o in call.press("7"))  # out of range: not recorded
    call.press("")
    assert call.one(MediaPlay).text == "Thanks"
    attrs = call.ivr.state.attributes
    assert attrs["csat"] == "4" and "solved" not in attrs and "nps" not in attrs


SUBFLOW = """\
name: sub
start: go
subflows:
  verify:
    start: pin
    nodes:
      pin: {type: collect, prompt: {say: PIN}, into: pin, min_digits: 4, max_digits: 4, next: ok, on_fail: return}
      ok: {type: set, attributes: {verified: "yes"}, next: return}
nodes:
  go: {type: subflow, flow: verify, next: q}
  q: {type: queue, queue: s}
"""


def test_subflow_enters_and_returns() -> None:
    call = Call(flow_of(SUBFLOW))
    assert call.node == "pin" and call.ivr.state.scope == "verify"
    call.press("1234")
    assert call.enqueued().attributes["verified"] == "yes"
    assert call.ivr.state.scope == "" and call.ivr.state.stack == []


def test_restart_resumes_from_serialized_state_with_its_version() -> None:
    flow = flow_of(MENU)
    call = Call(flow)
    call.finish_play()
    saved = call.ivr.dump()
    assert json.loads(saved)["version"] == 3
    # Another process: same flow version, fresh interpreter, state from the bytes.
    again = Interpreter.restore(flow, saved)
    out = again.resume(NOON_MONDAY + 10)
    collect = [o for o in out if isinstance(o, MediaCollect)]
    assert len(collect) == 1 and collect[0].text == "1 sales, 0 agent"
    assert again.state.resumed == 1 and again.state.version == 3
    enqueued = [
        o
        for o in again.handle(
            __import__("services.kernel.events", fromlist=["CallCollected"]).CallCollected(
                tenant_id=TENANT, call_id=CALL, collect_id=collect[0].id, digits="0", reason="max_digits"
            ),
            NOON_MONDAY + 12,
        )
        if isinstance(o, IvrCompleted) and o.queue is not None
    ]
    assert enqueued and enqueued[0].queue.enqueue.queue == "support"
    assert enqueued[0].queue.enqueue.attributes["ivr.path"] == "greet>menu>agents"

    # A caller an older IVR kept waiting in a queue (saved in its phase `queued`): handed back on resume.
    call = Call(flow)
    call.finish_play()
    call.press("1")
    state = msgspec.json.decode(call.ivr.dump())
    state.update(phase="queued", outcome=None)
    again = Interpreter.restore(flow, msgspec.json.encode(state))
    out = again.resume(NOON_MONDAY + 20)
    handed = [o for o in out if isinstance(o, IvrCompleted)]
    assert handed and handed[0].queue is not None and handed[0].queue.enqueue.queue == "sales"


def test_resume_impossible_goes_to_fallback_or_apology() -> None:
    flow = flow_of(
        "name: v\nstart: vm\nfallback: q\nnodes:\n  q: {type: queue, queue: support}\n"
        '  vm: {type: voicemail, queue: support, prompt: {say: "Leave"}, max_seconds: 60, next: q}\n'
    )
    call = Call(flow)
    call.finish_play()
    assert call.ivr.state.phase is Phase.recording
    again = Interpreter.restore(flow, call.ivr.dump())
    out = again.resume(NOON_MONDAY + 700)
    assert [o.queue.enqueue.queue for o in out if isinstance(o, IvrCompleted) and o.queue] == ["support"]
    assert again.state.attributes["ivr.fallback"] == "cannot resume"
    # No fallback in the flow: an apology, then a hang-up; never silence.
    flow = flow_of(
        'name: v\nstart: vm\nnodes:\n  vm: {type: voicemail, queue: support, prompt: {say: "Leave"}, max_seconds: 60}\n'
    )
    call = Call(flow)
    call.finish_play()
    again = Interpreter.restore(flow, call.ivr.dump())
    out = again.resume(NOON_MONDAY + 700)
    play = [o for o in out if isinstance(o, MediaPlay)]
    assert play and play[0].text == SORRY
    out = again.handle(
        __import__("services.kernel.events", fromlist=["CallPlayFinished"]).CallPlayFinished(
            tenant_id=TENANT, call_id=CALL, play_id=play[0].id
        ),
        NOON_MONDAY + 710,
    )
    assert any(isinstance(o, MediaHangup) for o in out)
    assert [o.outcome for o in out if isinstance(o, IvrCompleted)] == ["failed"]


def test_a_silent_loop_is_cut_and_enqueue_failure_reaches_fallback() -> None:
    flow = flow_of(
        """\
    name: x
    start: a
    fallback: q
    nodes:
      a: {type: branch, rules: [{when: {attribute: never}, next: q}], default: b}
      b: {type: set, attributes: {n: "1"}, next: a}
      q: {type: queue, queue: s}
    """.replace("\n    ", "\n").replace("    name", "name")
    )
    call = Call(flow)
    assert call.enqueued().attributes["ivr.fallback"] == "loop without input"
    # The fallback is used: should routing refuse the queue, the coordinator apologizes (no fallback left).
    assert call.handed().fallback == ""


def test_lookup_get_signs_the_query_string() -> None:
    flow = flow_of(LOOKUP.replace("    timeout: 1.5\n", "    timeout: 1.5\n    method: GET\n"))
    call = Call(flow, secret=b"s")
    req = call.one(LookupRequest)
    assert req.method == "GET" and req.body == b""
    assert req.url == "https://crm.example/caller?phone=%2B15551230000&line=%2B15550001111"
    query = req.url.split("?", 1)[1].encode()
    assert verify(
        b"s",
        req.headers["X-Switchboard-Timestamp"],
        req.headers["X-Switchboard-Signature"],
        query,
        NOON_MONDAY,
    )


def test_transfer_to_a_number_that_fails_goes_to_on_fail_and_queue_transfer_has_music() -> None:
    flow = flow_of(
        TRANSFER.replace(
            'target: "+15559990000", prompt: {say: "Transferring"}}',
            'target: "+15559990000", on_fail: queue}',
        )
    )
    call = Call(flow)
    call.press("1")
    transfer = call.one(MediaTransfer)
    assert call.ivr.done
    call.send(CommandFailed(command_id=transfer.id, error="trunk down"))
    assert call.enqueued().queue == "billing" and call.ivr.done
    assert call.handed().music.tone == "moh" and call.handed().music.loop


def test_media_stopping_a_prompt_or_collection_is_not_caller_input() -> None:
    """Media stops the prompt and the collection when the caller hangs up (call.ended follows at once):
    the IVR neither moves on nor says "I did not hear a choice" to a call that is gone; only call.ended
    ends it. A call that does go on is still moved along by the deadline."""
    call = Call(flow_of(MENU))
    play = call.one(MediaPlay)
    assert (
        call.send(CallPlayFinished(tenant_id=TENANT, call_id=CALL, play_id=play.id, reason="stopped")) == []
    )
    call.send(CallPlayFinished(tenant_id=TENANT, call_id=CALL, play_id=play.id))
    collect = call.one(MediaCollect)
    stopped = CallCollected(
        tenant_id=TENANT, call_id=CALL, collect_id=collect.id, digits="", reason="stopped"
    )
    assert call.send(stopped) == []
    call.send(CallEnded(tenant_id=TENANT, call_id=CALL, cause="remote_bye", duration=3.0))
    assert call.one(IvrCompleted).outcome == "abandoned" and not call.has(MediaPlay)

    later = Call(flow_of(MENU))
    later.send(
        CallPlayFinished(tenant_id=TENANT, call_id=CALL, play_id=later.one(MediaPlay).id, reason="stopped")
    )
    later.timer()  # the prompt's deadline: on to the menu
    assert later.has(MediaCollect)


SCHEDULED = """\
name: cbs
start: cb
timezone: America/New_York
nodes:
  cb: {type: callback, queue: sales, schedule: true, next: bye}
  bye: {type: hangup}
"""


def test_scheduled_callback_takes_a_time_and_leaves_routing_until_then() -> None:
    call = Call(flow_of(SCHEDULED))
    call.press("1")  # the caller's own number
    collect = call.one(MediaCollect)
    assert "four digits" in (collect.text or "") and collect.max_digits == 4 and not call.has(RoutingCallback)
    call.press("2590")  # not a time of day: asked again
    call.finish_play()
    call.press("1430")
    request = call.one(IvrCallbackRequested)
    assert request.at == next_time("1430", call.now, "America/New_York") and request.keep_place is False
    assert not call.has(RoutingCallback) and call.has(MediaHangup)


def test_scheduled_callback_pound_alone_is_as_soon_as_possible() -> None:
    call = Call(flow_of(SCHEDULED))
    call.press("1")
    call.press("")
    assert call.one(IvrCallbackRequested).at is None and call.one(RoutingCallback).number == "+15551230000"
