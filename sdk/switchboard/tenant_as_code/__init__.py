"""A tenant's configuration as code: Pulumi resources `Tenant`, `Seats`, `Site`, `Agent`, `Queue`, `Flow`,
`Number` and `Trunk`, backed by dynamic providers that call the API through this SDK, so a tenant's whole
setup (IVR flows included) lives in its repository and `pulumi preview` shows a change before it happens.
Needs the `pulumi` extra: `pip install 'switchboard[pulumi]'` (docs/operators.md, "Tenants as code")."""

from __future__ import annotations

from .provider import RefusedError
from .resources import Agent, Flow, Number, Queue, Seats, Site, Tenant, Trunk

__all__ = ["Agent", "Flow", "Number", "Queue", "RefusedError", "Seats", "Site", "Tenant", "Trunk"]
