"""Keyset pagination over UUIDv7 ids (creation order): the cursor is the last id of a page, opaque to clients."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from typing import Annotated, Any

from litestar.params import QueryParameter

from .problems import validation

__all__ = ["CursorParam", "LimitParam", "decode_cursor", "encode_cursor", "page_of"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

LimitParam = Annotated[
    int,
    QueryParameter(name="limit", ge=1, le=MAX_LIMIT, description=f"page size, 1-{MAX_LIMIT}"),
]
CursorParam = Annotated[
    str | None,
    QueryParameter(name="cursor", max_length=200, description="next_cursor of the previous page"),
]


def encode_cursor(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).rstrip(b"=").decode()


def decode_cursor(cursor: str | None) -> uuid.UUID | None:
    if cursor is None or cursor == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if len(raw) != 16:
            raise ValueError
        return uuid.UUID(bytes=raw)
    except (ValueError, binascii.Error):
        raise validation("cursor", "not a cursor this API returned") from None


def page_of(rows: Sequence[Any], limit: int) -> tuple[Sequence[Any], str | None]:
    """Rows were fetched with LIMIT limit + 1: the extra row only tells that another page exists."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(rows[-1]["id"])
    return rows, None
