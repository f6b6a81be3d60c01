"""Identifiers: UUIDv7, so ids sort by creation time and keyset pagination follows insertion order."""

from __future__ import annotations

import uuid

import uuid_utils

__all__ = ["new_id", "parse_id", "voicemail_id"]


def new_id() -> uuid.UUID:
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def parse_id(text: str) -> uuid.UUID | None:
    """The UUID in `text`, or None when it is not one (callers turn None into a 404 or 422)."""
    try:
        return uuid.UUID(text)
    except (ValueError, AttributeError, TypeError):
        return None


def voicemail_id(call_id: uuid.UUID) -> uuid.UUID:
    """A message left on `call_id`: the id of its desk task (a contact of its own) and of its recording,
    derived so the IVR, the coordinator and the recording service name it alike without asking."""
    return uuid.uuid5(call_id, "voicemail")
