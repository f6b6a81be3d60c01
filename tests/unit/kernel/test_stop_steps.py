"""A stop step that overruns its bound says what it was waiting on, and leaves nothing behind: no task still
running, no 'exception was never retrieved' from a cancelled gather."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from services.kernel.serving import _bounded


async def _parked(release: asyncio.Event) -> None:
    await release.wait()


async def test_a_late_step_names_the_await_it_was_parked_on_and_is_cancelled() -> None:
    release = asyncio.Event()
    task = asyncio.create_task(_parked(release), name="parked")
    await asyncio.sleep(0)
    late: list[str] = []
    await _bounded("the parked step", asyncio.gather(task, return_exceptions=True), late, 0.05, watch=[task])
    [entry] = late
    assert entry.startswith("the parked step, waiting on:"), entry
    assert "in _parked" in entry and "in wait" in entry, entry  # the frame, then asyncio.Event.wait
    assert task.cancelled()


async def test_a_cancelled_gather_is_not_reported_as_an_unretrieved_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()
    task = asyncio.create_task(_parked(release))
    await asyncio.sleep(0)
    late: list[str] = []
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        await _bounded("a gather", asyncio.gather(task), late, 0.05, watch=[task])
        gc.collect()
        await asyncio.sleep(0)
    assert len(late) == 1
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
