"""Calls the platform places for a tenant, in the SDK: `client.calling` (callback settings and the caller ID
they show; docs/routing.md, "Callbacks"). The Call values live in _calls.py."""

from __future__ import annotations

from typing import Any, Protocol

from . import _calls
from ._core import Call

__all__ = ["AsyncCalling", "Calling"]


class _Runs(Protocol):
    def _run(self, call: Call[Any]) -> Any: ...


class _AsyncRuns(Protocol):
    async def _run(self, call: Call[Any]) -> Any: ...


def _merged(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    unknown = set(changes) - set(current)
    if unknown:
        raise TypeError(f"unknown calling settings: {', '.join(sorted(unknown))}")
    return {**current, **changes}


class Calling:
    """`client.calling`: settings() -> {"callback_mode", "callback_attempts", "callback_retry_seconds",
    "callback_ring_seconds", "caller_id"}; update(**changes) changes only what it is given."""

    def __init__(self, client: _Runs) -> None:
        self._client = client

    def settings(self) -> dict[str, Any]:
        found: dict[str, Any] = self._client._run(_calls.calling_settings_get())
        return found

    def update(self, **changes: Any) -> dict[str, Any]:
        """callback_mode="agent_first"|"customer_first", callback_attempts=1-10, callback_retry_seconds,
        callback_ring_seconds=5-120, caller_id="+1..." (one of the tenant's numbers) or None."""
        saved: dict[str, Any] = self._client._run(
            _calls.calling_settings_put(_merged(self.settings(), changes))
        )
        return saved


class AsyncCalling:
    """`async_client.calling`: the same operations as Calling, awaited."""

    def __init__(self, client: _AsyncRuns) -> None:
        self._client = client

    async def settings(self) -> dict[str, Any]:
        found: dict[str, Any] = await self._client._run(_calls.calling_settings_get())
        return found

    async def update(self, **changes: Any) -> dict[str, Any]:
        saved: dict[str, Any] = await self._client._run(
            _calls.calling_settings_put(_merged(await self.settings(), changes))
        )
        return saved
