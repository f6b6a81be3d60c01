"""The asyncio client: `AsyncClient(api_key=...)`, the same surface as `Client` with awaitable methods."""

from __future__ import annotations

import asyncio
import builtins
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

import httpx

from . import _calls
from ._calls import UNSET, UnsetType
from ._core import (
    Call,
    RetryPolicy,
    decode_result,
    encode_body,
    headers_for,
    new_idempotency_key,
    resolve_api_key,
    resolve_base_url,
)
from .calling import AsyncCalling
from .client import USER_AGENT, check_base_url, lower_headers, transport_failure
from .errors import ConnectionError, ResponseError, error_from_response, parse_retry_after
from .flows import AsyncFlows
from .models import (
    Agent,
    AgentStateSet,
    AgentToken,
    AlertPolicies,
    AlertPolicy,
    AuditEntry,
    Contact,
    ContactMoved,
    ContactPrioritized,
    ContactSummary,
    DeskSettings,
    Invite,
    Key,
    KeyWithSecret,
    Me,
    MonitorSession,
    Number,
    Page,
    Queue,
    Seats,
    Signout,
    SignupResult,
    Site,
    SupervisorScope,
    TenantSettings,
    Trunk,
    Usage,
    WidgetKey,
    WidgetToken,
)
from .recordings import AsyncRecordings

__all__ = ["AsyncClient", "async_signup"]

T = TypeVar("T")
M = TypeVar("M")


