"""The agent desk's configuration and what the desktop shows around a call.

- `GET /v1/desk-settings` (any key), `PUT /v1/desk-settings` (admin): the tenant's disposition codes, away
  reasons, and whether an open wrap-up form extends wrap-up.
- `GET /v1/desk` and `GET /v1/desk/agents`, authenticated by an agent's access token (a browser session's
  or an `agents token`): the agent's name, its tenant, those settings and the queues; the other agents
  with their state, for a transfer.

The desk's handlers are not behind the API-key middleware: they take the agent's verified token claims as
`claims` (a dependency of DeskController) and `api`, and open their own short transactions in the token's
tenant (none is held while routing answers or a voicemail is sealed)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Annotated, Any, TypeAlias

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, put
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter, SkipValidation
from litestar.response import Redirect

from services.contacts import voicemail
from services.kernel.bus import BusError, CommandTimeout
from services.kernel.db import tenant_tx
from services.kernel.events import RecordingAvailable, RoutingAgentStatus
from services.recording.records import audit as audit_recording

from .auth import Principal, admin_only
from .deps import ApiDep, CallerDep, MutationDep, TenantConnDep
from .mutations import Outcome, audit
from .problems import (
    READ_ERRORS,
    WRITE_ERRORS,
    Problem,
    not_found,
    problem_responses,
    unauthorized,
    validation,
)
from .queries import agents as agent_sql
from .queries import desk as sql
from .queries import sessions as session_sql
from .recordings import sign_audio_url
from .state import ApiState, api_state
from .tokens import TokenClaims, TokenError, verify_token

__all__ = ["DeskController", "DeskSettings", "DeskSettingsController", "session_live"]

CODE = re.compile(r"^[a-z0-9_-]{1,40}$")
# Reasons the platform itself sets; a tenant's own away reasons may not take these codes.
SYSTEM_AWAY = frozenset({"missed", "wrap_up", "other"})
STATUS_TIMEOUT_S = 1.0
MAX_AGENTS = 200
# The desk's caller: its access token's claims, verified by provide_claims (our own value: not validated).
ClaimsDep: TypeAlias = NamedDependency[SkipValidation[TokenClaims]]
# How long a desk's request for a voicemail waits for the recording service to have sealed it.
VOICEMAIL_WAIT_S = 10.0


class Choice(msgspec.Struct, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(max_length=40)]
    label: Annotated[str, msgspec.Meta(max_length=60)]


class DeskSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    dispositions: Annotated[list[Choice], msgspec.Meta(max_length=50)]
    away_reasons: Annotated[list[Choice], msgspec.Meta(max_length=20)]
    # true: an agent whose wrap-up form is open is not offered a contact until Done.
    wrap_up_form_extends: bool = True


class Named(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str


class DeskQueue(Named, kw_only=True):
    wrap_up_seconds: int


class DeskAgent(Named, kw_only=True):
    email: str


class DeskView(msgspec.Struct, kw_only=True):
    agent: DeskAgent
    # routing's state of this agent now (logged_out when not signed in to calls): a reloaded desk resumes it.
    state: str
    tenant: Named
    settings: DeskSettings
    queues: list[DeskQueue]
    flows: list[str] = []  # the tenant's IVR flows, by name: a transfer to one (e.g. a post-call survey)


class Colleague(Named, kw_only=True):
    # routing's state of a signed-in agent (available, away, on_contact, ...); logged_out otherwise.
    state: str


class Colleagues(msgspec.Struct):
    items: list[Colleague]


def _check(field: str, choices: list[Choice], *, at_least: int) -> list[Choice]:
    if len(choices) < at_least:
        raise validation(field, f"give at least {at_least}")
    seen: set[str] = set()
    out = []
    for i, choice in enumerate(choices):
        code, label = choice.code.strip(), choice.label.strip()
        if not CODE.match(code):
            raise validation(f"{field}[{i}].code", "use 1-40 of a-z, 0-9, _ and -")
        if code in seen:
            raise validation(f"{field}[{i}].code", f"{code!r} is listed twice")
        if not label or any(ord(c) < 32 for c in label):
            raise validation(f"{field}[{i}].label", "give a label without control characters")
        if field == "away_reasons" and code in SYSTEM_AWAY:
            raise validation(f"{field}[{i}].code", f"{code!r} is set by the platform itself")
        seen.add(code)
        out.append(Choice(code, label))
    return out


async def read_settings(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> DeskSettings:
    row = await sql.settings(conn, tenant_id)
    return DeskSettings(
        dispositions=msgspec.json.decode(row["dispositions"], type=list[Choice]),
        away_reasons=msgspec.json.decode(row["away_reasons"], type=list[Choice]),
        wrap_up_form_extends=row["wrap_up_form_extends"],
    )


async def session_live(conn: asyncpg.Connection, claims: TokenClaims) -> tuple[str | None, float]:
    """(why an agent token may no longer be used, or None; until when it may be used). A session's token
    lives as long as its browser session, an `agents token` as long as itself and its key; both die with
    their agent. `conn` is in the token's tenant."""
    if not await agent_sql.exists(conn, claims.agent_id):
        return "the token's agent does not exist in its tenant", 0.0
    if claims.session_id is not None:
        row = await session_sql.session_state(conn, claims.session_id)
        if row is None or row["revoked_at"] is not None:
            return "this session was signed out", 0.0
        if row["expires"] <= time.time():
            return "this session has ended (the shift is over)", 0.0
        return None, float(row["expires"])
    if claims.key_id is not None:
        revoked = await session_sql.key_revoked(conn, claims.key_id)
        if revoked is None or revoked:
            return "the API key that issued this token has been revoked", 0.0
    return None, claims.expires_at


