"""The API process at its edges (issue #17): forwarding headers are believed only from configured proxies,
and websocket frames are capped while they are read. Real `python -m services.api` processes (uvicorn)."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from collections.abc import Iterator

import httpx
import pytest
import websockets

from tests.service_procs import start_api

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def untrusting(infra) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The default: no SB_TRUSTED_PROXIES. Three sign-ups per minute per address."""
    with start_api(infra, SB_SIGNUP_RATE_PER_MINUTE="3") as base:
        yield base


def _signup(base: str, forwarded_for: str) -> int:
    body = {"company": f"edge-{secrets.token_hex(3)}", "email": f"{secrets.token_hex(4)}@example.com"}
    headers = {
        "X-Forwarded-For": forwarded_for,
        "X-Real-IP": forwarded_for,
        "Forwarded": f"for={forwarded_for}",
    }
    return httpx.post(f"{base}/v1/signup", json=body, headers=headers, timeout=10).status_code


def test_forged_forwarding_headers_do_not_widen_a_per_address_limit(untrusting: str) -> None:
    statuses = [_signup(untrusting, f"203.0.113.{i}") for i in range(1, 9)]
    assert statuses == [201] * 3 + [429] * 5


def test_forwarding_headers_are_believed_from_a_configured_proxy(infra) -> None:  # type: ignore[no-untyped-def]
    with start_api(infra, SB_SIGNUP_RATE_PER_MINUTE="3", SB_TRUSTED_PROXIES="127.0.0.1/32") as base:
        # Behind the (trusted) proxy each client address has its own allowance.
        assert [_signup(base, "198.51.100.1") for _ in range(4)] == [201] * 3 + [429]
        assert _signup(base, "198.51.100.2") == 201


async def test_a_websocket_frame_over_the_limit_is_refused_while_it_is_read(untrusting: str) -> None:
    url = untrusting.replace("http://", "ws://") + "/v1/ws"
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send("x" * (1024 * 1024))  # 1 MiB: the server refuses it at 64 KiB
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def _raw(base: str, request: bytes) -> tuple[int, str, bytes]:
    """One request over a plain socket (a client library would refuse to send the bytes we send)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    ctype = next(
        (v for k, _, v in (line.partition(": ") for line in lines[1:]) if k.lower() == "content-type"), ""
    )
    return int(lines[0].split(" ")[1]), ctype, body


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b": ")
        if name.lower() == b"content-length":
            return int(value)
    return 0


@pytest.mark.parametrize("byte", [b"\x01", b"\x7f", b"\x00"])
def test_a_control_byte_in_authorization_is_a_problem_400(untrusting: str, byte: bytes) -> None:
    request = (
        b"GET /v1/tenant HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer sbk_" + byte + b"x\r\n"
        b"Connection: close\r\n\r\n"
    )
    status, ctype, body = _raw(untrusting, request)
    assert status == 400 and ctype.startswith("application/problem+json"), (status, ctype, body)
    assert json.loads(body)["status"] == 400
