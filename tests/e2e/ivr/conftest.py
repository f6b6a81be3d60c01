"""Fixtures for the IVR end to end: the real API (tests/integration/conftest.py's `api_server`), and the
media and ivr services as real subprocesses against the session's PostgreSQL and NATS.

The media start is a few lines copied from tests/integration/media/conftest.py (test folders cannot import
each other's conftests under importlib mode, and that one is being changed by its owner)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.runtime.embedded import free_port
from tests.integration.conftest import api_server  # noqa: F401  (re-exported as a fixture here)

REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Stack:
    sip_port: int
    media_log: Path
    ivr_log: Path


def _env(infra, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        **os.environ,
        "SB_DATABASE_URL": infra.app_url,
        "SB_NATS_URL": infra.nats_url,
        "SB_TOKEN_SECRET": infra.token_secret,
        "SB_BIND_HOST": "127.0.0.1",
        "SB_DATA_DIR": str(infra.data_dir),
        "SB_LOG_LEVEL": "info",
        **extra,
    }


def _sip_options_answered(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    msg = (
        f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKivrping\r\n"
        "From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: ivr-ping\r\nCSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            s.sendto(msg, ("127.0.0.1", port))
            try:
                if s.recvfrom(65536)[0].startswith(b"SIP/2.0 200"):
                    return True
            except TimeoutError:
                pass
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _ivr_ready(log: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """The ivr process logs `service_started` once its bus is up; its subscriptions follow at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the ivr service exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        text = log.read_text(errors="replace")
        if "service_started" in text or "heartbeat" in text:
            time.sleep(0.5)
            return
        time.sleep(0.05)
    raise RuntimeError(f"the ivr service did not start; see {log}:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def ivr_stack(infra) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    # Module scope: an ivr process left running would take the calls of tests/integration/ivr (which run
    # their own adapter against a fake media on the same NATS) later in the session.
    sip_port = free_port()
    rtp_low = 30000 + ((os.getpid() + sip_port) % 200) * 40
    media_log = infra.data_dir / f"ivr-e2e-media-{sip_port}.log"
    ivr_log = infra.data_dir / f"ivr-e2e-ivr-{sip_port}.log"
    media_env = _env(
        infra,
        SB_SIP_PORT=str(sip_port),
        SB_RTP_PORT_MIN=str(rtp_low),
        SB_RTP_PORT_MAX=str(rtp_low + 1000),
        SB_SERVICE_NAME="media",
    )
    with open(media_log, "ab") as log:
        media = subprocess.Popen(
            [sys.executable, "-m", "services.media"],
            cwd=REPO,
            env=media_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    with open(ivr_log, "ab") as log:
        ivr = subprocess.Popen(
            [sys.executable, "-m", "services.ivr"],
            cwd=REPO,
            env=_env(infra, SB_SERVICE_NAME="ivr"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        if not _sip_options_answered(sip_port, 20.0):
            raise RuntimeError(f"the media service did not answer OPTIONS:\n{media_log.read_text()[-3000:]}")
        _ivr_ready(ivr_log, ivr, 20.0)
        yield Stack(sip_port=sip_port, media_log=media_log, ivr_log=ivr_log)
    finally:
        _stop(ivr)
        _stop(media)
