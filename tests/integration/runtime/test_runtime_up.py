"""`switchboard up` end to end: the real `python -m services.runtime` in a subprocess, inspected with psutil.

Three runs share one data dir, in order: the first serves most tests and ends with SIGTERM; the second
(with --demo again) proves the data is reused and the demo idempotent, and ends with kill -9; the third
takes over the stale lock (and a PostgreSQL left running for the data dir) and ends with SIGINT.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from services.kernel import db
from services.kernel.ids import new_id
from services.kernel.waits import close_pool
from services.runtime.embedded import APP_ROLE, DATABASE, EmbeddedPostgres, Secrets, free_port

HAVE_API = importlib.util.find_spec("services.api.__main__") is not None
ALL_SERVICES = ("api", "media", "routing", "ivr", "contacts", "recording", "reporting")
# Until services/api exists, the supervisor is exercised with the other services alone.
SERVICES = ALL_SERVICES if HAVE_API else ALL_SERVICES[1:]
needs_api = pytest.mark.skipif(not HAVE_API, reason="services/api/__main__.py does not exist yet")

# Above the longest bounded wait of a test here (`wait_ready`'s 90 s for a whole platform to start, then the
# kill's 10 + 15 s), so a slow start fails with `up`'s own output rather than pytest-timeout's stack dump: at
# load 19 the second run's start took more than the 60 s this used to be.
pytestmark = pytest.mark.timeout(150)


def _env() -> dict[str, str]:
    # A developer's SB_* settings (external servers, ports) must not leak into the runtime under test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SB_")}
    env["NO_COLOR"] = "1"
    return env


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {proc.name()} (parent {proc.ppid()}): {' '.join(proc.cmdline())[:200]}"
    except psutil.Error:
        return f"{proc.pid} (gone while described)"


def _processes_using(path: Path) -> list[str]:
    """Live processes whose command line names `path`, described for the failure message."""
    found = []
    for proc in psutil.process_iter(["cmdline", "name", "ppid"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(path) in cmdline and not _gone(proc.pid):
            found.append(_describe(proc))
    return found


class Up:
    """One `python -m services.runtime` run with its output in a log file."""

    def __init__(self, data_dir: Path, http_port: int, sip_port: int, *, demo: bool, log: Path) -> None:
        self.data_dir = data_dir
        self.api = f"http://127.0.0.1:{http_port}"
        self.log = log
        argv = [
            sys.executable,
            "-m",
            "services.runtime",
            "--data-dir",
            str(data_dir),
            "--http-port",
            str(http_port),
            "--sip-port",
            str(sip_port),
            "--services",
            ",".join(SERVICES),
            # One media process, as these tests look for one `media` child (sharding: tests/e2e/media).
            "--media-workers",
            "1",
        ]
        if demo:
            argv.append("--demo")
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=_env())
        self.ps = psutil.Process(self.proc.pid)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"up exited with {self.proc.returncode}:\n{self.output()}\n{self._server_log()}"
                )
            if "Switchboard is up" in self.output() and set(self.services()) == set(SERVICES):
                return
            time.sleep(0.1)
        raise AssertionError(f"up did not get ready in {timeout} s:\n{self.output()}")

    def _server_log(self) -> str:
        log = self.data_dir / "pg" / "server.log"
        tail = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else ["(none)"]
        return "PostgreSQL's server.log (last lines):\n" + "\n".join(tail)

    def services(self) -> dict[str, psutil.Process]:
        found = {}
        for child in self.ps.children():
            try:
                cmdline = child.cmdline()
            except psutil.NoSuchProcess:
                continue
            if len(cmdline) >= 3 and cmdline[1] == "-m" and cmdline[2].startswith("services."):
                found[cmdline[2].removeprefix("services.")] = child
        return found

    def descendants(self) -> list[psutil.Process]:
        return self.ps.children(recursive=True)

    def healthz(self) -> httpx.Response:
        return httpx.get(f"{self.api}/healthz", timeout=5, trust_env=False)

    def wait_healthy(self, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.healthz()
                if last.status_code == 200:
                    return last.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"/healthz not 200 within {timeout} s: {last and last.text}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def _run_async(coro: Coroutine[object, object, object]) -> object:
    # Its own loop in its own thread: the tests stay plain functions, pytest-asyncio's loop is untouched.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _app_url(data_dir: Path) -> str:
    secrets_ = json.loads((data_dir / "secrets.json").read_text())
    port = int((data_dir / "pg" / "postmaster.pid").read_text().splitlines()[3])
    return f"postgresql://{APP_ROLE}:{secrets_['pg_app_password']}@127.0.0.1:{port}/{DATABASE}"


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    # Not under pytest's basetemp: every pytest session that starts on the machine resets
    # /tmp/pytest-of-<user> to 0700, and the PostgreSQL running as its own user then loses its way to its
    # files (it PANICked on pg_control while another session started).
    top = Path(tempfile.mkdtemp(prefix="sbup-"))
    yield top / "data"
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="module")
def ports() -> tuple[int, int]:
    http = free_port()
    while True:  # the SIP port must differ and be free for UDP too
        sip = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", sip))
            except OSError:
                continue
        if sip != http:
            return http, sip


@pytest.fixture(scope="module")
def first(data_dir: Path, ports: tuple[int, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    up = Up(data_dir, *ports, demo=True, log=tmp_path_factory.mktemp("logs") / "first.log")
    try:
        up.wait_ready()
        yield up
    finally:
        if up.proc.poll() is None:
            up.stop(signal.SIGKILL)


def test_up_runs_postgres_nats_and_every_service_in_their_own_groups(first: Up) -> None:
    services = first.services()
    assert sorted(services) == sorted(SERVICES)
    children = first.ps.children()
    names = {c.name() for c in children}
    assert "postgres" in names and "nats-server" in names
    for child in children:
        assert os.getpgid(child.pid) == child.pid, f"{child.name()} shares the runtime's process group"
    pg = next(c for c in children if c.name() == "postgres")
    assert str(first.data_dir / "pg") in " ".join(pg.cmdline())
    out = first.output()
    assert "cold start" in out
    assert "migrations applied: 0001" in out
    # Service output is prefixed with its padded name.
    assert "routing   | " in out


async def _write_marker(url: str, tenant: uuid.UUID) -> None:
    pool = await db.create_pool(url, max_size=1)
    try:
        async with db.tenant_tx(pool, tenant) as conn:
            await conn.execute(
                "INSERT INTO tenants (id, name, admin_email) VALUES ($1, 'Marker', 'm@marker.example')",
                tenant,
            )
    finally:
        await close_pool(pool)


async def _read_marker(url: str, tenant: str) -> str | None:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant)
            return await conn.fetchval("SELECT name FROM tenants")
    finally:
        await conn.close()


def test_a_row_written_now_survives_into_the_next_run(first: Up) -> None:
    tenant = new_id()
    _run_async(_write_marker(_app_url(first.data_dir), tenant))
    (first.data_dir.parent / "marker").write_text(str(tenant))


@needs_api
def test_healthz_reports_postgres_nats_and_every_service(first: Up) -> None:
    body = first.wait_healthy()
    assert body["status"] == "ok"
    assert body["postgres"]["status"] == "ok" and body["nats"]["status"] == "ok"
    pids = {name: proc.pid for name, proc in first.services().items()}
    for name in SERVICES:
        assert body["services"][name]["status"] == "ok", body
    # `switchboard up` runs two API processes on one port by default: either may answer.
    api_pids = {c.pid for c in first.ps.children() if c.cmdline()[1:3] == ["-m", "services.api"]}
    assert len(api_pids) == 2 and pids["api"] in api_pids
    assert body["services"]["api"]["pid"] in api_pids
    assert first.healthz().headers["content-type"].startswith("application/json")


def test_metrics_show_every_processs_own_figures(first: Up) -> None:
    """Each service ships its figures in its heartbeat; any api process re-exports them, labelled."""
    first.wait_healthy()
    pids = {name: proc.pid for name, proc in first.services().items()}
    deadline, text = time.monotonic() + 20, ""
    while time.monotonic() < deadline:
        text = httpx.get(f"{first.api}/metrics", timeout=5, trust_env=False).text
        cpu = {
            line.split('service="')[1].split('"')[0]: line
            for line in text.splitlines()
            if line.startswith("sb_process_cpu_seconds_total{")
        }
        held = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("sb_partitions_held{") and 'lease="routing"' in line
        ]
        if set(SERVICES) <= set(cpu) and sum(held) == 16:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"not every service's figures within 20 s:\n{text[-3000:]}")
    for name in SERVICES:
        if name != "api":  # either api process may answer: its own instance is the one that did
            assert f':{pids[name]}"' in cpu[name], (name, cpu[name])
    assert (
        "sb_routing_agents{" in text and "sb_media_sip_legs{" in text and "sb_event_loop_lag_seconds{" in text
    )


@needs_api
def test_demo_tenant_exists_with_its_key_kept_private(first: Up) -> None:
    path = first.data_dir / "demo.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = json.loads(path.read_text())["api_key"]
    assert key in first.output()  # printed for the user
    assert "Flow       demo-line v1 answers +1555010000" in first.output()
    counts = _demo_counts(first.api, key)
    assert counts == {"agents": 2, "queues": 1, "numbers": 1, "flows": 1, "flow_versions": 1}


@needs_api
def test_the_banners_next_commands_work_as_printed(first: Up, tmp_path: Path) -> None:
    """A fresh shell (no virtualenv on PATH, an empty config home) runs the banner's lines verbatim."""
    out = first.output()
    block = out[out.index("Next, in another terminal") :].split("\n\n")[0].splitlines()[1:]
    commands = [line.strip() for line in block if not line.strip().startswith("(")]
    assert [c.split()[1:3] for c in commands][:3] == [
        ["login", "--profile"],
        ["agents", "list"],
        ["agents", "invite"],
    ]
    assert commands[3].split()[1] == "signup", block
    assert commands[0].startswith(".venv/bin/switchboard ") or commands[0].startswith("/")
    assert any(". .venv/bin/activate" in line or "/activate" in line for line in block)
    env = {**_env(), "XDG_CONFIG_HOME": str(tmp_path / "config"), "PATH": "/usr/bin:/bin"}
    for name in ("SB_API_URL", "SB_API_KEY", "SB_PROFILE"):
        env.pop(name, None)
    results = [
        subprocess.run(["bash", "-c", c], env=env, capture_output=True, text=True, timeout=30)
        for c in commands
    ]
    for command, result in zip(commands, results, strict=True):
        assert result.returncode == 0, (command, result.stdout, result.stderr)
    assert "Logged in to Demo Co" in results[0].stdout and "'demo'" in results[0].stdout
    assert "ada@demo.example" in results[1].stdout
    assert "/agent/#invite=" in results[2].stdout and "Ada Agent" in results[2].stdout
    # The demo key stays in its own profile; the signup went to 'default' beside it.
    profiles = (tmp_path / "config" / "switchboard" / "profiles.toml").read_text()
    assert '["demo"]' in profiles and '["default"]' in profiles


