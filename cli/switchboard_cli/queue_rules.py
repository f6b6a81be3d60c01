"""Queue routing rules on the command line: the options of `queues update` that set them, their parsers,
`queues show` (a queue's settings and rules in words), and `sites drain` / `sites restore`.

    switchboard queues update Support --strategy most-skilled --overflow 'after 60s to Billing' \\
        --hours 'mon-fri 09:00-17:00' --holiday 2026-12-25 --closed 'queue Night' --priority-rule 'vip=true:+30' \\
        --spill-after 30s --announce 45s

A list option given again adds to the list (all of them replace the queue's list); `none` clears it."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import click
import switchboard

from . import output
from .context import CliError, State, command, emit_json
from .parsing import _Parsed

__all__ = ["describe_rules", "register", "rule_fields", "rule_options"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
STRATEGIES = ("longest-idle", "most-skilled", "round-robin", "least-occupied")
NONE = "none"
_DURATION = re.compile(r"^(\d{1,5})\s*(s|m|h)?$")
_OVERFLOW = re.compile(
    r"^(?:after\s+(?P<after>\S+))?\s*(?:(?:or\s+)?(?:wait|expected\s+wait)\s+over\s+(?P<wait>\S+))?\s+to\s+(?P<to>.+)$",
    re.I,
)
_WINDOW = re.compile(r"^\d\d:\d\d-\d\d:\d\d$")
_PRIORITY = re.compile(r"^(?P<attr>[A-Za-z0-9_.:-]{1,64})=(?P<value>[^:]*):(?P<by>[+-]?\d{1,2})$")


def parse_duration(text: str) -> int:
    """`60`, `60s`, `2m`, `1h` -> seconds."""
    m = _DURATION.match(text.strip().lower())
    if m is None:
        raise ValueError(f"{text!r} is not a duration: write 60s, 2m or 1h")
    return int(m.group(1)) * {"s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


def parse_overflow(text: str) -> dict[str, Any] | str:
    """`after 60s to Billing`, `wait over 2m to Billing`, `after 60s or wait over 2m to Billing`: the
    queue is resolved later (by name or id). `none`: no overflow."""
    if text.strip().lower() == NONE:
        return NONE
    m = _OVERFLOW.match(text.strip())
    if m is None or not (m.group("after") or m.group("wait")):
        raise ValueError(
            f"{text!r}: write 'after 60s to QUEUE', 'wait over 2m to QUEUE' or 'after 60s or wait over 2m to QUEUE'"
        )
    rule: dict[str, Any] = {"to": m.group("to").strip()}
    if m.group("after"):
        rule["after_seconds"] = parse_duration(m.group("after"))
    if m.group("wait"):
        rule["expected_wait_over_seconds"] = parse_duration(m.group("wait"))
    return rule


def _days(spec: str) -> list[str]:
    days: list[str] = []
    for part in spec.lower().split(","):
        first, _, last = part.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValueError(f"{part!r}: days are {', '.join(WEEKDAYS)} or a range such as mon-fri")
        a, b = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        if b < a:
            raise ValueError(f"{part!r}: a range goes forward in the week (mon-fri)")
        days += WEEKDAYS[a : b + 1]
    return days


def parse_hours(text: str) -> dict[str, list[str]] | str:
    """`mon-fri 09:00-17:00`, `sat 10:00-12:00,14:00-16:00`; `always`: open all the time."""
    if text.strip().lower() in ("always", NONE):
        return NONE
    days, _, windows = text.strip().partition(" ")
    spans = [w.strip() for w in windows.split(",") if w.strip()]
    if not spans or not all(_WINDOW.match(w) for w in spans):
        raise ValueError(f"{text!r}: write DAYS HH:MM-HH:MM, e.g. 'mon-fri 09:00-17:00'")
    return {day: spans for day in _days(days)}


def parse_holiday(text: str) -> str:
    if text.strip().lower() == NONE:
        return NONE
    try:
        return dt.date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise ValueError(f"{text!r} is not a date YYYY-MM-DD") from None


def parse_priority(text: str) -> dict[str, Any] | str:
    """`vip=true:+30`: contacts whose attribute vip is "true" are served 30 priority points earlier."""
    if text.strip().lower() == NONE:
        return NONE
    m = _PRIORITY.match(text.strip())
    if m is None:
        raise ValueError(
            f"{text!r}: write ATTRIBUTE=VALUE:+POINTS, e.g. 'vip=true:+30' or 'caller=+15550100:+10'"
        )
    return {"attribute": m.group("attr"), "equals": m.group("value"), "raise_by": int(m.group("by"))}


def parse_closed(text: str) -> tuple[str, str | None]:
    """`message`, `queue NAME` or `flow NAME`."""
    kind, _, rest = text.strip().partition(" ")
    if kind.lower() == "message" and not rest:
        return "message", None
    if kind.lower() in ("queue", "flow") and rest.strip():
        return kind.lower(), rest.strip()
    raise ValueError(
        f"{text!r}: write 'message' (the closed message, then goodbye), 'queue NAME' or 'flow NAME' "
        "(an IVR flow takes the caller: a voicemail, a menu)"
    )


def _find_flow(client: switchboard.Client, name: str) -> str:
    flows = list(client.flows.list().items)
    for flow in flows:
        if flow.name == name or flow.id == name:
            return str(flow.id)
    raise CliError(f"no flow named {name!r} (flows: {', '.join(f.name for f in flows) or 'none'})")


def parse_seconds_or_off(text: str) -> int | str:
    return NONE if text.strip().lower() in ("off", NONE) else parse_duration(text)


DURATION = _Parsed("DURATION", parse_duration)
DURATION_OR_OFF = _Parsed("DURATION|off", parse_seconds_or_off)
OVERFLOW = _Parsed("'after 60s to QUEUE'", parse_overflow)
HOURS = _Parsed("'mon-fri 09:00-17:00'", parse_hours)
HOLIDAY = _Parsed("YYYY-MM-DD", parse_holiday)
PRIORITY = _Parsed("ATTR=VALUE:+N", parse_priority)
CLOSED = _Parsed("message|'queue NAME'|'flow NAME'", parse_closed)


def rule_options(fn: Any) -> Any:
    """The options of `queues update` that set routing rules."""
    options = [
        click.option(
            "--strategy", type=click.Choice(STRATEGIES), help="Who gets the next call (default longest-idle)."
        ),
        click.option(
            "--overflow",
            "overflow",
            type=OVERFLOW,
            metavar="'after 60s to QUEUE'",
            multiple=True,
            help="Move waiting calls on: 'after 60s to Billing', 'wait over 2m to Billing'; again for more "
            "rules; 'none' clears.",
        ),
        click.option(
            "--hours",
            type=HOURS,
            metavar="'mon-fri 09:00-17:00'",
            multiple=True,
            help="Opening hours in the tenant's time zone: 'mon-fri 09:00-17:00'; again for other days; "
            "'always' clears.",
        ),
        click.option(
            "--holiday",
            "holidays",
            type=HOLIDAY,
            multiple=True,
            help="A date it is closed; again for more; 'none' clears.",
        ),
        click.option(
            "--closed",
            type=CLOSED,
            metavar="message|'queue NAME'|'flow NAME'",
            help="While closed: 'message' (then goodbye), 'queue NAME', or 'flow NAME' (an IVR flow takes the "
            "caller, e.g. a voicemail).",
        ),
        click.option(
            "--survey",
            metavar="FLOW|none",
            help="After the agent leaves, callers go to this IVR flow (a post-call survey); 'none': hang up.",
        ),
        click.option(
            "--closed-message",
            metavar="TEXT",
            help="What callers hear while it is closed ('' : the default).",
        ),
        click.option(
            "--priority-rule",
            "priority_rules",
            type=PRIORITY,
            metavar="ATTR=VALUE:+N",
            multiple=True,
            help="Serve some callers first: 'vip=true:+30' (an IVR attribute, or caller=NUMBER); 'none' clears.",
        ),
        click.option(
            "--spill-after",
            type=DURATION_OR_OFF,
            help="Calls of a queue with a --site go to every site after this.",
        ),
        click.option(
            "--spill-wait",
            type=DURATION_OR_OFF,
            help="...or when their expected wait at the site is over this.",
        ),
        click.option(
            "--announce",
            type=DURATION_OR_OFF,
            help="Tell waiting callers their position this often (or off).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _listed(values: tuple[Any, ...]) -> list[Any] | None:
    """The list an option given N times sets; None: not given. `none` (alone) clears."""
    if not values:
        return None
    if NONE in values:
        if len(values) > 1:
            raise click.UsageError("'none' clears a list: give it alone")
        return []
    return list(values)


def rule_fields(client: switchboard.Client, given: dict[str, Any], find_queue: Any) -> dict[str, Any]:
    """The rule fields for Queues.set_rules from the options given (pops them from `given`)."""
    fields: dict[str, Any] = {}
    if (strategy := given.pop("strategy", None)) is not None:
        fields["strategy"] = strategy.replace("-", "_")
    if (overflow := _listed(given.pop("overflow", ()))) is not None:
        fields["overflow"] = [
            {
                **{k: v for k, v in rule.items() if k != "to"},
                "target_queue_id": find_queue(client, rule["to"]).id,
            }
            for rule in overflow
        ]
    hours = given.pop("hours", ())
    if hours:
        if NONE in hours:
            if len(hours) > 1:
                raise click.UsageError("'always' clears the hours: give it alone")
            fields["hours"] = None
        else:
            merged: dict[str, list[str]] = {}
            for spec in hours:
                for day, spans in spec.items():
                    merged.setdefault(day, []).extend(spans)
            fields["hours"] = merged
    if (holidays := _listed(given.pop("holidays", ()))) is not None:
        fields["holidays"] = holidays
    if (closed := given.pop("closed", None)) is not None:
        kind, target = closed
        fields["closed_treatment"] = kind
        fields["closed_queue_id"] = find_queue(client, target).id if kind == "queue" and target else None
        fields["closed_flow_id"] = _find_flow(client, target) if kind == "flow" and target else None
    if (survey := given.pop("survey", None)) is not None:
        fields["survey_flow_id"] = None if survey.lower() == "none" else _find_flow(client, survey)
    if (message := given.pop("closed_message", None)) is not None:
        fields["closed_message"] = message or None
    if (rules := _listed(given.pop("priority_rules", ()))) is not None:
        fields["priority_rules"] = rules
    for option, field in (
        ("spill_after", "spill_after_seconds"),
        ("spill_wait", "spill_expected_wait_seconds"),
        ("announce", "announce_seconds"),
    ):
        value = given.pop(option, None)
        if value is not None:
            fields[field] = None if value == NONE else value
    return fields


def _seconds(value: int | None) -> str:
    if value is None:
        return "off"
    return f"{value // 60}m" if value >= 60 and value % 60 == 0 else f"{value}s"


def describe_rules(
    queue: switchboard.Queue, names: dict[str, str], flows: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """A queue's rules as (label, words) rows (`names`, `flows`: ids to names)."""
    flows = flows or {}

    def name(queue_id: Any) -> str:
        return names.get(str(queue_id), str(queue_id))

    overflow = []
    for rule in queue.overflow:
        when = []
        if rule.get("after_seconds") is not None:
            when.append(f"after {_seconds(rule['after_seconds'])}")
        if rule.get("expected_wait_over_seconds") is not None:
            when.append(f"wait over {_seconds(rule['expected_wait_over_seconds'])}")
        overflow.append(f"{' or '.join(when)} to {name(rule['target_queue_id'])}")
    if queue.hours is None:
        hours = "always open" if not queue.holidays else "every day, all day"
    else:
        hours = (
            "; ".join(f"{day} {', '.join(queue.hours[day])}" for day in WEEKDAYS if day in queue.hours)
            or "never"
        )
    if queue.closed_treatment == "queue" and queue.closed_queue_id:
        closed = f"to queue {name(queue.closed_queue_id)}"
    elif queue.closed_treatment == "flow" and queue.closed_flow_id:
        closed = f"to flow {flows.get(queue.closed_flow_id, queue.closed_flow_id)}"
    else:
        closed = f"message {queue.closed_message!r}" if queue.closed_message else "the default message"
    return [
        ("strategy", queue.strategy.replace("_", "-")),
        ("overflow", "; ".join(overflow) or "none"),
        ("hours", hours + " (tenant's time zone)"),
        ("holidays", ", ".join(d.isoformat() for d in queue.holidays) or "none"),
        ("while closed", closed),
        (
            "priority",
            "; ".join(f"{r['attribute']}={r['equals']}: {r['raise_by']:+d}" for r in queue.priority_rules)
            or "none",
        ),
        (
            "spill",
            f"after {_seconds(queue.spill_after_seconds)}, wait over {_seconds(queue.spill_expected_wait_seconds)}",
        ),
        ("announcements", f"every {_seconds(queue.announce_seconds)}" if queue.announce_seconds else "off"),
    ]


