"""Helpers for tests that run the services as real subprocesses: their environment against the session's
PostgreSQL and NATS, a bounded stop, and a SIP OPTIONS probe (answered 200 once a SIP port is served).
Import as `from tests.service_procs import service_env, stop, stop_all, sip_answers`; `consumer_ready` and
`drop_consumers` for the durable JetStream consumers a stack's services read events through; `start_api`
for an API process of one's own; `start_service` for any other service process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import nats

from services.runtime.bususers import BUS_SERVICES, service_password
from services.runtime.embedded import free_port

__all__ = [
    "consumer_ready",
    "drop_consumers",
    "service_env",
    "service_nats_url",
    "sip_answers",
    "start_api",
    "start_service",
    "start_services",
    "stop",
    "stop_all",
]

REPO = Path(__file__).resolve().parents[1]

# A service process spends about 2 s of CPU importing and building its app before it listens (the API:
# 1.5 s of imports, 0.6 s for create_app, measured at load 18). On 2 cores at load 18 it gets a ninth of a
# core, so that alone is 15-20 s of wall time: 30 s was hit at load 17-19. A start that is stuck rather
# than starved shows in the CPU seconds that `starved` names when the limit is hit.
START_LIMIT_S = 90.0


def starved(pid: int) -> str:
    """The process's CPU seconds so far and the machine's load: a start that used its ~2 s of CPU and still
    does not answer is stuck (waiting on something); one far below it was starved."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        load = Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError, ValueError):
        return "CPU time unknown"
    return f"it used {cpu:.1f} s of CPU, load {load}"


def service_nats_url(infra: Any, service: str) -> str:
    """The URL `service` connects with under `switchboard up`: its own NATS user (services/runtime/bususers.py),
    refused every subject that is not its own; the session's admin URL for a name with no user."""
    if service not in BUS_SERVICES:
        return str(infra.nats_url)
    parts = urlsplit(infra.nats_url)
    return f"nats://{service}:{service_password(parts.password or '', service)}@{parts.hostname}:{parts.port}"


def service_env(infra: Any, **extra: str) -> dict[str, str]:
    """A service's environment; with SB_SERVICE_NAME (one of the platform's services), its own NATS user."""
    return {
        **os.environ,
        "SB_DATABASE_URL": infra.app_url,
        "SB_NATS_URL": service_nats_url(infra, extra.get("SB_SERVICE_NAME", "")),
        "SB_TOKEN_SECRET": infra.token_secret,
        "SB_BIND_HOST": "127.0.0.1",
        "SB_DATA_DIR": str(infra.data_dir),
        "SB_LOG_LEVEL": os.environ.get("SB_TEST_LOG_LEVEL", "info"),
        **extra,
    }


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s: a test never waits on a process for ever."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """`stop` for several at once: SIGTERM to each (in this order), then one 10 s wait for them all, then
    SIGKILL for any still running. One after the other, a stack's stops added up (each service takes a
    second or more to close its bus and sockets)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def sip_answers(port: int, timeout: float) -> bool:
    """An OPTIONS to 127.0.0.1:`port` is answered 200 within `timeout` (through a front: a worker is linked)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.2)
        local = s.getsockname()[1]
        while time.monotonic() < deadline:
            request = (
                f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{secrets.token_hex(6)}\r\n"
                f"From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: {secrets.token_hex(6)}\r\n"
                "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            s.sendto(request.encode(), ("127.0.0.1", port))
            try:
                if s.recvfrom(65536)[0].startswith(b"SIP/2.0 200"):
                    return True
            except TimeoutError:
                pass
    return False


async def consumer_ready(nats_url: str, name: str, timeout: float) -> None:
    """A service logs its start before its durable consumer exists; a call placed before that would not be
    seen (the consumer starts with new events)."""
    nc = await nats.connect(nats_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await nc.jetstream().consumer_info("SB_EVENTS", name)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the durable consumer {name} does not exist") from None
                await asyncio.sleep(0.05)
    finally:
        await nc.close()


async def drop_consumers(nats_url: str, *names: str) -> None:
    """A stack's durable consumers would otherwise keep collecting the rest of the session's events, and
    calls its IVR and coordinator saved (stopped mid-call) would be resumed by later folders' adapters."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        for cleanup in (
            *(js.delete_consumer("SB_EVENTS", name) for name in names),
            js.delete_key_value("sb_ivr_calls"),
            js.delete_key_value("sb_contacts"),
        ):
            try:
                await asyncio.wait_for(cleanup, 5.0)
            except Exception:
                pass
    finally:
        await nc.close()


@contextlib.contextmanager
def start_api(infra: Any, **extra: str) -> Iterator[str]:
    """`python -m services.api` on a free 127.0.0.1 port with the session's PostgreSQL and NATS (plus
    `extra` SB_* variables); yields its base URL once it answers."""
    port = free_port()
    env = service_env(
        infra, SB_HTTP_PORT=str(port), SB_LOG_LEVEL="warning", **{"SB_SERVICE_NAME": "api", **extra}
    )
    log_path = infra.data_dir / f"api-{port}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.api"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the API exited with {proc.returncode}; see {log_path}")
            try:
                httpx.get(f"{base}/healthz", timeout=2.0)  # any status: it answers
                break
            except httpx.TransportError:
                if time.monotonic() - started > START_LIMIT_S:
                    raise RuntimeError(
                        f"the API did not answer within {START_LIMIT_S:.0f} s ({starved(proc.pid)});"
                        f" see {log_path}"
                    ) from None
                time.sleep(0.05)
        yield base
    finally:
        stop(proc)


def start_service(
    infra: Any, module: str, log_path: Path, *, timeout: float = START_LIMIT_S, **extra: str
) -> subprocess.Popen[bytes]:
    """`python -m <module>` with the session's PostgreSQL and NATS (plus `extra` SB_* variables), its output
    appended to `log_path`; returns once it logged `service_started`. The caller stops it (`stop_all`)."""
    return start_services(infra, [(module, log_path, extra)], timeout=timeout)[0]


def start_services(
    infra: Any, specs: list[tuple[str, Path, dict[str, str]]], *, timeout: float = START_LIMIT_S
) -> list[subprocess.Popen[bytes]]:
    """Several `start_service`s at once (module, log, extra variables): all launched, then each waited for
    (their imports overlap instead of adding up)."""
    procs: list[subprocess.Popen[bytes]] = []
    starts: list[int] = []
    for module, log_path, extra in specs:
        starts.append(
            log_path.read_text(errors="replace").count("service_started") if log_path.exists() else 0
        )
        with open(log_path, "ab") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", module],
                    cwd=REPO,
                    # services.media.front is media's: it publishes a lost worker's calls' ends
                    env=service_env(infra, **{"SB_SERVICE_NAME": module.split(".")[1], **extra}),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    deadline = time.monotonic() + timeout
    for proc, (module, log_path, _), before in zip(procs, specs, starts, strict=True):
        while log_path.read_text(errors="replace").count("service_started") <= before:
            if proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited with {proc.returncode}" if proc.poll() is not None else starved(proc.pid)
                stop_all(procs)
                raise RuntimeError(
                    f"{module} did not start ({why}):\n{log_path.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.05)
    return procs
