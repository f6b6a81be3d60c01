"""The asyncio side of the supervisor: spawns service processes, prefixes their output, restarts them.

Every restart decision is SupervisorCore's (supervisor_core.py); this module only carries them out. Each
child runs in its own process group (so a Ctrl-C at the terminal reaches the runtime alone, which then stops
the children in order) and with a parent-death signal (so nothing outlives a runtime killed with -9).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from .embedded import die_with_parent
from .supervisor_core import Policy, RestartScheduled, Start, SupervisorCore

__all__ = ["ChildSpec", "Output", "Supervisor"]

# Lines longer than this are cut rather than breaking the reader (asyncio's default limit is 64 KiB).
_LINE_LIMIT = 1 << 20
_COLOURS = ("36", "32", "33", "35", "34", "91", "96", "92")


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: Sequence[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()  # inherited by the child (the API processes' shared listening socket)


class Output:
    """Writes lines as `name      | text`, the name padded to a column and coloured on a terminal."""

    def __init__(
        self, names: Sequence[str], stream: TextIO | None = None, colour: bool | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        if colour is None:
            colour = self.stream.isatty() and not os.environ.get("NO_COLOR")
        self.colour = colour
        self.width = max(len(n) for n in [*names, "runtime"])
        self._codes = {name: _COLOURS[i % len(_COLOURS)] for i, name in enumerate(names)}
        self._codes["runtime"] = "1"

    def isatty(self) -> bool:
        try:
            return bool(self.stream.isatty())
        except (AttributeError, ValueError):  # a closed or unusual stream
            return False

    def line(self, name: str, text: str) -> None:
        label = name.ljust(self.width)
        if self.colour:
            label = f"\x1b[{self._codes.get(name, '1')}m{label}\x1b[0m"
        self.raw(f"{label} | {text}")

    def raw(self, text: str) -> None:
        # A closed or broken stdout must not take the runtime (and with it every service) down.
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text + "\n")
            self.stream.flush()

    def block(self, lines: Sequence[str], person: TextIO | None = None) -> None:
        """Lines for a person (the banner), written in one piece. When the output is not a terminal (`make
        run > log`: the services' JSON logs go there) and `person` (stderr by default) is one, they are
        also written there, where the person who started the platform is looking."""
        text = "".join(line + "\n" for line in lines)
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text)
            self.stream.flush()
        person = person if person is not None else sys.stderr
        if self.isatty() or person is self.stream:
            return
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if person.isatty():
                person.write(text)
                person.flush()


class Supervisor:
    def __init__(self, specs: Sequence[ChildSpec], output: Output, policy: Policy | None = None) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.core = SupervisorCore(self.specs, policy)
        self.out = output
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items() if proc.returncode is None}

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._apply(self.core.start(self._loop.time()))

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _apply(self, actions: Sequence[Start | RestartScheduled]) -> None:
        for action in actions:
            if isinstance(action, Start):
                self._spawn_soon(action.name)
            else:
                self.out.line(
                    "runtime",
                    f"{action.name} exited with {_describe(action.returncode)} after {action.ran_for_s:.1f} s;"
                    f" restarting in {action.delay_s:g} s (restart #{action.restarts})",
                )
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self.core.next_timer()
        if due is not None and self._loop is not None:
            self._timer = self._loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._apply(self.core.handle_timer(self._now()))

    def _spawn_soon(self, name: str) -> None:
        task = asyncio.create_task(self._spawn(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _spawn(self, name: str) -> None:
        spec = self.specs[name]
        try:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                env=spec.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                process_group=0,
                pass_fds=spec.pass_fds,
                preexec_fn=die_with_parent(),
                limit=_LINE_LIMIT,
            )
        except OSError as exc:
            self.out.line("runtime", f"could not start {name}: {exc}")
            self._apply(self.core.start_failed(name, self._now()))
            return
        self.procs[name] = proc
        if self.core.stopping:  # stop() began while we were spawning
            _signal_group(proc, signal.SIGTERM)
        self._watchers[name] = asyncio.create_task(self._watch(name, proc))

    async def _watch(self, name: str, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:  # a line over the limit: the reader has dropped it
                self.out.line(name, "[line too long, dropped]")
                continue
            if not raw:
                break
            self.out.line(name, raw.decode("utf-8", "replace").rstrip("\r\n"))
        returncode = await proc.wait()
        self._apply(self.core.exited(name, returncode, self._now()))

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every child's process group, wait up to `timeout`, then SIGKILL what is left."""
        self.core.stop()
        self._arm()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        watchers = [t for t in self._watchers.values() if not t.done()]
        if watchers:
            _done, pending = await asyncio.wait(watchers, timeout=timeout)
            if pending:
                for name, proc in self.procs.items():
                    if proc.returncode is None:
                        self.out.line("runtime", f"{name} did not stop within {timeout:g} s: killing it")
                        _signal_group(proc, signal.SIGKILL)
                await asyncio.wait(pending, timeout=5)

    def kill(self) -> None:
        """SIGKILL every child at once (a second Ctrl-C)."""
        self.core.stop()
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    # The child leads its own group (process_group=0), so its PID is the group id; signalling the group
    # reaches anything it forked too. Never after it was reaped: its PID may belong to someone else then.
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"code {returncode}"