def _demo_counts(api: str, key: str) -> dict[str, int]:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=api, headers=headers, timeout=5, trust_env=False) as client:
        assert client.get("/v1/me").json()["tenant"]["name"] == "Demo Co"
        counts = {
            what: len(client.get(f"/v1/{what}").json()["items"])
            for what in ("agents", "queues", "numbers", "flows")
        }
        # The demo number is answered by the demo flow, deployed once however many runs there were.
        (flow,) = client.get("/v1/flows").json()["items"]
        (number,) = client.get("/v1/numbers").json()["items"]
        assert flow["name"] == "demo-line" and number["flow_id"] == flow["id"]
        counts["flow_versions"] = len(client.get("/v1/flows/demo-line/versions").json()["items"])
        return counts


def test_a_killed_service_is_restarted(first: Up) -> None:
    old = first.services()["routing"]
    old.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        new = first.services().get("routing")
        if new is not None and new.pid != old.pid:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"routing was not restarted:\n{first.output()}")
    assert "routing exited with signal SIGKILL" in first.output()
    assert sorted(first.services()) == sorted(SERVICES)
    if HAVE_API:
        deadline = time.monotonic() + 20
        while True:
            body = first.wait_healthy()
            if body["services"]["routing"]["pid"] == new.pid:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.2)


