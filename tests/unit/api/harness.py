"""A database-free app for unit tests of request handling: the real controllers and problem handlers, with
the `principal`, `tenant_conn`, `mutation` and `api` dependencies (services/api/deps.py) provided here
instead. `api` is an ApiState whose pool fails the test when used and that has no bus.

What it can show: a request a handler refuses (bad body, bad path id, wrong role) never reaches the
database or a change, and a good one reaches the change with what it asked for. What the change does with
PostgreSQL is the integration tests' part (tests/integration/api/)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
from litestar import Litestar, Response
from litestar.datastructures import State
from litestar.di import Provide
from litestar.testing import TestClient
from litestar.types import ASGIApp, Receive, Scope, Send

from services.api.auth import Principal, Role
from services.api.mutations import Work
from services.api.problems import exception_handlers
from services.api.ratelimit import SlidingWindow
from services.api.state import ApiState
from services.kernel.config import Settings

__all__ = ["SECRET", "Harness", "NoDatabase", "harness", "problem"]

# A token secret long enough for every signer (tokens, widget tokens, signed URLs).
SECRET = "unit-test-secret-" + "x" * 48


class NoDatabase:
    """A `tenant_conn` that fails the test if a handler uses it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the handler used the database ({name}) for a request it should refuse first")


@dataclass
class Harness:
    client: TestClient[Litestar]
    principal: Principal
    api: ApiState
    changes: list[Work[Any]] = field(default_factory=list)

    def reached(self) -> int:
        return len(self.changes)

    def refused(self, response: Any, status: int) -> dict[str, Any]:
        """An error answer that stopped before any change: its problem JSON."""
        body = problem(response, status)
        assert not self.changes, "the request reached a change"
        return body


class _Recorder:
    """A `mutation` that keeps the work it was given and answers 202: the request got past validation."""

    def __init__(self, sink: list[Work[Any]]) -> None:
        self.sink = sink

    async def run(self, work: Work[Any]) -> Response[Any]:
        self.sink.append(work)
        return Response(content=b"", status_code=202)


def _as(principal: Principal, app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        scope["user"] = principal  # what AuthMiddleware leaves for the guards and deps
        await app(scope, receive, send)

    return middleware


def problem(response: Any, status: int) -> dict[str, Any]:
    """The problem JSON of an error answer (docs/api.md, "Errors"), checked for its shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


def _api_state(settings: Settings) -> ApiState:
    return ApiState(
        settings=settings,
        signup_limiter=SlidingWindow(settings.signup_rate_per_minute),
        key_limiter=SlidingWindow(settings.key_rate_per_minute),
        widget_limiter=SlidingWindow(settings.widget_token_rate_per_minute),
        pool=cast("asyncpg.Pool", NoDatabase()),
    )


@contextmanager
def harness(
    *controllers: Any, role: Role = Role.ADMIN, settings: Settings | None = None
) -> Iterator[Harness]:
    """`controllers`: controllers or plain route handlers. `settings`: the ApiState's (default: a token
    secret and nothing else)."""
    principal = Principal(tenant_id=uuid.uuid4(), key_id=uuid.uuid4(), role=role)
    changes: list[Work[Any]] = []
    api = _api_state(settings if settings is not None else Settings(token_secret=SECRET))
    app = Litestar(
        route_handlers=list(controllers),
        middleware=[lambda app: _as(principal, app)],
        dependencies={
            "principal": Provide(lambda: principal, sync_to_thread=False),
            "tenant_conn": Provide(lambda: NoDatabase(), sync_to_thread=False),
            "mutation": Provide(lambda: _Recorder(changes), sync_to_thread=False),
            "api": Provide(lambda: api, sync_to_thread=False),
        },
        exception_handlers=exception_handlers(),
        # For handlers that still read the state from their Request (api_state).
        state=State({"api": api}),
        debug=False,
    )
    with TestClient(app) as client:
        yield Harness(client, principal, api, changes)
