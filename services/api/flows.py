"""IVR flows: deploy a flow file as a new immutable version (validated here, errors with line numbers), list,
read, list versions, roll back, delete; and point a number at a flow (POST /v1/numbers/{number}/route)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.params import JSONBody, PathParameter
from switchboard.flowdef.source import Issue
from switchboard.flowdef.suite import Case, CaseResult, parse_time
from switchboard.flowdef.validate import validate_text

from services.ivr.lookup import SIGNATURE_HEADER, TIMESTAMP_HEADER, derive_secret
from services.ivr.simulator import run_case
from services.kernel.events import ConfigChanged
from services.kernel.ids import new_id, parse_id

from .auth import Principal, admin_only
from .crud import read_page
from .deps import ApiDep, CallerDep, MutationDep, TenantConnDep
from .mutations import Outcome, audit
from .numbers import Number, number_from_row
from .pagination import DEFAULT_LIMIT, CursorParam, LimitParam, decode_cursor, page_of
from .problems import (
    DELETE_RESPONSES,
    READ_ERRORS,
    WRITE_ERRORS,
    FieldError,
    Problem,
    conflict,
    not_found,
    validation,
)
from .queries import flows as sql
from .queries import numbers as numbers_sql

__all__ = ["FlowController", "IvrController", "NumberRouteController"]

MAX_SOURCE_CHARS = 60_000

FlowName = Annotated[str, PathParameter(description="the flow's name")]
VersionParam = Annotated[str, PathParameter(description="version number, from 1")]
NumberRef = Annotated[str, PathParameter(description="number id or E.164 number")]


class Flow(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    description: str
    current_version: int
    latest_version: int
    created_at: datetime
    updated_at: datetime


class FlowPage(msgspec.Struct):
    items: list[Flow]
    next_cursor: str | None


class FlowIssue(msgspec.Struct, kw_only=True):
    severity: str
    message: str
    line: int | None = None
    path: str = ""


class FlowVersion(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    flow: str
    version: int
    current: bool
    created_at: datetime
    source: str
    definition: dict[str, Any]


class VersionSummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    version: int
    current: bool
    created_at: datetime


class VersionPage(msgspec.Struct):
    items: list[VersionSummary]
    next_cursor: str | None


class Deployed(msgspec.Struct, kw_only=True):
    flow: Flow
    version: int
    warnings: list[FlowIssue]


class FlowDeploy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    definition: Annotated[
        str | dict[str, Any],
        msgspec.Meta(description="the flow file's text (YAML or JSON) or the flow as JSON"),
    ]
    name: str | None = None  # must match the flow's own name when given


# Fields of bodies on routes with an object in the path are optional in the type so that a request naming
# an object the tenant does not have is a 404 whatever its body; the handler then requires them (422).
class FlowRollback(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    version: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | msgspec.UnsetType = msgspec.UNSET


class NumberRoute(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Exactly one of: `flow` (a flow answers the calls; null: no flow, its queue, if any, takes them) or
    `queue` (a queue's name or id: callers go straight to it with music while they wait, and no flow)."""

    flow: Annotated[str, msgspec.Meta(max_length=63)] | msgspec.UnsetType | None = msgspec.UNSET
    queue: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | msgspec.UnsetType = msgspec.UNSET


