"""Small runtime pieces without servers: output prefixes, the data-dir lock, port checks, URL redaction."""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path

import pytest

from services.runtime.runtime import DataDirLock, StartupError, _redact, check_port_free
from services.runtime.supervisor import Output


def test_output_pads_names_to_one_column() -> None:
    stream = io.StringIO()
    out = Output(["api", "reporting"], stream=stream, colour=False)
    out.line("api", "hello")
    out.line("reporting", "x")
    out.line("runtime", "y")
    assert stream.getvalue().splitlines() == ["api       | hello", "reporting | x", "runtime   | y"]


def test_output_colours_only_when_asked() -> None:
    stream = io.StringIO()
    Output(["api"], stream=stream, colour=True).line("api", "hi")
    assert stream.getvalue().startswith("\x1b[") and stream.getvalue().endswith("| hi\n")
    assert Output(["api"], stream=io.StringIO()).colour is False  # not a terminal


def test_the_banner_also_reaches_the_terminal_when_the_output_is_a_file() -> None:
    """`make run > log`: the services' logs go to the file; the banner goes there too, in one piece, and to
    the terminal that started the platform (stderr) so that its next steps are seen."""
    master, replica = os.openpty()
    terminal = os.fdopen(replica, "w")
    try:
        log = io.StringIO()
        Output(["api"], stream=log).block(["", "Switchboard is up.", "  API  http://x"], person=terminal)
        assert log.getvalue() == "\nSwitchboard is up.\n  API  http://x\n"
        assert b"Switchboard is up." in os.read(master, 4096)
        # Not a terminal either (a test, a service manager): the output alone has it, once.
        other = io.StringIO()
        Output(["api"], stream=io.StringIO()).block(["Switchboard is up."], person=other)
        assert other.getvalue() == ""
    finally:
        terminal.close()
        os.close(master)


def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path)
    first.acquire()
    try:
        assert (tmp_path / "runtime.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(StartupError, match=rf"PID {os.getpid()}\) is already running"):
            DataDirLock(tmp_path).acquire()
    finally:
        first.release()
    assert not (tmp_path / "runtime.lock").exists()


def test_a_lock_file_nobody_holds_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / "runtime.lock").write_text("999999999\n")  # a runtime killed -9 left it
    lock = DataDirLock(tmp_path)
    lock.acquire()
    try:
        assert lock.stale_pid == 999999999
        assert (tmp_path / "runtime.lock").read_text().strip() == str(os.getpid())
    finally:
        lock.release()


def test_busy_ports_are_refused_with_the_flag_to_change() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(
            StartupError, match=rf"HTTP port 127.0.0.1:{port}/TCP is already in use.*--http-port"
        ):
            check_port_free("127.0.0.1", port, socket.SOCK_STREAM, "HTTP", "--http-port")
    check_port_free("127.0.0.1", port, socket.SOCK_STREAM, "HTTP", "--http-port")  # free again


def test_passwords_never_appear_in_printed_urls() -> None:
    assert (
        _redact("postgresql://sb_app:s3cret@db:5432/switchboard")
        == "postgresql://sb_app:***@db:5432/switchboard"
    )
    assert _redact("nats://tok3n@127.0.0.1:4222") == "nats://***@127.0.0.1:4222"
    assert _redact("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stream", "given", "expected"), [
    (_Terminal(), None, "console"),  # a person at the terminal: readable lines, the banner not buried
    (io.StringIO(), None, "json"),  # a pipe or a file (tests, systemd): JSON
    (_Terminal(), "json", "json"),  # SB_LOG_FORMAT wins
])  # fmt: skip
def test_services_log_for_whoever_reads_the_runtimes_output(
    stream: io.StringIO, given: str | None, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.runtime.embedded import Secrets
    from services.runtime.runtime import Options, Runtime

    if given is None:
        monkeypatch.delenv("SB_LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("SB_LOG_FORMAT", given)
    runtime = Runtime(Options(data_dir=tmp_path), Output(["api"], stream=stream), 0.0)
    env = runtime._child_env("api", Secrets("a", "b", "c", "d"))
    assert env["SB_LOG_FORMAT"] == expected


def test_start_up_progress_names_what_is_not_ready() -> None:
    import httpx

    from services.runtime.runtime import not_ready

    body = {
        "status": "degraded",
        "postgres": {"status": "ok"},
        "nats": {"status": "ok"},
        "services": {"api": {"status": "ok"}, "media": {"status": "down"}, "contacts": {"status": "down"}},
    }
    assert not_ready(httpx.Response(503, json=body)) == ["contacts", "media"]
    body["nats"] = {"status": "down"}
    assert not_ready(httpx.Response(503, json=body))[0] == "nats"
    assert not_ready(httpx.Response(502, text="Bad Gateway")) == ["api"]


def test_an_unknown_service_is_refused_before_anything_starts_and_without_importing_services(
    tmp_path: Path,
) -> None:
    """The entry points are looked up as files: importing services.api to find it cost seconds of every
    start before PostgreSQL even began."""
    import asyncio
    import subprocess
    import sys

    from services.runtime.runtime import Options, Runtime

    runtime = Runtime(
        Options(data_dir=tmp_path, services=("api", "nosuch")), Output(["api"], stream=io.StringIO()), 0.0
    )
    with pytest.raises(StartupError, match="no entry point for nosuch"):
        asyncio.run(runtime._start())
    runtime.lock.release()
    # In a fresh interpreter (this one may have imported the API already): the check imports no service.
    probe = (
        "import sys, asyncio, io, pathlib, tempfile\n"
        "from services.runtime.runtime import Options, Runtime, StartupError\n"
        "from services.runtime.supervisor import Output\n"
        "r = Runtime(Options(data_dir=pathlib.Path(tempfile.mkdtemp()), services=('api', 'nosuch')),"
        " Output(['api'], stream=io.StringIO()), 0.0)\n"
        "try:\n    asyncio.run(r._start())\nexcept StartupError:\n    pass\n"
        "print('services.api' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_services_start_without_what_they_do_not_use() -> None:
    """Start-up cost: every API process imported numpy (half a second or more on two busy cores) for the
    G.711 tables of one recording download, now imported by that download only; every service imported
    rich and pygments through structlog's dev module and httpx's command-line client (services/kernel/
    lean.py). Checked in a fresh interpreter: the API app, and a service that logs and calls out (IVR)."""
    import subprocess
    import sys

    probe = (
        "import sys, services.api.app, services.ivr.__main__, httpx, structlog\n"
        "print(sorted(m for m in ('numpy', 'rich', 'pygments') if m in sys.modules))\n"
        "print(structlog.dev.rich is None, httpx.main.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.stdout.split("\n")[:2] == ["[]", "True httpx"], (out.stdout, out.stderr[-2000:])
