"""Reporting over HTTP (docs/reporting.md): the real-time view (`/v1/realtime/queues`, `/v1/realtime/agents`),
its websocket feed (`/v1/realtime/feed`), and interval reports (`/v1/reports/queues|agents|ivr`).

Every read runs in the caller's tenant transaction (row-level security); the feed listens to the caller's
tenant's subjects only. The figures come from services/reporting/queries.py, so the API and the reporting
service share one formula.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, cast

import asyncpg
import msgspec
from litestar import Controller, MediaType, Response, WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import QueryParameter
from litestar.response import Stream

from services.kernel import events as ev
from services.kernel.bus import BusError, CommandTimeout
from services.kernel.db import tenant_tx
from services.kernel.log import get_logger
from services.kernel.messages import Event
from services.reporting import planning, queries
from services.reporting.quality import agent_quality

from .alert_policy import annotate
from .auth import Principal, authenticate
from .deps import ApiDep, CallerDep, TenantConnDep
from .problems import READ_ERRORS, Problem, not_found, validation
from .queries import reports as sql
from .state import api_state

__all__ = [
    "FEED_EVENTS",
    "ExportController",
    "RealtimeController",
    "ReportController",
    "feed_message",
    "page_body",
    "realtime_feed",
]

MAX_RANGE = timedelta(days=400)
FEED_QUEUE = 1000  # messages held for a slow client before it is told it missed some
FEED_EVENTS: tuple[type[Event], ...] = (
    ev.QueueStats,
    ev.AgentStateChanged,
    ev.ContactQueued,
    ev.ContactAssigned,
    ev.ContactAbandoned,
    ev.ContactEnded,
    ev.ContactWrappedUp,
)
_encoder = msgspec.json.Encoder()


def _when(value: datetime | None, default: datetime) -> datetime:
    if value is None:
        return default
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    to = _when(end, now)
    frm = _when(start, to - timedelta(days=1))
    if to <= frm:
        raise validation("to", "must be after from")
    if to - frm > MAX_RANGE:
        raise validation("from", f"the range is limited to {MAX_RANGE.days} days")
    return frm, to


FromParam = Annotated[
    datetime | None, QueryParameter(name="from", description="ISO 8601 start (default: `to` minus one day)")
]
ToParam = Annotated[datetime | None, QueryParameter(name="to", description="ISO 8601 end (default: now)")]
IntervalParam = Annotated[
    str, QueryParameter(name="interval", max_length=8, description="15m, 30m, 60m, day, week or month")
]
IdsParam = Annotated[
    str | None, QueryParameter(name="ids", max_length=4000, description="only these ids, comma-separated")
]


QueueParam = Annotated[str, QueryParameter(name="queue", max_length=64, description="the queue's id")]


def _ids(value: str | None) -> list[str] | None:
    """The ids asked for; a control character (NUL above all: PostgreSQL refuses it in text) is a 422 here,
    before a streamed report has started and can no longer answer with an error."""
    if value is None or not value.strip():
        return None
    if any(ord(c) < 32 for c in value):
        raise validation("ids", "ids are comma-separated and contain no control characters")
    return [part.strip() for part in value.split(",") if part.strip()]


class RealtimeController(Controller):
    path = "/v1/realtime"
    tags = ["reporting"]

    @get("/queues", responses=READ_ERRORS, summary="Queues now, and today so far in the tenant's time zone")
    async def queues(self, principal: CallerDep, tenant_conn: TenantConnDep) -> dict[str, Any]:
        body = scoped_queues(principal, await queries.realtime_queues(tenant_conn, datetime.now(UTC)))
        return await annotate(tenant_conn, body)

    @get("/agents", responses=READ_ERRORS, summary="Agents now: state, time in state, contact, today's work")
    async def agents(self, principal: CallerDep, tenant_conn: TenantConnDep) -> dict[str, Any]:
        now = datetime.now(UTC)
        return await with_quality(
            tenant_conn, scoped_agents(principal, await queries.realtime_agents(tenant_conn, now))
        )

    @get("/waiting", responses=READ_ERRORS, summary="Contacts waiting in line now, in each queue's order")
    async def waiting(self, principal: CallerDep, api: ApiDep) -> dict[str, Any]:
        # Its own short transaction, not `tenant_conn`: no connection is held while routing is asked.
        async with tenant_tx(api.db(), principal.tenant_id, readonly=True) as conn:
            rows = await sql.waiting(conn, WAITING_LIMIT)
        rows = [r for r in rows if principal.sees_queue(r["queue_id"])]
        # Routing alone knows the order (priorities, the supervisor's front): asked per contact, at once.
        positions = await asyncio.gather(*(_position(api, principal.tenant_id, r["id"]) for r in rows))
        contacts = [
            {
                "contact_id": str(r["id"]),
                "caller": r["caller"],
                "caller_name": r["caller_name"],
                "queue_id": str(r["queue_id"]) if r["queue_id"] else None,
                "queue_name": r["queue_name"],
                "queued_at": r["queued_at"],
                "position": pos,
            }
            for r, pos in zip(rows, positions, strict=True)
        ]
        contacts.sort(key=lambda c: (c["queue_name"], c["position"] or WAITING_LIMIT + 1))
        return {"at": datetime.now(UTC), "contacts": contacts}


WAITING_LIMIT = 200


async def _position(state: Any, tenant_id: Any, contact_id: Any) -> int | None:
    """The contact's place in line (None: routing did not say, or it is not in line any more)."""
    if state.bus is None:
        return None
    try:
        reply = await state.bus.request(
            ev.RoutingPosition(tenant_id=tenant_id, call_id=contact_id), timeout=1.0
        )
    except (BusError, CommandTimeout):  # routing not answering: the list still shows who waits
        return None
    position = reply.data.get("position") if reply.ok else None
    return int(position) if isinstance(position, int) else None