def test_a_second_up_on_the_same_data_dir_refuses(first: Up, ports: tuple[int, int], tmp_path: Path) -> None:
    before = {p.pid for p in first.descendants()}
    # Through the console script when installed, so that `switchboard up` itself is covered too.
    script = Path(sys.executable).parent / "switchboard"
    command = [str(script), "up"] if script.exists() else [sys.executable, "-m", "services.runtime"]
    second = subprocess.run(
        [*command, "--data-dir", str(first.data_dir), "--http-port", str(ports[0])],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=30,
    )
    assert second.returncode == 1
    assert "already running" in second.stderr and f"PID {first.proc.pid}" in second.stderr
    assert second.stderr.count("\n") == 1  # one clear line
    assert first.proc.poll() is None
    assert {p.pid for p in first.services().values()} <= before


def test_busy_ports_are_refused_clearly(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                *(sys.executable, "-m", "services.runtime", "--data-dir", str(tmp_path / "d")),
                *("--sip-port", str(port), "--http-port", str(free_port()), "--services", "media"),
            ],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=30,
        )
    assert result.returncode == 1
    assert f"SIP port 127.0.0.1:{port}/UDP is already in use" in result.stderr
    assert not (tmp_path / "d" / "pg").exists()  # refused before starting anything


def test_sigterm_stops_everything_and_leaves_no_process(first: Up) -> None:
    recorded = first.descendants()
    assert len(recorded) >= len(SERVICES) + 2
    started = time.monotonic()
    assert first.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 15
    assert [p.pid for p in recorded if not _gone(p.pid)] == []
    assert _processes_using(first.data_dir) == []
    assert not (first.data_dir / "runtime.lock").exists()
    assert "stopped in" in first.output()


