"""Base types for everything on the bus: versioned, tenant-scoped, de-duplicable, timestamped."""

from __future__ import annotations

import time
import uuid
from typing import ClassVar, TypeVar

import msgspec

from .ids import new_id

__all__ = ["Command", "Event", "Message", "Reply", "decode", "encode"]


class Message(msgspec.Struct, kw_only=True, frozen=True):
    tenant_id: uuid.UUID
    # Unique per message; JetStream de-duplicates on it (Nats-Msg-Id) and consumers key idempotency on it.
    id: uuid.UUID = msgspec.field(default_factory=new_id)
    ts: float = msgspec.field(default_factory=time.time)
    v: int = 1


class Event(Message, kw_only=True, frozen=True):
    """A fact, named in the past tense; published on sb.<tenant>.evt.<domain>.<name>."""

    domain: ClassVar[str]
    name: ClassVar[str]


class Command(Message, kw_only=True, frozen=True):
    """A request to a service; sent on sb.<tenant>.cmd.<service>.<name> and answered with a Reply."""

    service: ClassVar[str]
    name: ClassVar[str]


class Reply(msgspec.Struct, kw_only=True, frozen=True):
    ok: bool
    error: str | None = None
    code: str | None = None
    data: dict[str, object] = msgspec.field(default_factory=dict)


_encoder = msgspec.json.Encoder()
T = TypeVar("T")


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes, kind: type[T]) -> T:
    return msgspec.json.decode(data, type=kind)
