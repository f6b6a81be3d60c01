"""Waiting for a leg to reach a state without polling: `reaches(call, state)` gives a future that the edge
resolves where the state changes (`changed(leg)`: answered, ended)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping

from services.media.ua.call import CallState
from services.media.ua.leg import Leg

__all__ = ["LegWatch"]


class LegWatch:
    def __init__(self, legs: Mapping[uuid.UUID, Leg]) -> None:
        self._legs = legs
        self._waiters: dict[uuid.UUID, list[tuple[CallState, asyncio.Future[CallState]]]] = {}

    def reaches(self, call_id: uuid.UUID, state: CallState) -> asyncio.Future[CallState]:
        """A future resolved with the leg's state once it is `state` or ENDED (at once if it already is, or
        if there is no such leg: ENDED). A transfer or consult waits on it for the outside leg to answer."""
        future: asyncio.Future[CallState] = asyncio.get_running_loop().create_future()
        leg = self._legs.get(call_id)
        current = CallState.ENDED if leg is None else leg.call.state
        if current in (state, CallState.ENDED):
            future.set_result(current)
        else:
            self._waiters.setdefault(call_id, []).append((state, future))
        return future

    def changed(self, leg: Leg) -> None:
        """Wake what waits for the state this leg's call is now in."""
        current = leg.call.state
        waiting = self._waiters.pop(leg.call.call_id, None)
        if not waiting:
            return
        still = []
        for state, future in waiting:
            if future.done():
                continue  # given up (a timeout cancelled it)
            if current in (state, CallState.ENDED):
                future.set_result(current)
            else:
                still.append((state, future))
        if still:
            self._waiters[leg.call.call_id] = still
