"""The browsers' signalling websocket, `/v1/ws`: WebRTC offer/answer/ICE between an agent's browser and the
media worker that holds its leg, over NATS request/reply, plus server events pushed to the agent.

Authentication: an agent token (tokens.py) as the `token` query parameter or in the first message
({"v": 1, "type": "auth", "token": "..."}, within AUTH_TIMEOUT_S). Every message is a JSON object with
"v": 1 and a "type". Client -> server: auth, offer {sdp, call_id?}, answer {leg_id, sdp},
ice {leg_id, candidate, sdp_mid?, sdp_mline_index?}, ping. Server -> client: ready, answer {leg_id, sdp},
offer {leg_id, sdp, call_id} (a call for the agent), state {leg_id, state}, ended {leg_id}, pong, and
errors {"type": "error", "code", "reason"}. A bad message gets an error frame and the session goes on; only
authentication failures and an expired token close it (code 4401). One session's errors never touch another.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from nats.aio.msg import Msg

from services.kernel.bus import Bus, BusError, CommandTimeout
from services.kernel.db import tenant_tx
from services.kernel.events import MediaWebRtcAnswer, MediaWebRtcIce, MediaWebRtcOffer, WebRtcSignal
from services.kernel.ids import new_id
from services.kernel.log import get_logger
from services.kernel.messages import Command, decode
from services.kernel.subjects import evt_subject

from .state import ApiState
from .tokens import TokenClaims, TokenError, TokenErrorCode, verify_token

__all__ = ["AUTH_TIMEOUT_S", "MAX_MESSAGE_BYTES", "PROTOCOL_VERSION", "signalling_socket"]

PROTOCOL_VERSION = 1
AUTH_TIMEOUT_S = 10.0
MEDIA_TIMEOUT_S = 5.0
MAX_MESSAGE_BYTES = 64 * 1024
MAX_SDP_BYTES = 32 * 1024
CLOSE_UNAUTHORIZED = 4401


class _Bad(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class SessionExpired(Exception):
    """The token expired during the session: the session closes (the browser reconnects with a new one)."""


class Auth(msgspec.Struct, kw_only=True):
    token: str


class Offer(msgspec.Struct, kw_only=True):
    sdp: str
    call_id: uuid.UUID | None = None


class Answer(msgspec.Struct, kw_only=True):
    leg_id: uuid.UUID
    sdp: str


class Ice(msgspec.Struct, kw_only=True):
    leg_id: uuid.UUID
    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


_BODIES: dict[str, type[msgspec.Struct] | None] = {
    "auth": Auth,
    "offer": Offer,
    "answer": Answer,
    "ice": Ice,
    "ping": None,
}


def parse_message(raw: str | bytes) -> tuple[str, Any]:
    """(type, body struct or None); _Bad with a code and reason for anything else."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise _Bad("too_large", f"messages are limited to {MAX_MESSAGE_BYTES} bytes")
    try:
        data = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        raise _Bad("bad_message", "the message is not valid JSON") from None
    if not isinstance(data, dict):
        raise _Bad("bad_message", 'a message is a JSON object with "v" and "type"')
    if data.get("v") != PROTOCOL_VERSION:
        raise _Bad("unsupported_version", f'this server speaks "v": {PROTOCOL_VERSION}')
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _BODIES:
        raise _Bad("unknown_type", f"unknown message type {str(kind)[:40]!r}; known: {', '.join(_BODIES)}")
    body_type = _BODIES[kind]
    if body_type is None:
        return kind, None
    fields = {k: v for k, v in data.items() if k not in ("v", "type", "id")}
    try:
        body = msgspec.convert(fields, body_type, strict=True)
    except msgspec.ValidationError as exc:
        raise _Bad("bad_message", f"{kind}: {exc}") from None
    for name in ("sdp", "candidate"):
        if len(getattr(body, name, "") or "") > MAX_SDP_BYTES:
            raise _Bad("too_large", f"{name} is longer than {MAX_SDP_BYTES} bytes")
    return kind, body


