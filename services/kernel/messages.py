"""Base types for everything on the bus: versioned, tenant-scoped, de-duplicable, timestamped."""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import ClassVar, TypedDict, TypeVar

import msgspec

from .ids import new_id

__all__ = ["Command", "Event", "Message", "Reply", "ReplyCode", "Stamp", "decode", "encode"]


def _stamp_id() -> uuid.UUID:
    return _new_id()


def _stamp_ts() -> float:
    return _clock()


# What an adapter gets when it leaves `id` or `ts` out. Sans-IO cores never do (they pass ids derived from
# their inputs and their `now`); tests replace these two with functions that raise while driving a core.
_new_id = new_id
_clock = time.time


class Message(msgspec.Struct, kw_only=True, frozen=True):
    tenant_id: uuid.UUID
    # Unique per message; JetStream de-duplicates on it (Nats-Msg-Id) and consumers key idempotency on it.
    id: uuid.UUID = msgspec.field(default_factory=_stamp_id)
    ts: float = msgspec.field(default_factory=_stamp_ts)
    v: int = 1


class Stamp(TypedDict):
    """The envelope a sans-IO core gives each message it makes, splatted (`ev.MediaStop(**stamp, ...)`): a
    TypedDict, so that mypy checks the splat against the message's fields."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    ts: float


class Event(Message, kw_only=True, frozen=True):
    """A fact, named in the past tense; published on sb.<tenant>.evt.<domain>.<name>."""

    domain: ClassVar[str]
    name: ClassVar[str]
    # An addressed event has one reader (an agent's sockets): it goes on sb.<tenant>.evt.<domain>.<name>.
    # <addressee>, so that only the process holding that reader receives it (subjects.addressee_token).
    addressed: ClassVar[bool] = False

    @property
    def addressee(self) -> str | None:
        """Who reads this event, for an addressed kind (the subject's last token is derived from it)."""
        return None


class Command(Message, kw_only=True, frozen=True):
    """A request to a service; sent on sb.<tenant>.cmd.<service>.<name> and answered with a Reply."""

    service: ClassVar[str]
    name: ClassVar[str]

    @property
    def held_by(self) -> uuid.UUID | None:
        """The call whose holder must answer (a media worker subscribes to its own calls' subjects,
        sb.<tenant>.cmd.<service>.<name>.<call>); None: any process of the service may."""
        return None


class ReplyCode(StrEnum):
    """The codes every service answers with for the same mistakes (a service may add its own refusals,
    e.g. routing's `no_seats`; the wire carries the plain string)."""

    BAD_MESSAGE = "bad_message"  # the payload does not decode into the command's type
    INVALID = "invalid"  # it decodes, but a value is out of range or contradicts another
    UNKNOWN_COMMAND = "unknown_command"  # no such command for this service
    WRONG_TENANT = "wrong_tenant"  # the subject's tenant is not the payload's tenant_id
    NOT_FOUND = "not_found"
    STATE = "state"  # not possible in the current state (not answered, not bridged...)
    CONFLICT = "conflict"
    UNSUPPORTED = "unsupported"
    BUSY = "busy"  # too much pending; retry later
    TIMEOUT = "timeout"  # the service did not answer in time (set by the requester)
    UNAVAILABLE = "unavailable"  # no service answers the subject (set by the requester)
    INTERNAL = "internal"  # the handler crashed; the error says which exception


class Reply(msgspec.Struct, kw_only=True, frozen=True):
    ok: bool
    error: str | None = None
    code: str | None = None
    data: dict[str, object] = msgspec.field(default_factory=dict)


_encoder = msgspec.json.Encoder()
T = TypeVar("T")


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


# A decoder per type, made once: `msgspec.json.decode(data, type=kind)` looks the type's layout up on every
# call, a fifth of a small event's decode (measured: 1.15 against 0.94 us), at tens of thousands a second.
_decoders: dict[object, msgspec.json.Decoder[object]] = {}


def decode(data: bytes, kind: type[T]) -> T:
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    return decoder.decode(data)  # type: ignore[return-value]