class AsyncClient:
    """Switchboard API client for asyncio. Use as `async with` or await `aclose()`.

    `api_key` and `base_url` default to the SB_API_KEY and SB_API_URL environment variables, then to no
    key and http://127.0.0.1:8080. Failed calls are retried as RetryPolicy describes.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 10,
        max_retries: int = 3,
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_key = resolve_api_key(api_key)
        self.base_url = check_base_url(resolve_base_url(base_url))
        self.timeout = float(timeout)
        self.retry = retry or RetryPolicy(max_retries=max_retries)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout, transport=transport)
        # Replaceable in tests, so backoff can be observed without waiting.
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._random: Callable[[], float] = random.random
        self.keys = AsyncKeys(self)
        self.seats = AsyncSeats(self)
        self.audit = AsyncAudit(self)
        self.sites = AsyncSites(self)
        self.agents = AsyncAgents(self)
        self.queues = AsyncQueues(self)
        self.numbers = AsyncNumbers(self)
        self.trunks = AsyncTrunks(self)
        self.flows = AsyncFlows(self)
        self.contacts = AsyncContacts(self)
        self.realtime = AsyncRealtime(self)
        self.reports = AsyncReports(self)
        self.calling = AsyncCalling(self)
        self.recordings = AsyncRecordings(self)
        self.webhooks = AsyncWebhooks(self)
        self.widget_keys = AsyncWidgetKeys(self)
        self.desk_settings = AsyncDeskSettingsResource(self)
        self.settings = AsyncSettingsResource(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={self.base_url!r})"

    async def signup(self, company: str, email: str) -> SignupResult:
        """Create a tenant; the answer holds its admin key (`result.api_key.key`), shown only this once."""
        return await self._run(_calls.signup(company, email))

    async def me(self) -> Me:
        return await self._run(_calls.me())

    async def set_supervisor_queues(self, account_id: str, queue_ids: list[str] | None) -> SupervisorScope:
        """Limit a supervisor (the invitation's account_id) to these queues' ids; None: the whole tenant
        (an admin key)."""
        scope: SupervisorScope = await self._run(_calls.supervisor_scope(account_id, queue_ids))
        return scope

    async def set_supervisor_scope(
        self, account_id: str, queue_ids: list[str] | None, site_ids: list[str] | None
    ) -> SupervisorScope:
        """Limit a supervisor to these queues and sites (and the agents at those sites or serving those
        queues); both None: the whole tenant (an admin key)."""
        scope: SupervisorScope = await self._run(
            _calls.supervisor_site_scope(account_id, queue_ids, site_ids)
        )
        return scope

    async def alert_policy(self) -> AlertPolicies:
        """The tenant's alert thresholds: the default and each queue's own (a supervisor or admin key)."""
        policies: AlertPolicies = await self._run(_calls.alert_policy_get())
        return policies

    async def set_alert_policy(self, policy: AlertPolicy, queue_id: str | None = None) -> AlertPolicy:
        """Set the default thresholds, or one queue's own (replacing the default there); an admin key."""
        saved: AlertPolicy = await self._run(_calls.alert_policy_put(queue_id, policy))
        return saved

    async def clear_alert_policy(self, queue_id: str) -> None:
        """Remove a queue's own thresholds: the default applies there again (an admin key)."""
        await self._run(_calls.alert_policy_clear(queue_id))

    async def invite_supervisor(self, email: str, role: str = "supervisor") -> Invite:
        """A one-time link for a supervisor (or, with role "admin", an admin) to set a password and sign in;
        they then open /supervisor/ (an admin key)."""
        invite: Invite = await self._run(_calls.invite(email, role))
        invite.url = self.base_url.rstrip("/") + invite.path
        return invite

    async def usage(self, start: datetime | str | None = None, end: datetime | str | None = None) -> Usage:
        """Seat usage between two datetimes (or ISO 8601 strings); default: this calendar month so far."""
        return await self._run(_calls.usage(start, end))

    async def widget_token(self, public_key: str, queue: str) -> WidgetToken:
        """What a web page's widget does: exchange a public widget key (`pk_...`) for a short-lived caller
        token to one queue (name or id) the key allows. Sends no API key."""
        return await self._run(_calls.widget_token(public_key, queue))

    async def _stream(self, call: Call[bytes]) -> AsyncIterator[bytes]:
        """A GET whose body comes in chunks as the server sends them (CSV exports). Not retried: a retry
        would repeat chunks."""
        headers = headers_for(call, api_key=self.api_key, user_agent=USER_AGENT)
        try:
            async with self._http.stream("GET", call.path, params=call.params, headers=headers) as response:
                if response.status_code >= 400:
                    await response.aread()
                    headers_in = lower_headers(response.headers)
                    raise error_from_response(
                        response.status_code, headers_in, response.content, now=time.time()
                    )
                async for chunk in response.aiter_bytes():
                    yield chunk
        except httpx.TransportError as exc:
            raise ConnectionError(self.base_url, str(exc) or type(exc).__name__) from exc

    async def _run(self, call: Call[T]) -> T:
        if call.method == "POST" and call.idempotency_key is None:
            call = replace(call, idempotency_key=new_idempotency_key())
        headers = headers_for(call, api_key=self.api_key, user_agent=USER_AGENT)
        content = encode_body(call)
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, content=content, headers=headers
                )
            except httpx.TransportError as exc:
                sent, reason = transport_failure(exc, self.timeout)
                delay = self.retry.after_transport_error(attempt, call.method, sent=sent, rand=self._random())
                if delay is None:
                    raise ConnectionError(self.base_url, reason) from exc
            else:
                status = response.status_code
                if status < 400:
                    return decode_result(call, status, response.content)
                headers_in = lower_headers(response.headers)
                now = time.time()
                error = error_from_response(status, headers_in, response.content, now=now)
                retry_after = parse_retry_after(headers_in.get("retry-after"), now=now)
                delay = self.retry.after_status(
                    attempt, call.method, status, retry_after=retry_after, rand=self._random()
                )
                if delay is None:
                    raise error
            await self._sleep(delay)
            attempt += 1


async def async_signup(
    company: str, email: str, *, base_url: str | None = None, timeout: float = 10, max_retries: int = 3
) -> SignupResult:
    """Create a tenant without a client at hand: `await switchboard.async_signup("Acme", "ops@acme.example")`."""
    async with AsyncClient(base_url=base_url, timeout=timeout, max_retries=max_retries) as client:
        return await client.signup(company, email)


class _Resource:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client


