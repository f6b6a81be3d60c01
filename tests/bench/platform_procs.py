"""The processes a benchmark starts, and their end: embedded PostgreSQL and NATS in a fresh data dir, and
every child (services, load generators) stopped on the way out, whether the run ends, fails, is
interrupted with Ctrl-C or stopped with SIGTERM (a time budget's `timeout`).

PostgreSQL runs supervised (our child, in its own process group, with a parent-death signal): started
detached with `pg_ctl`, a run killed before its `finally` left its postmaster running for good (two were
found after media-bridge runs). Children get a parent-death signal too, so even a `kill -9` of the
benchmark leaves nothing behind.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from services.runtime.embedded import EmbeddedNats, EmbeddedPostgres, Secrets, die_with_parent

__all__ = ["BenchPlatform", "wait_udp_bound"]


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `finally`, like Ctrl-C does


class BenchPlatform:
    """`with BenchPlatform("sbbench-x-") as platform:` PostgreSQL and NATS are up (`platform.pg`,
    `platform.nats`, `platform.data_dir`, `platform.secrets`); `platform.spawn(...)` starts a child that is
    stopped (SIGTERM, then SIGKILL after `grace` seconds) when the block ends, before NATS and PostgreSQL."""

    def __init__(self, prefix: str, *, keep: bool = False, grace: float = 15.0) -> None:
        self.prefix = prefix
        self.keep = keep
        self.grace = grace
        self.children: list[subprocess.Popen[Any]] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> BenchPlatform:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            self._previous[signum] = signal.signal(signum, _exit_on_signal)
        self.data_dir = Path(tempfile.mkdtemp(prefix=self.prefix))
        self.secrets = Secrets.load_or_create(self.data_dir)
        self.pg = EmbeddedPostgres(self.data_dir, self.secrets)
        self.nats = EmbeddedNats(self.data_dir, self.secrets)
        try:
            self.pg.start(supervised=True)
            self.nats.start()
        except BaseException:
            self.close()
            raise
        return self

    def spawn(self, args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """subprocess.Popen(args, **kwargs), ended with the platform (and with us, if we are killed)."""
        proc: subprocess.Popen[Any] = subprocess.Popen(args, preexec_fn=die_with_parent(), **kwargs)
        self.children.append(proc)
        return proc

    def stop_child(self, proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(self.grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        """Idempotent: children (newest first), NATS, PostgreSQL, the data dir; each even if one before
        it failed."""
        for signum in self._previous:
            signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        children, self.children = self.children, []
        for proc in reversed(children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(children):
            try:
                self.stop_child(proc)
            except Exception as exc:  # keep going: the servers below must stop too
                print(f"could not stop {proc.pid}: {exc}", file=sys.stderr)
        for server in (self.nats, self.pg):
            try:
                server.stop()
            except Exception as exc:
                print(f"could not stop {type(server).__name__}: {exc}", file=sys.stderr)
        if not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.close()
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)


def wait_udp_bound(port: int, seconds: float, host: str = "127.0.0.1") -> bool:
    """Until a service has bound UDP `port` (its SIP port: it is up), at most `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                return True
        time.sleep(0.1)
    return False
