"""Click-to-call widget: a tenant's public widget keys (`pk_...`, published in its web pages) and the public
exchange of such a key for a short-lived widget token that can reach only the queues the key allows.

A widget key is not a secret: anyone who reads the page has it. What protects the tenant is what the key can
do (one call to an allowed queue at a time, tokens of a few minutes), the allowed origins (checked against the
browser's Origin header when the key lists any), and a rate limit per client address. The key is found before
the tenant is known through the one-row `widget_key_lookup` policy (migration 0005), exactly as API keys are."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import asyncpg
import msgspec
from litestar import Controller, Request, Response, delete, get, post, route
from litestar.enums import HttpMethod
from litestar.params import HeaderParameter, JSONBody

from services.kernel.db import tenant_tx
from services.kernel.ids import new_id, parse_id

from .auth import Principal, admin_only
from .crud import IdParam, path_id, read_page
from .deps import ApiDep, MutationDep, TenantConnDep
from .mutations import Outcome, audit
from .pagination import DEFAULT_LIMIT, CursorParam, LimitParam
from .problems import (
    DELETE_RESPONSES,
    READ_ERRORS,
    WRITE_ERRORS,
    Problem,
    forbidden,
    not_found,
    problem_responses,
    validation,
)
from .queries import flows as flows_sql
from .queries import widget as sql
from .tokens import MIN_SECRET_BYTES, WIDGET_TTL_S, issue_widget_token
from .turn import ice_servers
from .validation import check_name, check_text

__all__ = [
    "PUBLIC_KEY_PATTERN",
    "WidgetKey",
    "WidgetKeyController",
    "WidgetToken",
    "issue_widget_token_handler",
    "normalise_origin",
    "widget_token_preflight",
]

PUBLIC_KEY_PREFIX = "pk_"
PUBLIC_KEY_PATTERN = re.compile(r"^pk_[A-Za-z0-9_-]{20,100}$")
MAX_QUEUES = 50
MAX_ORIGINS = 20
_DEFAULT_PORTS = {"http": 80, "https": 443}


class WidgetKey(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    public_key: str
    queue_ids: list[uuid.UUID]
    origins: list[str]
    max_concurrent_calls: int | None
    # Web callers go through this IVR flow (its keypad drives the menus) instead of straight to the queue.
    flow_id: uuid.UUID | None = None
    created_at: datetime
    revoked_at: datetime | None


class WidgetKeyPage(msgspec.Struct):
    items: list[WidgetKey]
    next_cursor: str | None


class WidgetKeyCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    queue_ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=MAX_QUEUES)]
    origins: (
        Annotated[
            list[Annotated[str, msgspec.Meta(max_length=300)]],
            msgspec.Meta(
                max_length=MAX_ORIGINS,
                description="web origins allowed to use the key, e.g. https://shop.example.com; none: any",
            ),
        ]
        | None
    ) = None
    name: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    flow: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=100,
                description="an IVR flow (name or id) web callers go through first; none: straight to the queue",
            ),
        ]
        | None
    ) = None
    max_concurrent_calls: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                le=100_000,
                description="web calls this key may hold at once; none: the tenant's limit only",
            ),
        ]
        | None
    ) = None


class WidgetTokenRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    key: Annotated[str, msgspec.Meta(max_length=200, description="the tenant's public widget key, pk_...")]
    queue: Annotated[str, msgspec.Meta(max_length=100, description="queue id or name")]


class WidgetToken(msgspec.Struct, kw_only=True):
    token: str
    token_type: str
    session_id: uuid.UUID
    queue_id: uuid.UUID
    expires_at: float
    expires_in: int
    ice_servers: list[dict[str, Any]] = []


def widget_key_from_row(row: asyncpg.Record) -> WidgetKey:
    return WidgetKey(
        id=row["id"],
        name=row["name"],
        public_key=row["public_key"],
        queue_ids=list(row["queue_ids"]),
        origins=list(row["origins"]),
        max_concurrent_calls=row["max_concurrent_calls"],
        flow_id=row["flow_id"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def new_public_key() -> str:
    # Public, but still unguessable: nobody should be able to enumerate tenants' keys.
    return PUBLIC_KEY_PREFIX + secrets.token_urlsafe(24)


def normalise_origin(text: str) -> str | None:
    """`https://Shop.Example.com:443/` -> `https://shop.example.com`: the form browsers send in Origin
    (RFC 6454: scheme, host, and the port only when it is not the scheme's default). None if not an origin."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None or parts.password is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"


def _check_origins(origins: list[str]) -> list[str]:
    out: list[str] = []
    for i, raw in enumerate(origins):
        origin = normalise_origin(raw)
        if origin is None:
            raise validation(
                f"origins[{i}]",
                "must be a web origin: http(s)://host[:port] with no path, e.g. https://shop.example.com",
            )
        if origin not in out:
            out.append(origin)
    return out


class WidgetKeyController(Controller):
    path = "/v1/widget-keys"
    tags = ["widget"]

    @post(
        "/",
        responses=WRITE_ERRORS,
        status_code=201,
        guards=[admin_only],
        summary="Create a public widget key for the queues a web page may call",
    )
    async def create_widget_key(
        self, mutation: MutationDep, data: JSONBody[WidgetKeyCreate]
    ) -> Response[WidgetKey]:
        name = check_name("name", data.name) if data.name is not None else ""
        origins = _check_origins(data.origins or [])
        queue_ids = list(dict.fromkeys(data.queue_ids))

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[WidgetKey]:
            found = await sql.existing_queues(conn, queue_ids)
            for i, qid in enumerate(queue_ids):
                if qid not in found:
                    raise validation(f"queue_ids[{i}]", "no queue with this id")
            flow_id = None
            if data.flow is not None:
                ref = data.flow.strip()
                flow_id = parse_id(ref) or await flows_sql.id_by_name(conn, ref)
                if flow_id is None or not await flows_sql.exists(conn, flow_id):
                    raise validation("flow", f"no flow {ref!r}")
            row = await sql.insert(
                conn,
                new_id(),
                principal.tenant_id,
                name=name,
                public_key=new_public_key(),
                queue_ids=queue_ids,
                origins=origins,
                max_concurrent_calls=data.max_concurrent_calls,
                flow_id=flow_id,
            )
            key = widget_key_from_row(row)
            detail = {
                "name": name,
                "queue_ids": [str(q) for q in queue_ids],
                "origins": origins,
                "max_concurrent_calls": data.max_concurrent_calls,
                "flow_id": str(flow_id) if flow_id else None,
            }
            await audit(conn, principal, "widget_key.created", "widget_key", key.id, detail)
            return Outcome(201, key)

        return await mutation.run(work)

    @get("/", responses=READ_ERRORS, summary="List widget keys (revoked ones too)")
    async def list_widget_keys(
        self, tenant_conn: TenantConnDep, limit: LimitParam = DEFAULT_LIMIT, cursor: CursorParam = None
    ) -> WidgetKeyPage:
        rows, next_cursor = await read_page(tenant_conn, "widget_keys", sql.COLUMNS, limit, cursor)
        return WidgetKeyPage(items=[widget_key_from_row(r) for r in rows], next_cursor=next_cursor)

    @get("/{widget_key_id:str}", responses=READ_ERRORS, summary="Read a widget key")
    async def get_widget_key(self, tenant_conn: TenantConnDep, widget_key_id: IdParam) -> WidgetKey:
        row = await sql.get(tenant_conn, path_id(widget_key_id, "widget key"))
        if row is None:
            raise not_found("widget key")
        return widget_key_from_row(row)

    @delete(
        "/{widget_key_id:str}",
        responses=DELETE_RESPONSES,
        status_code=204,
        guards=[admin_only],
        summary="Revoke a widget key (at once: no new tokens; tokens issued live out their minutes)",
    )
    async def revoke_widget_key(self, mutation: MutationDep, widget_key_id: IdParam) -> Response[None]:
        wid = path_id(widget_key_id, "widget key")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[None]:
            name = await sql.revoke(conn, wid)
            if name is None:
                raise not_found("widget key")
            await audit(conn, principal, "widget_key.revoked", "widget_key", wid, {"name": name})
            return Outcome(204, None)

        return await mutation.run(work)


def _client_address(request: Request[Any, Any, Any]) -> str:
    # Behind a proxy, run uvicorn with --proxy-headers so that this is the caller, not the proxy.
    return request.client.host if request.client else "unknown"


OriginHeader = Annotated[str | None, HeaderParameter(name="origin", description="the calling page's origin")]


def _cors(origin: str | None) -> dict[str, str]:
    # The widget runs on the tenant's site, another origin than the API's: the browser may read the answer
    # only with these headers. Only an origin the key allows (or any, for a key without origins) gets them.
    if not origin:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


@route(
    "/v1/widget/token",
    http_method=[HttpMethod.OPTIONS],
    exclude_from_auth=True,
    include_in_schema=False,
    status_code=204,
)
async def widget_token_preflight(origin: OriginHeader = None) -> Response[None]:
    """CORS preflight for `POST /v1/widget/token`; it grants nothing, the POST checks the origin itself.
    Plain handlers, this one registered before the POST: Litestar adds its own OPTIONS handler to a route
    that has none when the route is first built (and a controller builds its routes alone)."""
    headers = {
        "Allow": "OPTIONS, POST",
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "content-type",
        "Access-Control-Max-Age": "600",
        **_cors(origin),
    }
    return Response(None, status_code=204, headers=headers)


@post(
    "/v1/widget/token",
    tags=["widget"],
    responses=problem_responses(400, 401, 403, 413, 415, 422, 429, 503),
    status_code=201,
    exclude_from_auth=True,
    security=[],
    summary="Exchange a public widget key for a short-lived caller token to one allowed queue",
)
async def issue_widget_token_handler(
    request: Request[Any, Any, Any],
    api: ApiDep,
    data: JSONBody[WidgetTokenRequest],
    origin: OriginHeader = None,
) -> Response[WidgetToken]:
    # The Request for the client's address alone: the rate limit is per address (no key, no tenant yet).
    limiter = api.widget_limiter
    allowed, retry_after = limiter.allow(_client_address(request), time.monotonic())
    if not allowed:
        raise Problem(
            429,
            f"at most {limiter.limit} widget tokens per minute from one address; retry later",
            headers={"Retry-After": str(max(1, round(retry_after)))},
        )
    secret = api.settings.token_secret
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise Problem(503, "widget tokens are not available: the platform has no token secret configured")
    public_key = data.key.strip()
    if not PUBLIC_KEY_PATTERN.match(public_key):
        raise Problem(401, "this is not a widget key (pk_...)")
    queue_ref = check_text("queue", data.queue, max_len=100)

    pool = api.db()
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        key = await sql.by_public_key(conn, public_key)
    if key is None:
        raise Problem(401, "this widget key does not exist")
    if key["revoked_at"] is not None:
        raise Problem(401, "this widget key has been revoked")

    origins: list[str] = list(key["origins"])
    page_origin = normalise_origin(origin) if origin else None
    if origins and (page_origin is None or page_origin not in origins):
        where = f"the origin {origin[:100]}" if origin else "a page without an Origin header"
        raise forbidden(f"this widget key may not be used from {where}")

    tenant_id: uuid.UUID = key["tenant_id"]
    allowed_queues: list[uuid.UUID] = list(key["queue_ids"])
    async with tenant_tx(pool, tenant_id, readonly=True) as conn:
        queue_id = await sql.queue_id(conn, parse_id(queue_ref), queue_ref)
    # One answer whether the queue is not allowed or does not exist: the key's holder is anyone.
    if queue_id is None or queue_id not in allowed_queues:
        raise forbidden(f"this widget key does not allow calls to the queue {queue_ref!r}")

    now = time.time()
    token, session_id, expires = issue_widget_token(
        secret, tenant_id, key["id"], queue_id, now=now, ttl=WIDGET_TTL_S
    )
    body = WidgetToken(
        token=token,
        token_type="Bearer",
        session_id=session_id,
        queue_id=queue_id,
        expires_at=expires,
        expires_in=int(expires - now),
        ice_servers=ice_servers(api.settings, f"w-{session_id}", now),
    )
    return Response(body, status_code=201, headers=_cors(origin if page_origin else None))
