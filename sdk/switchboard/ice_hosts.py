"""ICE host addresses for aiortc peer connections, shared by the SDK's AgentSession and the media service.

aioice 0.13 leaves 127.0.0.1 out of its host candidates, so on a loopback-only host a peer connection
gathers nothing and stays `new` forever; this small, version-pinned hook makes the host addresses a
setting (STACK-NOTES.md). It needs aioice: the SDK imports it only when an AgentSession connects (the
`switchboard[agent]` extra)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Protocol

import aioice
import aioice.ice

__all__ = [
    "SUPPORTED_AIOICE",
    "UnsupportedVersionError",
    "host_addresses_patched",
    "set_host_addresses",
]

# The hook replaces aioice.ice.get_host_addresses, a module-level function that Connection.gather_candidates
# looks up at call time. Checked against these versions; anything else is refused rather than guessed at.
SUPPORTED_AIOICE = ("0.13.",)


class UnsupportedVersionError(RuntimeError):
    """A pinned patch was asked to touch a library version it was not checked against."""


class _HostAddresses(Protocol):
    def __call__(self, use_ipv4: bool, use_ipv6: bool) -> list[str]: ...


_original_get_host_addresses: _HostAddresses | None = None
_configured: tuple[str, ...] | None = None


def _check_aioice() -> None:
    version = getattr(aioice, "__version__", "unknown")
    if not version.startswith(SUPPORTED_AIOICE):
        raise UnsupportedVersionError(
            f"the ICE host-address hook is checked against aioice {', '.join(SUPPORTED_AIOICE)}x, "
            f"this is aioice {version}: re-check aioice.ice.get_host_addresses and update SUPPORTED_AIOICE"
        )
    if not callable(getattr(aioice.ice, "get_host_addresses", None)):
        raise UnsupportedVersionError("aioice.ice.get_host_addresses is missing: the hook cannot apply")


def _configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    out = []
    for address in _configured or ():
        version = ipaddress.ip_address(address).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            out.append(address)
    return out


def set_host_addresses(addresses: Sequence[str] | None) -> None:
    """Make ICE gather host candidates on exactly `addresses` (process-wide: aioice has no per-connection
    setting). None restores aioice's own discovery."""
    global _original_get_host_addresses, _configured
    _check_aioice()
    if addresses is None:
        if _original_get_host_addresses is not None:
            aioice.ice.get_host_addresses = _original_get_host_addresses
            _original_get_host_addresses = None
        _configured = None
        return
    for address in addresses:
        ipaddress.ip_address(address)
    if _original_get_host_addresses is None:
        _original_get_host_addresses = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = _configured_host_addresses
    _configured = tuple(addresses)


def host_addresses_patched() -> tuple[str, ...] | None:
    return _configured
