"""The agents' websocket, `/v1/ws`: the agent protocol of docs/agent-protocol.md (version 1).

Authentication: an agent token (tokens.py) as the `token` query parameter or in the first message
({"v": 1, "type": "auth", "token": "..."}, within AUTH_TIMEOUT_S). Then the agent signs in to routing
(`login`, `state`, `logout`: routing commands, the agent's presence), takes offers and controls its contact
(`accept`, `reject`, `hold`, `mute`, `dtmf`, `transfer`, `hangup`, `wrap_up`...: the contact coordinator's
desk commands; it forwards `accept` and `reject` to routing) and
signals its WebRTC legs (`offer`, `answer`, `ice`: the media worker over NATS). Every client command is
answered by one `ack` or `error`, carrying the client's `ref`. Pushed to the agent: `agent_state` (from
`agent.state_changed`), the coordinator's `desk.push` messages (`contact_offer` with its context,
`contact_withdrawn`, `contact_connected`, `contact_ended`) and leg signalling (`state`, `ended`). A bad
message gets an error frame and the session goes on; only authentication failures and an expired token
close it (code 4401). One session's errors never touch another.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from services.kernel import events as ev
from services.kernel import metrics
from services.kernel.db import tenant_tx
from services.kernel.events import WebRtcSignal
from services.kernel.ids import new_id
from services.kernel.log import get_logger
from services.kernel.serving import Listener

from .console_socket import CONSOLE_TYPES, ConsoleSocket
from .desk import session_live
from .fanout import Fanout, Member
from .legs import LEG_TYPES, LegSocket
from .presence import lease_for
from .signalling_base import PROTOCOL_VERSION, Bad
from .state import ApiState
from .tokens import (
    CONSOLE_AUDIENCE,
    WIDGET_AUDIENCE,
    ConsoleClaims,
    TokenClaims,
    TokenError,
    TokenErrorCode,
    WidgetClaims,
    console_live,
    token_audience,
    verify_console_token,
    verify_token,
    verify_widget_token,
)
from .turn import ice_servers
from .widget_calls import WidgetCaller

__all__ = ["AUTH_TIMEOUT_S", "MAX_MESSAGE_BYTES", "PROTOCOL_VERSION", "signalling_socket"]

AUTH_TIMEOUT_S = 10.0
MAX_MESSAGE_BYTES = 64 * 1024
MAX_SDP_BYTES = 32 * 1024
CLOSE_UNAUTHORIZED = 4401


# SessionsEnded.reason -> words for the person whose desk closes.
ENDED_BECAUSE = {
    "forced_signout": "an admin signed you out",
    "signed_out": "you signed out in another window",
    "password_set": "your password was changed",
    "refresh_reused": "your session was used from two places at once",
    "key_revoked": "the API key that issued your token was revoked",
    "agent_removed": "your agent profile was removed",
}


class SessionExpired(Exception):
    """The token expired during the session: the session closes (the browser reconnects with a new one)."""


class Auth(msgspec.Struct, kw_only=True):
    token: str


class Offer(msgspec.Struct, kw_only=True):
    sdp: str
    call_id: uuid.UUID | None = None
    # The contact of a leg made before its call exists (an agent-first callback: docs/agent-protocol.md).
    contact_id: uuid.UUID | None = None
    # A re-offer for this live leg: an ICE restart (the browser's restartIce(), new ICE credentials).
    leg_id: uuid.UUID | None = None


class CallOffer(msgspec.Struct, kw_only=True):
    """A web caller's call: its WebRTC offer."""

    sdp: str


class Answer(msgspec.Struct, kw_only=True):
    leg_id: uuid.UUID
    sdp: str


class Ice(msgspec.Struct, kw_only=True):
    leg_id: uuid.UUID
    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


Presence = Literal["available", "away"]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Login(msgspec.Struct, kw_only=True):
    state: Presence = "away"
    reason: Reason | None = None


class State(msgspec.Struct, kw_only=True):
    state: Presence
    reason: Reason | None = None


class OfferAnswer(msgspec.Struct, kw_only=True):
    contact_id: uuid.UUID
    offer_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    reason: Reason | None = None


