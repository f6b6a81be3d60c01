"""What every websocket session on `/v1/ws` shares, agent or web caller: the error type carried back to the
client as an `error` message, and the socket wrapper that sends messages (under a lock: the receive loop and
NATS callbacks both write) and sends commands over the bus."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from services.kernel.bus import Bus, BusError, CommandTimeout
from services.kernel.messages import Command

__all__ = ["COMMAND_TIMEOUT_S", "PROTOCOL_VERSION", "Bad", "Socket"]

PROTOCOL_VERSION = 1
COMMAND_TIMEOUT_S = 5.0


class Bad(Exception):
    """A message that cannot be done: answered with {"type": "error", code, reason, ref?}; the session goes on."""

    def __init__(self, code: str, reason: str, ref: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.ref = ref


class Socket:
    def __init__(self, socket: Any, state: Any) -> None:
        self.socket = socket
        self.state = state
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

    async def error(self, code: str, reason: str, ref: str | None = None) -> None:
        await self.send("error", code=code, reason=reason, **({"ref": ref} if ref else {}))

    @property
    def bus(self) -> Bus:
        if self.state.bus is None:
            raise Bad("media_unavailable", "the platform's message bus is not connected")
        bus: Bus = self.state.bus
        return bus

    async def command(self, command: Command) -> dict[str, object]:
        service = command.service
        try:
            reply = await self.bus.request(command, timeout=COMMAND_TIMEOUT_S)
        except CommandTimeout:
            raise Bad(f"{service}_timeout", f"the {service} service did not answer in time") from None
        except BusError:
            raise Bad(f"{service}_unavailable", f"no {service} service is available") from None
        if not reply.ok:
            raise Bad(reply.code or f"{service}_error", reply.error or f"the {service} service refused it")
        return reply.data