class _Listing(_Resource, Generic[M]):
    _path: ClassVar[str]
    _model: ClassVar[Any]

    async def list(
        self, *, limit: int | None = None, cursor: str | None = None, all: bool = False
    ) -> Page[M]:
        """One page (`limit` 1..200, default 50); with `all=True`, every item in one page."""
        if all:
            return Page(items=[item async for item in self.iter(page_size=limit)], next_cursor=None)
        page: Page[M] = await self._client._run(_calls.list_page(self._path, self._model, limit, cursor))
        return page

    async def iter(self, *, page_size: int | None = None) -> AsyncIterator[M]:
        """Every item, in creation order, fetching pages as they are needed."""
        cursor: str | None = None
        while True:
            page = await self.list(limit=page_size, cursor=cursor)
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            if page.next_cursor == cursor:
                raise ResponseError(f"the API returned the same cursor twice for {self._path}")
            cursor = page.next_cursor


class _Collection(_Listing[M]):
    async def get(self, id: str) -> M:
        found: M = await self._client._run(_calls.get(self._path, self._model, id))
        return found


class AsyncKeys(_Collection[Key]):
    _path = "/v1/keys"
    _model = Key

    async def create(self, role: str, *, name: str | UnsetType = UNSET) -> KeyWithSecret:
        """A new key; its secret (`.key`) is in this answer only."""
        created: KeyWithSecret = await self._client._run(
            _calls.create(self._path, KeyWithSecret, _calls.fields(role=role, name=name))
        )
        return created

    async def revoke(self, id: str) -> None:
        await self._client._run(_calls.delete(self._path, id))


class AsyncSeats(_Resource):
    async def get(self) -> Seats:
        return await self._client._run(_calls.seats_get())

    async def purchase(self, count: int, *, idempotency_key: str | None = None) -> Seats:
        return await self._client._run(_calls.seats_change("purchase", count, idempotency_key))

    async def release(self, count: int, *, idempotency_key: str | None = None) -> Seats:
        """Refused with ConflictError when fewer seats would remain than agents logged in now."""
        return await self._client._run(_calls.seats_change("release", count, idempotency_key))


class AsyncAudit(_Listing[AuditEntry]):
    _path = "/v1/audit"
    _model = AuditEntry


class AsyncSites(_Collection[Site]):
    _path = "/v1/sites"
    _model = Site

    async def create(self, name: str, *, timezone: str = "UTC", kind: str = "office") -> Site:
        body = _calls.fields(name=name, timezone=timezone, kind=kind)
        site: Site = await self._client._run(_calls.create(self._path, Site, body))
        return site

    async def update(
        self,
        id: str,
        *,
        name: str | UnsetType = UNSET,
        timezone: str | UnsetType = UNSET,
        kind: str | UnsetType = UNSET,
    ) -> Site:
        body = _calls.fields(name=name, timezone=timezone, kind=kind)
        site: Site = await self._client._run(_calls.update(self._path, Site, id, body))
        return site

    async def drain(self, id: str) -> Site:
        """As Client.sites.drain."""
        site: Site = await self._client._run(_calls.site_drain(id, True))
        return site

    async def restore(self, id: str) -> Site:
        site: Site = await self._client._run(_calls.site_drain(id, False))
        return site

    async def delete(self, id: str) -> None:
        await self._client._run(_calls.delete(self._path, id))


