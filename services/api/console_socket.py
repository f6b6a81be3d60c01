"""A supervisor's (or admin's) browser on `/v1/ws`, authenticated by a console token: it signals its own
WebRTC legs (`offer`, `answer`, `ice`, like an agent's) and nothing else. A leg offered with a `call_id`
(the contact to step into) is made by the media worker that holds that call, so `POST
/v1/contacts/{id}/monitor` can join it to the call's bridge. The socket's legs are hung up when it closes
or its browser session ends."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import WebSocket

from services.kernel import events as ev
from services.kernel.log import get_logger

from .legs import LEG_TYPES, LegSocket
from .signalling_base import Bad
from .state import ApiState
from .tokens import ConsoleClaims

__all__ = ["CONSOLE_TYPES", "ConsoleSocket", "leg_owner"]

CONSOLE_TYPES = frozenset(("auth", "offer", "answer", "ice", "ping"))


def leg_owner(account_id: uuid.UUID) -> str:
    """The owner media records for a supervisor's legs (agents' legs carry their agent id)."""
    return f"supervisor:{account_id}"


class ConsoleSocket(LegSocket):
    def __init__(self, socket: WebSocket[Any, Any, Any], state: ApiState, claims: ConsoleClaims) -> None:
        super().__init__(socket, state)
        self.claims = claims
        self.tenant_id = claims.tenant_id
        self.owner = leg_owner(claims.account_id)
        self.legs: set[uuid.UUID] = set()

    @property
    def expires_at(self) -> float:
        return self.claims.expires_at

    async def handle(self, kind: str, body: Any, ref: str | None = None) -> None:
        if kind == "ping":
            await self.send("pong", **({"ref": ref} if ref else {}))
        elif kind == "auth":
            raise Bad("already_authenticated", "this session is already authenticated", ref)
        elif kind in LEG_TYPES:
            await self.leg_message(kind, body, ref)
        else:
            raise Bad("unknown_type", f"a supervisor's socket does not take {kind!r}", ref)

    async def on_sessions_ended(self, ended: ev.SessionsEnded) -> None:
        if ended.tenant_id == self.claims.tenant_id and self.claims.session_id in ended.session_ids:
            await self.end("session_ended", "the session has ended: sign in again")

    async def end(self, code: str, reason: str) -> None:
        await self.send("error", code=code, reason=reason)
        self.closed = True
        try:
            await self.socket.close(code=4401, reason=code)
        except Exception:
            pass

    async def hang_up_legs(self) -> None:
        """The browser is gone: its legs leave whatever call they were in."""
        for leg_id in list(self.legs):
            try:
                await self.command(ev.MediaHangup(tenant_id=self.claims.tenant_id, call_id=leg_id))
            except Bad as exc:  # already ended
                get_logger().info("console_leg_hangup", leg=str(leg_id), code=exc.code)
        self.legs.clear()