class Toggle(msgspec.Struct, kw_only=True):
    contact_id: uuid.UUID
    on: bool


class Digits(msgspec.Struct, kw_only=True):
    contact_id: uuid.UUID
    digits: Annotated[str, msgspec.Meta(pattern="^[0-9*#A-Da-d]{1,32}$")]


class Transfer(msgspec.Struct, kw_only=True):
    contact_id: uuid.UUID
    queue: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    agent_id: uuid.UUID | None = None
    note: Annotated[str, msgspec.Meta(max_length=1000)] = ""
    flow: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None  # transfer only


class ContactRef(msgspec.Struct, kw_only=True):
    contact_id: uuid.UUID


class DialBody(msgspec.Struct, kw_only=True):
    """Place a call from the desk (docs/agent-protocol.md): the ack says {"contact_id", ...}."""

    to: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    caller_id: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    queue: Annotated[str, msgspec.Meta(max_length=100)] | None = None


class WrapUp(msgspec.Struct, kw_only=True):
    contact_id: uuid.UUID
    disposition: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    notes: Annotated[str, msgspec.Meta(max_length=4000)] = ""


_BODIES: dict[str, type[msgspec.Struct] | None] = {
    "auth": Auth,
    "offer": Offer,
    "answer": Answer,
    "ice": Ice,
    "ping": None,
    "login": Login,
    "logout": None,
    "state": State,
    "accept": OfferAnswer,
    "reject": OfferAnswer,
    "hold": Toggle,
    "mute": Toggle,
    "record_pause": Toggle,
    "dtmf": Digits,
    "transfer": Transfer,
    "consult": Transfer,
    "consult_complete": ContactRef,
    "consult_cancel": ContactRef,
    "hangup": ContactRef,
    "wrap_up": WrapUp,
    "dial": DialBody,
}
# A web caller's session (widget_calls.py) knows only these.
WIDGET_BODIES: dict[str, type[msgspec.Struct] | None] = {
    "auth": Auth,
    "call": CallOffer,
    "ice": Ice,
    "hangup": None,
    "ping": None,
}
# A supervisor's socket (console_socket.py) signals its legs only.
CONSOLE_BODIES = {kind: body for kind, body in _BODIES.items() if kind in CONSOLE_TYPES}
MAX_REF = 64


def _bodies_for(session: Any) -> dict[str, type[msgspec.Struct] | None]:
    if isinstance(session, WidgetCaller):
        return WIDGET_BODIES
    return CONSOLE_BODIES if isinstance(session, ConsoleSocket) else _BODIES


