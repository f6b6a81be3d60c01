"""Identifiers: UUIDv7, so ids sort by creation time and keyset pagination follows insertion order."""

from __future__ import annotations

import uuid

import uuid_utils

__all__ = ["new_id", "parse_id"]


def new_id() -> uuid.UUID:
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def parse_id(text: str) -> uuid.UUID | None:
    """The UUID in `text`, or None when it is not one (callers turn None into a 404 or 422)."""
    try:
        return uuid.UUID(text)
    except (ValueError, AttributeError, TypeError):
        return None