class AsyncAgents(_Collection[Agent]):
    _path = "/v1/agents"
    _model = Agent

    async def create(
        self,
        name: str,
        email: str,
        *,
        site_id: str | UnsetType = UNSET,
        skills: dict[str, int] | UnsetType = UNSET,
        languages: list[str] | UnsetType = UNSET,
        endpoint: str | UnsetType | None = UNSET,
        can_dial: bool | UnsetType = UNSET,
        voicemail_capacity: int | UnsetType = UNSET,
    ) -> Agent:
        """`endpoint`: None or left out = the browser (WebRTC); a sip:/sips: URI = a phone at a static
        address; an E.164 number = an outside number dialled through the tenant's trunk."""
        body = _calls.fields(
            name=name,
            email=email,
            site_id=site_id,
            skills=skills,
            languages=languages,
            endpoint=endpoint,
            can_dial=can_dial,
            voicemail_capacity=voicemail_capacity,
        )
        agent: Agent = await self._client._run(_calls.create(self._path, Agent, body))
        return agent

    async def update(
        self,
        id: str,
        *,
        name: str | UnsetType = UNSET,
        email: str | UnsetType = UNSET,
        site_id: str | UnsetType = UNSET,
        skills: dict[str, int] | UnsetType = UNSET,
        languages: list[str] | UnsetType = UNSET,
        endpoint: str | UnsetType | None = UNSET,
        can_dial: bool | UnsetType = UNSET,
        voicemail_capacity: int | UnsetType = UNSET,
    ) -> Agent:
        """`endpoint`: None or left out = the browser (WebRTC); a sip:/sips: URI = a phone at a static
        address; an E.164 number = an outside number dialled through the tenant's trunk."""
        body = _calls.fields(
            name=name,
            email=email,
            site_id=site_id,
            skills=skills,
            languages=languages,
            endpoint=endpoint,
            can_dial=can_dial,
            voicemail_capacity=voicemail_capacity,
        )
        agent: Agent = await self._client._run(_calls.update(self._path, Agent, id, body))
        return agent

    async def delete(self, id: str) -> None:
        await self._client._run(_calls.delete(self._path, id))

    async def dial(
        self, id: str, to: str, *, caller_id: str | None = None, queue: str | None = None
    ) -> dict[str, Any]:
        """Click-to-dial: the agent's desk is offered its own call to `to`, then the number is dialled
        through the tenant's trunk. The agent must be allowed to dial and be available; a number on the
        do-not-call list is refused. Returns {"contact_id", "to", "caller_id", "queue_id"}."""
        placed: dict[str, Any] = await self._client._run(_calls.agent_dial(id, to, caller_id, queue))
        return placed

    async def token(self, id: str) -> AgentToken:
        """A short-lived token (10 minutes) for the agent's signalling websocket (docs/agent-protocol.md).
        Admin keys only."""
        issued: AgentToken = await self._client._run(_calls.agent_token(id))
        return issued

    async def invite(self, email: str) -> Invite:
        """A one-time link for the agent with this email to set a password and sign in at /agent/; it
        replaces the agent's earlier unused links, and using it ends the agent's other sessions."""
        invite: Invite = await self._client._run(_calls.invite(email, "agent"))
        invite.url = self._client.base_url.rstrip("/") + invite.path
        return invite

    async def signout(self, id: str) -> Signout:
        """Sign the agent out everywhere: its browser sessions and open desktops end within seconds."""
        ended: Signout = await self._client._run(_calls.agent_signout(id))
        return ended

    async def set_state(self, id: str, state: str, reason: str | None = None) -> AgentStateSet:
        """Set the agent's presence as a supervisor (a supervisor or admin key): available, or away with
        a reason; the agent's desk shows it at once."""
        done: AgentStateSet = await self._client._run(_calls.agent_state(id, state, reason))
        return done


