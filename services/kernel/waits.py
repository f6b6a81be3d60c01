"""Bounded waits: every wait on NATS, PostgreSQL or a subprocess ends, and a wait that runs out says what it
was waiting for (a suite that hangs with an idle event loop tells nobody anything)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import asyncpg
from nats.aio.client import Client as NATS

__all__ = ["WaitTimeout", "close_pool", "flushed", "within"]

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


async def flushed(nc: NATS, seconds: float = 5.0) -> None:
    """`nc.flush()` as its docstring promises it: once this returns, the server has processed everything
    this connection sent before (a subscription made just before receives every message published after).

    nats-py 2.16's flush() writes its PING to the socket at once, while SUB, UNSUB and PUB wait in the
    client's queue for its flusher task, so the PONG can come back before the server has seen a
    subscription made just before it: a publisher on another connection then goes unheard
    (tests/integration/kernel/test_flush_order.py pins both). Here the flusher writes the queue first."""

    async def in_order() -> None:
        await nc._flush_pending(force_flush=True)  # returns once the queued commands are on the socket
        await nc.flush(timeout=seconds)  # type: ignore[arg-type]  # nats-py's hint says int; it takes seconds

    await within(seconds, "the NATS server to confirm what was sent before", in_order())
