"""A service process always stops: when its bus and database are gone mid-stop, the shutdown deadline ends
it (the runtime killed -9 takes PostgreSQL, NATS and every service down at once)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.kernel.service import SHUTDOWN_DEADLINE_S

HANGING_SERVICE = """
import asyncio
from services.kernel.service import run_service

async def main(settings, bus, stop):
    try:
        await stop.wait()
    finally:
        await asyncio.Event().wait()  # a stop step that never ends

run_service("stuck", main)
"""


def test_a_stop_that_never_finishes_ends_at_the_deadline(infra, tmp_path: Path) -> None:
    env = {**os.environ, "SB_NATS_URL": infra.nats_url, "SB_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGING_SERVICE], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        out = b""
        while b"service_started" not in out and time.monotonic() < deadline:
            assert proc.stdout is not None
            out += proc.stdout.readline()
        assert b"service_started" in out
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = proc.wait(SHUTDOWN_DEADLINE_S + 10)
        took = time.monotonic() - started
        assert code == 70
        assert SHUTDOWN_DEADLINE_S - 1 <= took
        assert proc.stdout is not None and b"shutdown_deadline_exceeded" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_stop_that_finishes_exits_at_once(infra, tmp_path: Path) -> None:
    env = {**os.environ, "SB_NATS_URL": infra.nats_url, "SB_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", QUICK_SERVICE],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out = b""
        deadline = time.monotonic() + 30
        while b"service_started" not in out and time.monotonic() < deadline:
            assert proc.stdout is not None
            out += proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        # 0, not 70: had the deadline's timer thread held the exit back, it would have fired.
        assert proc.wait(SHUTDOWN_DEADLINE_S + 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


QUICK_SERVICE = """
from services.kernel.service import run_service

async def main(settings, bus, stop):
    await stop.wait()

run_service("quick", main)
"""


def test_the_deadline_holds_when_nobody_reads_the_output_any_more(infra, tmp_path: Path) -> None:
    # The runtime reads every service's output through a pipe; killed -9, it leaves services whose every
    # log write fails with BrokenPipeError, the deadline's own included.
    env = {**os.environ, "SB_NATS_URL": infra.nats_url, "SB_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGING_SERVICE], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        out = b""
        deadline = time.monotonic() + 30
        while b"service_started" not in out and time.monotonic() < deadline:
            assert proc.stdout is not None
            out += proc.stdout.readline()
        assert proc.stdout is not None
        proc.stdout.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(SHUTDOWN_DEADLINE_S + 10) == 70
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