class AsyncQueues(_Collection[Queue]):
    _path = "/v1/queues"
    _model = Queue

    async def create(
        self,
        name: str,
        *,
        skills: dict[str, int] | UnsetType = UNSET,
        priority: int | UnsetType = UNSET,
        sl_percent: int | UnsetType = UNSET,
        sl_seconds: int | UnsetType = UNSET,
        short_abandon_seconds: int | UnsetType = UNSET,
        wrap_up_seconds: int | UnsetType = UNSET,
        offer_timeout_seconds: int | UnsetType = UNSET,
        recording_percent: int | UnsetType | None = UNSET,
        recording_retention_days: int | UnsetType | None = UNSET,
        recording_announcement: str | UnsetType | None = UNSET,
        site_id: str | UnsetType = UNSET,
    ) -> Queue:
        body = _calls.fields(
            name=name,
            skills=skills,
            priority=priority,
            sl_percent=sl_percent,
            sl_seconds=sl_seconds,
            short_abandon_seconds=short_abandon_seconds,
            wrap_up_seconds=wrap_up_seconds,
            offer_timeout_seconds=offer_timeout_seconds,
            recording_percent=recording_percent,
            recording_retention_days=recording_retention_days,
            recording_announcement=recording_announcement,
            site_id=site_id,
        )
        queue: Queue = await self._client._run(_calls.create(self._path, Queue, body))
        return queue

    async def update(
        self,
        id: str,
        *,
        name: str | UnsetType = UNSET,
        skills: dict[str, int] | UnsetType = UNSET,
        priority: int | UnsetType = UNSET,
        sl_percent: int | UnsetType = UNSET,
        sl_seconds: int | UnsetType = UNSET,
        short_abandon_seconds: int | UnsetType = UNSET,
        wrap_up_seconds: int | UnsetType = UNSET,
        offer_timeout_seconds: int | UnsetType = UNSET,
        recording_percent: int | UnsetType | None = UNSET,
        recording_retention_days: int | UnsetType | None = UNSET,
        recording_announcement: str | UnsetType | None = UNSET,
        site_id: str | UnsetType | None = UNSET,
    ) -> Queue:
        body = _calls.fields(
            name=name,
            skills=skills,
            priority=priority,
            sl_percent=sl_percent,
            sl_seconds=sl_seconds,
            short_abandon_seconds=short_abandon_seconds,
            wrap_up_seconds=wrap_up_seconds,
            offer_timeout_seconds=offer_timeout_seconds,
            recording_percent=recording_percent,
            recording_retention_days=recording_retention_days,
            recording_announcement=recording_announcement,
            site_id=site_id,
        )
        queue: Queue = await self._client._run(_calls.update(self._path, Queue, id, body))
        return queue

    async def set_rules(
        self,
        id: str,
        *,
        strategy: str | UnsetType = UNSET,
        overflow: list[dict[str, Any]] | UnsetType = UNSET,
        hours: dict[str, list[str]] | UnsetType | None = UNSET,
        holidays: list[str] | UnsetType = UNSET,
        closed_treatment: str | UnsetType = UNSET,
        closed_message: str | UnsetType | None = UNSET,
        closed_queue_id: str | UnsetType | None = UNSET,
        closed_flow_id: str | UnsetType | None = UNSET,
        survey_flow_id: str | UnsetType | None = UNSET,
        priority_rules: list[dict[str, Any]] | UnsetType = UNSET,
        spill_after_seconds: int | UnsetType | None = UNSET,
        spill_expected_wait_seconds: int | UnsetType | None = UNSET,
        announce_seconds: int | UnsetType | None = UNSET,
    ) -> Queue:
        """As Client.queues.set_rules."""
        rules = dict(
            strategy=strategy,
            overflow=overflow,
            hours=hours,
            holidays=holidays,
            closed_treatment=closed_treatment,
            closed_message=closed_message,
            closed_queue_id=closed_queue_id,
            closed_flow_id=closed_flow_id,
            survey_flow_id=survey_flow_id,
            priority_rules=priority_rules,
            spill_after_seconds=spill_after_seconds,
            spill_expected_wait_seconds=spill_expected_wait_seconds,
            announce_seconds=announce_seconds,
        )
        queue: Queue = await self._client._run(_calls.queue_rules(id, rules))
        return queue

    async def delete(self, id: str, *, force: bool = False) -> None:
        """Delete a queue. ConflictError while numbers or flows use it (the error's `errors` name them:
        field "numbers" or "flows"); `force=True` deletes anyway, leaving those numbers unrouted."""
        await self._client._run(_calls.delete(self._path, id, force=force))