def parse_message(
    raw: str | bytes, bodies: dict[str, type[msgspec.Struct] | None] = _BODIES
) -> tuple[str, Any, str | None]:
    """(type, body struct or None); Bad with a code and reason for anything else (and the message's `ref`,
    when it had a usable one, so the error can carry it)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise Bad("too_large", f"messages are limited to {MAX_MESSAGE_BYTES} bytes")
    try:
        data = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        raise Bad("bad_message", "the message is not valid JSON") from None
    if not isinstance(data, dict):
        raise Bad("bad_message", 'a message is a JSON object with "v" and "type"')
    ref = data.get("ref")
    if ref is not None and (not isinstance(ref, str) or len(ref) > MAX_REF):
        raise Bad("bad_message", f'"ref" is a string of at most {MAX_REF} characters')
    version = data.get("v")
    # Exactly the integer: in Python True == 1 and 1.0 == 1, and neither is protocol version 1.
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise Bad("unsupported_version", f'this server speaks "v": {PROTOCOL_VERSION}', ref)
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in bodies:
        raise Bad("unknown_type", f"unknown message type {str(kind)[:40]!r}; known: {', '.join(bodies)}", ref)
    body_type = bodies[kind]
    if body_type is None:
        return kind, None, ref
    fields = {k: v for k, v in data.items() if k not in ("v", "type", "id", "ref")}
    try:
        body = msgspec.convert(fields, body_type, strict=True)
    except msgspec.ValidationError as exc:
        raise Bad("bad_message", f"{kind}: {exc}", ref) from None
    for name in ("sdp", "candidate"):
        if len(getattr(body, name, "") or "") > MAX_SDP_BYTES:
            raise Bad("too_large", f"{name} is longer than {MAX_SDP_BYTES} bytes", ref)
    return kind, body, ref


class Session(LegSocket):
    """One agent's authenticated socket: the agent's claims and the legs it may signal for."""

    legs_outlive_socket = True

    def __init__(self, socket: WebSocket[Any, Any, Any], state: ApiState, claims: TokenClaims) -> None:
        super().__init__(socket, state)
        self.claims = claims
        self.owner = str(claims.agent_id)
        self.tenant_id = claims.tenant_id
        self.legs: set[uuid.UUID] = set()
        # Routing watches the agent through this socket (presence.py): its id names this socket, not the agent.
        self.session_id = str(new_id())
        # What this socket last told the agent: signed in to calls or not (see `signed_out`).
        self.signed_in = False

    @property
    def expires_at(self) -> float:
        return self.claims.expires_at

    async def desk(self, kind: str, body: Any) -> dict[str, object]:
        """The agent protocol's routing and contact commands; the reply's data goes into the ack."""
        tenant, agent = self.claims.tenant_id, self.claims.agent_id
        if kind == "login":
            # Routing signs an agent in available, or straight into away with a reason.
            away = None if body.state == "available" else (body.reason or "other")
            await self.command(
                ev.RoutingAgentLogin(
                    tenant_id=tenant, agent_id=agent, away_reason=away, session_id=self.session_id
                )
            )
            self.signed_in = True
            return {"state": body.state}
        if kind == "logout":
            return await self.command(ev.RoutingAgentLogout(tenant_id=tenant, agent_id=agent))
        if kind == "state":
            return await self.command(
                ev.RoutingSetState(tenant_id=tenant, agent_id=agent, state=body.state, reason=body.reason)
            )
        if kind == "dial":
            return await self.command(
                ev.DeskDial(
                    tenant_id=tenant, agent_id=agent, to=body.to, caller_id=body.caller_id, queue=body.queue
                )
            )
        # Every command about a contact goes to the coordinator, accept and reject included (it forwards
        # those to routing): one path, one place that knows the contact (docs/architecture.md).
        common = {"tenant_id": tenant, "agent_id": agent, "contact_id": body.contact_id}
        desk: ev.DeskCommand
        if kind in ("accept", "reject") and not body.offer_id.startswith(f"{body.contact_id}#"):
            raise Bad("not_found", "that offer is not for that contact")
        if kind == "accept":
            desk = ev.DeskAccept(**common, offer_id=body.offer_id)
        elif kind == "reject":
            desk = ev.DeskReject(**common, offer_id=body.offer_id, reason=body.reason)
        elif kind == "hold":
            desk = ev.DeskHold(**common, on=body.on)
        elif kind == "mute":
            desk = ev.DeskMute(**common, on=body.on)
        elif kind == "record_pause":
            desk = ev.DeskRecordPause(**common, on=body.on)
        elif kind == "dtmf":
            desk = ev.DeskDigits(**common, digits=body.digits)
        elif kind == "transfer":
            if body.flow is not None and (body.queue is not None or body.agent_id is not None):
                raise Bad("bad_message", "transfer: give a flow, or a queue or an agent_id, not both")
            if body.queue is None and body.agent_id is None and body.flow is None:
                raise Bad("bad_message", "transfer: give a queue, an agent_id or a flow")
            desk = ev.DeskTransfer(
                **common, queue=body.queue, to_agent_id=body.agent_id, note=body.note, flow=body.flow
            )
        elif kind == "consult":
            if body.queue is None and body.agent_id is None:
                raise Bad("bad_message", "consult: give a queue or an agent_id")
            desk = ev.DeskConsult(**common, queue=body.queue, to_agent_id=body.agent_id, note=body.note)
        elif kind == "consult_complete":
            desk = ev.DeskConsultComplete(**common)
        elif kind == "consult_cancel":
            desk = ev.DeskConsultCancel(**common)
        elif kind == "hangup":
            desk = ev.DeskHangup(**common)
        else:
            desk = ev.DeskWrapUp(**common, disposition=body.disposition, notes=body.notes)
        return await self.command(desk)

    async def handle(self, kind: str, body: Any, ref: str | None = None) -> None:
        if kind == "ping":
            await self.send("pong", **({"ref": ref} if ref else {}))
        elif kind == "auth":
            raise Bad("already_authenticated", "this session is already authenticated", ref)
        elif kind in DESK_TYPES:
            try:
                data = await self.desk(kind, body)
            except Bad as exc:
                if exc.code.endswith(("_unavailable", "_timeout")):
                    # The agent sees the error; the operator needs to see that a service did not answer.
                    get_logger().warning(
                        "desk_command_failed", agent_id=str(self.claims.agent_id), kind=kind, code=exc.code
                    )
                exc.ref = ref
                raise
            await self.send(
                "ack", ref=ref, **{k: v for k, v in data.items() if k not in ("v", "type", "ref")}
            )
        elif kind in LEG_TYPES:
            await self.leg_message(kind, body, ref)

    async def link(self) -> None:
        """Tell routing this socket is open and the client what it still has (a reconnect resumes)."""
        tenant, agent = self.claims.tenant_id, self.claims.agent_id
        self.state.presence.opened(tenant, agent, self.session_id, self.signed_out)
        lease_s = lease_for(self.state.settings.presence_beat_s)
        try:
            data = await self.command(
                ev.RoutingAgentLinked(
                    tenant_id=tenant, agent_id=agent, session_id=self.session_id, lease_s=lease_s
                )
            )
        except Bad as exc:
            get_logger().warning("agent_link_failed", agent_id=str(agent), code=exc.code)
            return
        self.signed_in = bool(data.get("logged_in"))
        await self.send("session", **data)

    async def signed_out(self) -> None:
        """Routing no longer has the agent signed in, but this socket told it it was (the `logged_out`
        event went by while this process was stopped or starved past the lease and the grace)."""
        if self.signed_in and not self.closed:
            self.signed_in = False
            get_logger().warning("agent_signed_out_unseen", agent_id=str(self.claims.agent_id))
            await self.send("agent_state", state="logged_out", reason="disconnected")

    async def unlink(self) -> None:
        tenant, agent = self.claims.tenant_id, self.claims.agent_id
        self.state.presence.closed(tenant, agent, self.session_id)
        try:
            await self.command(
                ev.RoutingAgentUnlinked(tenant_id=tenant, agent_id=agent, session_id=self.session_id)
            )
        except Bad as exc:  # the lease then runs out in routing instead
            get_logger().warning("agent_unlink_failed", agent_id=str(agent), code=exc.code)

    # Pushed events come decoded from Bus.listen on this tenant's subjects (payload tenant checked there).

    async def on_push(self, push: ev.DeskPush) -> None:
        if push.agent_id != str(self.claims.agent_id):
            # The socket subscribes to its agent's own subject: another agent's push here is a bug (it was
            # every push of the tenant, to every socket, before desk pushes were addressed).
            DESK_PUSHES.labels("not_ours").inc()
            return
        DESK_PUSHES.labels("sent").inc()
        await self.send(push.kind, **{k: v for k, v in push.body.items() if k not in ("v", "type")})

    async def on_sessions_ended(self, ended: ev.SessionsEnded) -> None:
        c = self.claims
        if (
            ended.agent_id == c.agent_id
            or (c.session_id is not None and c.session_id in ended.session_ids)
            or (c.key_id is not None and ended.key_id == c.key_id)
        ):
            why = ENDED_BECAUSE.get(ended.reason, ended.reason)
            await self.end("session_ended", f"the session has ended: {why}", cause=ended.reason)

    async def end(self, code: str, reason: str, *, cause: str | None = None) -> None:
        """Tell the agent why, then close (4401): the desktop signs in again rather than reconnecting."""
        await self.send("error", code=code, reason=reason, **({"cause": cause} if cause else {}))
        self.closed = True
        try:
            await self.socket.close(code=CLOSE_UNAUTHORIZED, reason=code)
        except Exception:
            pass

    async def on_agent_state(self, change: ev.AgentStateChanged) -> None:
        if change.agent_id != str(self.claims.agent_id):
            return
        self.signed_in = change.new != "logged_out"
        await self.send("agent_state", state=change.new, previous=change.old, reason=change.reason)


# Module level: the kernel registry is per process and refuses a metric registered twice.
DESK_PUSHES = metrics.counter(
    "api_desk_pushes_total", "Desk pushes this process received, by socket outcome", ("outcome",)
)

DESK_TYPES = frozenset(
    (
        "login",
        "logout",
        "state",
        "accept",
        "reject",
        "hold",
        "mute",
        "record_pause",
        "dtmf",
        "transfer",
        "consult",
        "consult_complete",
        "consult_cancel",
        "hangup",
        "wrap_up",
        "dial",
    )
)


async def _authenticate(
    socket: WebSocket[Any, Any, Any], state: ApiState
) -> TokenClaims | WidgetClaims | ConsoleClaims:
    token = socket.query_params.get("token")
    if not token:
        raw = await asyncio.wait_for(socket.receive_data("text"), AUTH_TIMEOUT_S)
        kind, body, _ = parse_message(raw)
        if kind != "auth":
            raise TokenError(
                TokenErrorCode.INVALID, 'authenticate first: {"v": 1, "type": "auth", "token": "..."}'
            )
        token = body.token
    secret, now = state.settings.token_secret, time.time()
    if token_audience(token) == WIDGET_AUDIENCE:
        widget = verify_widget_token(secret, token, now=now)
        # A revoked key stops new calls at once, even with a token issued before.
        async with tenant_tx(state.db(), widget.tenant_id, readonly=True) as conn:
            if (
                await conn.fetchval(
                    "SELECT 1 FROM widget_keys WHERE id = $1 AND revoked_at IS NULL", widget.widget_key_id
                )
                is None
            ):
                raise TokenError(TokenErrorCode.INVALID, "the token's widget key has been revoked")
        return widget
    if token_audience(token) == CONSOLE_AUDIENCE:
        console = verify_console_token(secret, token, now=now)
        async with tenant_tx(state.db(), console.tenant_id, readonly=True) as conn:
            why, until = await console_live(conn, console)
        if why is not None:
            raise TokenError(TokenErrorCode.INVALID, why)
        return dataclasses.replace(console, expires_at=until)
    claims = verify_token(secret, token, now=now)
    # The agent must exist now, and the token's browser session (or the key that issued it) must be live;
    # a session's socket then lasts as long as the session, not as long as this short access token.
    async with tenant_tx(state.db(), claims.tenant_id, readonly=True) as conn:
        why, until = await session_live(conn, claims)
    if why is not None:
        raise TokenError(TokenErrorCode.INVALID, why)
    return dataclasses.replace(claims, expires_at=until)


@dataclasses.dataclass
class _Subscribed:
    """What a socket is pushed through: its own listener for the kinds addressed to it (desk pushes), and
    its place in the process's fan-out (fanout.py) for the rest."""

    addressed: Listener | None = None
    shared: Member | None = None

    async def stop(self, fanout: Fanout) -> None:
        if self.addressed is not None:
            await self.addressed.stop()  # bounded
        if self.shared is not None:
            await fanout.leave(self.shared)


