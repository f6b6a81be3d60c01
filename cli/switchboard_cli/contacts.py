"""`switchboard contacts` (the contact history: list and show, with the timeline) and `switchboard widget-keys`
(the public keys a web page's call button uses)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import switchboard

from . import output
from .context import CliError, State, command, emit_json, group
from .parsing import is_uuid
from .resources import find_queue

__all__ = ["parse_when", "register"]

PAGE = 200
_RELATIVE = re.compile(r"^\s*([0-9]{1,6})\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, now: datetime) -> datetime:
    """`30m`, `2h`, `1d` (that long before `now`), `today` (local midnight), or an ISO 8601 date or date-time
    (without a zone it is UTC). `now` must be timezone-aware."""
    value = text.strip()
    if value.lower() == "today":
        local = now.astimezone()
        return local.replace(hour=0, minute=0, second=0, microsecond=0)
    match = _RELATIVE.match(value.lower())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r}: expected a time such as 30m, 2h, 1d, today, 2026-11-23 or 2026-11-23T09:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class _When(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    name = "WHEN"

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            return parse_when(str(value), self._clock())
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


WHEN = _When(lambda: datetime.now(UTC))


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes}m{seconds:02d}s"


def _agent_names(client: switchboard.Client, ids: set[str]) -> dict[str, str]:
    """The agents' names, as people call them (an agent without a name shows its email)."""
    if not ids:
        return {}
    return {a.id: a.name or a.email for a in client.agents.iter(page_size=PAGE) if a.id in ids}


def _people(client: switchboard.Client) -> dict[str, str]:
    """Every agent id and queue id of the tenant -> what a person calls it (`Ada Lovelace <ada@...>`, the
    queue's name), for the ids a contact's fields and timeline carry."""
    names = {a.id: f"{a.name} <{a.email}>" for a in client.agents.iter(page_size=PAGE)}
    names.update({q.id: q.name for q in client.queues.iter(page_size=PAGE)})
    return names


def _steps(raw: str) -> str:
    """`ivr.steps` (JSON: node, seconds, digits per node) as `greet 2.0s > menu 4.5s pressed 2 > sales`."""
    try:
        steps = json.loads(raw)
        parts = []
        for step in steps:
            part = f"{step['node']} {float(step.get('seconds') or 0):.1f}s"
            if step.get("digits"):
                part += f" pressed {step['digits']}"
            parts.append(part)
    except (ValueError, TypeError, KeyError):
        return raw  # not what the IVR writes: shown as it is rather than hidden
    return " > ".join(parts)


def _named(key: str, value: str, names: dict[str, str]) -> tuple[str, str]:
    """A timeline detail `queue_id=<uuid>` as `queue=Support` (the id kept when it is not known)."""
    if key.endswith("_id") and value in names:
        return key.removesuffix("_id"), names[value]
    return key, value


def _outcome(c: switchboard.ContactSummary) -> str:
    return c.outcome or c.state


def _timeline_line(entry: switchboard.TimelineEntry, start: datetime, names: dict[str, str]) -> str:
    """`2026-11-23 17:51:11.250Z    +4.5s  queued         queue=Support`: time, offset from arrival, detail."""
    at = entry.at.astimezone(UTC)
    stamp = f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond // 1000:03d}Z"
    offset = f"+{(entry.at - start).total_seconds():.1f}s"
    pairs = (_named(k, str(v), names) for k, v in entry.detail.items())
    detail = " ".join(f"{k}={v!r}" if " " in v else f"{k}={v}" for k, v in pairs)
    return f"{stamp}  {offset:>8}  {entry.event:<14} {detail}".rstrip()