def flow_from_row(row: asyncpg.Record) -> Flow:
    return Flow(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        current_version=row["current_version"],
        latest_version=row["latest_version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _issue(i: Issue) -> FlowIssue:
    return FlowIssue(severity=i.severity, message=i.message, line=i.line, path=i.path)


def _issue_text(i: Issue) -> str:
    where = f"line {i.line}: " if i.line else ""
    at = f" ({i.path})" if i.path else ""
    return f"{where}{i.message}{at}"


_FLOW_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")


def _check_flow_name(name: str) -> None:
    if not _FLOW_NAME.match(name):
        raise Problem(404, "no flow with this name")  # not a possible flow name: names nothing


async def _flow_row(conn: asyncpg.Connection, name: str) -> asyncpg.Record:
    _check_flow_name(name)
    row = await sql.get_by_name(conn, name)
    if row is None:
        raise Problem(404, f"no flow named {name!r}")
    return row


class FlowController(Controller):
    path = "/v1/flows"
    tags = ["flows"]

    @post("/", responses=WRITE_ERRORS, status_code=201, guards=[admin_only], summary="Deploy a flow version")
    async def deploy_flow(self, mutation: MutationDep, data: JSONBody[FlowDeploy]) -> Response[Deployed]:
        if isinstance(data.definition, str):
            source = data.definition
        else:
            # Line numbers then refer to this JSON, pretty-printed with two spaces.
            source = json.dumps(data.definition, indent=2, ensure_ascii=False)
        if len(source) > MAX_SOURCE_CHARS:
            raise validation("definition", f"a flow is at most {MAX_SOURCE_CHARS} characters")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Deployed]:
            report = validate_text(source, queues=await sql.queue_names(conn))
            if not report.ok or report.flow is None:
                errors = [FieldError("definition", _issue_text(i)) for i in report.errors]
                first = errors[0].message if errors else "the flow is not valid"
                raise Problem(422, f"the flow is not valid: {first}", slug="validation", errors=errors)
            flow = report.flow
            if data.name is not None and data.name != flow.name:
                raise validation("name", f"the flow file names itself {flow.name!r}, not {data.name!r}")
            if flow.timezone is None:
                # Calendars without a zone of their own run in the tenant's time zone: its default site's.
                flow.timezone = await sql.default_timezone(conn) or "UTC"
            definition = msgspec.json.encode(flow).decode()
            row = await sql.get_by_name(conn, flow.name, lock=True)
            if row is None:
                flow_id, version = new_id(), 1
                row = await sql.insert(conn, flow_id, principal.tenant_id, flow.name, flow.description)
            else:
                flow_id, version = row["id"], row["latest_version"] + 1
            await sql.add_version(
                conn, new_id(), principal.tenant_id, flow_id, version, source, definition, principal.key_id
            )
            if version > 1:
                row = await sql.set_latest(conn, flow_id, version, flow.description)
            await audit(
                conn, principal, "flow.deployed", "flow", flow_id, {"name": flow.name, "version": version}
            )
            body = Deployed(
                flow=flow_from_row(row), version=version, warnings=[_issue(i) for i in report.warnings]
            )
            event = ConfigChanged(
                tenant_id=principal.tenant_id,
                kind="flow",
                op="created" if version == 1 else "updated",
                object_id=flow_id,
            )
            return Outcome(201, body, [event])

        return await mutation.run(work)

    @get("/", responses=READ_ERRORS, summary="List flows")
    async def list_flows(
        self, tenant_conn: TenantConnDep, limit: LimitParam = DEFAULT_LIMIT, cursor: CursorParam = None
    ) -> FlowPage:
        rows, next_cursor = await read_page(tenant_conn, "flows", sql.COLUMNS, limit, cursor)
        return FlowPage(items=[flow_from_row(r) for r in rows], next_cursor=next_cursor)

    async def _version(self, conn: asyncpg.Connection, name: str, version: int | None) -> FlowVersion:
        flow = await _flow_row(conn, name)
        wanted = flow["current_version"] if version is None else version
        row = await sql.version(conn, flow["id"], wanted)
        if row is None:
            raise not_found("flow version")
        return FlowVersion(
            id=row["id"],
            flow=name,
            version=row["version"],
            current=row["version"] == flow["current_version"],
            created_at=row["created_at"],
            source=row["source"],
            definition=json.loads(row["definition"]),
        )

    @get("/{flow_name:str}", responses=READ_ERRORS, summary="The current version of a flow")
    async def get_flow(self, tenant_conn: TenantConnDep, flow_name: FlowName) -> FlowVersion:
        return await self._version(tenant_conn, flow_name, None)

    @get("/{flow_name:str}/versions", responses=READ_ERRORS, summary="A flow's versions, oldest first")
    async def list_versions(
        self,
        tenant_conn: TenantConnDep,
        flow_name: FlowName,
        limit: LimitParam = DEFAULT_LIMIT,
        cursor: CursorParam = None,
    ) -> VersionPage:
        after = decode_cursor(cursor)
        flow = await _flow_row(tenant_conn, flow_name)
        rows = await sql.versions_page(tenant_conn, flow["id"], after, limit + 1)
        items, next_cursor = page_of(rows, limit)
        return VersionPage(
            items=[
                VersionSummary(
                    id=r["id"],
                    version=r["version"],
                    current=r["version"] == flow["current_version"],
                    created_at=r["created_at"],
                )
                for r in items
            ],
            next_cursor=next_cursor,
        )

    @get("/{flow_name:str}/versions/{version:str}", responses=READ_ERRORS, summary="One version of a flow")
    async def get_version(
        self, tenant_conn: TenantConnDep, flow_name: FlowName, version: VersionParam
    ) -> FlowVersion:
        # Anything that is not a version number names no version: 404, like an id that is not a UUID.
        if not version.isdigit() or not 1 <= int(version) <= 1_000_000:
            raise not_found("flow version")
        return await self._version(tenant_conn, flow_name, int(version))

    @post(
        "/{flow_name:str}/rollback",
        responses=WRITE_ERRORS,
        status_code=200,
        guards=[admin_only],
        summary="Make an earlier version current again (calls in progress keep theirs)",
    )
    async def rollback_flow(
        self, mutation: MutationDep, flow_name: FlowName, data: JSONBody[FlowRollback | None] = None
    ) -> Response[Flow]:
        _check_flow_name(flow_name)

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Flow]:
            flow = await _flow_row(conn, flow_name)
            if data is None or data.version is msgspec.UNSET:
                raise validation("version", 'send {"version": N}')
            if not await sql.has_version(conn, flow["id"], data.version):
                raise validation("version", f"flow {flow_name!r} has no version {data.version}")
            row = await sql.set_current(conn, flow["id"], data.version)
            await audit(
                conn,
                principal,
                "flow.rolled_back",
                "flow",
                flow["id"],
                {"name": flow_name, "from": flow["current_version"], "to": data.version},
            )
            event = ConfigChanged(
                tenant_id=principal.tenant_id, kind="flow", op="updated", object_id=flow["id"]
            )
            return Outcome(200, flow_from_row(row), [event])

        return await mutation.run(work)

    @delete(
        "/{flow_name:str}",
        responses=DELETE_RESPONSES,
        status_code=204,
        guards=[admin_only],
        summary="Delete a flow and its versions (409 while a number points at it)",
    )
    async def delete_flow(self, mutation: MutationDep, flow_name: FlowName) -> Response[None]:
        _check_flow_name(flow_name)

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[None]:
            flow = await _flow_row(conn, flow_name)
            using = await sql.numbers_using(conn, flow["id"])
            if using:
                numbers = ", ".join(using)
                raise conflict(
                    f"numbers still point at flow {flow_name!r}: {numbers}; route them elsewhere first"
                )
            await sql.delete(conn, flow["id"])
            await audit(conn, principal, "flow.deleted", "flow", flow["id"], {"name": flow_name})
            event = ConfigChanged(
                tenant_id=principal.tenant_id, kind="flow", op="deleted", object_id=flow["id"]
            )
            return Outcome(204, None, [event])

        return await mutation.run(work)