async def _open(session: Session | WidgetCaller | ConsoleSocket) -> _Subscribed:
    """Subscribe the session to what it is pushed (its tenant's events only), and greet it."""
    state, tenant = session.state, session.claims.tenant_id
    pushes: dict[type[Any], Callable[[Any], Awaitable[None]]]
    if isinstance(session, WidgetCaller):
        pushes = {
            WebRtcSignal: session.on_signal,
            ev.ContactQueued: session.on_position,
            ev.ContactPositionChanged: session.on_position,
            ev.ContactStateChanged: session.on_contact,
        }
        owner = session.owner
        greeting: dict[str, Any] = {
            "caller": owner,
            "tenant_id": str(tenant),
            "queue_id": str(session.claims.queues[0]),
        }
    elif isinstance(session, ConsoleSocket):
        pushes = {WebRtcSignal: session.on_signal, ev.SessionsEnded: session.on_sessions_ended}
        owner = session.owner
        greeting = {
            "account_id": str(session.claims.account_id),
            "tenant_id": str(tenant),
            "role": session.claims.role,
        }
    else:
        pushes = {
            WebRtcSignal: session.on_signal,
            ev.DeskPush: session.on_push,
            ev.AgentStateChanged: session.on_agent_state,
            ev.SessionsEnded: session.on_sessions_ended,
        }
        owner = str(session.claims.agent_id)
        greeting = {"agent_id": owner, "tenant_id": str(tenant)}
    subscribed = _Subscribed()
    if state.bus is not None:
        addressed = {kind: handler for kind, handler in pushes.items() if kind.addressed}
        shared = {kind: handler for kind, handler in pushes.items() if not kind.addressed}

        async def push(event: Any) -> None:
            await addressed[type(event)](event)

        # Addressed kinds (desk pushes) come on the owner's own subject: this process receives only those
        # of the sockets it holds, not every push of the tenant. The rest once per process (fanout.py).
        if addressed:
            subscribed.addressed = await state.bus.listen(addressed, push, tenant_id=tenant, addressee=owner)
        subscribed.shared = await state.fanout.join(state.bus, tenant, owner, shared)
    await session.send(
        "ready",
        **greeting,
        expires_at=session.claims.expires_at,
        ice_servers=ice_servers(state.settings, owner, time.time()),
    )
    return subscribed


