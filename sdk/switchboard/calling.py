"""Calls the platform places for a tenant, in the SDK: `client.calling` (callback settings and the caller ID
they show, docs/routing.md "Callbacks"; the do-not-call list, "Outbound calls"). The Call values live in
_calls.py; click-to-dial is `client.agents.dial`."""

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

    def do_not_call(self) -> list[dict[str, Any]]:
        """The numbers never to call: [{"e164", "note", "created_at"}]."""
        page: dict[str, Any] = self._client._run(_calls.do_not_call_list())
        return list(page["items"])

    def never_call(self, e164: str, note: str = "") -> dict[str, Any]:
        """Put a number on the do-not-call list (a dial to it is refused)."""
        added: dict[str, Any] = self._client._run(_calls.do_not_call_add(e164, note))
        return added

    def allow_call(self, e164: str) -> None:
        """Take a number off the do-not-call list."""
        self._client._run(_calls.do_not_call_remove(e164))

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

    async def do_not_call(self) -> list[dict[str, Any]]:
        page: dict[str, Any] = await self._client._run(_calls.do_not_call_list())
        return list(page["items"])

    async def never_call(self, e164: str, note: str = "") -> dict[str, Any]:
        added: dict[str, Any] = await self._client._run(_calls.do_not_call_add(e164, note))
        return added

    async def allow_call(self, e164: str) -> None:
        await self._client._run(_calls.do_not_call_remove(e164))

    async def update(self, **changes: Any) -> dict[str, Any]:
        saved: dict[str, Any] = await self._client._run(
            _calls.calling_settings_put(_merged(await self.settings(), changes))
        )
        return saved
