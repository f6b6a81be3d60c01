"""The synchronous client: `Client(api_key=...)` with one namespace per resource (keys, seats, sites, ...)."""

from __future__ import annotations

import builtins
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date, datetime
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
from ._version import __version__
from .calling import Calling
from .errors import ConnectionError, ResponseError, error_from_response, parse_retry_after
from .flows import Flows
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
from .recordings import Recordings

__all__ = ["Client", "signup"]

T = TypeVar("T")
M = TypeVar("M")

USER_AGENT = f"switchboard-python/{__version__}"


def check_base_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {url!r}")
    return url


def transport_failure(exc: httpx.TransportError, timeout: float) -> tuple[bool, str]:
    """Whether the request may have reached the API, and a readable reason."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        sent = False
    else:
        sent = True
    if isinstance(exc, httpx.TimeoutException):
        reason = f"no answer within {timeout:g} s"
    else:
        reason = str(exc) or type(exc).__name__
    return sent, reason


def lower_headers(headers: httpx.Headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


class Client:
    """Switchboard API client (blocking). Use as a context manager or call `close()`.

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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_key = resolve_api_key(api_key)
        self.base_url = check_base_url(resolve_base_url(base_url))
        self.timeout = float(timeout)
        self.retry = retry or RetryPolicy(max_retries=max_retries)
        self._http = httpx.Client(base_url=self.base_url, timeout=self.timeout, transport=transport)
        # Replaceable in tests, so backoff can be observed without waiting.
        self._sleep: Callable[[float], None] = time.sleep
        self._random: Callable[[], float] = random.random
        self.keys = Keys(self)
        self.seats = SeatsResource(self)
        self.audit = Audit(self)
        self.sites = Sites(self)
        self.agents = Agents(self)
        self.queues = Queues(self)
        self.numbers = Numbers(self)
        self.trunks = Trunks(self)
        self.flows = Flows(self)
        self.contacts = Contacts(self)
        self.realtime = Realtime(self)
        self.reports = Reports(self)
        self.calling = Calling(self)
        self.recordings = Recordings(self)
        self.webhooks = Webhooks(self)
        self.widget_keys = WidgetKeys(self)
        self.desk_settings = DeskSettingsResource(self)
        self.settings = SettingsResource(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r})"

    def signup(self, company: str, email: str) -> SignupResult:
        """Create a tenant; the answer holds its admin key (`result.api_key.key`), shown only this once."""
        return self._run(_calls.signup(company, email))

    def me(self) -> Me:
        return self._run(_calls.me())

    def set_supervisor_queues(self, account_id: str, queue_ids: list[str] | None) -> SupervisorScope:
        """Limit a supervisor (the invitation's account_id) to these queues' ids; None: the whole tenant
        (an admin key)."""
        scope: SupervisorScope = self._run(_calls.supervisor_scope(account_id, queue_ids))
        return scope

    def set_supervisor_scope(
        self, account_id: str, queue_ids: list[str] | None, site_ids: list[str] | None
    ) -> SupervisorScope:
        """Limit a supervisor to these queues and sites (and the agents at those sites or serving those
        queues); both None: the whole tenant (an admin key)."""
        scope: SupervisorScope = self._run(_calls.supervisor_site_scope(account_id, queue_ids, site_ids))
        return scope

    def alert_policy(self) -> AlertPolicies:
        """The tenant's alert thresholds: the default and each queue's own (a supervisor or admin key)."""
        policies: AlertPolicies = self._run(_calls.alert_policy_get())
        return policies

    def set_alert_policy(self, policy: AlertPolicy, queue_id: str | None = None) -> AlertPolicy:
        """Set the default thresholds, or one queue's own (replacing the default there); an admin key."""
        saved: AlertPolicy = self._run(_calls.alert_policy_put(queue_id, policy))
        return saved

    def clear_alert_policy(self, queue_id: str) -> None:
        """Remove a queue's own thresholds: the default applies there again (an admin key)."""
        self._run(_calls.alert_policy_clear(queue_id))

    def invite_supervisor(self, email: str, role: str = "supervisor") -> Invite:
        """A one-time link for a supervisor (or, with role "admin", an admin) to set a password and sign in;
        they then open /supervisor/ (an admin key)."""
        invite: Invite = self._run(_calls.invite(email, role))
        invite.url = self.base_url.rstrip("/") + invite.path
        return invite

    def usage(self, start: datetime | str | None = None, end: datetime | str | None = None) -> Usage:
        """Seat usage between two datetimes (or ISO 8601 strings); default: this calendar month so far."""
        return self._run(_calls.usage(start, end))

    def widget_token(self, public_key: str, queue: str) -> WidgetToken:
        """What a web page's widget does: exchange a public widget key (`pk_...`) for a short-lived caller
        token to one queue (name or id) the key allows. Sends no API key."""
        return self._run(_calls.widget_token(public_key, queue))

    def _stream(
        self, call: Call[bytes], on_headers: Callable[[dict[str, str]], None] | None = None
    ) -> Iterator[bytes]:
        """A GET whose body comes in chunks as the server sends them (CSV exports); `on_headers` sees the
        response's headers (lower-cased) before the first chunk. Not retried: a retry would repeat chunks."""
        headers = headers_for(call, api_key=self.api_key, user_agent=USER_AGENT)
        try:
            with self._http.stream("GET", call.path, params=call.params, headers=headers) as response:
                headers_in = lower_headers(response.headers)
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(
                        response.status_code, headers_in, response.content, now=time.time()
                    )
                if on_headers is not None:
                    on_headers(headers_in)
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            raise ConnectionError(self.base_url, str(exc) or type(exc).__name__) from exc

    def _run(self, call: Call[T]) -> T:
        if call.method == "POST" and call.idempotency_key is None:
            call = replace(call, idempotency_key=new_idempotency_key())
        headers = headers_for(call, api_key=self.api_key, user_agent=USER_AGENT)
        content = encode_body(call)
        attempt = 0
        while True:
            try:
                response = self._http.request(
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
            self._sleep(delay)
            attempt += 1


def signup(
    company: str, email: str, *, base_url: str | None = None, timeout: float = 10, max_retries: int = 3
) -> SignupResult:
    """Create a tenant without a client at hand: `switchboard.signup("Acme", "ops@acme.example")`."""
    with Client(base_url=base_url, timeout=timeout, max_retries=max_retries) as client:
        return client.signup(company, email)


class _Resource:
    def __init__(self, client: Client) -> None:
        self._client = client


class _Listing(_Resource, Generic[M]):
    _path: ClassVar[str]
    _model: ClassVar[Any]

    def list(self, *, limit: int | None = None, cursor: str | None = None, all: bool = False) -> Page[M]:
        """One page (`limit` 1..200, default 50); with `all=True`, every item in one page."""
        if all:
            return Page(items=[*self.iter(page_size=limit)], next_cursor=None)
        page: Page[M] = self._client._run(_calls.list_page(self._path, self._model, limit, cursor))
        return page

    def iter(self, *, page_size: int | None = None) -> Iterator[M]:
        """Every item, in creation order, fetching pages as they are needed."""
        cursor: str | None = None
        while True:
            page = self.list(limit=page_size, cursor=cursor)
            yield from page.items
            if not page.next_cursor:
                return
            if page.next_cursor == cursor:
                raise ResponseError(f"the API returned the same cursor twice for {self._path}")
            cursor = page.next_cursor


class _Collection(_Listing[M]):
    def get(self, id: str) -> M:
        found: M = self._client._run(_calls.get(self._path, self._model, id))
        return found


class Keys(_Collection[Key]):
    _path = "/v1/keys"
    _model = Key

    def create(self, role: str, *, name: str | UnsetType = UNSET) -> KeyWithSecret:
        """A new key; its secret (`.key`) is in this answer only."""
        created: KeyWithSecret = self._client._run(
            _calls.create(self._path, KeyWithSecret, _calls.fields(role=role, name=name))
        )
        return created

    def revoke(self, id: str) -> None:
        self._client._run(_calls.delete(self._path, id))


class SeatsResource(_Resource):
    def get(self) -> Seats:
        return self._client._run(_calls.seats_get())

    def purchase(self, count: int, *, idempotency_key: str | None = None) -> Seats:
        return self._client._run(_calls.seats_change("purchase", count, idempotency_key))

    def release(self, count: int, *, idempotency_key: str | None = None) -> Seats:
        """Refused with ConflictError when fewer seats would remain than agents logged in now."""
        return self._client._run(_calls.seats_change("release", count, idempotency_key))


class Audit(_Listing[AuditEntry]):
    _path = "/v1/audit"
    _model = AuditEntry


class Sites(_Collection[Site]):
    _path = "/v1/sites"
    _model = Site

    def create(self, name: str, *, timezone: str = "UTC", kind: str = "office") -> Site:
        body = _calls.fields(name=name, timezone=timezone, kind=kind)
        site: Site = self._client._run(_calls.create(self._path, Site, body))
        return site

    def update(
        self,
        id: str,
        *,
        name: str | UnsetType = UNSET,
        timezone: str | UnsetType = UNSET,
        kind: str | UnsetType = UNSET,
    ) -> Site:
        body = _calls.fields(name=name, timezone=timezone, kind=kind)
        site: Site = self._client._run(_calls.update(self._path, Site, id, body))
        return site

    def drain(self, id: str) -> Site:
        """Its agents finish what they hold and get nothing new; calls of queues preferring it go to the
        other sites' agents at once. Until `restore`."""
        site: Site = self._client._run(_calls.site_drain(id, True))
        return site

    def restore(self, id: str) -> Site:
        site: Site = self._client._run(_calls.site_drain(id, False))
        return site

    def delete(self, id: str) -> None:
        self._client._run(_calls.delete(self._path, id))


class Agents(_Collection[Agent]):
    _path = "/v1/agents"
    _model = Agent

    def create(
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
        agent: Agent = self._client._run(_calls.create(self._path, Agent, body))
        return agent

    def update(
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
        agent: Agent = self._client._run(_calls.update(self._path, Agent, id, body))
        return agent

    def delete(self, id: str) -> None:
        self._client._run(_calls.delete(self._path, id))

    def dial(
        self, id: str, to: str, *, caller_id: str | None = None, queue: str | None = None
    ) -> dict[str, Any]:
        """Click-to-dial: the agent's desk is offered its own call to `to`, then the number is dialled
        through the tenant's trunk. The agent must be allowed to dial and be available; a number on the
        do-not-call list is refused. Returns {"contact_id", "to", "caller_id", "queue_id"}."""
        placed: dict[str, Any] = self._client._run(_calls.agent_dial(id, to, caller_id, queue))
        return placed

    def token(self, id: str) -> AgentToken:
        """A short-lived token (10 minutes) for the agent's signalling websocket (docs/agent-protocol.md).
        Admin keys only."""
        issued: AgentToken = self._client._run(_calls.agent_token(id))
        return issued

    def invite(self, email: str) -> Invite:
        """A one-time link for the agent with this email to set a password and sign in at /agent/; it
        replaces the agent's earlier unused links, and using it ends the agent's other sessions."""
        invite: Invite = self._client._run(_calls.invite(email, "agent"))
        invite.url = self._client.base_url.rstrip("/") + invite.path
        return invite

    def signout(self, id: str) -> Signout:
        """Sign the agent out everywhere: its browser sessions and open desktops end within seconds."""
        ended: Signout = self._client._run(_calls.agent_signout(id))
        return ended

    def set_state(self, id: str, state: str, reason: str | None = None) -> AgentStateSet:
        """Set the agent's presence as a supervisor (a supervisor or admin key): available, or away with
        a reason; the agent's desk shows it at once."""
        done: AgentStateSet = self._client._run(_calls.agent_state(id, state, reason))
        return done


class Queues(_Collection[Queue]):
    _path = "/v1/queues"
    _model = Queue

    def create(
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
        queue: Queue = self._client._run(_calls.create(self._path, Queue, body))
        return queue

    def update(
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
        queue: Queue = self._client._run(_calls.update(self._path, Queue, id, body))
        return queue

    def set_rules(
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
        """Change a queue's routing rules; only what is given changes (docs/routing.md, "Queue rules").
        `strategy`: longest_idle, most_skilled, round_robin or least_occupied. `overflow`: rules
        {"target_queue_id", "after_seconds", "expected_wait_over_seconds"}. `hours`: {"mon": ["09:00-17:00"]}
        in the tenant's time zone (None: always open); `holidays`: "YYYY-MM-DD" dates it is closed.
        `closed_treatment`: "message" (`closed_message` or the platform's, then goodbye), "queue"
        (`closed_queue_id`) or "flow" (`closed_flow_id`: an IVR flow takes the caller). `survey_flow_id`: the flow callers go to when the
        agent leaves (a post-call survey; None: none). `priority_rules`: {"attribute", "equals", "raise_by"}. `spill_*`: when calls of a
        queue with a site go to every site. `announce_seconds`: position announcements (None: none).
        ValidationError names the field at fault."""
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
        queue: Queue = self._client._run(_calls.queue_rules(id, rules))
        return queue

    def delete(self, id: str, *, force: bool = False) -> None:
        """Delete a queue. ConflictError while numbers or flows use it (the error's `errors` name them:
        field "numbers" or "flows"); `force=True` deletes anyway, leaving those numbers unrouted."""
        self._client._run(_calls.delete(self._path, id, force=force))


class Numbers(_Collection[Number]):
    _path = "/v1/numbers"
    _model = Number

    def claim(self, e164: str) -> Number:
        """Claim a number for this tenant; ConflictError if any tenant already holds it."""
        number: Number = self._client._run(_calls.create(self._path, Number, {"e164": e164}))
        return number

    def update(self, id: str, *, queue_id: str | UnsetType | None = UNSET) -> Number:
        """Point the number at a queue (None: at nothing)."""
        number: Number = self._client._run(
            _calls.update(self._path, Number, id, _calls.fields(queue_id=queue_id))
        )
        return number

    def release(self, id: str) -> None:
        self._client._run(_calls.delete(self._path, id))


class Trunks(_Collection[Trunk]):
    _path = "/v1/trunks"
    _model = Trunk

    def create(
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
        trunk: Trunk = self._client._run(_calls.create(self._path, Trunk, body))
        return trunk

    def update(
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
        trunk: Trunk = self._client._run(_calls.update(self._path, Trunk, id, body))
        return trunk

    def delete(self, id: str) -> None:
        self._client._run(_calls.delete(self._path, id))


class Contacts(_Resource):
    """Contact history, newest first (read-only; the platform writes it as calls happen)."""

    def list(
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
        page: Page[ContactSummary] = self._client._run(call)
        return page

    def iter(
        self,
        *,
        since: datetime | str | None = None,
        queue: str | None = None,
        agent: str | None = None,
        caller: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[ContactSummary]:
        """Every matching contact, newest first, fetching pages as they are needed."""
        cursor: str | None = None
        while True:
            page = self.list(
                since=since, queue=queue, agent=agent, caller=caller, limit=page_size, cursor=cursor
            )
            yield from page.items
            if not page.next_cursor:
                return
            if page.next_cursor == cursor:
                raise ResponseError("the API returned the same cursor twice for /v1/contacts")
            cursor = page.next_cursor

    def export_csv(
        self,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        on_total: Callable[[int], None] | None = None,
    ) -> Iterator[bytes]:
        """The contact records that arrived in [start, end) as CSV, streamed in chunks (a header line
        first). `on_total` is told how many records will come before the first chunk (for a progress bar)."""

        def total(headers: dict[str, str]) -> None:
            if on_total is not None:
                on_total(int(headers.get("x-switchboard-rows", "0")))

        yield from self._client._stream(_calls.contacts_export(start, end), total)

    def get(self, id: str) -> Contact:
        """One contact whole, with its timeline."""
        found: Contact = self._client._run(_calls.contact_get(id))
        return found

    def move(self, id: str, queue: str) -> ContactMoved:
        """Move a contact waiting in line to another queue (name or id); a supervisor or admin key."""
        moved: ContactMoved = self._client._run(_calls.contact_move(id, queue))
        return moved

    def front(self, id: str) -> ContactPrioritized:
        """Put a contact waiting in line at the front of its queue; a supervisor or admin key."""
        done: ContactPrioritized = self._client._run(_calls.contact_front(id))
        return done

    def pull(self, id: str, agent: str | None = None) -> ContactPrioritized:
        """Offer a contact waiting in line now to `agent` (id or email), even one who is away; without
        `agent` (a supervisor's console sign-in) to their own agent profile."""
        done: ContactPrioritized = self._client._run(_calls.contact_pull(id, agent))
        return done

    def monitor(
        self, id: str, mode: str, leg_id: str | None = None, *, phone: str | None = None
    ) -> MonitorSession:
        """Step into a live contact as a supervisor (a supervisor or admin key): `mode` listen, whisper (the
        agent hears you, the caller does not), barge (both do) or none (leave). Your audio: `leg_id`, your
        browser's WebRTC leg (opened on /v1/ws with the contact as its call_id), or `phone`, a sip: address
        the platform rings (the answer's leg_id names it afterwards). Call again to switch mode."""
        session: MonitorSession = self._client._run(_calls.contact_monitor(id, mode, leg_id, phone))
        return session


class WidgetKeys(_Collection[WidgetKey]):
    _path = "/v1/widget-keys"
    _model = WidgetKey

    def create(
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
        created: WidgetKey = self._client._run(_calls.create(self._path, WidgetKey, body))
        return created

    def revoke(self, id: str) -> None:
        self._client._run(_calls.delete(self._path, id))


class DeskSettingsResource(_Resource):
    """The tenant's disposition codes, away reasons and wrap-up rule (admin keys change them)."""

    def get(self) -> DeskSettings:
        settings: DeskSettings = self._client._run(_calls.desk_settings_get())
        return settings

    def set(self, settings: DeskSettings) -> DeskSettings:
        saved: DeskSettings = self._client._run(_calls.desk_settings_put(settings))
        return saved


class SettingsResource(_Resource):
    """Tenant-wide settings: the agents' reconnect grace, the time zone and the callers' language (admin keys
    change them)."""

    def get(self) -> TenantSettings:
        settings: TenantSettings = self._client._run(_calls.tenant_settings_get())
        return settings

    def update(
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
        saved: TenantSettings = self._client._run(call)
        return saved


class Realtime(_Resource):
    """The real-time view: queues now and today so far, agents now (docs/reporting.md)."""

    def queues(self) -> dict[str, Any]:
        """Per queue: waiting, longest wait, agents by state; offered, answered, abandoned, SL, ASA today."""
        result: dict[str, Any] = self._client._run(_calls.realtime("queues"))
        return result

    def agents(self) -> dict[str, Any]:
        """Per agent: state, reason, time in state, current contact, handled today, AHT today."""
        result: dict[str, Any] = self._client._run(_calls.realtime("agents"))
        return result

    def feed(self, *, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """The tenant's live feed (`/v1/realtime/feed`): a `snapshot` message first, then one per queue,
        agent or contact event (shapes in docs/reporting.md). With `timeout`, yields `{"type": "idle"}`
        when nothing came for that long (so a display can refresh its clocks)."""
        from websockets.sync.client import connect

        url = _calls.realtime_feed_url(self._client.base_url)
        headers = {"Authorization": f"Bearer {self._client.api_key}"} if self._client.api_key else {}
        with connect(url, additional_headers=headers, open_timeout=self._client.timeout) as ws:
            while True:
                try:
                    raw = ws.recv(timeout=timeout)
                except TimeoutError:
                    yield {"type": "idle"}
                    continue
                yield json.loads(raw)


class Reports(_Resource):
    """Interval reports with the formula and thresholds they used (docs/reporting.md). `start`/`end`:
    datetimes or ISO 8601 (naive means UTC; `end` defaults to now, `start` to a day before `end`);
    `interval`: 15m, 30m, 60m, day, week or month; `ids`: only these queues, agents or flows."""

    def _get(
        self,
        kind: str,
        start: datetime | str | None,
        end: datetime | str | None,
        interval: str,
        ids: list[str] | None,
    ) -> dict[str, Any]:
        call = _calls.report(kind, start=start, end=end, interval=interval, ids=ids)
        result: dict[str, Any] = self._client._run(call)
        return result

    def queues(
        self,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        interval: str = "30m",
        ids: list[str] | None = None,
    ) -> dict[str, Any]:
        return self._get("queues", start, end, interval, ids)

    def agents(
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
        result: dict[str, Any] = self._client._run(call)
        return result

    def agent_pages(
        self,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        interval: str = "30m",
        ids: list[str] | None = None,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every page of the agent report in turn (`agents` with each page's `next_cursor`), so a report
        over thousands of agents never has to be held at once."""
        cursor: str | None = None
        while True:
            page = self.agents(start=start, end=end, interval=interval, ids=ids, cursor=cursor, limit=limit)
            yield page
            cursor = page["page"]["next_cursor"]
            if cursor is None:
                return

    def agents_csv(
        self,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        interval: str = "30m",
        ids: list[str] | None = None,
    ) -> Iterator[bytes]:
        """The whole agent report as CSV in one request, streamed in chunks: a header line, then every
        agent's intervals in agent then interval order (the fast form for thousands of agents: PostgreSQL
        writes the text). Columns: interval_start, agent_id, handled, aht_s, occupancy, transfers, then
        seconds per state; an empty cell is none."""
        yield from self._client._stream(_calls.agents_csv(start=start, end=end, interval=interval, ids=ids))

    def ivr(
        self,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        interval: str = "30m",
        ids: list[str] | None = None,
    ) -> dict[str, Any]:
        return self._get("ivr", start, end, interval, ids)

    def sites(
        self,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        interval: str = "30m",
        ids: list[str] | None = None,
    ) -> dict[str, Any]:
        """Per site: the figures of its queues and of its agents."""
        return self._get("sites", start, end, interval, ids)

    def forecast(
        self,
        queue_id: str,
        *,
        first_day: date | str | None = None,
        days: int = 7,
        interval: str = "30m",
        weeks: int = 8,
        target: tuple[int, int] | None = None,
        shrinkage: float = 0.0,
    ) -> dict[str, Any]:
        """Offered contacts, AHT and agents needed per interval of the next `days` days (from tomorrow, or
        `first_day`), from the last `weeks` weeks of the queue's history; `shrinkage` in percent."""
        call = _calls.forecast(
            queue_id,
            first_day=first_day,
            days=days,
            interval=interval,
            weeks=weeks,
            target=target,
            shrinkage=shrinkage,
        )
        result: dict[str, Any] = self._client._run(call)
        return result

    def replay(
        self,
        queue_id: str,
        *,
        agents: list[int],
        start: datetime | str | None = None,
        end: datetime | str | None = None,
    ) -> dict[str, Any]:
        """What if: the queue's own contacts of the period replayed with each number of `agents`."""
        result: dict[str, Any] = self._client._run(
            _calls.replay(queue_id, agents=agents, start=start, end=end)
        )
        return result


class Webhooks(_Resource):
    """Endpoints for contact and recording events, their delivery log, and replay (docs/reporting.md)."""

    def create(self, url: str, *, events: list[str] | None = None) -> dict[str, Any]:
        """A new endpoint; the answer's `secret` (shown only here) checks each delivery's signature."""
        result: dict[str, Any] = self._client._run(_calls.webhook_create(url, events))
        return result

    def list(self) -> list[dict[str, Any]]:
        result: dict[str, Any] = self._client._run(_calls.webhook_list())
        return list(result["items"])

    def delete(self, id: str) -> None:
        self._client._run(_calls.webhook_delete(id))

    def deliveries(
        self, *, status: str | None = None, limit: int | None = None
    ) -> builtins.list[dict[str, Any]]:
        """The delivery log, newest first; `status`: pending, delivered or failed."""
        result: dict[str, Any] = self._client._run(_calls.webhook_deliveries(status, limit))
        return list(result["items"])

    def replay(self, delivery_id: str) -> dict[str, Any]:
        """Send a delivery again now; returns the delivery with its new outcome."""
        result: dict[str, Any] = self._client._run(_calls.webhook_replay(delivery_id))
        return result