@websocket("/v1/ws")
async def signalling_socket(socket: WebSocket[Any, Any, Any]) -> None:
    state: ApiState = socket.app.state.api
    log = get_logger()
    await socket.accept()
    try:
        claims = await _authenticate(socket, state)
    except (TokenError, Bad, TimeoutError, WebSocketDisconnect) as exc:
        if isinstance(exc, TokenError):
            code, reason = exc.code.value, exc.reason
        elif isinstance(exc, Bad):
            code, reason = exc.code, exc.reason
        elif isinstance(exc, TimeoutError):
            code, reason = "token_invalid", f"no token within {AUTH_TIMEOUT_S:.0f} s"
        else:
            return
        try:
            await socket.send_json({"v": PROTOCOL_VERSION, "type": "error", "code": code, "reason": reason})
            await socket.close(code=CLOSE_UNAUTHORIZED, reason=code)
        except Exception:
            pass
        return

    session: Session | WidgetCaller | ConsoleSocket
    if isinstance(claims, WidgetClaims):
        session = WidgetCaller(socket, state, claims)
    elif isinstance(claims, ConsoleClaims):
        session = ConsoleSocket(socket, state, claims)
    else:
        session = Session(socket, state, claims)
    subscribed = await _open(session)
    expiry: asyncio.TimerHandle | None = None
    if isinstance(session, Session | ConsoleSocket):
        # An idle socket ends with its session (or its token, for `agents token`): never an agent shown
        # available and offered a contact it can no longer act on.
        person = session
        expiry = asyncio.get_running_loop().call_later(
            max(0.0, session.expires_at - time.time()),
            lambda: asyncio.ensure_future(
                person.end("token_expired", "the session has ended: sign in again")
            ),
        )
        if isinstance(session, Session):
            await session.link()
    try:
        while not session.closed:
            try:
                raw = await socket.receive_data("text")
            except WebSocketDisconnect:
                break
            ref = None
            try:
                kind, body, ref = parse_message(raw, _bodies_for(session))
                if time.time() >= session.expires_at:
                    raise SessionExpired("the token has expired: reconnect with a new one")
                await session.handle(kind, body, ref)
            except Bad as exc:
                await session.error(exc.code, exc.reason, exc.ref or ref)
            except SessionExpired as exc:
                await session.error("token_expired", str(exc))
                await socket.close(code=CLOSE_UNAUTHORIZED, reason="token_expired")
                break
            except Exception as exc:  # never let one message's failure end the session with a 1011
                log.warning("signalling_error", error=f"{type(exc).__name__}: {exc}")
                await session.error("internal", "the message could not be handled")
    finally:
        session.closed = True
        if expiry is not None:
            expiry.cancel()
        if isinstance(session, WidgetCaller):
            await session.hang_up_if_calling()
        elif isinstance(session, ConsoleSocket):
            await session.hang_up_legs()
        else:
            await session.unlink()
        await subscribed.stop(state.fanout)
