"""`AgentSession`: a headless agent on the agent protocol (docs/agent-protocol.md), for tests, load checks and
synthetic monitoring; `switchboard agent connect` is built on it.

    async with AgentSession("http://127.0.0.1:8080", token, auto_answer=True, play="hello.wav",
                            record="calls/{contact_id}.wav") as agent:
        await agent.login(state="available")
        async for event in agent:
            if isinstance(event, ContactEnded):
                await agent.wrap_up(event.contact_id, "resolved")

Commands are correlated with their `ack`/`error` by `ref` and wait at most `request_timeout`. With audio on
(the default), every `contact_offer` gets its WebRTC leg while it rings (`offer` with `call_id` = the
contact), as the protocol asks; the leg plays `play` to the caller and records what the agent hears to
`record` from `contact_connected` to the end of the contact. `auto_answer` accepts an offer once its leg is
connected (and rejects it, reason `no_audio`, if the leg does not connect within 10 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ipaddress
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload
from urllib.parse import urlsplit

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .agent_events import (
    PROTOCOL_VERSION,
    Ack,
    AgentEvent,
    AgentState,
    Answered,
    ContactConnected,
    ContactEnded,
    ContactOffer,
    ContactWithdrawn,
    Disconnected,
    ErrorMessage,
    LegAnswer,
    LegEnded,
    Pong,
    Ready,
    Reconnected,
    Recorded,
    Session,
    decode_event,
)
from .errors import ConnectionError, SwitchboardError

if TYPE_CHECKING:  # aiortc and PyAV load only when a leg is made: `import switchboard` stays light
    from ._agent_audio import AgentLeg

__all__ = [
    "AgentAuthError",
    "AgentClosedError",
    "AgentCommandError",
    "AgentError",
    "AgentSession",
    "AgentTimeoutError",
    "TokenSource",
]

TokenSource = str | Callable[[], str | Awaitable[str]]

DEFAULT_REQUEST_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 10.0
# A token lasts 10 minutes; with a token source the session reconnects this long before it expires.
REFRESH_MARGIN_S = 60.0
CLOSE_UNAUTHORIZED = 4401
# Waits between reconnection attempts after the socket drops (then the last one, until it is back).
RECONNECT_BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0)


class AgentError(SwitchboardError):
    """Base of the agent session's errors."""


class AgentCommandError(AgentError):
    """The server answered a command with `error {code, reason}`."""

    def __init__(self, command: str, code: str, reason: str) -> None:
        super().__init__(f"{command} refused: {code}: {reason}")
        self.command = command
        self.code = code
        self.reason = reason


