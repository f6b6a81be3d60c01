"""The control-plane API service (Litestar): tenants, keys, seats and usage, sites, agents, queues, numbers."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