def test_second_run_reuses_the_data_and_the_demo_then_survives_kill_9(
    first: Up, ports: tuple[int, int], tmp_path: Path
) -> None:
    assert first.proc.poll() is not None  # the previous test stopped it
    up = Up(first.data_dir, *ports, demo=True, log=tmp_path / "second.log")
    try:
        up.wait_ready()
        assert "warm start" in up.output()
        assert "migrations: up to date" in up.output()
        marker = (first.data_dir.parent / "marker").read_text()
        assert _run_async(_read_marker(_app_url(up.data_dir), marker)) == "Marker"
        if HAVE_API:
            key = json.loads((up.data_dir / "demo.json").read_text())["api_key"]
            assert key in first.output()  # the same key as the first run: the tenant was reused
            assert "(already there)" in up.output()
            assert _demo_counts(up.api, key) == {
                "agents": 2,
                "queues": 1,
                "numbers": 1,
                "flows": 1,
                "flow_versions": 1,
            }

        # kill -9 the runtime: the parent-death signal takes every child with it, PostgreSQL included.
        recorded = up.descendants()
        up.proc.kill()
        up.proc.wait(10)
        deadline = time.monotonic() + 15
        # A child forked just before the kill is not in `recorded`: it must go too, by the same signal.
        while time.monotonic() < deadline and (
            [p for p in recorded if not _gone(p.pid)] or _processes_using(up.data_dir)
        ):
            time.sleep(0.1)
        assert [_describe(p) for p in recorded if not _gone(p.pid)] == []
        assert _processes_using(up.data_dir) == []
    finally:
        if up.proc.poll() is None:
            up.stop(signal.SIGKILL)


def test_third_run_takes_over_the_stale_lock_and_a_stray_postgres(
    first: Up, ports: tuple[int, int], tmp_path: Path
) -> None:
    lock = first.data_dir / "runtime.lock"
    assert lock.exists()  # left behind by the runtime killed -9
    # A PostgreSQL left running for the data dir (started detached, as pg_ctl does) is taken over cleanly.
    stray = EmbeddedPostgres(first.data_dir, Secrets.load_or_create(first.data_dir))
    stray.start()
    stray_pid = stray.running_pid()
    assert stray_pid is not None
    up = Up(first.data_dir, *ports, demo=False, log=tmp_path / "third.log")
    try:
        up.wait_ready()
        assert "took over the lock left by an earlier runtime" in up.output()
        assert f"PostgreSQL left running for this data dir (PID {stray_pid})" in up.output()
        assert _gone(stray_pid)
        assert lock.read_text().strip() == str(up.proc.pid)
        if HAVE_API:
            up.wait_healthy()
        assert up.stop(signal.SIGINT) == 0
        assert _processes_using(up.data_dir) == []
    finally:
        if up.proc.poll() is None:
            up.stop(signal.SIGKILL)


def test_external_servers_are_used_instead_of_embedded_ones(infra, tmp_path: Path) -> None:
    env = _env() | {
        "SB_DATABASE_URL": infra.app_url,
        "SB_DATABASE_ADMIN_URL": infra.owner_url,
        "SB_NATS_URL": infra.nats_url,
    }
    data_dir = tmp_path / "ext"
    log = tmp_path / "ext.log"
    argv = [sys.executable, "-m", "services.runtime", "--data-dir", str(data_dir)]
    argv += ["--http-port", str(free_port()), "--sip-port", str(free_port()), "--services", "media,routing"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while "Switchboard is up" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        text = log.read_text()
        assert "(SB_DATABASE_URL)" in text and "(SB_NATS_URL)" in text and "migrations: up to date" in text
        assert infra.app_url.split("@")[0].split(":")[-1] not in text  # the password is never printed
        children = psutil.Process(proc.pid).children()
        assert {c.name() for c in children}.isdisjoint({"postgres", "nats-server"})
        assert not (data_dir / "pg").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The external servers are left running.
    assert _run_async(_read_marker(infra.app_url, str(new_id()))) is None
