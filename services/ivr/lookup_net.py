"""Where an IVR lookup may connect: the HTTP client's connections resolve the host once, check every
address it resolves to (public addresses only, unless the operator allows private ones), and connect to
the address that was checked. Resolving to check and letting the client resolve again to connect would
leave a DNS-rebinding gap: a name that answers a public address first and 127.0.0.1 the second time.

httpx has no hook for its connections' network backend, so `lookup_client` builds httpx's own transport
and gives its connection pool (httpcore) our backend.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

__all__ = ["LookupRefused", "PinnedBackend", "checked_address", "lookup_client"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], "asyncio.Future[list[str]] | Any"]


class LookupRefused(httpcore.ConnectError):
    """The host resolves to an address a lookup may not reach (the message says which)."""


def public(address: IpAddress) -> bool:
    return address.is_global


async def _resolve(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def checked_address(
    host: str, *, allowed: Callable[[IpAddress], bool] = public, resolve: Resolver = _resolve
) -> str:
    """The address to connect to for `host`: resolved once; every address it has must be allowed."""
    try:
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in await resolve(host)]
    except OSError as exc:
        raise LookupRefused(f"cannot resolve {host}: {exc.strerror or exc}") from None
    if not addresses:
        raise LookupRefused(f"cannot resolve {host}")
    for address in addresses:
        if not allowed(address):
            raise LookupRefused(
                f"{host} resolves to a non-public address ({address}); not allowed for lookups"
            )
    return str(addresses[0])


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting to the checked address of each host (TLS still verifies the
    host name: httpcore passes it to start_tls separately)."""

    def __init__(
        self, *, allowed: Callable[[IpAddress], bool] = public, resolve: Resolver = _resolve
    ) -> None:
        self.allowed = allowed
        self.resolve = resolve
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = await checked_address(host, allowed=self.allowed, resolve=self.resolve)
        return await self._inner.connect_tcp(
            address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise LookupRefused("lookups do not use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def lookup_client(backend: PinnedBackend | None) -> httpx.AsyncClient:
    """The lookups' HTTP client: no redirects, no proxy from the environment, and (with `backend`) every
    connection through it. None: connect anywhere (SB_IVR_PRIVATE_LOOKUPS, one-machine installs)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    if backend is not None:
        transport._pool = httpcore.AsyncConnectionPool(  # httpx's pool, with our backend
            ssl_context=ssl.create_default_context(), network_backend=backend
        )
    return httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False)
