"""API keys: create (the secret is shown once), list, read, revoke. Admin only."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import asyncpg
import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.params import JSONBody, PathParameter

from services.kernel.events import ConfigChanged, SessionsEnded
from services.kernel.ids import new_id

from .auth import Principal, Role, admin_only, new_key
from .crud import path_id, read_page
from .deps import MutationDep, TenantConnDep
from .mutations import Outcome, audit
from .pagination import DEFAULT_LIMIT, CursorParam, LimitParam
from .problems import DELETE_RESPONSES, READ_ERRORS, WRITE_ERRORS, Problem, conflict, not_found
from .queries import keys as sql
from .validation import check_name

__all__ = ["Key", "KeyController", "KeyWithSecret", "insert_key", "key_from_row"]


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
    key = key_from_row(await sql.insert(conn, new_id(), tenant_id, name, role.value, prefix, digest))
    return KeyWithSecret(**msgspec.structs.asdict(key), key=secret)


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
    async def create_key(self, mutation: MutationDep, data: JSONBody[KeyCreate]) -> Response[KeyWithSecret]:
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

        return await mutation.run(work)

    @get("/", responses=READ_ERRORS, summary="List API keys")
    async def list_keys(
        self, tenant_conn: TenantConnDep, limit: LimitParam = DEFAULT_LIMIT, cursor: CursorParam = None
    ) -> KeyPage:
        rows, next_cursor = await read_page(tenant_conn, "api_keys", sql.COLUMNS, limit, cursor)
        return KeyPage(items=[key_from_row(r) for r in rows], next_cursor=next_cursor)

    @get("/{key_id:str}", responses=READ_ERRORS, summary="Read an API key")
    async def get_key(self, tenant_conn: TenantConnDep, key_id: KeyIdParam) -> Key:
        row = await sql.get(tenant_conn, path_id(key_id, "key"))
        if row is None:
            raise not_found("key")
        return key_from_row(row)

    @delete(
        "/{key_id:str}", responses=DELETE_RESPONSES, status_code=204, summary="Revoke an API key (at once)"
    )
    async def revoke_key(self, mutation: MutationDep, key_id: KeyIdParam) -> Response[None]:
        kid = path_id(key_id, "key")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[None]:
            if kid == principal.key_id:
                raise Problem(409, "a key cannot revoke itself; use another admin key")
            role = await sql.revoke(conn, kid)
            if role is None:
                raise not_found("key")
            await audit(conn, principal, "key.revoked", "key", kid, {"role": role})
            return Outcome(
                204,
                None,
                [
                    ConfigChanged(tenant_id=principal.tenant_id, kind="key", op="deleted", object_id=kid),
                    # Agent tokens this key issued stop working: their open sockets close.
                    SessionsEnded(tenant_id=principal.tenant_id, key_id=kid, reason="key_revoked"),
                ],
            )

        return await mutation.run(work)
