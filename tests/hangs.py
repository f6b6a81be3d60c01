"""What a hung test was waiting for: a dump of every asyncio task's await chain, printed just before
pytest-timeout fails the test (whose own dump shows only threads: an idle event loop sits in `select`).

Loaded by tests/conftest.py. The dump also runs on SIGUSR1 (`kill -USR1 <pytest pid>`) for a look at a run
that is slow but not yet timed out. It prints to the real stderr (fd 2), past pytest's capture.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import types
from collections.abc import Iterator

import pytest

from services.kernel.diag import describe_tasks

__all__ = ["dump"]

# How long before pytest-timeout's own deadline the dump is taken.
DUMP_LEAD_S = 3.0


def _running_loops() -> Iterator[asyncio.AbstractEventLoop]:
    # A loop shows up as `self` in its run_forever/_run_once frames on whichever thread runs it.
    found: set[int] = set()
    for frame in sys._current_frames().values():
        f: types.FrameType | None = frame
        while f is not None:
            owner = f.f_locals.get("self")
            if isinstance(owner, asyncio.AbstractEventLoop) and id(owner) not in found:
                found.add(id(owner))
                yield owner
            f = f.f_back


def _write(text: str) -> None:
    os.write(2, text.encode(errors="replace"))


def dump(reason: str) -> None:
    loops = list(_running_loops())
    if not loops:
        _write(f"\n=== {reason}: no running event loop ===\n")
    for loop in loops:
        done = threading.Event()

        def report(loop: asyncio.AbstractEventLoop = loop, done: threading.Event = done) -> None:
            _write(f"\n=== {reason}: asyncio tasks of {loop!r} ===\n{describe_tasks(loop)}\n")
            done.set()

        # An idle loop (the hangs seen so far) runs this at once; a loop stuck in blocking code does not,
        # and then the tasks are read from this thread: racy, but only for a diagnosis.
        loop.call_soon_threadsafe(report)
        if not done.wait(1.0):
            _write(f"\n=== {reason}: loop busy, tasks read from outside ===\n{describe_tasks(loop)}\n")


def pytest_configure(config: pytest.Config) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, lambda *_: threading.Thread(target=dump, args=("SIGUSR1",)).start())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    marker = item.get_closest_marker("timeout")
    timeout = float(marker.args[0]) if marker and marker.args else float(item.config.getini("timeout") or 0)
    timer = None
    if timeout > DUMP_LEAD_S:
        timer = threading.Timer(timeout - DUMP_LEAD_S, dump, args=(f"{item.nodeid} about to time out",))
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
