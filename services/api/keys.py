"""API keys: create (the secret is shown once), list, read, revoke. Admin only."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import JSONBody, PathParameter

from services.kernel.db import tenant_tx
from services.kernel.events import ConfigChanged, SessionsEnded
from services.kernel.ids import new_id, parse_id

from .auth import Principal, Role, admin_only, new_key, principal_of
from .mutations import Outcome, audit, mutate
from .pagination import DEFAULT_LIMIT, CursorParam, LimitParam, decode_cursor, page_of
from .problems import DELETE_RESPONSES, READ_ERRORS, WRITE_ERRORS, Problem, conflict, not_found
from .state import api_state
from .validation import check_name

__all__ = ["Key", "KeyController", "KeyWithSecret", "insert_key", "key_from_row"]

KEY_COLUMNS = "id, name, role, prefix, created_at, revoked_at, last_used_at"


class Key(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    role: Role
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class KeyWithSecret(Key, kw_only=True):
    key: str


class KeyPage(msgspec.Struct):
    items: list[Key]
    next_cursor: str | None


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    role: Role
    name: Annotated[str, msgspec.Meta(max_length=100)] | None = None


def key_from_row(row: asyncpg.Record) -> Key:
    return Key(
        id=row["id"],
        name=row["name"],
        role=Role(row["role"]),
        prefix=row["prefix"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


async def insert_key(conn: asyncpg.Connection, tenant_id: uuid.UUID, role: Role, name: str) -> KeyWithSecret:
    secret, digest, prefix = new_key()
    row = await conn.fetchrow(
        f"""INSERT INTO api_keys (id, tenant_id, name, role, prefix, key_hash)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {KEY_COLUMNS}""",
        new_id(),
        tenant_id,
        name,
        role.value,
        prefix,
        digest,
    )
    key = key_from_row(row)
    return KeyWithSecret(**msgspec.structs.asdict(key), key=secret)


def _key_id(text: str) -> uuid.UUID:
    key_id = parse_id(text)
    if key_id is None:
        raise not_found("key")
    return key_id


KeyIdParam = Annotated[str, PathParameter(description="key id (UUID)")]


class KeyController(Controller):
    path = "/v1/keys"
    tags = ["keys"]
    guards = [admin_only]

    @post(
        "/",
        responses=WRITE_ERRORS,
        status_code=201,
        summary="Create an API key (the secret is shown only in this answer)",
    )
    async def create_key(
        self, request: Request[Any, Any, Any], data: JSONBody[KeyCreate]
    ) -> Response[KeyWithSecret]:
        name = check_name("name", data.name) if data.name is not None else ""

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[KeyWithSecret]:
            key = await insert_key(conn, principal.tenant_id, data.role, name)
            await audit(conn, principal, "key.created", "key", key.id, {"role": key.role.value, "name": name})
            return Outcome(
                201,
                key,
                [ConfigChanged(tenant_id=principal.tenant_id, kind="key", op="created", object_id=key.id)],
                # The secret is never stored: a retry learns which key the first request made.
                replay=conflict(
                    f"this Idempotency-Key already created key {key.id}; its secret was shown once. "
                    "Revoke that key if the secret was lost and create another."
                ),
            )

        return await mutate(request, work)

    @get("/", responses=READ_ERRORS, summary="List API keys")
    async def list_keys(
        self,
        request: Request[Any, Any, Any],
        limit: LimitParam = DEFAULT_LIMIT,
        cursor: CursorParam = None,
    ) -> KeyPage:
        after = decode_cursor(cursor)
        principal = principal_of(request)
        async with tenant_tx(api_state(request).db(), principal.tenant_id, readonly=True) as conn:
            rows = await conn.fetch(
                f"""SELECT {KEY_COLUMNS} FROM api_keys WHERE ($1::uuid IS NULL OR id > $1)
                    ORDER BY id LIMIT $2""",
                after,
                limit + 1,
            )
        page, next_cursor = page_of(rows, limit)
        return KeyPage(items=[key_from_row(r) for r in page], next_cursor=next_cursor)

    @get("/{key_id:str}", responses=READ_ERRORS, summary="Read an API key")
    async def get_key(self, request: Request[Any, Any, Any], key_id: KeyIdParam) -> Key:
        kid = _key_id(key_id)
        principal = principal_of(request)
        async with tenant_tx(api_state(request).db(), principal.tenant_id, readonly=True) as conn:
            row = await conn.fetchrow(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1", kid)
        if row is None:
            raise not_found("key")
        return key_from_row(row)

    @delete(
        "/{key_id:str}", responses=DELETE_RESPONSES, status_code=204, summary="Revoke an API key (at once)"
    )
    async def revoke_key(self, request: Request[Any, Any, Any], key_id: KeyIdParam) -> Response[None]:
        kid = _key_id(key_id)

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[None]:
            if kid == principal.key_id:
                raise Problem(409, "a key cannot revoke itself; use another admin key")
            row = await conn.fetchrow(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING role",
                kid,
            )
            if row is None:
                raise not_found("key")
            await audit(conn, principal, "key.revoked", "key", kid, {"role": row["role"]})
            return Outcome(
                204,
                None,
                [
                    ConfigChanged(tenant_id=principal.tenant_id, kind="key", op="deleted", object_id=kid),
                    # Agent tokens this key issued stop working: their open sockets close.
                    SessionsEnded(tenant_id=principal.tenant_id, key_id=kid, reason="key_revoked"),
                ],
            )

        return await mutate(request, work)