async def provide_claims(request: Request[Any, Any, Any]) -> TokenClaims:
    """The `claims` of the agent's access token in the Authorization header; 401 unless it is valid and its
    session or key still lives."""
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("send the agent's access token: Authorization: Bearer ...")
    state = api_state(request)
    try:
        claims = verify_token(state.settings.token_secret, token.strip())
    except TokenError as exc:
        raise unauthorized(exc.reason) from None
    async with tenant_tx(state.db(), claims.tenant_id, readonly=True) as conn:
        why, _ = await session_live(conn, claims)
    if why is not None:
        raise unauthorized(why)
    return claims


async def _status(state: ApiState, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> str:
    if state.bus is None:
        return "unknown"
    try:
        reply = await state.bus.request(
            RoutingAgentStatus(tenant_id=tenant_id, agent_id=agent_id), timeout=STATUS_TIMEOUT_S
        )
    except (BusError, CommandTimeout):
        return "unknown"
    state_name = reply.data.get("state") if reply.ok else None
    return state_name if isinstance(state_name, str) else "unknown"


class DeskSettingsController(Controller):
    path = "/v1/desk-settings"
    tags = ["desk"]

    @get("/", responses=READ_ERRORS, summary="The tenant's disposition codes, away reasons and wrap-up rule")
    async def get_settings(self, principal: CallerDep, tenant_conn: TenantConnDep) -> DeskSettings:
        return await read_settings(tenant_conn, principal.tenant_id)

    @put("/", responses=WRITE_ERRORS, guards=[admin_only], summary="Replace the desk settings")
    async def put_settings(
        self, mutation: MutationDep, data: JSONBody[DeskSettings]
    ) -> Response[DeskSettings]:
        settings = DeskSettings(
            dispositions=_check("dispositions", data.dispositions, at_least=1),
            away_reasons=_check("away_reasons", data.away_reasons, at_least=0),
            wrap_up_form_extends=data.wrap_up_form_extends,
        )

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[DeskSettings]:
            await sql.set_settings(
                conn,
                principal.tenant_id,
                msgspec.json.encode(settings.dispositions).decode(),
                msgspec.json.encode(settings.away_reasons).decode(),
                settings.wrap_up_form_extends,
            )
            detail = msgspec.to_builtins(settings)
            await audit(conn, principal, "desk_settings.updated", "tenant", principal.tenant_id, detail)
            return Outcome(200, settings)

        return await mutation.run(work)


async def _stored(state: ApiState, tenant_id: uuid.UUID, recording_id: uuid.UUID) -> str | None:
    """The message's recording status, waiting up to VOICEMAIL_WAIT_S for it to become available: it is
    offered as soon as it is recorded, and the recording service seals it meanwhile (well under a second)."""
    arrived = asyncio.Event()

    async def on_available(event: Any) -> None:
        if isinstance(event, RecordingAvailable) and event.recording_id == recording_id:
            arrived.set()

    listener = None
    if state.bus is not None:  # listening before reading: an event between the two is not missed
        # Bus.listen returns once the server has the subscription (serving.Listener.start).
        listener = await state.bus.listen([RecordingAvailable], on_available, tenant_id=tenant_id)
    try:
        for wait in (VOICEMAIL_WAIT_S, 0.0):
            async with tenant_tx(state.db(), tenant_id, readonly=True) as conn:
                status = await sql.recording_status(conn, recording_id)
            if status in ("available", "deleted") or listener is None or not wait:
                return status
            try:
                await asyncio.wait_for(arrived.wait(), wait)
            except TimeoutError:
                pass
        return status
    finally:
        if listener is not None:
            await listener.stop()


class DeskController(Controller):
    """For the agent's browser: authenticated by its access token, not by an API key."""

    path = "/v1/desk"
    tags = ["desk"]
    security = []
    dependencies = {"claims": Provide(provide_claims)}

    @get("/", responses=problem_responses(401), summary="The agent's desk: who, where, settings, queues")
    async def desk(self, api: ApiDep, claims: ClaimsDep) -> DeskView:
        async with tenant_tx(api.db(), claims.tenant_id, readonly=True) as conn:
            agent = await sql.agent(conn, claims.agent_id)
            signed_in = await sql.signed_in(conn, claims.agent_id)
            tenant = await sql.tenant(conn, claims.tenant_id)
            settings = await read_settings(conn, claims.tenant_id)
            queues = await sql.queues(conn)
            flows = await sql.flow_names(conn)
        assert agent is not None and tenant is not None
        now = await _status(api, claims.tenant_id, claims.agent_id) if signed_in else "logged_out"
        return DeskView(
            agent=DeskAgent(id=agent["id"], name=agent["name"], email=agent["email"]),
            state=now,
            tenant=Named(id=tenant["id"], name=tenant["name"]),
            settings=settings,
            queues=[
                DeskQueue(id=q["id"], name=q["name"], wrap_up_seconds=q["wrap_up_seconds"]) for q in queues
            ],
            flows=flows,
        )

    @get(
        "/voicemails/{contact_id:uuid}",
        responses=problem_responses(401, 404, 503),
        summary="A voicemail offered to or taken by this agent: redirects to a signed, expiring URL of its audio",
        status_code=307,
    )
    async def voicemail_audio(
        self,
        api: ApiDep,
        claims: ClaimsDep,
        contact_id: Annotated[uuid.UUID, PathParameter(description="the voicemail's contact id")],
    ) -> Redirect:
        """The message is a recording (sealed with the tenant's key, docs/recording.md "Voicemails") whose id
        is the task's; the agent it went to gets a signed URL of it, audited like any playback."""
        async with tenant_tx(api.db(), claims.tenant_id, readonly=True) as conn:
            row = await sql.voicemail_contact(conn, contact_id)
        kind = msgspec.json.decode(row["attributes"]).get("kind") if row else None
        # Only the agent it went to (a colleague's messages are theirs), and only a voicemail. The agent who
        # accepted it may ask before its record says so: the coordinator tells the desk, then writes the
        # record. Until the record names someone, the agent of its latest offer is the one it went to.
        holder = row["agent_id"] if row else None
        if row is not None and holder is None and row["offered_to"]:
            holder = uuid.UUID(row["offered_to"])
        if row is None or kind != voicemail.KIND or holder != claims.agent_id:
            raise not_found("voicemail of yours")
        status = await _stored(api, claims.tenant_id, contact_id)
        if status == "deleted":
            raise Problem(404, "the message's audio is no longer kept (deleted)")
        if status != "available":
            raise Problem(
                503,
                "the message is still being stored (the recording service is behind); try again shortly",
                headers={"Retry-After": "5"},
            )
        expires = int(time.time()) + api.settings.recording_url_ttl_s
        async with tenant_tx(api.db(), claims.tenant_id) as conn:
            await audit_recording(
                conn,
                claims.tenant_id,
                "recording.url_issued",
                contact_id,
                actor_role="agent",
                detail={"format": "wav", "agent_id": str(claims.agent_id)},
            )
        url = sign_audio_url(api.settings.token_secret, claims.tenant_id, contact_id, expires)
        return Redirect(url, status_code=307)

    @get("/agents", responses=problem_responses(401), summary="Other agents and their state, for a transfer")
    async def colleagues(self, api: ApiDep, claims: ClaimsDep) -> Colleagues:
        async with tenant_tx(api.db(), claims.tenant_id, readonly=True) as conn:
            rows = await sql.colleagues(conn, claims.agent_id, MAX_AGENTS)
        signed_in = [r["id"] for r in rows if r["signed_in"]]
        states = await asyncio.gather(*(_status(api, claims.tenant_id, a) for a in signed_in))
        by_id = dict(zip(signed_in, states, strict=True))
        return Colleagues(
            items=[
                Colleague(id=r["id"], name=r["name"], state=by_id.get(r["id"], "logged_out")) for r in rows
            ]
        )
