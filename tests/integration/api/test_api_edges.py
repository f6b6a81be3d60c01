"""The API process at its edges (issue #17): forwarding headers are believed only from configured proxies,
and websocket frames are capped while they are read. Real `python -m services.api` processes (uvicorn)."""

from __future__ import annotations

import asyncio
import secrets
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
