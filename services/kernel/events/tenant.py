"""Tenant-level facts: its seats and configuration changed."""

from __future__ import annotations

import uuid
from typing import Literal

from ..messages import Event

__all__ = ["ConfigChanged", "SeatsChanged"]


class SeatsChanged(Event, kw_only=True, frozen=True):
    domain = "seats"
    name = "changed"
    purchased: int
    delta: int


class ConfigChanged(Event, kw_only=True, frozen=True):
    """A tenant's configuration object changed; services holding a copy reload it."""

    domain = "config"
    name = "changed"
    kind: Literal["site", "agent", "queue", "number", "key", "flow", "trunk", "tenant"]
    op: Literal["created", "updated", "deleted"]
    object_id: uuid.UUID