class AsyncNumbers(_Collection[Number]):
    _path = "/v1/numbers"
    _model = Number

    async def claim(self, e164: str) -> Number:
        """Claim a number for this tenant; ConflictError if any tenant already holds it."""
        number: Number = await self._client._run(_calls.create(self._path, Number, {"e164": e164}))
        return number

    async def update(self, id: str, *, queue_id: str | UnsetType | None = UNSET) -> Number:
        """Point the number at a queue (None: at nothing)."""
        number: Number = await self._client._run(
            _calls.update(self._path, Number, id, _calls.fields(queue_id=queue_id))
        )
        return number

    async def release(self, id: str) -> None:
        await self._client._run(_calls.delete(self._path, id))


class AsyncTrunks(_Collection[Trunk]):
    _path = "/v1/trunks"
    _model = Trunk

    async def create(
        self,
        name: str,
        *,
        allowed_ips: list[str] | UnsetType = UNSET,
        username: str | UnsetType = UNSET,
        password: str | UnsetType = UNSET,
        realm: str | UnsetType = UNSET,
        outbound_host: str | UnsetType = UNSET,
        outbound_port: int | UnsetType = UNSET,
        outbound_transport: str | UnsetType = UNSET,
    ) -> Trunk:
        """A trunk needs allowed_ips, username and password (digest), or an outbound host (or several)."""
        body = _calls.fields(
            name=name,
            allowed_ips=allowed_ips,
            username=username,
            password=password,
            realm=realm,
            outbound_host=outbound_host,
            outbound_port=outbound_port,
            outbound_transport=outbound_transport,
        )
        trunk: Trunk = await self._client._run(_calls.create(self._path, Trunk, body))
        return trunk

    async def update(
        self,
        id: str,
        *,
        name: str | UnsetType = UNSET,
        allowed_ips: list[str] | UnsetType = UNSET,
        username: str | UnsetType | None = UNSET,
        password: str | UnsetType = UNSET,
        realm: str | UnsetType = UNSET,
        outbound_host: str | UnsetType | None = UNSET,
        outbound_port: int | UnsetType = UNSET,
        outbound_transport: str | UnsetType = UNSET,
    ) -> Trunk:
        """A new username or realm needs the password again; username=None removes the credentials,
        outbound_host=None the outbound route."""
        body = _calls.fields(
            name=name,
            allowed_ips=allowed_ips,
            username=username,
            password=password,
            realm=realm,
            outbound_host=outbound_host,
            outbound_port=outbound_port,
            outbound_transport=outbound_transport,
        )
        trunk: Trunk = await self._client._run(_calls.update(self._path, Trunk, id, body))
        return trunk

    async def delete(self, id: str) -> None:
        await self._client._run(_calls.delete(self._path, id))


