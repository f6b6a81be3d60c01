"""The hang report names what a stuck task waits for: the innermost await of its chain, with file and line."""

from __future__ import annotations

import asyncio

from services.kernel.diag import await_chain, describe_tasks


async def _inner(gate: asyncio.Event) -> None:
    await gate.wait()


async def _outer(gate: asyncio.Event) -> None:
    await _inner(gate)


async def test_report_names_each_frame_and_the_awaited_future() -> None:
    gate = asyncio.Event()
    task = asyncio.create_task(_outer(gate), name="stuck-one")
    await asyncio.sleep(0)
    chain = await_chain(task.get_coro())
    assert any("in _outer" in line for line in chain)
    assert any("in _inner" in line for line in chain)
    assert any("in wait" in line for line in chain)  # asyncio.Event.wait
    assert chain[-1].startswith("  waiting on <Future pending"), chain
    report = describe_tasks(asyncio.get_running_loop())
    assert "task stuck-one (pending):" in report
    gate.set()
    await task
    assert "stuck-one" not in describe_tasks(asyncio.get_running_loop())