class AgentAuthError(AgentError):
    """The token was refused (`token_invalid`, `token_expired`): the server closed the socket (4401)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class AgentTimeoutError(AgentError):
    """No `ack` or `error` arrived for a command in time."""

    def __init__(self, command: str, timeout: float) -> None:
        super().__init__(f"no answer to {command} within {timeout:g} s")
        self.command = command
        self.timeout = timeout


class AgentClosedError(AgentError):
    """The socket closed while a command waited (or before it was sent)."""


def websocket_url(base_url: str) -> str:
    parts = urlsplit(base_url.rstrip("/"))
    if parts.scheme not in ("http", "https", "ws", "wss"):
        raise ValueError(f"the API URL {base_url!r} must start with http:// or https://")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}{parts.path}/v1/ws"


def is_loopback_host(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_CLOSED = object()


class AgentSession:
    """One agent's session on `/v1/ws`. Use as `async with`; iterate it for events (typed Structs from
    `switchboard.agent_events`). See the module doc and docs/sdk.md.

    token: the agent token, or a callable (sync or async) returning a fresh one; with a callable the session
    reconnects with a new token `refresh_margin` seconds before the current one expires.
    host_addresses: the ICE host-candidate addresses for the legs. None (default): 127.0.0.1 when the API is
    on a loopback address (aioice leaves loopback out, so a local run would gather nothing), otherwise
    aioice's own discovery. The patch is process-wide (aioice has no per-connection setting).
    """

    def __init__(
        self,
        base_url: str,
        token: TokenSource,
        *,
        auto_answer: bool = False,
        audio: bool = True,
        play: str | Path | None = None,
        play_loop: bool = False,
        record: str | Path | None = None,
        host_addresses: Sequence[str] | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
        refresh_margin: float = REFRESH_MARGIN_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = websocket_url(self.base_url)
        self._token_source = token
        self.auto_answer = auto_answer
        self.audio = audio
        self.play = Path(play) if play is not None else None
        if self.play is not None and not self.play.is_file():
            raise ValueError(f"no audio file at {self.play}")
        self.play_loop = play_loop
        self.record = str(record) if record is not None else None
        self.host_addresses = host_addresses
        self.request_timeout = request_timeout
        self.refresh_margin = refresh_margin
        self.ready: Ready | None = None
        self.state: str | None = None  # the last presence the server reported or acknowledged
        self.signed_in = False
        self.close_code: int | None = None
        self.close_reason: str = ""
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._pending: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        # Events to put in the stream the moment a command's ack is read (before anything read after it).
        self._on_ack: dict[str, AgentEvent] = {}
        self._refs = itertools.count(1)
        self._offers: dict[str, ContactOffer] = {}  # contact id -> its current offer
        self._legs: dict[str, AgentLeg] = {}  # contact id -> its leg
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.reconnects = 0  # times the socket came back after dropping
        self.reconnect = True  # after a drop, reconnect with back-off (audio goes on) instead of closing

    # connection ------------------------------------------------------------------------------------------

    async def __aenter__(self) -> AgentSession:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _token(self) -> str:
        source = self._token_source
        if isinstance(source, str):
            return source
        value = source()
        if inspect.isawaitable(value):
            value = await value
        return str(value)

    async def _open(self) -> tuple[ClientConnection, Ready]:
        """A new authenticated socket: the token goes in the first message, not the URL (URLs are logged)."""
        token = await self._token()
        try:
            ws = await connect(self.url, open_timeout=READY_TIMEOUT_S, max_size=1 << 20)
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise ConnectionError(self.base_url, f"{type(exc).__name__}: {exc}") from exc
        try:
            await ws.send(
                msgspec.json.encode({"v": PROTOCOL_VERSION, "type": "auth", "token": token}).decode()
            )
            raw = await asyncio.wait_for(ws.recv(), READY_TIMEOUT_S)
        except ConnectionClosed as exc:
            await ws.close()
            raise AgentAuthError("closed", f"the server closed the socket ({exc})") from None
        except TimeoutError:
            await ws.close()
            raise AgentError(f"no `ready` within {READY_TIMEOUT_S:g} s") from None
        first = decode_event(raw)
        if isinstance(first, ErrorMessage):
            await ws.close()
            raise AgentAuthError(first.code, first.reason)
        if not isinstance(first, Ready):
            await ws.close()
            raise AgentError(f"expected `ready`, the server sent {raw[:200]!r}")
        return ws, first

    async def connect(self) -> Ready:
        if self.host_addresses is not None or is_loopback_host(self.base_url):
            self._set_host_addresses(list(self.host_addresses or ["127.0.0.1"]))
        self._ws, self.ready = await self._open()
        self._reader = asyncio.create_task(self._read(self._ws))
        if not isinstance(self._token_source, str):
            self._refresher = asyncio.create_task(self._refresh())
        return self.ready

    @staticmethod
    def _set_host_addresses(addresses: list[str]) -> None:
        if not addresses:
            return
        # Version-checked against aioice, which only the `agent` extra installs: imported on first use.
        from .ice_hosts import set_host_addresses

        set_host_addresses(addresses)

    async def _refresh(self) -> None:
        """Reconnect with a fresh token before the current one expires: the new socket is open and ready
        before the old one closes, so the server never sees the agent without a connection."""
        while not self._closing and self.ready is not None:
            delay = self.ready.expires_at - time.time() - self.refresh_margin
            await asyncio.sleep(max(delay, 1.0))
            if self._closing:
                return
            try:
                ws, ready = await self._open()
            except SwitchboardError as exc:
                self._put(ErrorMessage(code="token_refresh_failed", reason=str(exc)))
                await asyncio.sleep(5.0)
                continue
            old, old_reader = self._ws, self._reader
            self._ws, self.ready = ws, ready
            self._reader = asyncio.create_task(self._read(ws))
            self._put(ready)  # the stream tells of the renewal (a new `expires_at`)
            # Commands already sent on the old socket get their answers there: let it read them first.
            for _ in range(40):
                if not self._pending:
                    break
                await asyncio.sleep(0.05)
            if old_reader is not None:
                old_reader.cancel()
            if old is not None:
                with contextlib.suppress(Exception):
                    await old.close()

    async def close(self) -> None:
        """Sign out if signed in and no contact is connected (best effort), end every leg, close the socket.
        Recordings are completed; their `recorded` events are still delivered to a running iterator."""
        if self._closing:
            return
        if self.signed_in and self._ws is not None and not self._legs:
            with contextlib.suppress(SwitchboardError):
                await self.logout(timeout=3.0)
        self._closing = True
        for contact_id in list(self._legs):
            await self._end_leg(contact_id)
        # close() may itself run as one of the session's tasks (after the server closed the socket).
        others = [task for task in self._tasks if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 3)
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self._fail_pending(AgentClosedError("the session is closed"))
        self._events.put_nowait(_CLOSED)

    # events ----------------------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[AgentEvent]:
        return self.events()

    async def events(self) -> AsyncIterator[AgentEvent]:
        """Every event until the session closes (acks are not events: they answer the commands). Cancelling a
        pending `anext()` of this generator ends it (Python closes a generator an exception ran through): to
        wait with a timeout or next to something else, use `next_event()`."""
        while True:
            try:
                yield await self.next_event()
            except AgentClosedError:
                return

    @overload
    async def next_event(self, timeout: None = None) -> AgentEvent: ...
    @overload
    async def next_event(self, timeout: float | None) -> AgentEvent | None: ...
    async def next_event(self, timeout: float | None = None) -> AgentEvent | None:
        """The next event; None if none came within `timeout` seconds; AgentClosedError once the session is
        closed and every event was taken. Safe to cancel."""
        try:
            item = await asyncio.wait_for(self._events.get(), timeout)
        except TimeoutError:
            return None
        if item is _CLOSED:
            self._events.put_nowait(_CLOSED)  # every later call and other readers see the end too
            raise AgentClosedError(f"the session is closed ({self.close_code} {self.close_reason})".strip())
        event: AgentEvent = item
        return event

    def _put(self, event: AgentEvent) -> None:
        self._events.put_nowait(event)

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                try:
                    event = decode_event(raw)
                except msgspec.DecodeError:
                    continue  # not JSON: nothing to do with it
                try:
                    keep = self._handle(event)
                except Exception as exc:  # one message's trouble must not end the session's reading
                    self._put(ErrorMessage(code="client_error", reason=f"{type(exc).__name__}: {exc}"))
                    continue
                if keep:
                    self._put(event)
        except ConnectionClosed:
            pass
        if ws is not self._ws or self._closing:
            return  # replaced by a refreshed socket, or closing on purpose
        self.close_code = ws.close_code
        self.close_reason = ws.close_reason or ""
        self._fail_pending(AgentClosedError(f"the socket closed ({self.close_code} {self.close_reason})"))
        if self.reconnect and self.close_code != CLOSE_UNAUTHORIZED:
            self._put(Disconnected(code=self.close_code, reason=self.close_reason))
            self._spawn(self._reconnect(ws))
        else:
            self._spawn(self.close())

    async def _reconnect(self, dropped: ClientConnection) -> None:
        """The socket dropped (network, API restart): the legs are not touched (the audio never went
        through the socket); open a new socket with back-off and let routing resume the agent (within the
        tenant's grace) or, past it, sign in again as before."""
        started, attempts = time.monotonic(), 0
        while not self._closing:
            delay = RECONNECT_BACKOFF_S[min(attempts, len(RECONNECT_BACKOFF_S) - 1)]
            await asyncio.sleep(delay)
            attempts += 1
            try:
                ws, ready = await self._open()
            except AgentAuthError as exc:
                self._put(ErrorMessage(code=exc.code, reason=f"reconnect refused: {exc.reason}"))
                break
            except SwitchboardError:
                continue
            if self._ws is not dropped or self._closing:  # a token refresh got there first, or closing
                with contextlib.suppress(Exception):
                    await ws.close()
                return
            self._ws, self.ready = ws, ready
            self._reader = asyncio.create_task(self._read(ws))
            self.reconnects += 1
            self._put(Reconnected(seconds=round(time.monotonic() - started, 3), attempts=attempts))
            return
        await self.close()

    def _on_session(self, event: Session) -> None:
        """After `ready`: signed out meanwhile (gone longer than the grace) -> sign in again as before."""
        if self.reconnects:
            # Contacts that ended while the socket was down: their `contact_ended` was never received.
            live = {c.contact_id for c in event.contacts if c.phase in ("offered", "connected")}
            for contact_id in [c for c in self._legs if c not in live]:
                self._offers.pop(contact_id, None)
                self._spawn(self._end_leg(contact_id))
        if event.logged_in:
            self.signed_in = True
            self.state = event.state or self.state
            return
        if self.signed_in and self.reconnects:
            # Gone longer than the grace: say so (the `logged_out` push went by while the socket was down),
            # then sign in again as before.
            state = self.state if self.state in ("available", "away") else "available"
            self._put(AgentState(state="logged_out", reason="disconnected"))
            self._spawn(self._sign_in_again(state))

    async def _sign_in_again(self, state: str) -> None:
        try:
            await self.login(state=state)
        except AgentError as exc:
            self.signed_in = False
            self._put(ErrorMessage(code="relogin_failed", reason=str(exc)))

    def _fail_pending(self, error: Exception) -> None:
        for _, future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    def _handle(self, event: AgentEvent) -> bool:
        """Bookkeeping for one server message; False when it only answered a command."""
        if isinstance(event, Ack):
            self._resolve(event.ref, event.data)
            return False
        if isinstance(event, ErrorMessage) and event.ref is not None and event.ref in self._pending:
            command, future = self._pending.pop(event.ref)
            if not future.done():
                future.set_exception(AgentCommandError(command, event.code, event.reason))
            return False
        if isinstance(event, Pong) and event.ref is not None and event.ref in self._pending:
            self._resolve(event.ref, {})
            return False
        if isinstance(event, LegAnswer):
            ref = event.ref if event.ref in self._pending else self._oldest_pending("offer")
            if ref is not None:
                self._resolve(ref, {"leg_id": event.leg_id, "sdp": event.sdp})
                return False
        if isinstance(event, ContactOffer):
            current = self._offers.get(event.contact_id)
            if current is not None and current.offer_id == event.offer_id:
                return False  # the same push on the old and the new socket while the token is refreshed
            self._offers[event.contact_id] = event
            # A phone agent's audio is its phone (its pick-up answers); otherwise the leg is made while it
            # rings: by auto-answer, or whenever audio is on.
            if event.audio != "phone" and (self.auto_answer or self.audio or event.outbound):
                self._spawn(self._ring(event))
        elif isinstance(event, ContactWithdrawn):
            self._offers.pop(event.contact_id, None)
            self._spawn(self._end_leg(event.contact_id))
        elif isinstance(event, ContactConnected):
            self._offers.pop(event.contact_id, None)
            leg = self._legs.get(event.contact_id)
            if leg is not None:
                leg.start()
        elif isinstance(event, ContactEnded):
            self._offers.pop(event.contact_id, None)
            self._spawn(self._end_leg(event.contact_id))
        elif isinstance(event, LegEnded):
            for contact_id, leg in list(self._legs.items()):
                if leg.leg_id == event.leg_id:
                    self._spawn(self._end_leg(contact_id))
        elif isinstance(event, AgentState):
            self.state = event.state
            self.signed_in = event.state not in ("offline", "logged_out")
        elif isinstance(event, Session):
            self._on_session(event)
        return True

    def _resolve(self, ref: str, data: dict[str, Any]) -> None:
        follow = self._on_ack.pop(ref, None)
        if follow is not None:
            self._put(follow)
        entry = self._pending.pop(ref, None)
        if entry is not None and not entry[1].done():
            entry[1].set_result(data)

    def _oldest_pending(self, command: str) -> str | None:
        # Servers that answer an offer without echoing its ref: offers are answered in order.
        return next((ref for ref, (kind, _) in self._pending.items() if kind == command), None)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # audio -----------------------------------------------------------------------------------------------

    async def _ring(self, offer: ContactOffer) -> None:
        """The offer rings: make its leg now (audio is then ready on accept) and, with auto_answer, take it
        once the leg is connected."""
        contact_id = offer.contact_id
        leg: AgentLeg | None = None
        accepting = False
        try:
            if self.audio and offer.audio == "webrtc" and contact_id not in self._legs:
                from ._agent_audio import AgentLeg

                ice = self.ready.ice_servers if self.ready is not None else []
                leg = AgentLeg(contact_id, ice, play=self.play, play_loop=self.play_loop, record=self.record)
                self._legs[contact_id] = leg
                # The offer's call_id: the call the leg joins (a consultation's: the caller's call); absent: the
                # contact's own; null: an agent-first callback, whose customer is dialled after the accept.
                call_id = contact_id if offer.call_id is msgspec.UNSET else offer.call_id
                answer = await self.request(
                    "offer",
                    sdp=await leg.create_offer(),
                    call_id=call_id or None,
                    contact_id=None if call_id else contact_id,
                )
                if self._legs.get(contact_id) is not leg:
                    return  # withdrawn while the answer was on its way (a slow set-up): the leg is closed
                await leg.accept_answer(str(answer["leg_id"]), str(answer["sdp"]))
            if not self.auto_answer and not offer.outbound:
                return
            if leg is not None and not await leg.wait_connected():
                if self._offers.get(contact_id) is offer:
                    await self.reject(contact_id, offer.offer_id, reason="no_audio")
                return
            if self._offers.get(contact_id) is offer:  # not withdrawn meanwhile
                answered = Answered(contact_id=contact_id, offer_id=offer.offer_id)
                accepting = True
                await self.request("accept", contact_id=contact_id, offer_id=offer.offer_id, _then=answered)
        except AgentError as exc:
            code = exc.code if isinstance(exc, AgentCommandError) else type(exc).__name__
            self._put(ErrorMessage(code=code, reason=f"contact {contact_id}: {exc}"))
            # Whatever became of the accept (refused, its reply lost with a dropped socket or late), the
            # contact may be connected on this leg: its ack comes after the bridge, so a socket dropping
            # meanwhile must not end the audio. `contact_ended`/`contact_withdrawn`, or the `session` after a
            # reconnect, end the leg when the contact is not ours.
            if leg is not None and not accepting:
                await self._end_leg(contact_id)

    async def _end_leg(self, contact_id: str) -> None:
        leg = self._legs.pop(contact_id, None)
        if leg is None:
            return
        recorder = await leg.close()
        if recorder is not None:
            self._put(
                Recorded(
                    contact_id=contact_id,
                    path=str(recorder.path),
                    seconds=recorder.seconds,
                    rate=recorder.rate,
                )
            )

    def leg(self, contact_id: str) -> AgentLeg | None:
        """The contact's audio leg while it exists (its `pc`, `player`, `recorder`)."""
        return self._legs.get(contact_id)

    # commands --------------------------------------------------------------------------------------------

    async def request(
        self, command: str, *, timeout: float | None = None, _then: AgentEvent | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Send one command and wait for its `ack` (its fields are returned) or `error` (raised as
        AgentCommandError). Fields that are None are left out."""
        ws = self._ws
        if ws is None or self._closing:
            raise AgentClosedError("the session is not connected")
        ref = f"r{next(self._refs)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ref] = (command, future)
        if _then is not None:
            self._on_ack[ref] = _then
        message = {"v": PROTOCOL_VERSION, "type": command, "ref": ref}
        message.update({k: v for k, v in fields.items() if v is not None})
        wait = self.request_timeout if timeout is None else timeout
        try:
            async with self._send_lock:
                await ws.send(msgspec.json.encode(message).decode())
            return await asyncio.wait_for(future, wait)
        except ConnectionClosed:
            raise AgentClosedError(f"the socket closed before {command} was sent") from None
        except TimeoutError:
            raise AgentTimeoutError(command, wait) from None
        finally:
            self._pending.pop(ref, None)
            self._on_ack.pop(ref, None)

    async def ping(self) -> None:
        await self.request("ping")

    async def login(self, state: str = "away", reason: str | None = None) -> dict[str, Any]:
        """Sign in to routing (takes a seat) in `state` (`available` or `away`)."""
        result = await self.request("login", state=state, reason=reason)
        self.signed_in = True
        self.state = str(result.get("state", state))
        return result

    async def logout(self, *, timeout: float | None = None) -> dict[str, Any]:
        result = await self.request("logout", timeout=timeout)
        self.signed_in = False
        self.state = "offline"
        return result

    async def set_state(self, state: str, reason: str | None = None) -> dict[str, Any]:
        result = await self.request("state", state=state, reason=reason)
        self.state = str(result.get("state", state))
        return result

    def _offer_id(self, command: str, contact_id: str, offer_id: str | None) -> str:
        if offer_id is not None:
            return offer_id
        offer = self._offers.get(contact_id)
        if offer is None:
            raise AgentCommandError(command, "not_found", f"no offer for contact {contact_id} is ringing")
        return offer.offer_id

    async def dial(
        self, to: str, *, caller_id: str | None = None, queue: str | None = None
    ) -> dict[str, Any]:
        """Place an outbound call through the tenant's trunk (the agent must be allowed to dial and be
        available; a number on the do-not-call list is refused with code `do_not_call`). The call comes back
        as a `contact_offer` marked `outbound`, which this session accepts at once (with audio, once its leg
        is up); the number is dialled then. Returns {"contact_id", "to", "caller_id", "queue_id"}."""
        fields: dict[str, Any] = {"to": to}
        if caller_id is not None:
            fields["caller_id"] = caller_id
        if queue is not None:
            fields["queue"] = queue
        return await self.request("dial", **fields)

    async def accept(self, contact_id: str, offer_id: str | None = None) -> dict[str, Any]:
        return await self.request(
            "accept", contact_id=contact_id, offer_id=self._offer_id("accept", contact_id, offer_id)
        )

    async def reject(
        self, contact_id: str, offer_id: str | None = None, reason: str | None = None
    ) -> dict[str, Any]:
        offer_id = self._offer_id("reject", contact_id, offer_id)
        return await self.request("reject", contact_id=contact_id, offer_id=offer_id, reason=reason)

    async def hold(self, contact_id: str, on: bool = True) -> dict[str, Any]:
        return await self.request("hold", contact_id=contact_id, on=on)

    async def mute(self, contact_id: str, on: bool = True) -> dict[str, Any]:
        return await self.request("mute", contact_id=contact_id, on=on)

    async def pause_recording(self, contact_id: str, on: bool = True) -> dict[str, Any]:
        """Pause (`on`) or resume the call's recording: nothing of the paused span is kept (card numbers)."""
        return await self.request("record_pause", contact_id=contact_id, on=on)

    async def dtmf(self, contact_id: str, digits: str) -> dict[str, Any]:
        return await self.request("dtmf", contact_id=contact_id, digits=digits)

    async def transfer(
        self,
        contact_id: str,
        *,
        queue: str | None = None,
        agent_id: str | None = None,
        note: str | None = None,
        flow: str | None = None,
    ) -> dict[str, Any]:
        """Blind transfer to a queue (name or id) or an agent; the note travels with the contact. Or to an
        IVR flow by name (`flow=`): the agent leaves, the caller stays for it (a post-call survey)."""
        if sum(x is not None for x in (queue, agent_id, flow)) != 1:
            raise ValueError("transfer to exactly one of queue=, agent_id= or flow=")
        if flow is not None:
            return await self.request("transfer", contact_id=contact_id, flow=flow, note=note)
        return await self.request(
            "transfer", contact_id=contact_id, queue=queue, agent_id=agent_id, note=note
        )

    async def consult(
        self,
        contact_id: str,
        *,
        queue: str | None = None,
        agent_id: str | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        """Attended transfer, first step: the caller hears music while the agent (or anyone of the queue) is
        offered a consultation; a `consult` event says `talking` once they answered (or `cancelled`, with
        why). Then `complete_transfer` or `cancel_transfer`."""
        if (queue is None) == (agent_id is None):
            raise ValueError("consult exactly one of queue= or agent_id=")
        return await self.request("consult", contact_id=contact_id, queue=queue, agent_id=agent_id, note=note)

    async def complete_transfer(self, contact_id: str) -> dict[str, Any]:
        """The caller goes to the consulted agent; this agent's part ends (wrap it up)."""
        return await self.request("consult_complete", contact_id=contact_id)

    async def cancel_transfer(self, contact_id: str) -> dict[str, Any]:
        """The consultation ends (or stops ringing); back with the caller."""
        return await self.request("consult_cancel", contact_id=contact_id)

    async def hangup(self, contact_id: str) -> dict[str, Any]:
        return await self.request("hangup", contact_id=contact_id)

    async def wrap_up(self, contact_id: str, disposition: str, notes: str | None = None) -> dict[str, Any]:
        return await self.request("wrap_up", contact_id=contact_id, disposition=disposition, notes=notes)
