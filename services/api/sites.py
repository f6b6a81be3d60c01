"""Sites: groups of agents (an office or agents' homes) with a time zone."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import JSONBody

from services.kernel.events import ConfigChanged
from services.kernel.ids import new_id
from services.kernel.messages import Event

from .auth import Principal, admin_only
from .crud import IdParam, path_id, read_page
from .deps import MutationDep, TenantConnDep
from .mutations import Outcome, Work, audit
from .pagination import DEFAULT_LIMIT, CursorParam, LimitParam
from .problems import DELETE_RESPONSES, READ_ERRORS, WRITE_ERRORS, conflict, not_found, validation
from .queries import sites as sql
from .validation import check_name, check_timezone

__all__ = ["Site", "SiteController", "default_site", "require_site"]


class SiteKind(enum.Enum):
    OFFICE = "office"
    HOME = "home"


class Site(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    timezone: str
    kind: SiteKind
    created_at: datetime
    updated_at: datetime
    # Set while the site is drained: its agents finish what they hold and get nothing new, and the calls
    # of queues preferring it go to the other sites' agents at once.
    drained_at: datetime | None = None


class SitePage(msgspec.Struct):
    items: list[Site]
    next_cursor: str | None


class SiteCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(max_length=100)]
    timezone: Annotated[str, msgspec.Meta(max_length=64)] = "UTC"
    kind: SiteKind = SiteKind.OFFICE


class SitePatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(max_length=100)] | msgspec.UnsetType = msgspec.UNSET
    timezone: Annotated[str, msgspec.Meta(max_length=64)] | msgspec.UnsetType = msgspec.UNSET
    kind: SiteKind | msgspec.UnsetType = msgspec.UNSET


def site_from_row(row: asyncpg.Record) -> Site:
    return Site(
        id=row["id"],
        name=row["name"],
        timezone=row["timezone"],
        kind=SiteKind(row["kind"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        drained_at=row["drained_at"],
    )


async def require_site(conn: asyncpg.Connection, field: str, site_id: uuid.UUID) -> None:
    """A site named in a request body must be one of this tenant's (RLS hides every other)."""
    if not await sql.exists(conn, site_id):
        raise validation(field, "no site with this id")


async def default_site(conn: asyncpg.Connection) -> uuid.UUID:
    # The oldest remaining site (signup's Main unless it was deleted); a tenant always keeps one site.
    site_id = await sql.oldest(conn)
    if site_id is None:
        raise conflict("this tenant has no site; create one first")
    return site_id


def _name_taken(name: str) -> Exception:
    return conflict(f"a site named {name!r} already exists")


def _changed(
    principal: Principal, op: Literal["created", "updated", "deleted"], site_id: uuid.UUID
) -> list[Event]:
    return [ConfigChanged(tenant_id=principal.tenant_id, kind="site", op=op, object_id=site_id)]


