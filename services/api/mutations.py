"""How every change runs: one tenant transaction holding the change, its audit entry and (for POSTs with an
Idempotency-Key) the stored answer; events are published after the commit.

Idempotency: the key's row is inserted first in the same transaction. A concurrent retry with the same key
blocks on that insert until the first commits, then finds the stored answer, so a change is never made
twice. Only successful answers are stored: a change that fails rolls back, key row included, and a retry
runs again.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import asyncpg
import msgspec
from litestar import Request, Response

from services.kernel.db import tenant_tx
from services.kernel.ids import new_id
from services.kernel.messages import Event

from .auth import Principal, principal_of
from .problems import Problem, validation
from .state import api_state

__all__ = ["Mutation", "Outcome", "Work", "audit", "mutate"]

IDEMPOTENCY_HEADER = "idempotency-key"
_IDEMPOTENCY_KEY = re.compile(r"^[\x20-\x7e]{1,200}$")
_IN_PROGRESS = 0


# What a change answers (a Struct, or None for 204): the handler's declared `Response[T]` is checked
# against the `Outcome[T]` its work returns.
T = TypeVar("T", bound="msgspec.Struct | None")


@dataclass
class Outcome(Generic[T]):
    status: int
    body: T
    events: list[Event] = field(default_factory=list)
    # What a retry with the same Idempotency-Key gets instead of `body` (when `body` holds a secret).
    replay: Problem | None = None


Work = Callable[[asyncpg.Connection, Principal], Awaitable[Outcome[T]]]

_encoder = msgspec.json.Encoder()


async def audit(
    conn: asyncpg.Connection,
    principal: Principal | None,
    action: str,
    target_type: str,
    target_id: uuid.UUID | str | None,
    detail: dict[str, Any] | None = None,
    *,
    tenant_id: uuid.UUID | None = None,
) -> None:
    tenant = tenant_id if tenant_id is not None else (principal.tenant_id if principal else None)
    if tenant is None:
        raise ValueError("audit needs a tenant")
    await conn.execute(
        """INSERT INTO audit_log (id, tenant_id, actor_key_id, actor_role, action, target_type, target_id, detail)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)""",
        new_id(),
        tenant,
        principal.key_id if principal else None,
        principal.role.value if principal else None,
        action,
        target_type,
        str(target_id) if target_id is not None else None,
        _encoder.encode(detail or {}).decode(),
    )


def _canonical_hash(body: bytes) -> bytes:
    # Same JSON, same hash: key order and whitespace do not make a retry look different.
    try:
        canonical = msgspec.json.encode(msgspec.json.decode(body), order="sorted")
    except msgspec.DecodeError:
        canonical = body
    return hashlib.sha256(canonical).digest()


def _encode(outcome_body: msgspec.Struct | None) -> bytes:
    return b"" if outcome_body is None else _encoder.encode(outcome_body)


def _response(status: int, body: bytes, *, replayed: bool = False) -> Response[bytes]:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    if status == 204:
        return Response(content=b"", status_code=204, headers=headers)
    media = "application/problem+json" if status >= 400 else "application/json"
    return Response(content=body, status_code=status, media_type=media, headers=headers)


class Mutation:
    """The `mutation` dependency (deps.py): a change for this request, run by `run(work)`."""

    def __init__(self, request: Request[Any, Any, Any]) -> None:
        self.request = request

    async def run(self, work: Work[T]) -> Response[T]:
        return await mutate(self.request, work)


async def mutate(request: Request[Any, Any, Any], work: Work[T]) -> Response[T]:
    state = api_state(request)
    principal = principal_of(request)
    method = request.method.upper()
    path = request.url.path
    idem_key = request.headers.get(IDEMPOTENCY_HEADER) if method == "POST" else None
    request_hash = b""
    if idem_key is not None:
        if not _IDEMPOTENCY_KEY.match(idem_key):
            raise validation("Idempotency-Key", "must be 1-200 printable ASCII characters")
        request_hash = _canonical_hash(await request.body())

    stored: asyncpg.Record | None = None
    async with tenant_tx(state.db(), principal.tenant_id) as conn:
        if idem_key is not None:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND created_at < now() - interval '24 hours'",
                principal.tenant_id,
            )
            claimed = await conn.fetchval(
                """INSERT INTO idempotency_keys (tenant_id, key, method, path, request_hash, status, body)
                   VALUES ($1, $2, $3, $4, $5, $6, '') ON CONFLICT (tenant_id, key) DO NOTHING RETURNING 1""",
                principal.tenant_id,
                idem_key,
                method,
                path,
                request_hash,
                _IN_PROGRESS,
            )
            if claimed is None:
                stored = await conn.fetchrow(
                    "SELECT method, path, request_hash, status, body FROM idempotency_keys WHERE key = $1",
                    idem_key,
                )
        if stored is None:
            outcome = await work(conn, principal)
            body = _encode(outcome.body)
            if idem_key is not None:
                if outcome.replay is not None:
                    kept_status, kept_body = outcome.replay.status, _encode(outcome.replay.body())
                else:
                    kept_status, kept_body = outcome.status, body
                await conn.execute(
                    "UPDATE idempotency_keys SET status = $2, body = $3 WHERE key = $1",
                    idem_key,
                    kept_status,
                    kept_body,
                )

    if stored is not None:
        if (
            stored["method"] != method
            or stored["path"] != path
            or bytes(stored["request_hash"]) != request_hash
        ):
            raise Problem(
                422,
                "this Idempotency-Key was already used for a different request "
                f"({stored['method']} {stored['path']}); use a new key for a new request",
                slug="idempotency-mismatch",
                title="Idempotency key reused",
            )
        return _typed(_response(stored["status"], bytes(stored["body"]), replayed=True))

    await state.publish(outcome.events)
    return _typed(_response(outcome.status, body))


def _typed(response: Response[bytes]) -> Response[T]:
    # The body is already the encoded T (or a stored copy of it): Litestar sends bytes as they are, and
    # the handler's Response[T] is what the OpenAPI schema documents.
    return cast("Response[T]", response)
