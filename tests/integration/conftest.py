"""Integration fixtures shared by several suites: a real API server process on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.runtime.embedded import free_port

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def api_server(infra) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """`python -m services.api` as a subprocess on a free 127.0.0.1 port; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "SB_DATABASE_URL": infra.app_url,
        "SB_NATS_URL": infra.nats_url,
        "SB_TOKEN_SECRET": infra.token_secret,
        "SB_SIGNUP_RATE_PER_MINUTE": "1000",
        "SB_SIGNIN_ADDRESS_RATE_PER_MINUTE": "100000",
        # Browser sessions' access tokens live 6 s here, so that tests see them refreshed many times.
        "SB_ACCESS_TOKEN_TTL_S": "6",
        "SB_BIND_HOST": "127.0.0.1",
        "SB_HTTP_PORT": str(port),
        "SB_DATA_DIR": str(infra.data_dir),
        "SB_LOG_LEVEL": "warning",
    }
    log_path = infra.data_dir / f"api-{port}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.api"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the API exited with {proc.returncode}; see {log_path}")
            try:
                httpx.get(f"{base}/healthz", timeout=2.0)  # any status: it answers
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the API did not answer within {START_TIMEOUT_S:.0f} s; see {log_path}"
                    ) from None
                time.sleep(0.05)
        yield base
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
