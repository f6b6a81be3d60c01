"""IVR flows in the SDK: `client.flows` (deploy, list, get, versions, rollback, delete, route a number) and
their models. The same Call values serve Client and AsyncClient (see _calls.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

import msgspec

from ._core import Call
from .flowdef.suite import Case, CaseResult
from .models import Model, Number, Page

__all__ = [
    "AsyncFlows",
    "Deployed",
    "Flow",
    "FlowIssue",
    "FlowVersion",
    "Flows",
    "Simulation",
    "VersionSummary",
]


class Flow(Model, kw_only=True):
    id: str
    name: str
    description: str = ""
    current_version: int
    latest_version: int
    created_at: datetime
    updated_at: datetime


class FlowIssue(Model, kw_only=True):
    severity: str
    message: str
    line: int | None = None
    path: str = ""


class Deployed(Model, kw_only=True):
    flow: Flow
    version: int
    warnings: list[FlowIssue] = msgspec.field(default_factory=list)


class FlowVersion(Model, kw_only=True):
    id: str
    flow: str
    version: int
    current: bool
    created_at: datetime
    source: str
    definition: dict[str, Any] = msgspec.field(default_factory=dict)


class VersionSummary(Model, kw_only=True):
    id: str
    version: int
    current: bool
    created_at: datetime


class Simulation(Model, kw_only=True):
    """Each case's verdict and the simulated call (switchboard.flowdef.suite.CaseResult)."""

    results: list[CaseResult]


def _seg(value: str | int) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("a flow name or number must not be empty")
    return quote(text, safe="")


def deploy_call(definition: str | dict[str, Any], name: str | None) -> Call[Deployed]:
    body: dict[str, Any] = {"definition": definition}
    if name is not None:
        body["name"] = name
    return Call[Deployed]("POST", "/v1/flows", Deployed, body=body)


def list_call(limit: int | None, cursor: str | None) -> Call[Page[Flow]]:
    params = {k: v for k, v in (("limit", str(limit) if limit else None), ("cursor", cursor)) if v}
    return Call[Page[Flow]]("GET", "/v1/flows", Page[Flow], params=params or None)


def get_call(name: str, version: int | None) -> Call[FlowVersion]:
    path = f"/v1/flows/{_seg(name)}" + (f"/versions/{_seg(version)}" if version is not None else "")
    return Call[FlowVersion]("GET", path, FlowVersion)


def versions_call(name: str, limit: int | None, cursor: str | None) -> Call[Page[VersionSummary]]:
    params = {k: v for k, v in (("limit", str(limit) if limit else None), ("cursor", cursor)) if v}
    return Call[Page[VersionSummary]](
        "GET", f"/v1/flows/{_seg(name)}/versions", Page[VersionSummary], params=params or None
    )


def rollback_call(name: str, version: int) -> Call[Flow]:
    return Call[Flow]("POST", f"/v1/flows/{_seg(name)}/rollback", Flow, body={"version": version})


def delete_call(name: str) -> Call[None]:
    return Call[None]("DELETE", f"/v1/flows/{_seg(name)}")


def route_call(number: str, flow: str | None, queue: str | None = None) -> Call[Number]:
    body: dict[str, str | None] = {"queue": queue} if queue is not None else {"flow": flow}
    return Call[Number]("POST", f"/v1/numbers/{_seg(number)}/route", Number, body=body)


def simulate_call(definition: str, cases: Sequence[Case]) -> Call[Simulation]:
    body = {"definition": definition, "cases": msgspec.to_builtins(list(cases))}
    return Call[Simulation]("POST", "/v1/ivr/simulate", Simulation, body=body)


class _Runs(Protocol):
    def _run(self, call: Call[Any]) -> Any: ...


class Flows:
    """`client.flows`: flows are named by their `name`; every deploy is a new immutable version."""

    def __init__(self, client: _Runs) -> None:
        self._client = client

    def deploy(self, definition: str | dict[str, Any], *, name: str | None = None) -> Deployed:
        """Publish a flow file's text (YAML or JSON) or a dict as the new current version; ValidationError
        (422) lists each problem with its line in `errors`."""
        result: Deployed = self._client._run(deploy_call(definition, name))
        return result

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Flow]:
        page: Page[Flow] = self._client._run(list_call(limit, cursor))
        return page

    def get(self, name: str, *, version: int | None = None) -> FlowVersion:
        """The current version (or the one asked for), with its source and definition."""
        result: FlowVersion = self._client._run(get_call(name, version))
        return result

    def versions(
        self, name: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[VersionSummary]:
        page: Page[VersionSummary] = self._client._run(versions_call(name, limit, cursor))
        return page

    def rollback(self, name: str, version: int) -> Flow:
        result: Flow = self._client._run(rollback_call(name, version))
        return result

    def delete(self, name: str) -> None:
        self._client._run(delete_call(name))

    def simulate(self, definition: str, cases: Sequence[Case]) -> Simulation:
        """Run calls through a flow file's text offline on the platform (what `switchboard flows test` does
        in-process where the platform is installed): nothing is stored, lookups answer the cases' stubs."""
        result: Simulation = self._client._run(simulate_call(definition, cases))
        return result

    def route(self, number: str, flow: str | None = None, *, queue: str | None = None) -> Number:
        """Point a number (its id or E.164) at a flow by name (None: at no flow), or with `queue` (a name
        or id) straight at a queue."""
        result: Number = self._client._run(route_call(number, flow, queue))
        return result


class _AsyncRuns(Protocol):
    async def _run(self, call: Call[Any]) -> Any: ...


class AsyncFlows:
    """`async_client.flows`: the same operations as Flows, awaited."""

    def __init__(self, client: _AsyncRuns) -> None:
        self._client = client

    async def deploy(self, definition: str | dict[str, Any], *, name: str | None = None) -> Deployed:
        result: Deployed = await self._client._run(deploy_call(definition, name))
        return result

    async def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Flow]:
        page: Page[Flow] = await self._client._run(list_call(limit, cursor))
        return page

    async def get(self, name: str, *, version: int | None = None) -> FlowVersion:
        result: FlowVersion = await self._client._run(get_call(name, version))
        return result

    async def versions(
        self, name: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[VersionSummary]:
        page: Page[VersionSummary] = await self._client._run(versions_call(name, limit, cursor))
        return page

    async def rollback(self, name: str, version: int) -> Flow:
        result: Flow = await self._client._run(rollback_call(name, version))
        return result

    async def delete(self, name: str) -> None:
        await self._client._run(delete_call(name))

    async def simulate(self, definition: str, cases: Sequence[Case]) -> Simulation:
        result: Simulation = await self._client._run(simulate_call(definition, cases))
        return result

    async def route(self, number: str, flow: str | None = None, *, queue: str | None = None) -> Number:
        result: Number = await self._client._run(route_call(number, flow, queue))
        return result
