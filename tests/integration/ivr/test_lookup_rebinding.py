"""IVR lookups connect to the address they checked (issue #17, item 11): a name that resolves to an allowed
address when checked and to another one a moment later (DNS rebinding) still reaches only the first. Two
real HTTP servers on the same port of 127.0.0.2 (the "allowed" one here) and 127.0.0.1; the DNS answers
are the one thing faked (they come from outside)."""

from __future__ import annotations

import asyncio
import ipaddress

import httpx
import pytest

from services.ivr.lookup_net import PinnedBackend, lookup_client
from services.runtime.embedded import free_port

pytestmark = pytest.mark.timeout(30)


async def _server(host: str, port: int, body: bytes) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, host, port)


async def test_a_rebinding_name_reaches_only_the_checked_address() -> None:
    port = free_port()
    servers = [await _server("127.0.0.2", port, b"checked"), await _server("127.0.0.1", port, b"rebound")]
    answers = [["127.0.0.2"], ["127.0.0.1"]]  # the name's first answer, then the rebinding one
    asked: list[str] = []

    async def resolve(host: str) -> list[str]:
        asked.append(host)
        return answers[min(len(asked), len(answers)) - 1]

    backend = PinnedBackend(allowed=lambda a: a == ipaddress.ip_address("127.0.0.2"), resolve=resolve)
    client = lookup_client(backend)
    try:
        response = await client.get(f"http://crm.example:{port}/caller")
        assert response.text == "checked" and asked == ["crm.example"]  # one resolution, used to connect
        # The next connection resolves again, gets the other address, and is refused before connecting.
        with pytest.raises(httpx.ConnectError, match=r"non-public address \(127\.0\.0\.1\)"):
            await client.get(f"http://crm.example:{port}/caller")
    finally:
        await client.aclose()
        for server in servers:
            server.close()
