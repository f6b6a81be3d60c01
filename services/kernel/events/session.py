"""Browser sessions: the API tells every API process (each holds some agents' websockets) that sessions
ended, so that their sockets close within moments of a sign-out, a forced sign-out, a revoked key or a
removed agent."""

from __future__ import annotations

import uuid

from ..messages import Event

__all__ = ["SessionsEnded"]


class SessionsEnded(Event, kw_only=True, frozen=True):
    """Sessions ended; a socket closes when any field names it: its browser session, its agent (every
    session and token of that agent), or the API key that issued its token."""

    domain = "session"
    name = "ended"
    session_ids: list[uuid.UUID] = []
    agent_id: uuid.UUID | None = None
    key_id: uuid.UUID | None = None
    reason: str
