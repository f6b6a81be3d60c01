"""Every event published on the bus has a consumer, or is on the list of those waiting to be removed.

An event nobody consumes costs a publish on every call and misleads whoever reads the code (#22: the
unconsumed `contact.assigned` and `contact.requeued`). Each event type names where it is consumed:
- `module:NAME`: the module's collection NAME (the types a consumer subscribes to, or the events tenants
  receive as webhooks or the supervisor feed) holds it;
- a file path: the file subscribes (Bus.consume / consume_batches / listen) and names the event.
A new event must be added here with its consumer; a consumer that stops taking it fails here."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import services.kernel.events as ev
from services.kernel.messages import Event

ROOT = Path(__file__).resolve().parents[3]

CONTACTS = "services.contacts.adapter:EVENTS"
IVR = "services.ivr.adapter:EVENTS"
FACTS = "services.reporting.facts:EVENTS"
WEBHOOKS = "services.reporting.webhooks:EVENTS"  # external: tenants' webhook receivers
FEED = "services.api.reports:FEED_EVENTS"  # external: the supervisor console's live feed
SIGNALLING = "services/api/signalling.py"  # the agent desktop's socket

CONSUMERS: dict[type[Event], list[str]] = {
    ev.AgentStateChanged: [FACTS, FEED, SIGNALLING],
    ev.CallAnswered: [CONTACTS, IVR],
    ev.CallArrived: [CONTACTS],
    ev.CallCollected: [IVR],
    ev.CallDtmf: [CONTACTS],
    ev.CallEnded: [CONTACTS, IVR, "services/recording/pipeline.py"],
    ev.CallHeld: [FACTS],
    ev.CallPlayFinished: [CONTACTS, IVR],
    ev.CallRecordFinished: [IVR, "services/recording/pipeline.py"],
    ev.CallRecording: ["services/recording/pipeline.py"],
    ev.CallQuality: [WEBHOOKS],
    ev.CallRefused: [CONTACTS],
    ev.ConfigChanged: ["services/routing/worker.py", "services/media/app.py", "services/contacts/adapter.py"],
    ev.ContactAbandoned: [CONTACTS, FACTS, WEBHOOKS, FEED],
    ev.ContactAccepted: [CONTACTS],
    ev.ContactAssigned: [FACTS, WEBHOOKS, FEED],
    ev.ContactEnded: [CONTACTS, FACTS, WEBHOOKS, FEED],
    ev.ContactOffered: [CONTACTS],
    ev.ContactOverflowed: [CONTACTS, FACTS, WEBHOOKS],
    ev.ContactPositionChanged: [CONTACTS, SIGNALLING],
    ev.ContactQueued: [CONTACTS, FACTS, WEBHOOKS, FEED],
    ev.ContactRejected: [CONTACTS],
    ev.ContactRequeued: [CONTACTS],
    ev.ContactStateChanged: [WEBHOOKS, SIGNALLING],
    ev.ContactWrappedUp: [CONTACTS, FACTS, WEBHOOKS, FEED],
    ev.DeskPush: [SIGNALLING],
    ev.IvrCallbackRequested: [CONTACTS],
    ev.IvrCompleted: [CONTACTS, FACTS],
    ev.IvrNodeEntered: [CONTACTS],
    ev.IvrNodeExited: [CONTACTS, FACTS],
    ev.IvrSurveyAnswered: [CONTACTS, FACTS],
    ev.QueueAlertCleared: [WEBHOOKS],
    ev.QueueAlertRaised: [WEBHOOKS],
    ev.QueueStats: [FACTS, FEED],
    ev.RecordingAvailable: [WEBHOOKS, "services/api/desk.py"],
    ev.RecordingDeleted: [WEBHOOKS],
    ev.RecordingPaused: [WEBHOOKS],
    ev.RecordingResumed: [WEBHOOKS],
    ev.RecordingStarted: [WEBHOOKS],
    ev.RoutingCallbackDue: [CONTACTS],
    ev.SeatsChanged: ["services/routing/worker.py"],
    ev.SessionsEnded: [SIGNALLING],
    ev.WebRtcSignal: [CONTACTS, SIGNALLING],
    ev.WebhookDue: ["services/reporting/webhook_worker.py"],
}

# Published, consumed by nothing: to be removed by the owners of those services. Empty, and to stay so (the
# test below keeps it for a later rewrite that must leave an event behind for a while, naming its publisher).
UNCONSUMED: dict[type[Event], str] = {}

_SUBSCRIBES = re.compile(r"\.(consume|consume_batches|listen)\(")


def _all_events() -> set[type[Event]]:
    return {o for o in vars(ev).values() if inspect.isclass(o) and issubclass(o, Event) and o is not Event}


def _consumes(where: str, event: type[Event]) -> bool:
    if ":" in where:
        module, name = where.split(":")
        found = getattr(importlib.import_module(module), name)
        kinds = found.values() if isinstance(found, dict) else found
        return event in kinds
    source = (ROOT / where).read_text()
    return bool(_SUBSCRIBES.search(source)) and re.search(rf"\b{event.__name__}\b", source) is not None


def test_every_event_has_a_consumer_or_is_listed_for_removal() -> None:
    events = _all_events()
    missing = sorted(e.__name__ for e in events - CONSUMERS.keys() - UNCONSUMED.keys())
    assert not missing, f"events with no consumer listed here: {missing}"
    assert not CONSUMERS.keys() & UNCONSUMED.keys()
    assert not (CONSUMERS.keys() | UNCONSUMED.keys()) - events, "listed types that are not events"


def test_each_listed_consumer_takes_its_event() -> None:
    wrong = [
        f"{event.__name__} not in {where}"
        for event, places in CONSUMERS.items()
        for where in places
        if not _consumes(where, event)
    ]
    assert not wrong, wrong


def test_the_unconsumed_are_consumed_nowhere_else() -> None:
    """An event on the removal list that gained a consumer belongs in CONSUMERS instead."""
    sources = {
        str(p.relative_to(ROOT)): p.read_text()
        for p in (ROOT / "services").rglob("*.py")
        if "kernel/events" not in str(p)
    }
    for event, publisher in UNCONSUMED.items():
        named_in = {f for f, text in sources.items() if re.search(rf"\b{event.__name__}\b", text)}
        assert all(f.startswith(publisher) for f in named_in), (event.__name__, named_in)
