"""Reads shared by the resource controllers: path ids, one row by id, a page of rows. Table and column names
come from our code, never from requests; every read runs in the caller's tenant transaction (RLS)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any

import asyncpg
from litestar.params import PathParameter

from services.kernel.ids import parse_id

from .pagination import decode_cursor, page_of
from .problems import not_found

__all__ = [
    "IdParam",
    "get_row",
    "path_id",
    "read_one",
    "read_page",
    "set_clause",
    "update_row",
]

IdParam = Annotated[str, PathParameter(description="object id (UUID)")]


def path_id(text: str, kind: str) -> uuid.UUID:
    """An id from the path; anything that is not a UUID names nothing, so it is a 404."""
    object_id = parse_id(text)
    if object_id is None:
        raise not_found(kind)
    return object_id


async def get_row(
    conn: asyncpg.Connection, table: str, columns: str, object_id: uuid.UUID
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {columns} FROM {table} WHERE id = $1", object_id
    )
    return row


async def update_row(
    conn: asyncpg.Connection,
    table: str,
    columns: str,
    object_id: uuid.UUID,
    changes: dict[str, Any],
    casts: dict[str, str] | None = None,
) -> asyncpg.Record | None:
    """Set `changes` (by column) and updated_at; the row after, or None when there is no such row. A unique
    violation is raised for the caller to name."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"UPDATE {table} SET {set_clause(changes, casts=casts)}, updated_at = now() WHERE id = $1 "
        f"RETURNING {columns}",
        object_id,
        *changes.values(),
    )
    return row


async def read_one(
    conn: asyncpg.Connection, table: str, columns: str, object_id: uuid.UUID, kind: str
) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {columns} FROM {table} WHERE id = $1", object_id
    )
    if row is None:
        raise not_found(kind)
    return row


async def read_page(
    conn: asyncpg.Connection, table: str, columns: str, limit: int, cursor: str | None
) -> tuple[Sequence[asyncpg.Record], str | None]:
    after = decode_cursor(cursor)
    rows = await conn.fetch(
        f"SELECT {columns} FROM {table} WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
        after,
        limit + 1,
    )
    return page_of(rows, limit)


def set_clause(changes: dict[str, Any], first: int = 2, casts: dict[str, str] | None = None) -> str:
    """`a = $2, b = $3::jsonb` for an UPDATE whose $1 is the id."""
    casts = casts or {}
    return ", ".join(f"{col} = ${i}{casts.get(col, '')}" for i, col in enumerate(changes, start=first))
