"""A real asyncpg pool whose transactions are counted: to show a path makes no PostgreSQL read at all."""

from __future__ import annotations

from typing import Any

import asyncpg

__all__ = ["CountingPool"]


class CountingPool:
    """The real pool; each `acquire` (every `tenant_tx` is one) is counted."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.acquired = 0

    def acquire(self, **kwargs: Any) -> Any:
        self.acquired += 1
        return self.pool.acquire(**kwargs)
