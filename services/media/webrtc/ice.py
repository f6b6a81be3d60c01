# ICE consent freshness (RFC 7675) and ICE restarts (RFC 8445 section 9, JSEP 5.8) on a leg's aiortc
# transport, pinned to aioice 0.13 / aiortc 1.16 (the versions dtmf_patch and the host-address hook check).
#
# Consent is aioice's own: every nominated pair is checked every CONSENT_INTERVAL seconds (randomised
# 0.8-1.2x), one STUN request each with no retransmission (so a check fails after stun.RETRY_RTO, 0.5 s),
# and after CONSENT_FAILURES failures in a row the Connection closes; aiortc's RTCIceTransport then goes
# `failed`, the peer connection too, and the leg ends like any lost leg. Both are module globals that
# aioice reads at each check: `set_consent` makes them settings (process-wide, like the host addresses).
#
# A restart is ours: aiortc 1.16 runs RTCIceTransport.start once and answers a re-offer with its first ICE
# credentials, so a browser's `restartIce()` would never connect. `IceLink` owns the aioice Connection
# under the leg's RTCIceTransport: aiortc's DTLS transport reads and writes through the transport's
# `_recv`/`_send` attributes (aiortc's own indirection), which the link points at itself, so a restart
# builds a new Connection (new local ufrag/pwd, the configured host candidates, never STUN unless
# configured), connects it, and then swaps it in under the same DTLS transport: no new DTLS handshake,
# the SRTP sessions and our media path carry on over the new pair.
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aioice
import aioice.ice
import aioice.stun
from aioice import Candidate, Connection
from aiortc.rtcicetransport import RTCIceTransport

from services.kernel.log import get_logger

from .config import SUPPORTED_AIOICE, UnsupportedVersionError

__all__ = [
    "DEFAULT_CONSENT_FAILURES",
    "DEFAULT_CONSENT_INTERVAL_S",
    "IceLink",
    "IceRestartError",
    "RemoteIce",
    "consent_bound_s",
    "set_consent",
]

log = get_logger()

DEFAULT_CONSENT_INTERVAL_S = 5.0  # aioice 0.13's CONSENT_INTERVAL
DEFAULT_CONSENT_FAILURES = 6  # aioice 0.13's CONSENT_FAILURES
# A restart's connectivity checks get this long; the old pair carries on meanwhile.
RESTART_CONNECT_S = 15.0
# Closing a replaced Connection (its consent task, checks and sockets) takes milliseconds; a leg's close
# waits at most this long for it.
CLOSE_WAIT_S = 2.0


class IceRestartError(RuntimeError):
    """A restart the link cannot apply; the message says why."""


def _check_aioice() -> None:
    # The same aioice versions as the host-address hook (switchboard.ice_hosts).
    version = getattr(aioice, "__version__", "unknown")
    if not version.startswith(SUPPORTED_AIOICE):
        raise UnsupportedVersionError(
            f"ICE consent and restarts are checked against aioice {', '.join(SUPPORTED_AIOICE)}x, this is "
            f"{version}: re-read aioice.ice Connection.query_consent/close and update services/media/webrtc/ice.py"
        )


def set_consent(interval_s: float, failures: int) -> None:
    """Process-wide (aioice has no per-connection setting): a consent check every `interval_s` (0.8-1.2x),
    a leg lost after `failures` unanswered checks in a row."""
    _check_aioice()
    if interval_s <= 0 or failures < 1:
        raise ValueError(
            f"consent interval {interval_s:g} s must be above 0 and failures {failures} at least 1"
        )
    aioice.ice.CONSENT_INTERVAL = interval_s  # type: ignore[assignment]  # used as a float (asyncio.sleep)
    aioice.ice.CONSENT_FAILURES = failures


def consent_bound_s(interval_s: float, failures: int) -> float:
    """The longest a leg outlives a peer that stopped answering: `failures` checks, each at most 1.2
    intervals after the last and failed after one STUN timeout, plus the interval a check may already be
    waiting (defaults: 6 x (6 + 0.5) + 6 = 45 s; 33 s typical)."""
    return failures * (interval_s * 1.2 + aioice.stun.RETRY_RTO) + interval_s * 1.2


@dataclass(frozen=True, slots=True)
class RemoteIce:
    """The ICE part of a (re-)offer: credentials, candidates, and whether they are complete."""

    username: str
    password: str
    candidates: tuple[Candidate, ...] = ()
    complete: bool = False
    lite: bool = False