def register(cli: click.Group, find_site: Any, find_queue: Any, page: int) -> None:
    queues = cli.commands["queues"]
    sites = cli.commands["sites"]
    assert isinstance(queues, click.Group) and isinstance(sites, click.Group)

    @command(queues, "show")
    @click.argument("queue", metavar="NAME_OR_ID")
    def queues_show(state: State, queue: str) -> None:
        """A queue's settings and routing rules."""
        with state.client() as client:
            found = find_queue(client, queue)
            names = {q.id: q.name for q in client.queues.iter(page_size=page)} if not state.json else {}
            flows = {f.id: f.name for f in client.flows.list().items} if not state.json else {}
        if state.json:
            emit_json(found)
            return
        output.details(
            [
                ("id", found.id),
                ("priority", found.priority),
                ("SL", f"{found.sl_percent}/{found.sl_seconds}"),
                *describe_rules(found, names, flows),
            ],
            title=f"Queue {found.name}",
        )

    for drained in (True, False):
        _drain_command(sites, drained, find_site)


def _drain_command(sites: click.Group, drained: bool, find_site: Any) -> None:
    verb = "drain" if drained else "restore"
    help = (
        "Drain a site: its agents finish what they hold and are offered nothing new; calls of queues at "
        "the site go to the other sites' agents."
        if drained
        else "Restore a drained site: its agents are offered calls again."
    )

    @command(sites, verb, help=help)
    @click.argument("site", metavar="NAME_OR_ID")
    def run(state: State, site: str) -> None:
        with state.client() as client:
            found = find_site(client, site)
            changed = client.sites.drain(found.id) if drained else client.sites.restore(found.id)
        if state.json:
            emit_json(changed)
            return
        if drained:
            output.note(f"Drained site {changed.name}: its agents finish their calls and get no new ones.")
        else:
            output.note(f"Restored site {changed.name}: its agents get calls again.")