class SiteController(Controller):
    path = "/v1/sites"
    tags = ["sites"]

    @post("/", responses=WRITE_ERRORS, status_code=201, guards=[admin_only], summary="Create a site")
    async def create_site(self, mutation: MutationDep, data: JSONBody[SiteCreate]) -> Response[Site]:
        name = check_name("name", data.name)
        timezone = check_timezone("timezone", data.timezone)

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Site]:
            try:
                async with conn.transaction():
                    row = await sql.insert(
                        conn, new_id(), principal.tenant_id, name, timezone, data.kind.value
                    )
            except asyncpg.UniqueViolationError:
                raise _name_taken(name) from None
            site = site_from_row(row)
            detail = {"name": name, "timezone": timezone, "kind": data.kind.value}
            await audit(conn, principal, "site.created", "site", site.id, detail)
            return Outcome(201, site, _changed(principal, "created", site.id))

        return await mutation.run(work)

    @get("/", responses=READ_ERRORS, summary="List sites")
    async def list_sites(
        self, tenant_conn: TenantConnDep, limit: LimitParam = DEFAULT_LIMIT, cursor: CursorParam = None
    ) -> SitePage:
        rows, next_cursor = await read_page(tenant_conn, "sites", sql.COLUMNS, limit, cursor)
        return SitePage(items=[site_from_row(r) for r in rows], next_cursor=next_cursor)

    @get("/{site_id:str}", responses=READ_ERRORS, summary="Read a site")
    async def get_site(self, tenant_conn: TenantConnDep, site_id: IdParam) -> Site:
        row = await sql.get(tenant_conn, path_id(site_id, "site"))
        if row is None:
            raise not_found("site")
        return site_from_row(row)

    @patch("/{site_id:str}", responses=WRITE_ERRORS, guards=[admin_only], summary="Change a site")
    async def update_site(
        self, mutation: MutationDep, site_id: IdParam, data: JSONBody[SitePatch]
    ) -> Response[Site]:
        sid = path_id(site_id, "site")
        changes: dict[str, Any] = {}
        if data.name is not msgspec.UNSET:
            changes["name"] = check_name("name", data.name)
        if data.timezone is not msgspec.UNSET:
            changes["timezone"] = check_timezone("timezone", data.timezone)
        if data.kind is not msgspec.UNSET:
            changes["kind"] = data.kind.value

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Site]:
            if not changes:
                row = await sql.get(conn, sid)
                if row is None:
                    raise not_found("site")
                return Outcome(200, site_from_row(row))
            try:
                async with conn.transaction():
                    row = await sql.update(conn, sid, changes)
            except asyncpg.UniqueViolationError:
                raise _name_taken(changes.get("name", "")) from None
            if row is None:
                raise not_found("site")
            await audit(conn, principal, "site.updated", "site", sid, changes)
            return Outcome(200, site_from_row(row), _changed(principal, "updated", sid))

        return await mutation.run(work)

    @post("/{site_id:str}/drain", responses=WRITE_ERRORS, guards=[admin_only], summary="Drain a site")
    async def drain_site(self, mutation: MutationDep, site_id: IdParam) -> Response[Site]:
        """Its agents finish their contacts and are offered nothing new; waiting contacts held for it spill
        to every site. Draining a drained site changes nothing."""
        return await mutation.run(_drain(path_id(site_id, "site"), drained=True))

    @post("/{site_id:str}/restore", responses=WRITE_ERRORS, guards=[admin_only], summary="Restore a site")
    async def restore_site(self, mutation: MutationDep, site_id: IdParam) -> Response[Site]:
        """Undo a drain: the site's agents are offered work again."""
        return await mutation.run(_drain(path_id(site_id, "site"), drained=False))

    @delete(
        "/{site_id:str}",
        responses=DELETE_RESPONSES,
        status_code=204,
        guards=[admin_only],
        summary="Delete a site that nothing uses",
    )
    async def delete_site(self, mutation: MutationDep, site_id: IdParam) -> Response[None]:
        sid = path_id(site_id, "site")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[None]:
            row = await sql.lock(conn, sid)
            if row is None:
                raise not_found("site")
            agents, queues = await sql.users(conn, sid)
            if agents or queues:
                raise conflict(
                    f"site {row['name']!r} is used by {agents} agents and {queues} queues; move them first"
                )
            if await sql.lock_all(conn) <= 1:
                raise conflict("a tenant keeps at least one site; this is the last one")
            try:
                async with conn.transaction():
                    await sql.delete(conn, sid)
            except asyncpg.ForeignKeyViolationError:
                raise conflict(
                    f"site {row['name']!r} is still in use; move its agents and queues first"
                ) from None
            await audit(conn, principal, "site.deleted", "site", sid, {"name": row["name"]})
            return Outcome(204, None, _changed(principal, "deleted", sid))

        return await mutation.run(work)


def _drain(sid: uuid.UUID, *, drained: bool) -> Work[Site]:
    async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Site]:
        before = await sql.lock(conn, sid)
        if before is None:
            raise not_found("site")
        if (before["drained_at"] is not None) == drained:
            return Outcome(200, site_from_row(before))
        row = await sql.set_drained(conn, sid, drained=drained)
        op = "drained" if drained else "restored"
        await audit(conn, principal, f"site.{op}", "site", sid, {"name": row["name"]})
        return Outcome(200, site_from_row(row), _changed(principal, "updated", sid))

    return work