class IceLink:
    """The aioice Connection under one RTCIceTransport, replaceable while the DTLS transport above it lives.

    aiortc's RTCDtlsTransport reads with `transport._recv()` and writes with `transport._send()`; both
    point here from before the handshake, so datagrams come from whichever Connection is current (its
    `data_received` is ours) and go out on its nominated pair. Our media path (SrtpMedia) hooks the
    link the way it would hook a Connection: `data_received` (SRTP/SRTCP taken straight from the socket
    callback) and `_nominated` (the pair it writes to)."""

    def __init__(self, ice: RTCIceTransport) -> None:
        _check_aioice()
        self.ice = ice
        self.connection: Connection = ice._connection
        self.restarts = 0
        self._pending: Connection | None = None
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._checks: set[asyncio.Task[None]] = set()  # restarts connecting: cancelled at close
        self._closes: set[asyncio.Task[None]] = set()  # replaced Connections closing: awaited at close
        self.data_received: Callable[[bytes, int], None] = self._to_dtls
        ice._recv = self.recv
        ice._send = self.send
        self._hook(self.connection)
        ice.on("statechange", self._on_state)

    # --- the DTLS transport's side ---

    def _hook(self, connection: Connection) -> None:
        # Looked up at each datagram: SrtpMedia may replace `data_received` on the link at any time.
        connection.data_received = lambda data, component: self.data_received(data, component)  # type: ignore[method-assign]

    def _to_dtls(self, data: bytes, component: int) -> None:
        self._queue.put_nowait(data)

    async def recv(self) -> bytes:
        data = await self._queue.get()
        if data is None:
            raise ConnectionError("ICE transport closed")  # aiortc's DTLS transport then closes
        return data

    async def send(self, data: bytes) -> None:
        await self.connection.send(data)

    @property
    def _nominated(self) -> dict[int, Any]:
        return self.connection._nominated

    def _on_state(self) -> None:
        if self.ice.state in ("failed", "closed"):
            self._queue.put_nowait(None)

    # --- restarts ---

    @property
    def remote_credentials(self) -> tuple[str | None, str | None]:
        return self.connection.remote_username, self.connection.remote_password

    async def restart(self, remote: RemoteIce) -> Connection:
        """The answerer's restart: a new Connection for the peer's new credentials, gathered and checking
        when this returns (its local ufrag, pwd and candidates go into the answer)."""
        new = await self.begin_restart()
        await self.finish_restart(new, remote)
        return new

    async def begin_restart(self) -> Connection:
        """A new Connection with new local credentials and candidates (the offerer's restart starts here
        and finishes with the answer's credentials). The current pair carries the media until the new one
        is connected; a restart that fails leaves it as it was."""
        if self.ice.state != "completed":
            raise IceRestartError(f"ICE is {self.ice.state}: only a connected leg can restart")
        old = self.connection
        new = Connection(
            ice_controlling=old.ice_controlling,
            components=len(old._components),
            stun_server=old.stun_server,
            turn_server=old.turn_server,
            turn_username=old.turn_username,
            turn_password=old.turn_password,
            turn_ssl=old.turn_ssl,
            turn_transport=old.turn_transport,
            use_ipv4=old._use_ipv4,
            use_ipv6=old._use_ipv6,
            transport_policy=old._transport_policy,
        )
        self._hook(new)
        await new.gather_candidates()  # the configured host addresses (config.set_host_addresses)
        if self._pending is not None:  # a restart of a restart: the newer one wins
            self._spawn(self._closes, self._pending.close())
        self._pending = new
        return new

    async def finish_restart(self, new: Connection, remote: RemoteIce) -> None:
        """The peer's new credentials and candidates: checks start; `new` replaces the current Connection
        once connected."""
        if self._pending is not new:
            raise IceRestartError("a later restart replaced this one")
        new.remote_is_lite = remote.lite
        new.remote_username = remote.username
        new.remote_password = remote.password
        for candidate in remote.candidates:
            await new.add_remote_candidate(candidate)
        if remote.complete:
            await new.add_remote_candidate(None)
        self._spawn(self._checks, self._connect(new))

    async def add_remote_candidate(self, candidate: Candidate | None) -> bool:
        """A trickled candidate after a restart goes to the restart's Connection; False: no restart yet
        (aiortc's addIceCandidate has the first one)."""
        target = self._pending or (self.connection if self.restarts else None)
        if target is None:
            return False
        with contextlib.suppress(ValueError):  # after end-of-candidates: ignored, as aiortc does
            await target.add_remote_candidate(candidate)
        return True

    async def _connect(self, new: Connection) -> None:
        try:
            await asyncio.wait_for(new.connect(), RESTART_CONNECT_S)
        except (ConnectionError, TimeoutError) as exc:
            log.warning("ice_restart_failed", error=str(exc) or type(exc).__name__)
            if self._pending is new:
                self._pending = None
            await new.close()
            return
        if self._pending is not new or self.ice.state != "completed":
            await new.close()  # replaced by a later restart, or the leg ended meanwhile
            return
        self._pending = None
        self._swap(new)

    def _swap(self, new: Connection) -> None:
        old = self.connection
        # aiortc's transport watches its Connection for ConnectionClosed (consent expiry -> `failed`):
        # that watch moves to the new one before the old one closes, or closing it would fail the leg.
        monitor = getattr(self.ice, "_RTCIceTransport__monitor_task", None)
        if monitor is not None:
            monitor.cancel()
        self.connection = new
        self.ice._connection = new
        self.ice.iceGatherer._connection = new
        self.ice._RTCIceTransport__monitor_task = asyncio.ensure_future(self.ice._monitor())  # type: ignore[attr-defined]
        self.restarts += 1
        self._spawn(self._closes, old.close())
        pair = new._nominated.get(1)
        log.info(
            "ice_restarted", remote=pair.remote_addr if pair is not None else None, restarts=self.restarts
        )

    @staticmethod
    def _spawn(tasks: set[asyncio.Task[None]], coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def close(self) -> None:
        """Ends a restart still checking and lets replaced Connections finish closing their sockets (the
        transport's own stop closes the current one)."""
        for task in list(self._checks):
            task.cancel()
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending.close()
        await asyncio.gather(*self._checks, return_exceptions=True)
        if self._closes:
            await asyncio.wait(list(self._closes), timeout=CLOSE_WAIT_S)
