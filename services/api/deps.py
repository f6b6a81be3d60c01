"""What a handler asks for by parameter name, through Litestar's dependency injection: `principal` (who
calls), `tenant_conn` (a read-only connection inside the caller's tenant transaction, so RLS scopes every
read) and `mutation` (runs a change with its audit line, idempotency and events; mutations.py), and `api` (the
process's ApiState: settings, the pool, the bus) for handlers that need more than one transaction or talk
to the bus.

Handlers that take these instead of a raw `Request` can be exercised without a database: a unit test
builds the app with other providers under the same names (tests/unit/api/)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import asyncpg
from litestar import Request
from litestar.di import NamedDependency, Provide
from litestar.params import SkipValidation

from services.kernel.db import tenant_tx

from .auth import Principal, principal_of
from .mutations import Mutation
from .state import ApiState, api_state

__all__ = [
    "DEPENDENCIES",
    "ApiDep",
    "CallerDep",
    "MutationDep",
    "TenantConnDep",
    "provide_api",
    "provide_mutation",
    "provide_principal",
    "provide_tenant_conn",
]

# How a handler names them. Our own providers make these values: Litestar need not validate them (and a
# unit test's stand-ins are not asyncpg connections).
CallerDep: TypeAlias = NamedDependency[SkipValidation[Principal]]
TenantConnDep: TypeAlias = NamedDependency[SkipValidation[asyncpg.Connection]]
MutationDep: TypeAlias = NamedDependency[SkipValidation[Mutation]]
ApiDep: TypeAlias = NamedDependency[SkipValidation[ApiState]]


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    return principal_of(request)


async def provide_tenant_conn(
    request: Request[Any, Any, Any], principal: CallerDep
) -> AsyncIterator[asyncpg.Connection]:
    # Held for the handler's run only: the transaction ends (rolled back on an error) before the answer.
    async with tenant_tx(api_state(request).db(), principal.tenant_id, readonly=True) as conn:
        yield conn


def provide_mutation(request: Request[Any, Any, Any]) -> Mutation:
    return Mutation(request)


def provide_api(request: Request[Any, Any, Any]) -> ApiState:
    return api_state(request)


DEPENDENCIES: dict[str, Provide] = {
    "principal": Provide(provide_principal, sync_to_thread=False),
    "tenant_conn": Provide(provide_tenant_conn),
    "mutation": Provide(provide_mutation, sync_to_thread=False),
    "api": Provide(provide_api, sync_to_thread=False),
}