class Session:
    """One authenticated socket: the agent's claims, the legs it may signal for, and a send lock (the
    receive loop and NATS callbacks both write)."""

    def __init__(self, socket: WebSocket[Any, Any, Any], state: ApiState, claims: TokenClaims) -> None:
        self.socket = socket
        self.state = state
        self.claims = claims
        self.legs: set[uuid.UUID] = set()
        self._lock = asyncio.Lock()
        self.closed = False

    async def send(self, kind: str, **fields: Any) -> None:
        if self.closed:
            return
        message = {"v": PROTOCOL_VERSION, "type": kind, **fields}
        async with self._lock:
            try:
                await self.socket.send_text(msgspec.json.encode(message).decode())
            except Exception:
                self.closed = True  # the peer went away; the receive loop ends the session

    async def error(self, code: str, reason: str) -> None:
        await self.send("error", code=code, reason=reason)

    @property
    def bus(self) -> Bus:
        if self.state.bus is None:
            raise _Bad("media_unavailable", "the platform's message bus is not connected")
        return self.state.bus

    async def command(self, command: Command) -> dict[str, object]:
        try:
            reply = await self.bus.request(command, timeout=MEDIA_TIMEOUT_S)
        except CommandTimeout:
            raise _Bad("media_timeout", "the media service did not answer in time") from None
        except BusError:
            raise _Bad("media_unavailable", "no media service is available") from None
        if not reply.ok:
            raise _Bad(reply.code or "media_error", reply.error or "the media service refused it")
        return reply.data

    async def handle(self, kind: str, body: Any) -> None:
        if time.time() >= self.claims.expires_at:
            raise SessionExpired("the token has expired: reconnect with a new one")
        tenant, agent = self.claims.tenant_id, str(self.claims.agent_id)
        if kind == "ping":
            await self.send("pong")
        elif kind == "auth":
            raise _Bad("already_authenticated", "this session is already authenticated")
        elif kind == "offer":
            leg_id = new_id()
            self.legs.add(leg_id)
            data = await self.command(
                MediaWebRtcOffer(
                    tenant_id=tenant, leg_id=leg_id, agent_id=agent, sdp=body.sdp, call_id=body.call_id
                )
            )
            sdp = data.get("sdp")
            if not isinstance(sdp, str):
                raise _Bad("media_error", "the media service answered without an SDP answer")
            await self.send("answer", leg_id=str(leg_id), sdp=sdp)
        elif kind in ("answer", "ice"):
            if body.leg_id not in self.legs:
                raise _Bad("unknown_leg", "this session has no leg with that id")
            if kind == "answer":
                await self.command(
                    MediaWebRtcAnswer(tenant_id=tenant, leg_id=body.leg_id, agent_id=agent, sdp=body.sdp)
                )
            else:
                await self.command(
                    MediaWebRtcIce(
                        tenant_id=tenant,
                        leg_id=body.leg_id,
                        agent_id=agent,
                        candidate=body.candidate,
                        sdp_mid=body.sdp_mid,
                        sdp_mline_index=body.sdp_mline_index,
                    )
                )

    async def on_signal(self, msg: Msg) -> None:
        try:
            signal = decode(msg.data, WebRtcSignal)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if signal.agent_id != str(self.claims.agent_id) or signal.tenant_id != self.claims.tenant_id:
            return
        if signal.kind == "offer":
            self.legs.add(signal.leg_id)
        fields: dict[str, Any] = {"leg_id": str(signal.leg_id)}
        if signal.sdp is not None:
            fields["sdp"] = signal.sdp
        if signal.state is not None:
            fields["state"] = signal.state
        if signal.call_id is not None:
            fields["call_id"] = str(signal.call_id)
        await self.send(signal.kind, **fields)


async def _authenticate(socket: WebSocket[Any, Any, Any], state: ApiState) -> TokenClaims:
    token = socket.query_params.get("token")
    if not token:
        raw = await asyncio.wait_for(socket.receive_data("text"), AUTH_TIMEOUT_S)
        kind, body = parse_message(raw)
        if kind != "auth":
            raise TokenError(
                TokenErrorCode.INVALID, 'authenticate first: {"v": 1, "type": "auth", "token": "..."}'
            )
        token = body.token
    claims = verify_token(state.settings.token_secret, token, now=time.time())
    # The agent must exist in the token's tenant now (deleted agents lose their sessions' right to connect).
    async with tenant_tx(state.db(), claims.tenant_id, readonly=True) as conn:
        if await conn.fetchval("SELECT 1 FROM agents WHERE id = $1", claims.agent_id) is None:
            raise TokenError(TokenErrorCode.INVALID, "the token's agent does not exist in its tenant")
    return claims


@websocket("/v1/ws")
async def signalling_socket(socket: WebSocket[Any, Any, Any]) -> None:
    state: ApiState = socket.app.state.api
    log = get_logger()
    await socket.accept()
    try:
        claims = await _authenticate(socket, state)
    except (TokenError, _Bad, TimeoutError, WebSocketDisconnect) as exc:
        if isinstance(exc, TokenError):
            code, reason = exc.code.value, exc.reason
        elif isinstance(exc, _Bad):
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

    session = Session(socket, state, claims)
    subscription = None
    if state.bus is not None:
        subject = evt_subject(claims.tenant_id, WebRtcSignal.domain, WebRtcSignal.name)
        subscription = await state.bus.nc.subscribe(subject, cb=session.on_signal)
    await session.send(
        "ready", agent_id=str(claims.agent_id), tenant_id=str(claims.tenant_id), expires_at=claims.expires_at
    )
    try:
        while not session.closed:
            try:
                raw = await socket.receive_data("text")
            except WebSocketDisconnect:
                break
            try:
                kind, body = parse_message(raw)
                await session.handle(kind, body)
            except _Bad as exc:
                await session.error(exc.code, exc.reason)
            except SessionExpired as exc:
                await session.error("token_expired", str(exc))
                await socket.close(code=CLOSE_UNAUTHORIZED, reason="token_expired")
                break
            except Exception as exc:  # never let one message's failure end the session with a 1011
                log.warning("signalling_error", error=f"{type(exc).__name__}: {exc}")
                await session.error("internal", "the message could not be handled")
    finally:
        session.closed = True
        if subscription is not None:
            try:
                await subscription.unsubscribe()
            except Exception:
                pass
