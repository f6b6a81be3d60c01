"""Bounded waits: every wait on NATS, PostgreSQL or a subprocess ends, and a wait that runs out says what it
was waiting for (a suite that hangs with an idle event loop tells nobody anything)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import asyncpg

__all__ = ["WaitTimeout", "close_pool", "within"]

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """A bounded wait ran out; the message names what was awaited."""


async def within(seconds: float, what: str, awaitable: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError as e:
        raise WaitTimeout(f"gave up after {seconds:g} s waiting for {what}") from e


async def close_pool(pool: asyncpg.Pool, seconds: float = 5.0) -> None:
    """Close a pool, waiting at most `seconds` for connections to be released; then terminate them.

    asyncpg's `Pool.close()` waits for every acquired connection to come back, for ever if one never does.
    """
    try:
        await asyncio.wait_for(pool.close(), seconds)
    except TimeoutError:
        pool.terminate()
