"""What the call features (consult.py, monitor.py, transfer.py) need of the media worker: a narrow view
of it, so that they neither import the service (app.py) nor reach into its private members."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from services.kernel import events as ev
from services.kernel.messages import Event, Reply
from services.media.ua.call import CallState

if TYPE_CHECKING:
    from services.media.bridge.bridging import Bridge, Endpoint
    from services.media.prompts import PromptStore
    from services.media.ua.leg import Leg

__all__ = ["Calls", "FeatureHost", "Involved"]


class Calls(Protocol):
    """The SIP edge as the features use it: its legs, outside calls, and waits without polling."""

    @property
    def legs(self) -> Mapping[uuid.UUID, Leg]: ...

    @property
    def prompts(self) -> PromptStore: ...

    def emit(self, events: list[Event]) -> None: ...

    def now(self) -> float: ...

    def hangup(self, leg: Leg, cause: str = "normal_clearing") -> None: ...

    async def originate(
        self, *, call_id: uuid.UUID, tenant_id: uuid.UUID, to: str, caller_id: str, trunk_name: str | None
    ) -> str | None: ...

    def reaches(self, call_id: uuid.UUID, state: CallState) -> asyncio.Future[CallState]: ...


class Involved(Protocol):
    """Another feature, asked only whether a leg is part of it (a leg is in one feature at a time)."""

    def involves(self, call_id: uuid.UUID) -> bool: ...


class FeatureHost(Protocol):
    """The worker: its legs (SIP and WebRTC) as bridge endpoints, its bridges, and the other features."""

    @property
    def edge(self) -> Calls: ...

    @property
    def bridges(self) -> Mapping[uuid.UUID, Bridge]: ...

    @property
    def transfers(self) -> dict[uuid.UUID, uuid.UUID]: ...

    @property
    def consults(self) -> Involved: ...

    @property
    def monitors(self) -> Involved: ...

    def endpoint(self, tenant_id: uuid.UUID, call_id: uuid.UUID) -> Endpoint | None: ...

    def separate(self, bridge: Bridge, reason: str) -> None: ...

    def bridge_command(self, command: ev.MediaCommand) -> Reply | None: ...
