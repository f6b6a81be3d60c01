"""What the API process holds while it runs: settings, the database pool, the bus and the rate limiters."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from litestar.connection import ASGIConnection

from services.kernel.bus import Bus
from services.kernel.config import Settings
from services.kernel.log import get_logger
from services.kernel.messages import Event

from .fanout import Fanout
from .presence import Presence
from .ratelimit import SlidingWindow

__all__ = ["ApiState", "api_state"]

# A slow or absent NATS must not hold an HTTP answer longer than this.
PUBLISH_TIMEOUT_S = 2.0


@dataclass
class ApiState:
    settings: Settings
    signup_limiter: SlidingWindow
    key_limiter: SlidingWindow
    # Per tenant: its plan's API rate (None: the platform's) and when it was read (auth.py).
    key_rates: dict[uuid.UUID, tuple[int | None, float]] = field(default_factory=dict)
    # Per client address at POST /v1/widget/token; create_app sizes it from the settings.
    widget_limiter: SlidingWindow = field(default_factory=lambda: SlidingWindow(60))
    pool: asyncpg.Pool | None = None
    bus: Bus | None = None
    started_at: float = 0.0
    presence: Presence = field(default_factory=Presence)
    # The websockets' pushes, one subscription per tenant and event type in this process (fanout.py).
    fanout: Fanout = field(default_factory=Fanout)
    extra: dict[str, Any] = field(default_factory=dict)

    def db(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the database pool is not open (lifespan not started)")
        return self.pool

    async def publish(self, events: list[Event]) -> None:
        """Publish after commit; a bus failure is logged, never turned into an HTTP error."""
        for event in events:
            if self.bus is None:
                get_logger().warning("event_not_published", reason="no bus", event_type=type(event).__name__)
                continue
            try:
                await asyncio.wait_for(self.bus.publish(event), PUBLISH_TIMEOUT_S)
            except Exception as exc:
                get_logger().warning(
                    "event_not_published",
                    event_type=type(event).__name__,
                    event_id=str(event.id),
                    tenant_id=str(event.tenant_id),
                    error=f"{type(exc).__name__}: {exc}",
                )


def api_state(connection: ASGIConnection[Any, Any, Any, Any]) -> ApiState:
    state: ApiState = connection.app.state.api
    return state
