"""One table from bus subject to message type, built from the Event and Command classes' ClassVars.

Every service decodes with it, so a new message is known everywhere once it is declared in
services/kernel/events/<domain>.py: no service keeps its own subject-to-type table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TypeVar

from . import events as _events  # noqa: F401  (declares every message class)
from .messages import Command, Event, Message

__all__ = ["Parsed", "command_type", "event_type", "parse_subject"]

M = TypeVar("M", bound=Message)


def _concrete(base: type[M], kind: str) -> dict[tuple[str, str], type[M]]:
    found: dict[tuple[str, str], type[M]] = {}
    todo = list(base.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        # Intermediate bases (MediaCommand, DeskCommand...) declare the service but no name.
        owner = getattr(cls, "domain" if kind == "evt" else "service", None)
        name = getattr(cls, "name", None)
        if not isinstance(owner, str) or not isinstance(name, str):
            continue
        other = found.setdefault((owner, name), cls)
        if other is not cls:
            raise TypeError(f"{kind}.{owner}.{name} is declared twice: {other.__name__} and {cls.__name__}")
    return found


_EVENTS: dict[tuple[str, str], type[Event]] = _concrete(Event, "evt")
_COMMANDS: dict[tuple[str, str], type[Command]] = _concrete(Command, "cmd")


def event_type(domain: str, name: str) -> type[Event] | None:
    return _EVENTS.get((domain, name))


def command_type(service: str, name: str) -> type[Command] | None:
    return _COMMANDS.get((service, name))


@dataclass(frozen=True, slots=True)
class Parsed:
    """sb.<tenant>.<kind>.<owner>.<name>[.<addressee>], split; `tenant_id` None when the token is not a
    UUID; `addressee` the last token of an addressed event's subject (subjects.evt_subject)."""

    tenant_id: uuid.UUID | None
    kind: str  # "evt" or "cmd"
    owner: str  # the event's domain or the command's service
    name: str
    addressee: str | None = None

    @property
    def message_type(self) -> type[Message] | None:
        table = _EVENTS if self.kind == "evt" else _COMMANDS
        return table.get((self.owner, self.name))


def parse_subject(subject: str) -> Parsed | None:
    """A tenant event or command subject split into its parts; None for anything else."""
    parts = subject.split(".")
    if parts[0] != "sb" or parts[2:3] not in (["evt"], ["cmd"]):
        return None
    if len(parts) != 5 and not (len(parts) == 6 and parts[2] == "evt"):
        return None
    try:
        tenant: uuid.UUID | None = uuid.UUID(parts[1])
    except ValueError:
        tenant = None
    return Parsed(tenant, parts[2], parts[3], parts[4], parts[5] if len(parts) == 6 else None)