_ID_FILTERS = {"queues": "queue_ids", "agents": "agent_ids", "ivr": "flows"}


class ReportController(Controller):
    path = "/v1/reports"
    tags = ["reporting"]

    async def _run(self, conn: asyncpg.Connection, kind: str, **kwargs: Any) -> dict[str, Any]:
        try:
            if kind == "queues":
                return await queries.queue_report(conn, **kwargs)
            if kind == "agents":
                return await queries.agent_report(conn, now=datetime.now(UTC), **kwargs)
            return await queries.ivr_report(conn, **kwargs)
        except queries.ReportError as exc:
            raise validation("interval" if "interval" in str(exc) else "from", str(exc)) from None

    async def _report(
        self,
        conn: asyncpg.Connection,
        kind: str,
        start: datetime | None,
        end: datetime | None,
        interval: str,
        ids: str | None,
    ) -> dict[str, Any]:
        frm, to = _range(start, end)
        options = {"start": frm, "end": to, "interval": interval, _ID_FILTERS[kind]: _ids(ids)}
        return await self._run(conn, kind, **options)

    @get("/queues", responses=READ_ERRORS, summary="Queue figures per interval (one service-level formula)")
    async def queues(
        self,
        tenant_conn: TenantConnDep,
        start: FromParam = None,
        end: ToParam = None,
        interval: IntervalParam = "30m",
        ids: IdsParam = None,
    ) -> dict[str, Any]:
        return await self._report(tenant_conn, "queues", start, end, interval, ids)

    @get(
        "/agents",
        responses=READ_ERRORS,
        media_type=MediaType.JSON,
        summary="Agent figures per interval (handled, AHT, occupancy), a page of agents at a time",
    )
    async def agents(
        self,
        tenant_conn: TenantConnDep,
        start: FromParam = None,
        end: ToParam = None,
        interval: IntervalParam = "30m",
        ids: IdsParam = None,
        cursor: Annotated[
            str | None,
            QueryParameter(
                max_length=200, description="`page.next_cursor` of the page before (none: the first)"
            ),
        ] = None,
        limit: Annotated[
            int,
            QueryParameter(
                ge=1,
                le=queries.AGENT_PAGE_MAX,
                description=f"agents per page (at most {queries.AGENT_PAGE_MAX})",
            ),
        ] = queries.AGENT_PAGE_DEFAULT,
    ) -> Response[dict[str, Any]]:
        frm, to = _range(start, end)
        try:
            head, rows = await queries.agent_page(
                tenant_conn,
                frm,
                to,
                interval,
                now=datetime.now(UTC),
                agent_ids=_ids(ids),
                cursor=cursor,
                limit=limit,
            )
        except queries.ReportError as exc:
            raise validation("interval" if "interval" in str(exc) else "from", str(exc)) from None
        # Documented as the object it is; sent as the bytes already encoded (Litestar passes bytes through).
        return Response(cast(Any, page_body(head, rows)), media_type=MediaType.JSON)

    @get(
        "/agents.csv",
        responses=READ_ERRORS,
        media_type="text/csv",
        summary="The whole agent report as CSV (every agent, streamed), the fast form for big tenants",
    )
    async def agents_csv(
        self,
        principal: CallerDep,
        tenant_conn: TenantConnDep,
        api: ApiDep,
        start: FromParam = None,
        end: ToParam = None,
        interval: IntervalParam = "30m",
        ids: IdsParam = None,
    ) -> Stream:
        frm, to = _range(start, end)
        zone = await queries.tenant_zone(tenant_conn)
        try:
            queries.check_agent_csv(frm, to, interval, zone)
        except queries.ReportError as exc:
            raise validation("interval" if "interval" in str(exc) else "from", str(exc)) from None
        pool, now, agent_ids = api.db(), datetime.now(UTC), _ids(ids)

        async def body() -> AsyncIterator[bytes]:
            # Streamed after the handler's `tenant_conn` is gone: one read-only transaction of its own.
            async with tenant_tx(pool, principal.tenant_id, readonly=True) as conn:
                async for chunk in queries.agent_csv(
                    conn, frm, to, interval, now=now, zone=zone, agent_ids=agent_ids
                ):
                    yield chunk

        return Stream(
            body(),
            media_type="text/csv",
            headers={
                # The formula the figures used (every report says it; CSV has no place for it but here).
                "X-Switchboard-Formula": "; ".join(f"{k}: {v}" for k, v in queries.AGENT_FORMULA.items()),
                "X-Switchboard-Timezone": zone,
                "Content-Disposition": f'attachment; filename="agents-{frm:%Y%m%d}-{to:%Y%m%d}.csv"',
            },
        )

    @get("/ivr", responses=READ_ERRORS, summary="IVR flows per interval (containment, node reach)")
    async def ivr(
        self,
        tenant_conn: TenantConnDep,
        start: FromParam = None,
        end: ToParam = None,
        interval: IntervalParam = "30m",
        ids: IdsParam = None,
    ) -> dict[str, Any]:
        return await self._report(tenant_conn, "ivr", start, end, interval, ids)

    @get(
        "/sites", responses=READ_ERRORS, summary="Per site: its queues' and its agents' figures per interval"
    )
    async def sites(
        self,
        tenant_conn: TenantConnDep,
        start: FromParam = None,
        end: ToParam = None,
        interval: IntervalParam = "30m",
        ids: IdsParam = None,
    ) -> dict[str, Any]:
        frm, to = _range(start, end)
        try:
            return await planning.site_report(
                tenant_conn, frm, to, interval, now=datetime.now(UTC), site_ids=_ids(ids)
            )
        except queries.ReportError as exc:
            raise validation("interval" if "interval" in str(exc) else "from", str(exc)) from None

    @get("/forecast", responses=READ_ERRORS, summary="A queue's next days per interval: offered, AHT, agents")
    async def forecast(
        self,
        tenant_conn: TenantConnDep,
        queue: QueueParam,
        first_day: Annotated[
            date | None,
            QueryParameter(name="from", description="first day (default: tomorrow, tenant's zone)"),
        ] = None,
        days: Annotated[int, QueryParameter(ge=1, le=planning.MAX_FORECAST_DAYS)] = 7,
        interval: Annotated[str, QueryParameter(max_length=8, description="15m, 30m or 60m")] = "30m",
        weeks: Annotated[int, QueryParameter(ge=1, le=planning.MAX_HISTORY_WEEKS, description="history")] = 8,
        target: Annotated[
            str | None, QueryParameter(max_length=16, description="PERCENT/SECONDS (default: the queue's)")
        ] = None,
        shrinkage: Annotated[float, QueryParameter(ge=0, lt=100, description="percent away")] = 0.0,
    ) -> dict[str, Any]:
        goal = _target(target)
        return await self._plan(
            tenant_conn,
            lambda conn: planning.forecast(
                conn,
                queue,
                now=datetime.now(UTC),
                first_day=first_day,
                days=days,
                interval=interval,
                weeks=weeks,
                target=goal,
                shrinkage=shrinkage / 100,
            ),
        )

    @get("/replay", responses=READ_ERRORS, summary="What if: a queue's own traffic replayed with N agents")
    async def replay(
        self,
        tenant_conn: TenantConnDep,
        queue: QueueParam,
        agents: Annotated[str, QueryParameter(max_length=300, description="agent counts, comma-separated")],
        start: FromParam = None,
        end: ToParam = None,
    ) -> dict[str, Any]:
        frm, to = _range(start, end)
        try:
            counts = [int(part) for part in agents.split(",") if part.strip()]
        except ValueError:
            raise validation("agents", "whole numbers, comma-separated (e.g. 10,12,14)") from None
        return await self._plan(tenant_conn, lambda conn: planning.replay(conn, queue, frm, to, counts))

    async def _plan(self, conn: asyncpg.Connection, work: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await work(conn)
            return result
        except queries.ReportError as exc:
            field = next(
                (f for f in ("interval", "days", "weeks", "target", "agents") if f in str(exc)), "from"
            )
            raise validation(field, str(exc)) from None
        except LookupError:
            raise not_found("queue") from None


def page_body(head: dict[str, Any], rows: str) -> bytes:
    """An agent report page's body: its head with the rows PostgreSQL built spliced in as they are (decoding
    and encoding them again would cost more than building them)."""
    encoded = _encoder.encode(head)
    return b"".join((encoded[:-1], b',"rows":', rows.encode(), b"}"))


def _target(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    percent, _, seconds = value.partition("/")
    if not (percent.isdigit() and seconds.isdigit()) or not 1 <= int(percent) <= 99 or int(seconds) > 3600:
        raise validation("target", "PERCENT/SECONDS, e.g. 80/20 (percent 1-99, seconds 0-3600)")
    return int(percent), int(seconds)


def feed_message(event: Event) -> dict[str, Any]:
    """The feed's message for one event (shapes in docs/reporting.md)."""
    base: dict[str, Any] = {"ts": event.ts, "id": str(event.id)}
    match event:
        case ev.QueueStats():
            return base | {
                "type": "queue",
                "queue_id": event.queue_id,
                "waiting": event.waiting,
                "longest_wait_s": event.longest_wait_s,
                "agents": event.agents,
                "ready": event.ready,
            }
        case ev.AgentStateChanged():
            return base | {
                "type": "agent",
                "agent_id": event.agent_id,
                "state": event.new,
                "previous": event.old,
                "reason": event.reason,
            }
    fields = msgspec.structs.asdict(event)
    return base | {
        "type": "contact",
        "event": event.name,
        "contact_id": str(fields["call_id"]),
        "queue_id": fields.get("queue_id") or fields.get("queue"),
        "agent_id": fields.get("agent_id") or None,
    }


FEED_AUTH_TIMEOUT_S = 10.0


async def _feed_principal(socket: WebSocket[Any, Any, Any]) -> Principal:
    header = socket.headers.get("authorization") or ""
    scheme, _, token = header.strip().partition(" ")
    if not header:
        raw = await asyncio.wait_for(socket.receive_data("text"), FEED_AUTH_TIMEOUT_S)
        message = msgspec.json.decode(raw)
        if (
            not isinstance(message, dict)
            or message.get("type") != "auth"
            or not isinstance(message.get("token"), str)
        ):
            raise ValueError("not an auth message")
        scheme, token = "bearer", message["token"]
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "the Authorization header must be: Bearer ...")
    return await authenticate(socket, token.strip())


def scoped_queues(principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """The realtime queues a supervisor assigned to some queues or sites may see (docs/supervisor.md, "Scope")."""
    if principal.queues is None:
        return body
    return body | {"queues": [q for q in body["queues"] if principal.sees_queue(q["queue_id"])]}


async def with_quality(conn: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Each agent with today's quality figures (services/reporting/quality.py)."""
    ringing = {str(a["agent_id"]) for a in body["agents"] if a["state"] == "reserved"}
    figures = await agent_quality(conn, body["since"], body["at"], ringing)
    empty = {"offers": 0, "missed": 0, "answer_rate": None, "occupancy": None}
    return body | {
        "agents": [a | {"quality": figures.get(str(a["agent_id"]), empty)} for a in body["agents"]]
    }


def scoped_agents(principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """The agents of a scoped supervisor's queues and sites."""
    if principal.agents is None:
        return body
    return body | {"agents": [a for a in body["agents"] if principal.sees_agent(a["agent_id"])]}


@websocket("/v1/realtime/feed")
async def realtime_feed(socket: WebSocket[Any, Any, Any]) -> None:
    """The tenant's live feed: a `snapshot` first, then one message per queue, agent or contact event.
    Authenticated by the Authorization header (an API key or a console token) or, from a browser, by a first
    message {"type": "auth", "token": "<console token>"} (never a token in the URL)."""
    state = api_state(socket)
    await socket.accept()
    try:
        principal = await _feed_principal(socket)
    except (Problem, TimeoutError, WebSocketDisconnect, ValueError) as exc:
        reason = (
            exc.detail if isinstance(exc, Problem) else 'authenticate first: {"type": "auth", "token": "..."}'
        )
        with contextlib.suppress(Exception):
            await socket.send_data(
                _encoder.encode({"type": "error", "code": "unauthorized", "reason": reason}).decode(), "text"
            )
            await socket.close(code=4401, reason="unauthorized")
        return
    if state.bus is None:
        await socket.close(code=1011, reason="the event bus is unavailable")
        return
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=FEED_QUEUE)
    dropped = 0

    async def on_event(event: Event) -> None:
        nonlocal dropped
        queue = getattr(event, "queue_id", None) or getattr(event, "queue", None)
        if isinstance(event, ev.AgentStateChanged):
            if not principal.sees_agent(event.agent_id):
                return  # a scoped supervisor's feed: their agents' states only
        elif not principal.sees_queue(queue):
            return  # and their queues' events only
        try:
            outbox.put_nowait(feed_message(event))
        except asyncio.QueueFull:
            dropped += 1

    # Listen before the snapshot, so nothing happens between the two unseen.
    listener = await state.bus.listen(FEED_EVENTS, on_event, tenant_id=principal.tenant_id)
    closed = asyncio.Event()

    async def watch_client() -> None:
        with contextlib.suppress(WebSocketDisconnect, Exception):
            while True:
                await socket.receive_data("text")  # the feed takes no commands; this notices the close
        closed.set()

    watcher = asyncio.create_task(watch_client())
    try:
        async with tenant_tx(state.db(), principal.tenant_id, readonly=True) as conn:
            now = datetime.now(UTC)
            snapshot = {
                "type": "snapshot",
                "ts": time.time(),
                "queues": await annotate(
                    conn, scoped_queues(principal, await queries.realtime_queues(conn, now))
                ),
                "agents": await with_quality(
                    conn, scoped_agents(principal, await queries.realtime_agents(conn, now))
                ),
            }
        await socket.send_data(_encoder.encode(snapshot).decode(), "text")
        while not closed.is_set():
            getter = asyncio.ensure_future(outbox.get())
            closer = asyncio.ensure_future(closed.wait())
            done, _ = await asyncio.wait({getter, closer}, return_when=asyncio.FIRST_COMPLETED)
            closer.cancel()
            if getter not in done:
                getter.cancel()
                break
            message = getter.result()
            if dropped:
                message = message | {"missed": dropped}  # the client should re-read the snapshot
                dropped = 0
            await socket.send_data(_encoder.encode(message).decode(), "text")
    except WebSocketDisconnect:
        pass
    except Exception as exc:
        get_logger().warning("realtime_feed_failed", error=f"{type(exc).__name__}: {exc}"[:200])
    finally:
        watcher.cancel()
        await listener.stop()


# -- CSV export ------------------------------------------------------------------------------------------

EXPORT_ROWS_HEADER = "X-Switchboard-Rows"


def _csv_line(values: list[Any]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(
        ["" if v is None else (v.isoformat() if isinstance(v, datetime) else v) for v in values]
    )
    return out.getvalue().encode()


class ExportController(Controller):
    path = "/v1/exports"
    tags = ["reporting"]

    @get(
        "/contacts.csv",
        responses=READ_ERRORS,
        media_type="text/csv",
        summary="Contact records of a period as CSV (streamed)",
    )
    async def contacts_csv(
        self,
        principal: CallerDep,
        tenant_conn: TenantConnDep,
        api: ApiDep,
        start: FromParam = None,
        end: ToParam = None,
    ) -> Stream:
        frm, to = _range(start, end)
        total = await sql.count_between(tenant_conn, frm, to)
        pool = api.db()

        async def rows() -> AsyncIterator[bytes]:
            yield _csv_line(sql.EXPORT_NAMES)
            # Streamed after the handler's `tenant_conn` is gone: one read-only transaction of its own.
            async with tenant_tx(pool, principal.tenant_id, readonly=True) as conn:
                batch: list[bytes] = []
                async for row in sql.contacts_between(conn, frm, to):
                    batch.append(_csv_line(list(row.values())))
                    if len(batch) >= 1000:
                        yield b"".join(batch)
                        batch = []
                if batch:
                    yield b"".join(batch)

        return Stream(
            rows(),
            media_type="text/csv",
            headers={
                EXPORT_ROWS_HEADER: str(total),
                "Content-Disposition": f'attachment; filename="contacts-{frm:%Y%m%d}-{to:%Y%m%d}.csv"',
            },
        )
