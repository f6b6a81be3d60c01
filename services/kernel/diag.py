"""What a stuck event loop is waiting for: each asyncio task's chain of awaits, innermost last, and the future
the innermost one waits on. Used by a service that overruns its shutdown deadline and by the test suite's
hang report (tests/hangs.py)."""

from __future__ import annotations

import asyncio
import types
from typing import Any

__all__ = ["await_chain", "describe_tasks"]


def await_chain(awaitable: Any) -> list[str]:
    """Each frame of a suspended coroutine chain, innermost last, then what the innermost one awaits."""
    lines: list[str] = []
    seen = 0
    frame: types.FrameType | None = None
    while awaitable is not None and seen < 64:
        seen += 1
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None) or frame
        if isinstance(awaitable, types.CoroutineType | types.GeneratorType) and frame is not None:
            code = frame.f_code
            lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}")
        nxt = getattr(awaitable, "cr_await", None)
        if nxt is None:
            nxt = getattr(awaitable, "gi_yieldfrom", None)
        if nxt is None and not isinstance(awaitable, types.CoroutineType | types.GeneratorType):
            # A future's iterator does not name its future: the innermost frame's locals do.
            futures = [v for v in (frame.f_locals.values() if frame else ()) if isinstance(v, asyncio.Future)]
            lines.append(f"  waiting on {', '.join(map(repr, futures)) or repr(awaitable)}")
            break
        if nxt is None:
            break
        awaitable = nxt
    return lines


def describe_tasks(loop: asyncio.AbstractEventLoop) -> str:
    out = []
    for task in sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()):
        out.append(f"task {task.get_name()} ({'done' if task.done() else 'pending'}):")
        out.extend(await_chain(task.get_coro()))
    return "\n".join(out) or "no asyncio tasks"