class AsyncContacts(_Resource):
    """Contact history, newest first (read-only; the platform writes it as calls happen)."""

    async def list(
        self,
        *,
        since: datetime | str | None = None,
        queue: str | None = None,
        agent: str | None = None,
        caller: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[ContactSummary]:
        """One page, newest first. `since`: a datetime or ISO 8601 string (naive means UTC); `queue`: id or
        name; `agent`: id or email; `caller`: the caller's number, exactly."""
        call = _calls.contacts_page(
            since=since, queue=queue, agent=agent, caller=caller, limit=limit, cursor=cursor
        )
        page: Page[ContactSummary] = await self._client._run(call)
        return page

    async def iter(
        self,
        *,
        since: datetime | str | None = None,
        queue: str | None = None,
        agent: str | None = None,
        caller: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[ContactSummary]:
        """Every matching contact, newest first, fetching pages as they are needed."""
        cursor: str | None = None
        while True:
            page = await self.list(
                since=since, queue=queue, agent=agent, caller=caller, limit=page_size, cursor=cursor
            )
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            if page.next_cursor == cursor:
                raise ResponseError("the API returned the same cursor twice for /v1/contacts")
            cursor = page.next_cursor

    async def get(self, id: str) -> Contact:
        """One contact whole, with its timeline."""
        found: Contact = await self._client._run(_calls.contact_get(id))
        return found

    async def move(self, id: str, queue: str) -> ContactMoved:
        """Move a contact waiting in line to another queue (name or id); a supervisor or admin key."""
        moved: ContactMoved = await self._client._run(_calls.contact_move(id, queue))
        return moved

    async def front(self, id: str) -> ContactPrioritized:
        """Put a contact waiting in line at the front of its queue; a supervisor or admin key."""
        done: ContactPrioritized = await self._client._run(_calls.contact_front(id))
        return done

    async def pull(self, id: str, agent: str | None = None) -> ContactPrioritized:
        """Offer a contact waiting in line now to `agent` (id or email), even one who is away; without
        `agent` (a supervisor's console sign-in) to their own agent profile."""
        done: ContactPrioritized = await self._client._run(_calls.contact_pull(id, agent))
        return done

    async def monitor(
        self, id: str, mode: str, leg_id: str | None = None, *, phone: str | None = None
    ) -> MonitorSession:
        """Step into a live contact as a supervisor (a supervisor or admin key): `mode` listen, whisper (the
        agent hears you, the caller does not), barge (both do) or none (leave). Your audio: `leg_id`, your
        browser's WebRTC leg (opened on /v1/ws with the contact as its call_id), or `phone`, a sip: address
        the platform rings (the answer's leg_id names it afterwards). Call again to switch mode."""
        session: MonitorSession = await self._client._run(_calls.contact_monitor(id, mode, leg_id, phone))
        return session


class AsyncWidgetKeys(_Collection[WidgetKey]):
    _path = "/v1/widget-keys"
    _model = WidgetKey

    async def create(
        self,
        queue_ids: list[str],
        *,
        origins: list[str] | UnsetType = UNSET,
        name: str | UnsetType = UNSET,
        flow: str | UnsetType = UNSET,
    ) -> WidgetKey:
        """A public key (`.public_key`, `pk_...`) for a web page's call button: it can reach only `queue_ids`,
        and only from `origins` (web origins such as https://shop.example.com) when any are given; with `flow`
        (a flow's name or id) its callers go through that IVR flow first."""
        body = _calls.fields(queue_ids=queue_ids, origins=origins, name=name, flow=flow)
        created: WidgetKey = await self._client._run(_calls.create(self._path, WidgetKey, body))
        return created

    async def revoke(self, id: str) -> None:
        await self._client._run(_calls.delete(self._path, id))


class AsyncDeskSettingsResource(_Resource):
    """The tenant's disposition codes, away reasons and wrap-up rule (admin keys change them)."""

    async def get(self) -> DeskSettings:
        settings: DeskSettings = await self._client._run(_calls.desk_settings_get())
        return settings

    async def set(self, settings: DeskSettings) -> DeskSettings:
        saved: DeskSettings = await self._client._run(_calls.desk_settings_put(settings))
        return saved


class AsyncSettingsResource(_Resource):
    """Tenant-wide settings: the agents' reconnect grace, the time zone and the callers' language (admin keys
    change them)."""

    async def get(self) -> TenantSettings:
        settings: TenantSettings = await self._client._run(_calls.tenant_settings_get())
        return settings

    async def update(
        self,
        *,
        agent_grace_seconds: int | None = None,
        timezone: str | None = None,
        language: str | None = None,
        monitor_notice: str | None = None,
    ) -> TenantSettings:
        """`timezone`: the IANA zone queue hours are read in; `language`: en, fr, es or de (announcements);
        `monitor_notice`: who is told when a supervisor steps into a call (none, agent, caller, both)."""
        call = _calls.tenant_settings_patch(
            agent_grace_seconds=agent_grace_seconds,
            timezone=timezone,
            language=language,
            monitor_notice=monitor_notice,
        )
        saved: TenantSettings = await self._client._run(call)
        return saved


class AsyncRealtime(_Resource):
    """The real-time view: queues now and today so far, agents now (docs/reporting.md)."""

    async def queues(self) -> dict[str, Any]:
        """Per queue: waiting, longest wait, agents by state; offered, answered, abandoned, SL, ASA today."""
        result: dict[str, Any] = await self._client._run(_calls.realtime("queues"))
        return result

    async def agents(self) -> dict[str, Any]:
        """Per agent: state, reason, time in state, current contact, handled today, AHT today."""
        result: dict[str, Any] = await self._client._run(_calls.realtime("agents"))
        return result


class AsyncReports(_Resource):
    """Interval reports with the formula and thresholds they used (docs/reporting.md). `start`/`end`:
    datetimes or ISO 8601 (naive means UTC; `end` defaults to now, `start` to a day before `end`);
    `interval`: 15m, 30m, 60m, day, week or month; `ids`: only these queues, agents or flows."""

    async def _get(
        self,
        kind: str,
        start: datetime | str | None,
        end: datetime | str | None,
        interval: str,
        ids: list[str] | None,
    ) -> dict[str, Any]:
        call = _calls.report(kind, start=start, end=end, interval=interval, ids=ids)
        result: dict[str, Any] = await self._client._run(call)
        return result

    async def queues(
        self,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        interval: str = "30m",
        ids: list[str] | None = None,
    ) -> dict[str, Any]:
        return await self._get("queues", start, end, interval, ids)

    async def agents(
        self,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        interval: str = "30m",
        ids: list[str] | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """One page of the agent report: up to `limit` agents (default 500, at most 2,000) after `cursor`
        (the previous page's `page.next_cursor`), each with all its intervals, ordered by agent then
        interval. `page.next_cursor` is None on the last page; `agent_pages` walks them all."""
        call = _calls.report(
            "agents", start=start, end=end, interval=interval, ids=ids, cursor=cursor, limit=limit
        )
        result: dict[str, Any] = await self._client._run(call)
        return result

    async def agents_csv(
        self,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        interval: str = "30m",
        ids: list[str] | None = None,
    ) -> AsyncIterator[bytes]:
        """The whole agent report as CSV in one request, streamed in chunks (as `Client.reports.agents_csv`)."""
        async for chunk in self._client._stream(
            _calls.agents_csv(start=start, end=end, interval=interval, ids=ids)
        ):
            yield chunk

    async def agent_pages(
        self,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        interval: str = "30m",
        ids: list[str] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every page of the agent report in turn (`agents` with each page's `next_cursor`), so a report
        over thousands of agents never has to be held at once."""
        cursor: str | None = None
        while True:
            page = await self.agents(
                start=start, end=end, interval=interval, ids=ids, cursor=cursor, limit=limit
            )
            yield page
            cursor = page["page"]["next_cursor"]
            if cursor is None:
                return

    async def ivr(
        self,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        interval: str = "30m",
        ids: list[str] | None = None,
    ) -> dict[str, Any]:
        return await self._get("ivr", start, end, interval, ids)


class AsyncWebhooks(_Resource):
    """Endpoints for contact and recording events, their delivery log, and replay (docs/reporting.md)."""

    async def create(self, url: str, *, events: list[str] | None = None) -> dict[str, Any]:
        """A new endpoint; the answer's `secret` (shown only here) checks each delivery's signature."""
        result: dict[str, Any] = await self._client._run(_calls.webhook_create(url, events))
        return result

    async def list(self) -> list[dict[str, Any]]:
        result: dict[str, Any] = await self._client._run(_calls.webhook_list())
        return list(result["items"])

    async def delete(self, id: str) -> None:
        await self._client._run(_calls.webhook_delete(id))

    async def deliveries(
        self, *, status: str | None = None, limit: int | None = None
    ) -> builtins.list[dict[str, Any]]:
        """The delivery log, newest first; `status`: pending, delivered or failed."""
        result: dict[str, Any] = await self._client._run(_calls.webhook_deliveries(status, limit))
        return list(result["items"])

    async def replay(self, delivery_id: str) -> dict[str, Any]:
        """Send a delivery again now; returns the delivery with its new outcome."""
        result: dict[str, Any] = await self._client._run(_calls.webhook_replay(delivery_id))
        return result
