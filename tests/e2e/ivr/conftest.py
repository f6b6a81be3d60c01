"""Fixtures for the IVR end to end: the real API (tests/conftest.py's `api_server`), and the media, ivr
and contacts services as real subprocesses against the session's PostgreSQL and NATS (tests/service_procs.py).
The contact coordinator answers every routed call and runs the number's flow in the IVR (`ivr.run`), so a
flow needs it; routing is the tests' own (they answer its commands)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.runtime.embedded import free_port
from tests.service_procs import (
    START_LIMIT_S,
    consumer_ready,
    drop_consumers,
    service_env,
    sip_answers,
    stop_all,
)

REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Stack:
    sip_port: int
    media_log: Path
    ivr_log: Path
    contacts_log: Path


def _ivr_ready(log: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """The ivr (or contacts) process logs `service_started` once its bus is up; its subscriptions follow at
    once."""
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
def ivr_stack(folder_scope, infra) -> Stack:  # type: ignore[no-untyped-def]
    # Shared by this folder's modules, and stopped after its last test (tests/conftest.py's FolderScope): an
    # ivr process left running would take the calls of tests/integration/ivr (which run their own adapter
    # against a fake media on the same NATS) later in the session.
    return folder_scope.share(Path(__file__).parent, "ivr_stack", lambda: _ivr_stack(infra))  # type: ignore[no-any-return]


@contextlib.contextmanager
def _ivr_stack(infra: Any) -> Iterator[Stack]:
    sip_port = free_port()
    rtp_low = 30000 + ((os.getpid() + sip_port) % 200) * 40
    media_log = infra.data_dir / f"ivr-e2e-media-{sip_port}.log"
    ivr_log = infra.data_dir / f"ivr-e2e-ivr-{sip_port}.log"
    contacts_log = infra.data_dir / f"ivr-e2e-contacts-{sip_port}.log"
    durable = f"ivr-e2e-{sip_port}"
    contacts_durable = f"ivr-e2e-contacts-{sip_port}"
    media_env = service_env(
        infra,
        SB_SIP_PORT=str(sip_port),
        SB_RTP_PORT_MIN=str(rtp_low),
        SB_RTP_PORT_MAX=str(rtp_low + 1000),
        SB_SERVICE_NAME="media",
        # No overload shedding: on a loaded test machine it would refuse the test's INVITE (first_call's
        # conftest says more).
        SB_MEDIA_MAX_LAG_MS="0",
        SB_MEDIA_MAX_CPU="0",
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
            # Its own durable consumer, dropped at the end: later folders must not replay these events.
            env=service_env(infra, SB_SERVICE_NAME="ivr", SB_IVR_DURABLE=durable),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    with open(contacts_log, "ab") as log:
        contacts = subprocess.Popen(
            [sys.executable, "-m", "services.contacts"],
            cwd=REPO,
            env=service_env(infra, SB_SERVICE_NAME="contacts", SB_CONTACTS_DURABLE=contacts_durable),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        if not sip_answers(sip_port, START_LIMIT_S):
            raise RuntimeError(f"the media service did not answer OPTIONS:\n{media_log.read_text()[-3000:]}")
        _ivr_ready(ivr_log, ivr, START_LIMIT_S)
        _ivr_ready(contacts_log, contacts, START_LIMIT_S)
        asyncio.run(consumer_ready(infra.nats_url, durable, START_LIMIT_S))
        asyncio.run(consumer_ready(infra.nats_url, contacts_durable, START_LIMIT_S))
        yield Stack(sip_port=sip_port, media_log=media_log, ivr_log=ivr_log, contacts_log=contacts_log)
    finally:
        stop_all([contacts, ivr, media])
        asyncio.run(drop_consumers(infra.nats_url, durable, contacts_durable))
