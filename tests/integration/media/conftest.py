"""Media fixtures: a tenant with claimed numbers in the real database, and the media service as a
real subprocess (`python -m services.media`) on a free SIP port and its own RTP port range."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from services.kernel.ids import new_id
from services.runtime.embedded import free_port
from tests.service_procs import START_LIMIT_S, service_nats_url, sip_answers

REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class MediaEdge:
    port: int
    tenant_id: uuid.UUID
    number: str  # claimed, no flow: the apology
    flow_number: str  # claimed, with a queue: waits for commands
    busy_tenant_number: str  # a tenant whose call limit is 0
    auth_number: str  # a tenant with a digest-only trunk (user "trunk", password "s3cret")
    nats_url: str
    log_path: Path
    pid: int


async def _seed(owner_url: str) -> dict[str, object]:
    conn = await asyncpg.connect(owner_url)
    try:
        suffix = str(int(time.time() * 1000))[-6:]
        tenant, busy, auth = new_id(), new_id(), new_id()
        numbers = {
            "number": f"+1555{suffix}1",
            "flow_number": f"+1555{suffix}2",
            "busy": f"+1555{suffix}3",
            "auth": f"+1555{suffix}4",
        }
        for tid, name, limit in ((tenant, "media-test", 50), (busy, "busy", 0), (auth, "auth", 5)):
            await conn.execute(
                "INSERT INTO tenants (id, name, admin_email, max_concurrent_calls) VALUES ($1, $2, $3, $4)",
                tid,
                name,
                f"{name}@example.com",
                limit,
            )
        queue = new_id()
        await conn.execute("INSERT INTO queues (id, tenant_id, name) VALUES ($1, $2, 'main')", queue, tenant)
        await conn.execute(
            "INSERT INTO numbers (id, tenant_id, e164) VALUES ($1, $2, $3)",
            new_id(),
            tenant,
            numbers["number"],
        )
        await conn.execute(
            "INSERT INTO numbers (id, tenant_id, e164, queue_id) VALUES ($1, $2, $3, $4)",
            new_id(),
            tenant,
            numbers["flow_number"],
            queue,
        )
        await conn.execute(
            "INSERT INTO numbers (id, tenant_id, e164) VALUES ($1, $2, $3)", new_id(), busy, numbers["busy"]
        )
        await conn.execute(
            "INSERT INTO numbers (id, tenant_id, e164) VALUES ($1, $2, $3)", new_id(), auth, numbers["auth"]
        )
        from services.media.sip.auth import compute_ha1

        await conn.execute(
            """INSERT INTO sip_trunks (id, tenant_id, name, allowed_ips, username, realm, ha1_sha256, ha1_md5)
               VALUES ($1, $2, 'carrier', '{}', 'trunk', 'switchboard', $3, $4)""",
            new_id(),
            auth,
            compute_ha1("trunk", "switchboard", "s3cret", "SHA-256"),
            compute_ha1("trunk", "switchboard", "s3cret", "MD5"),
        )
        return {"tenant": tenant, **numbers}
    finally:
        await conn.close()


@contextlib.contextmanager
def start_media(infra, extra_env: dict[str, str] | None = None) -> Iterator[tuple[int, int, Path]]:  # type: ignore[no-untyped-def]
    """`python -m services.media` on a free SIP port and its own RTP range: yields (port, pid, log)."""
    port = free_port()
    rtp_low = 40000 + ((os.getpid() + port) % 500) * 40
    env = {
        **os.environ,
        "SB_DATABASE_URL": infra.app_url,
        "SB_NATS_URL": service_nats_url(infra, "media"),  # its own user, as under `switchboard up`
        "SB_TOKEN_SECRET": infra.token_secret,
        "SB_BIND_HOST": "127.0.0.1",
        "SB_SIP_PORT": str(port),
        "SB_DATA_DIR": str(infra.data_dir),
        "SB_LOG_LEVEL": "warning",
        "SB_RTP_PORT_MIN": str(rtp_low),
        "SB_RTP_PORT_MAX": str(rtp_low + 2000),
        "SB_SIP_RATE": "100",
        "SB_SIP_BURST": "200",
        "SB_SIP_BAN_AFTER": "50",
        "SB_SIP_BAN_SECONDS": "5",
        # Load shedding by lag and CPU is off here: on a shared test machine it would shed at random.
        # Shedding by call count is what the tests check; the benchmark shows the rest.
        "SB_MEDIA_MAX_LAG_MS": "0",
        "SB_MEDIA_MAX_CPU": "0",
        **(extra_env or {}),
    }
    log_path = infra.data_dir / f"media-{port}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.media"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        if not sip_answers(port, START_LIMIT_S):
            raise RuntimeError(
                f"the media service did not answer OPTIONS; see {log_path}:\n{log_path.read_text()[-3000:]}"
            )
        yield port, proc.pid, log_path
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


# One media process per folder (tests/conftest.py's FolderScope), not per session: a media service left
# running would answer every tenant's media commands (sb.*.cmd.media.>) in later test folders that stand in
# their own responders. Each module gets tenants and numbers of its own.
@pytest.fixture(scope="module")
def media_edge(request, folder_scope, infra) -> MediaEdge:  # type: ignore[no-untyped-def]
    port, pid, log_path = folder_scope.share(request.path.parent, "media_edge", lambda: start_media(infra))
    seeded = asyncio.run(_seed(infra.owner_url))
    return MediaEdge(
        port=port,
        tenant_id=seeded["tenant"],  # type: ignore[arg-type]
        number=str(seeded["number"]),
        flow_number=str(seeded["flow_number"]),
        busy_tenant_number=str(seeded["busy"]),
        auth_number=str(seeded["auth"]),
        nats_url=infra.nats_url,
        log_path=log_path,
        pid=pid,
    )
