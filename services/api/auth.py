"""API keys: their format and hashing, the authentication middleware (key lookup under the key_lookup RLS
policy, per-key rate limit, cheap last_used_at), and the role guards.

A supervisor's or admin's browser (the supervisor console) authenticates with its short-lived console
token in the same Authorization header, never in a URL or a cookie (so a cross-site request cannot carry
it): it acts with the account's role while its browser session is live."""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from services.kernel.db import tenant_tx
from services.kernel.log import bind

from .problems import Problem, forbidden, unauthorized
from .state import api_state

__all__ = [
    "KEY_PATTERN",
    "AuthMiddleware",
    "Principal",
    "Role",
    "admin_only",
    "authenticate",
    "hash_key",
    "new_key",
    "principal_of",
    "same_origin",
    "supervisor_only",
]

KEY_PREFIX = "sbk_"
# secrets.token_urlsafe(32) is 43 characters of the URL-safe base64 alphabet.
KEY_PATTERN = re.compile(r"^sbk_[A-Za-z0-9_-]{43}$")
# Characters of a key shown in listings: enough to tell keys apart, far too few to use.
PREFIX_LEN = 12
LAST_USED_RESOLUTION = timedelta(minutes=1)


class Role(enum.Enum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    DEVELOPER = "developer"


@dataclass(frozen=True)
class Principal:
    tenant_id: uuid.UUID
    key_id: uuid.UUID  # the API key, or the browser session of a console token
    role: Role
    account_id: uuid.UUID | None = None  # the person, for a console token
    queues: frozenset[uuid.UUID] | None = None  # a supervisor's assigned queues; None: the whole tenant
    agents: frozenset[uuid.UUID] | None = None  # the agents a scoped supervisor sees; None: all

    def sees_queue(self, queue_id: uuid.UUID | str | None) -> bool:
        """Whether this principal may see and act on a queue's contacts (a contact with no queue: only unscoped)."""
        if self.queues is None:
            return True
        return queue_id is not None and uuid.UUID(str(queue_id)) in self.queues

    def sees_agent(self, agent_id: uuid.UUID | str | None) -> bool:
        if self.agents is None:
            return True
        return agent_id is not None and uuid.UUID(str(agent_id)) in self.agents


def new_key() -> tuple[str, bytes, str]:
    """A fresh key: (secret shown once, SHA-256 stored, prefix shown in listings)."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return secret, hash_key(secret), secret[:PREFIX_LEN]


def hash_key(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    header = connection.headers.get("authorization")
    if not header:
        raise unauthorized("send an API key: Authorization: Bearer sbk_...")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("the Authorization header must be: Bearer sbk_...")
    if not KEY_PATTERN.match(token) and token.count(".") != 2:
        raise unauthorized("this is not a valid API key")
    return token


async def _console_principal(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> Principal:
    """A console token's person, while its browser session is live and the account keeps its role."""
    # tokens.py guards its routes with this module's guards: imported here, not at the top, to avoid a cycle.
    from .tokens import TokenError, console_live, verify_console_token

    state = api_state(connection)
    try:
        claims = verify_console_token(state.settings.token_secret, token, now=time.time())
    except TokenError as exc:
        raise unauthorized(exc.reason) from None
    async with tenant_tx(state.db(), claims.tenant_id, readonly=True) as conn:
        why, _ = await console_live(conn, claims)
        queues, agents = (
            await supervisor_scope(conn, claims.account_id) if claims.role == "supervisor" else (None, None)
        )
    if why is not None:
        raise unauthorized(why)
    return Principal(
        tenant_id=claims.tenant_id,
        key_id=claims.session_id,
        role=Role(claims.role),
        account_id=claims.account_id,
        queues=queues,
        agents=agents,
    )


# An agent serves a queue when it has every skill the queue asks for (as routing loads it).
_SCOPE_SQL = """
WITH scope AS (SELECT queue_ids, site_ids FROM accounts WHERE id = $1),
     seen_queues AS (
         SELECT q.id, q.skills FROM queues q, scope s
         WHERE q.id = ANY(coalesce(s.queue_ids, '{}')) OR q.site_id = ANY(coalesce(s.site_ids, '{}')))
SELECT s.queue_ids IS NULL AND s.site_ids IS NULL AS unscoped,
       ARRAY(SELECT id FROM seen_queues) AS queues,
       ARRAY(SELECT a.id FROM agents a
             WHERE a.site_id = ANY(coalesce(s.site_ids, '{}'))
                OR EXISTS (SELECT 1 FROM seen_queues q
                           WHERE a.skills ?& ARRAY(SELECT jsonb_object_keys(q.skills)))) AS agents
FROM scope s"""


async def supervisor_scope(
    conn: asyncpg.Connection, account_id: uuid.UUID
) -> tuple[frozenset[uuid.UUID] | None, frozenset[uuid.UUID] | None]:
    """A supervisor's queues and agents (docs/supervisor.md, "Scope"); (None, None): the whole tenant."""
    row = await conn.fetchrow(_SCOPE_SQL, account_id)
    if row is None or row["unscoped"]:
        return None, None
    return frozenset(row["queues"]), frozenset(row["agents"])


# A tenant's plan (its API rate) is read again after this long: an operator's change applies within it.
PLAN_TTL_S = 60.0


class AuthMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        principal = await authenticate(connection, _bearer(connection))
        return AuthenticationResult(user=principal, auth=None)


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> Principal:
    """The principal of an API key or a console token (the middleware's, and a websocket's first message:
    browsers cannot set headers on websockets); Problem 401/429 otherwise."""
    state = api_state(connection)
    if not KEY_PATTERN.match(token):
        if token.count(".") != 2:
            raise unauthorized("this is not a valid API key")
        console = await _console_principal(connection, token)
        bind(tenant_id=console.tenant_id, account_id=console.account_id)
        return console
    digest = hash_key(token)
    pool = state.db()
    async with pool.acquire() as conn, conn.transaction():
        # The key_lookup policy lets this transaction see exactly the row whose hash it names.
        await conn.execute("SELECT set_config('app.api_key_hash', $1, true)", digest.hex())
        row = await conn.fetchrow(
            "SELECT id, tenant_id, role, revoked_at, last_used_at FROM api_keys WHERE key_hash = $1",
            digest,
        )
        if row is None:
            raise unauthorized("this API key does not exist")
        if row["revoked_at"] is not None:
            raise unauthorized("this API key has been revoked")
        last_used: datetime | None = row["last_used_at"]
        plan = state.key_rates.get(row["tenant_id"])
        stale_plan = plan is None or time.monotonic() - plan[1] > PLAN_TTL_S
        if stale_plan or last_used is None or datetime.now(UTC) - last_used >= LAST_USED_RESOLUTION:
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(row["tenant_id"]))
        if last_used is None or datetime.now(UTC) - last_used >= LAST_USED_RESOLUTION:
            await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1", row["id"])
        if stale_plan:
            rate = await conn.fetchval(
                "SELECT api_rate_per_minute FROM tenants WHERE id = $1", row["tenant_id"]
            )
            plan = state.key_rates[row["tenant_id"]] = (rate, time.monotonic())
    principal = Principal(tenant_id=row["tenant_id"], key_id=row["id"], role=Role(row["role"]))
    assert plan is not None
    limit = plan[0] or state.key_limiter.limit  # the tenant's plan, else the platform's default
    allowed, retry_after = state.key_limiter.allow(str(principal.key_id), time.monotonic(), limit)
    if not allowed:
        raise Problem(
            429,
            f"this API key is limited to {limit} requests per minute",
            headers={"Retry-After": str(max(1, round(retry_after)))},
        )
    bind(tenant_id=principal.tenant_id, key_id=principal.key_id)
    return principal


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    user = connection.scope.get("user")
    if not isinstance(user, Principal):
        raise unauthorized("send an API key: Authorization: Bearer sbk_...")
    return user


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    principal = principal_of(connection)
    if principal.role is not Role.ADMIN:
        raise forbidden(f"this needs an admin key; this key's role is {principal.role.value}")


def supervisor_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    principal = principal_of(connection)
    if principal.role not in (Role.SUPERVISOR, Role.ADMIN):
        raise forbidden(f"this needs a supervisor or an admin; this key's role is {principal.role.value}")


def same_origin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Routes a browser's cookie can drive (sign-in, refresh, sign-out): a request another site's page made
    (its Origin names another host, or the browser says cross-site) is refused, whatever SameSite did."""
    origin = connection.headers.get("origin")
    host = connection.headers.get("host", "")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != host.lower()):
        raise forbidden(f"a request from {origin} is refused: open the page on this address instead")
    if connection.headers.get("sec-fetch-site") == "cross-site":
        raise forbidden("a cross-site request is refused")
