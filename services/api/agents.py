"""Agents: people who take contacts, with a site, skills (proficiency 0-10) and languages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import JSONBody

from services.kernel.events import ConfigChanged, SessionsEnded
from services.kernel.ids import new_id

from .auth import Principal, admin_only
from .crud import IdParam, path_id, read_page
from .deps import MutationDep, TenantConnDep
from .mutations import Outcome, audit
from .pagination import DEFAULT_LIMIT, CursorParam, LimitParam
from .problems import DELETE_RESPONSES, READ_ERRORS, WRITE_ERRORS, conflict, not_found, validation
from .queries import agents as sql
from .sites import default_site, require_site
from .validation import check_email, check_endpoint, check_languages, check_name, check_skills

__all__ = ["Agent", "AgentController", "SkillMap"]

# Names and levels are checked by check_skills, which can say which skill is wrong (msgspec cannot).
SkillMap = Annotated[
    dict[str, int],
    msgspec.Meta(max_length=50, description="skill name ([a-z0-9_-]{1,40}) to proficiency 0-10"),
]
Endpoint = Annotated[
    str,
    msgspec.Meta(
        max_length=256,
        description="null: the browser (WebRTC); sip:/sips: URI: a phone at a static address; "
        "E.164 (+15550100): an outside number dialled through the tenant's trunk",
    ),
]
Languages = Annotated[
    list[Annotated[str, msgspec.Meta(max_length=35)]],
    msgspec.Meta(max_length=20, description="BCP 47 tags such as en or zh-HK"),
]

VoicemailCapacity = Annotated[
    int, msgspec.Meta(ge=0, le=10, description="voicemails held at once (0: never offered one)")
]


class Agent(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    email: str
    site_id: uuid.UUID | None
    skills: dict[str, int]
    languages: list[str]
    # Where the agent is reached: null = the browser (WebRTC), a sip:/sips: URI, or an E.164 number.
    endpoint: str | None = None
    can_dial: bool = False  # may place outbound calls (docs/routing.md, "Outbound calls")
    # Voicemails held at once, a routing channel of its own (docs/routing.md, "Voicemails"); 0: never offered.
    voicemail_capacity: int = 1
    created_at: datetime
    updated_at: datetime


class AgentPage(msgspec.Struct):
    items: list[Agent]
    next_cursor: str | None


class AgentCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(max_length=100)]
    email: Annotated[str, msgspec.Meta(max_length=254)]
    site_id: uuid.UUID | None = None
    skills: SkillMap | None = None
    languages: Languages | None = None
    endpoint: Endpoint | None = None
    can_dial: bool = False
    voicemail_capacity: VoicemailCapacity = 1


class AgentPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(max_length=100)] | msgspec.UnsetType = msgspec.UNSET
    email: Annotated[str, msgspec.Meta(max_length=254)] | msgspec.UnsetType = msgspec.UNSET
    site_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET
    skills: SkillMap | msgspec.UnsetType = msgspec.UNSET
    languages: Languages | msgspec.UnsetType = msgspec.UNSET
    # null: back to the browser.
    endpoint: Endpoint | msgspec.UnsetType | None = msgspec.UNSET
    can_dial: bool | msgspec.UnsetType = msgspec.UNSET
    voicemail_capacity: VoicemailCapacity | msgspec.UnsetType = msgspec.UNSET


def agent_from_row(row: asyncpg.Record) -> Agent:
    return Agent(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        site_id=row["site_id"],
        skills=msgspec.json.decode(row["skills"], type=dict[str, int]),
        languages=list(row["languages"]),
        endpoint=row["endpoint"],
        can_dial=row["can_dial"],
        voicemail_capacity=row["voicemail_capacity"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _email_taken(email: str) -> Exception:
    return conflict(f"an agent with the email {email!r} already exists")


class AgentController(Controller):
    path = "/v1/agents"
    tags = ["agents"]

    @post("/", responses=WRITE_ERRORS, status_code=201, guards=[admin_only], summary="Create an agent")
    async def create_agent(self, mutation: MutationDep, data: JSONBody[AgentCreate]) -> Response[Agent]:
        name = check_name("name", data.name)
        email = check_email("email", data.email)
        skills = check_skills("skills", data.skills or {})
        languages = check_languages("languages", data.languages or [])
        endpoint = check_endpoint("endpoint", data.endpoint)

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Agent]:
            if data.site_id is not None:
                await require_site(conn, "site_id", data.site_id)
                site_id = data.site_id
            else:
                site_id = await default_site(conn)
            try:
                async with conn.transaction():
                    row = await sql.insert(
                        conn,
                        new_id(),
                        principal.tenant_id,
                        name=name,
                        email=email,
                        site_id=site_id,
                        skills=msgspec.json.encode(skills).decode(),
                        languages=languages,
                        endpoint=endpoint,
                        can_dial=data.can_dial,
                        voicemail_capacity=data.voicemail_capacity,
                    )
            except asyncpg.UniqueViolationError:
                raise _email_taken(email) from None
            agent = agent_from_row(row)
            detail = {
                "name": name,
                "email": email,
                "site_id": str(site_id),
                "skills": skills,
                "languages": languages,
                "endpoint": endpoint,
                "can_dial": data.can_dial,
                "voicemail_capacity": data.voicemail_capacity,
            }
            await audit(conn, principal, "agent.created", "agent", agent.id, detail)
            return Outcome(
                201,
                agent,
                [
                    ConfigChanged(
                        tenant_id=principal.tenant_id, kind="agent", op="created", object_id=agent.id
                    )
                ],
            )

        return await mutation.run(work)

    @get("/", responses=READ_ERRORS, summary="List agents")
    async def list_agents(
        self, tenant_conn: TenantConnDep, limit: LimitParam = DEFAULT_LIMIT, cursor: CursorParam = None
    ) -> AgentPage:
        rows, next_cursor = await read_page(tenant_conn, "agents", sql.COLUMNS, limit, cursor)
        return AgentPage(items=[agent_from_row(r) for r in rows], next_cursor=next_cursor)

    @get("/{agent_id:str}", responses=READ_ERRORS, summary="Read an agent")
    async def get_agent(self, tenant_conn: TenantConnDep, agent_id: IdParam) -> Agent:
        row = await sql.get(tenant_conn, path_id(agent_id, "agent"))
        if row is None:
            raise not_found("agent")
        return agent_from_row(row)

    @patch(
        "/{agent_id:str}",
        responses=WRITE_ERRORS,
        guards=[admin_only],
        summary="Change an agent (skills and languages are replaced whole)",
    )
    async def update_agent(
        self, mutation: MutationDep, agent_id: IdParam, data: JSONBody[AgentPatch]
    ) -> Response[Agent]:
        aid = path_id(agent_id, "agent")
        changes: dict[str, Any] = {}
        if data.name is not msgspec.UNSET:
            changes["name"] = check_name("name", data.name)
        if data.email is not msgspec.UNSET:
            changes["email"] = check_email("email", data.email)
        if data.site_id is not msgspec.UNSET:
            if data.site_id is None:
                raise validation("site_id", "an agent always belongs to a site")
            changes["site_id"] = data.site_id
        if data.skills is not msgspec.UNSET:
            changes["skills"] = msgspec.json.encode(check_skills("skills", data.skills)).decode()
        if data.languages is not msgspec.UNSET:
            changes["languages"] = check_languages("languages", data.languages)
        if data.endpoint is not msgspec.UNSET:
            changes["endpoint"] = check_endpoint("endpoint", data.endpoint)
        if data.can_dial is not msgspec.UNSET:
            changes["can_dial"] = data.can_dial
        if data.voicemail_capacity is not msgspec.UNSET:
            changes["voicemail_capacity"] = data.voicemail_capacity

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Agent]:
            if not changes:
                row = await sql.get(conn, aid)
                if row is None:
                    raise not_found("agent")
                return Outcome(200, agent_from_row(row))
            if "site_id" in changes:
                await require_site(conn, "site_id", changes["site_id"])
            try:
                async with conn.transaction():
                    row = await sql.update(conn, aid, changes)
            except asyncpg.UniqueViolationError:
                raise _email_taken(changes.get("email", "")) from None
            if row is None:
                raise not_found("agent")
            detail = {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in changes.items()}
            if "skills" in detail:
                detail["skills"] = msgspec.json.decode(detail["skills"])
            await audit(conn, principal, "agent.updated", "agent", aid, detail)
            return Outcome(
                200,
                agent_from_row(row),
                [ConfigChanged(tenant_id=principal.tenant_id, kind="agent", op="updated", object_id=aid)],
            )

        return await mutation.run(work)

    @delete(
        "/{agent_id:str}",
        responses=DELETE_RESPONSES,
        status_code=204,
        guards=[admin_only],
        summary="Delete an agent",
    )
    async def delete_agent(self, mutation: MutationDep, agent_id: IdParam) -> Response[None]:
        aid = path_id(agent_id, "agent")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[None]:
            row = await sql.delete(conn, aid)
            if row is None:
                raise not_found("agent")
            await audit(
                conn, principal, "agent.deleted", "agent", aid, {"name": row["name"], "email": row["email"]}
            )
            return Outcome(
                204,
                None,
                [
                    ConfigChanged(tenant_id=principal.tenant_id, kind="agent", op="deleted", object_id=aid),
                    # Its account and sessions went with it (ON DELETE CASCADE): close its open sockets.
                    SessionsEnded(tenant_id=principal.tenant_id, agent_id=aid, reason="agent_removed"),
                ],
            )

        return await mutation.run(work)