def register(cli: click.Group) -> None:
    # Contacts ---------------------------------------------------------------------------------------
    contacts = group(cli, "contacts", "Contact history: every call, newest first, with its timeline.")

    @command(contacts, "list")
    @click.option(
        "--since", type=WHEN, help="From this time: 30m, 2h, 1d, today (local midnight), or ISO 8601."
    )
    @click.option("--queue", metavar="NAME_OR_ID", help="Only contacts of this queue.")
    @click.option("--agent", metavar="EMAIL_OR_ID", help="Only contacts this agent took.")
    @click.option("--caller", metavar="NUMBER", help="Only contacts from this caller's number.")
    @click.option(
        "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="At most this many."
    )
    def contacts_list(
        state: State,
        since: datetime | None,
        queue: str | None,
        agent: str | None,
        caller: str | None,
        limit: int,
    ) -> None:
        """List contacts, newest first."""
        found: list[switchboard.ContactSummary] = []
        with state.client() as client:
            for contact in client.contacts.iter(
                since=since, queue=queue, agent=agent, caller=caller, page_size=min(limit, PAGE)
            ):
                found.append(contact)
                if len(found) >= limit:
                    break
            agents = _agent_names(client, {c.agent_id for c in found if c.agent_id}) if not state.json else {}
        if state.json:
            emit_json(found)
            return
        output.table(
            ("ARRIVED", "ID", "CALLER", "QUEUE", "AGENT", "OUTCOME", "WAIT", "TALK"),
            (
                [
                    output.short_time(c.arrived_at),
                    c.id,
                    c.caller or "anonymous",
                    c.queue_name or c.queue_id,
                    agents.get(c.agent_id or "", c.agent_id),
                    _outcome(c),
                    _seconds(c.queue_s),
                    _seconds(c.talk_s),
                ]
                for c in found
            ),
            empty="no contacts",
        )

    @command(contacts, "monitor")
    @click.argument("contact_id", metavar="ID")
    @click.option(
        "--mode",
        type=click.Choice(["listen", "whisper", "barge", "none"]),
        required=True,
        help="listen (nobody hears you), whisper (the agent hears you, the caller does not), barge (both "
        "do), none (leave).",
    )
    @click.option(
        "--leg",
        "leg_id",
        metavar="LEG_ID",
        help="Your endpoint: the WebRTC leg your browser opened for this contact (the console shows it), "
        "or the leg a --phone answer named (to switch mode or leave).",
    )
    @click.option(
        "--phone",
        metavar="SIP_URI",
        help="Your desk phone (sip:user@host[:port]): the platform rings it and it becomes your leg.",
    )
    def contacts_monitor(
        state: State, contact_id: str, mode: str, leg_id: str | None, phone: str | None
    ) -> None:
        """Step into a live call as a supervisor (a supervisor or admin key) through your browser's leg
        (--leg) or your phone (--phone); run again with --leg to switch mode. Nobody on the call is told."""
        if not is_uuid(contact_id):
            raise CliError(f"{contact_id!r} is not a contact id")
        if (leg_id is None) == (phone is None):
            raise CliError("give exactly one of --leg LEG_ID and --phone SIP_URI")
        if leg_id is not None and not is_uuid(leg_id):
            raise CliError(f"--leg {leg_id!r} is not a leg id")
        if phone is not None and not phone.lower().startswith(("sip:", "sips:")):
            raise CliError(f"--phone {phone!r} is not a sip: address (sip:user@host[:port])")
        with state.client() as client:
            session = client.contacts.monitor(contact_id, mode, leg_id, phone=phone)
        if state.json:
            emit_json(session)
            return
        if mode == "none":
            output.note(f"Left contact {session.contact_id}.")
        else:
            output.note(f"On contact {session.contact_id}: {mode} (leg {session.leg_id}).")

    @command(contacts, "move")
    @click.argument("contact_id", metavar="ID")
    @click.option("--queue", required=True, metavar="NAME_OR_ID", help="The queue the contact waits in next.")
    def contacts_move(state: State, contact_id: str, queue: str) -> None:
        """Move a contact waiting in line to another queue (a supervisor or admin key)."""
        if not is_uuid(contact_id):
            raise CliError(f"{contact_id!r} is not a contact id")
        with state.client() as client:
            moved = client.contacts.move(contact_id, queue)
        if state.json:
            emit_json(moved)
            return
        output.note(f"Contact {moved.contact_id} now waits in queue {moved.queue_id}.")

    @command(contacts, "front")
    @click.argument("contact_id", metavar="ID")
    def contacts_front(state: State, contact_id: str) -> None:
        """Put a contact waiting in line at the front of its queue (a supervisor or admin key)."""
        if not is_uuid(contact_id):
            raise CliError(f"{contact_id!r} is not a contact id")
        with state.client() as client:
            done = client.contacts.front(contact_id)
        if state.json:
            emit_json(done)
            return
        output.note(f"Contact {done.contact_id} is now first in queue {done.queue_id}.")

    @command(contacts, "pull")
    @click.argument("contact_id", metavar="ID")
    @click.option(
        "--agent",
        required=True,
        metavar="EMAIL_OR_ID",
        help="The agent who gets it now (even one who is away; not one on a call).",
    )
    def contacts_pull(state: State, contact_id: str, agent: str) -> None:
        """Offer a contact waiting in line to an agent now, ahead of the line (a supervisor or admin key)."""
        if not is_uuid(contact_id):
            raise CliError(f"{contact_id!r} is not a contact id")
        with state.client() as client:
            done = client.contacts.pull(contact_id, agent)
        if state.json:
            emit_json(done)
            return
        output.note(f"Contact {done.contact_id} is offered to agent {done.agent_id} now.")

    @command(contacts, "show")
    @click.argument("contact_id", metavar="ID")
    def contacts_show(state: State, contact_id: str) -> None:
        """Show one contact: its fields and its timeline (one line per event)."""
        with state.client() as client:
            c = client.contacts.get(contact_id)
            names = _people(client) if not state.json else {}
        if state.json:
            emit_json(c)
            return
        shown_elsewhere = ("ivr.flow", "ivr.path", "ivr.digits", "ivr.steps")
        caller = f"{c.caller_name} <{c.caller}>" if c.caller_name else (c.caller or "anonymous")
        pairs: list[tuple[str, object]] = [
            ("id", c.id),
            ("direction", c.direction),
            ("caller", caller),
            ("dialled", c.dialled),
            ("state", c.state),
            ("outcome", c.outcome),
            ("cause", c.cause),
            ("queue", c.queue_name or names.get(c.queue_id or "", c.queue_id)),
            ("agent", names.get(c.agent_id or "", c.agent_id)),
            ("ivr flow", c.attributes.get("ivr.flow")),
            ("ivr path", " > ".join(c.ivr_path)),
            ("ivr steps", _steps(c.attributes["ivr.steps"]) if "ivr.steps" in c.attributes else None),
            ("digits", c.ivr_digits),
            (
                "attributes",
                " ".join(f"{k}={v}" for k, v in c.attributes.items() if k not in shown_elsewhere),
            ),
            ("arrived", output.short_time(c.arrived_at)),
            ("connected", output.short_time(c.connected_at) if c.connected_at else None),
            ("ended", output.short_time(c.ended_at) if c.ended_at else None),
            ("in IVR", _seconds(c.ivr_s)),
            ("in queue", _seconds(c.queue_s)),
            ("talk", _seconds(c.talk_s)),
            ("disposition", c.disposition),
            ("notes", c.notes),
        ]
        for i, transfer in enumerate(c.transfers, start=1):
            moves = (_named(k, str(v), names) for k, v in transfer.items())
            pairs.append((f"transfer {i}", " ".join(f"{k}={v}" for k, v in moves)))
        output.details(pairs, title=f"Contact {c.id}")
        output.note("")
        output.note("Timeline")
        if not c.timeline:
            output.note("  (no events recorded)")
        for entry in c.timeline:
            output.note("  " + _timeline_line(entry, c.arrived_at, names))

    # Widget keys ------------------------------------------------------------------------------------
    widget_keys = group(
        cli, "widget-keys", "Public keys for a web page's call button: each reaches only the queues it names."
    )

    def find_widget_key(client: switchboard.Client, ref: str) -> switchboard.WidgetKey:
        if is_uuid(ref):
            return client.widget_keys.get(ref)
        if not ref.startswith("pk_"):
            raise click.BadParameter(f"{ref!r} is neither a widget key id nor a public key (pk_...)")
        for key in client.widget_keys.iter(page_size=PAGE):
            if key.public_key == ref:
                return key
        raise CliError(f"no widget key {ref}")

    @command(widget_keys, "add")
    @click.option(
        "--queue", "queues", multiple=True, required=True, metavar="NAME_OR_ID", help="A queue it may call."
    )
    @click.option(
        "--origin",
        "origins",
        multiple=True,
        metavar="URL",
        help="A web origin allowed to use it, e.g. https://shop.example.com (default: any).",
    )
    @click.option("--name", help="A name to tell keys apart.")
    @click.option(
        "--flow", metavar="NAME_OR_ID", help="Send its web callers through this IVR flow first (its keypad)."
    )
    def widget_keys_add(
        state: State, queues: tuple[str, ...], origins: tuple[str, ...], name: str | None, flow: str | None
    ) -> None:
        """Create a widget key for some queues."""
        with state.client() as client:
            found = [find_queue(client, q) for q in queues]
            key = client.widget_keys.create(
                [q.id for q in found],
                origins=list(origins) if origins else switchboard.UNSET,
                name=name if name is not None else switchboard.UNSET,
                flow=flow if flow is not None else switchboard.UNSET,
            )
        if state.json:
            emit_json(key)
            return
        where = ", ".join(key.origins) if key.origins else "any origin"
        output.note(f"Added widget key {key.id} for {', '.join(q.name for q in found)} ({where}).")
        output.note(f"public key: {key.public_key}")

    @command(widget_keys, "list")
    def widget_keys_list(state: State) -> None:
        """List widget keys (revoked ones too)."""
        with state.client() as client:
            found = list(client.widget_keys.iter(page_size=PAGE))
            names = (
                {q.id: q.name for q in client.queues.iter(page_size=PAGE)} if found and not state.json else {}
            )
        if state.json:
            emit_json(found)
            return
        output.table(
            ("ID", "PUBLIC KEY", "NAME", "QUEUES", "ORIGINS", "CREATED", "REVOKED"),
            (
                [
                    k.id,
                    k.public_key,
                    k.name,
                    ",".join(names.get(q, q) for q in k.queue_ids),
                    " ".join(k.origins) or "any",
                    output.short_time(k.created_at),
                    output.short_time(k.revoked_at) if k.revoked_at else "",
                ]
                for k in found
            ),
        )

    @command(widget_keys, "revoke")
    @click.argument("key", metavar="ID_OR_PUBLIC_KEY")
    def widget_keys_revoke(state: State, key: str) -> None:
        """Revoke a widget key: it gets no new caller tokens (those issued expire within 5 minutes)."""
        with state.client() as client:
            found = find_widget_key(client, key)
            client.widget_keys.revoke(found.id)
        if state.json:
            emit_json(found)
            return
        output.note(f"Revoked widget key {found.id} ({found.public_key}).")