class LookupSecret(msgspec.Struct, kw_only=True):
    secret: str  # hex
    algorithm: str
    timestamp_header: str
    signature_header: str
    signed: str


MAX_CASES = 100


class FlowSimulation(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A flow file's text and the calls to run through it (the cases of `switchboard flows test`)."""

    definition: str
    cases: list[Case]


class Simulation(msgspec.Struct, kw_only=True):
    results: list[CaseResult]


class IvrController(Controller):
    path = "/v1/ivr"
    tags = ["flows"]

    @post(
        "/simulate",
        responses=WRITE_ERRORS,
        status_code=200,
        guards=[admin_only],
        summary="Run calls through a flow offline",
    )
    async def simulate(self, data: JSONBody[FlowSimulation]) -> Simulation:
        """The simulator of `switchboard flows test` for installs without the platform: nothing is stored,
        no call is made, lookups answer the stubs given. The flow is not checked against the tenant's
        queues (as offline). Admin keys, as for deploying (a POST: read-only keys change nothing and
        run nothing)."""
        if len(data.definition) > MAX_SOURCE_CHARS:
            raise validation("definition", f"a flow is at most {MAX_SOURCE_CHARS} characters")
        if not 1 <= len(data.cases) <= MAX_CASES:
            raise validation("cases", f"give 1 to {MAX_CASES} cases")
        report = validate_text(data.definition)
        if not report.ok or report.flow is None:
            errors = [FieldError("definition", _issue_text(i)) for i in report.errors]
            first = errors[0].message if errors else "the flow is not valid"
            raise Problem(422, f"the flow is not valid: {first}", slug="validation", errors=errors)
        results = []
        for n, case in enumerate(data.cases):
            try:
                if case.at:
                    parse_time(case.at)
                results.append(run_case(report.flow, case))
            except (ValueError, TypeError, OverflowError) as exc:  # a bad time or lookup stub
                raise validation(f"cases[{n}]", str(exc)) from None
        return Simulation(results=results)

    @get("/lookup-secret", responses=READ_ERRORS, summary="The key that signs this tenant's lookup requests")
    async def lookup_secret(self, api: ApiDep, principal: CallerDep) -> LookupSecret:
        # Readable by developers too: they write the endpoint that must verify the signature.
        secret = derive_secret(api.settings.token_secret, principal.tenant_id)
        return LookupSecret(
            secret=secret.hex(),
            algorithm="HMAC-SHA256",
            timestamp_header=TIMESTAMP_HEADER,
            signature_header=SIGNATURE_HEADER,
            signed='"<timestamp>." + body (POST) or query string (GET); header value "v1=<hex>"',
        )


class NumberRouteController(Controller):
    path = "/v1/numbers"
    tags = ["numbers"]

    @post(
        "/{number_id:str}/route",
        responses=WRITE_ERRORS,
        status_code=200,
        guards=[admin_only],
        summary="Point a number (id or E.164) at a flow or straight at a queue",
    )
    async def route_number(
        self, mutation: MutationDep, number_id: NumberRef, data: JSONBody[NumberRoute | None] = None
    ) -> Response[Number]:
        ref = number_id.strip()
        nid = parse_id(ref)
        if nid is None and not re.fullmatch(r"\+[1-9][0-9]{6,14}", ref):
            raise not_found("number")  # neither an id nor an E.164 number: names nothing

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Number]:
            row = await (
                numbers_sql.get(conn, nid) if nid is not None else numbers_sql.get_by_e164(conn, ref)
            )
            if row is None:
                # Said as the user put it: a number typed in E.164 is one this tenant has not claimed.
                raise (
                    not_found("number")
                    if nid is not None
                    else Problem(404, f"this tenant holds no number {ref}; claim it first")
                )
            if data is None or (data.flow is msgspec.UNSET) == (data.queue is msgspec.UNSET):
                raise validation("flow", 'send {"flow": NAME} (or null to unroute) or {"queue": NAME}')
            if data.queue is not msgspec.UNSET:
                queue_ref = parse_id(data.queue)
                if queue_ref is not None:
                    queue_id = queue_ref if await numbers_sql.queue_exists(conn, queue_ref) else None
                else:
                    queue_id = await numbers_sql.queue_named(conn, data.queue)
                if queue_id is None:
                    raise validation("queue", f"no queue named {data.queue!r}")
                row = await numbers_sql.route_straight_to_queue(conn, row["id"], queue_id)
                if row is None:
                    raise not_found("number")  # released meanwhile
                detail = {"e164": row["e164"], "queue": data.queue}
            else:
                flow_id = None
                if isinstance(data.flow, str):  # UNSET was ruled out above; None unroutes
                    flow_id = await sql.id_by_name(conn, data.flow)
                    if flow_id is None:
                        raise validation("flow", f"no flow named {data.flow!r}")
                row = await numbers_sql.route_to_flow(conn, row["id"], flow_id)
                if row is None:
                    raise not_found("number")  # released meanwhile
                detail = {"e164": row["e164"], "flow": data.flow}
            await audit(conn, principal, "number.routed", "number", row["id"], detail)
            event = ConfigChanged(
                tenant_id=principal.tenant_id, kind="number", op="updated", object_id=row["id"]
            )
            return Outcome(200, number_from_row(row), [event])

        return await mutation.run(work)
