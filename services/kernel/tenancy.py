"""The tenant a unit of work runs for, carried in a context variable."""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["TenantRequiredError", "current_tenant", "tenant_context"]

_tenant: contextvars.ContextVar[uuid.UUID | None] = contextvars.ContextVar("sb_tenant", default=None)


class TenantRequiredError(RuntimeError):
    """Tenant data was touched outside a tenant context."""


def current_tenant() -> uuid.UUID:
    tenant = _tenant.get()
    if tenant is None:
        raise TenantRequiredError("no tenant in context")
    return tenant


@contextmanager
def tenant_context(tenant_id: uuid.UUID) -> Iterator[uuid.UUID]:
    token = _tenant.set(tenant_id)
    try:
        yield tenant_id
    finally:
        _tenant.reset(token)
