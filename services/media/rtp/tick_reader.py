"""Media sockets read on the worker's 20 ms tick instead of one event-loop callback per datagram.

asyncio reads one datagram per readiness event: every packet costs an event-loop iteration, the
transport's `_read_ready` and a protocol callback (40-45 us per datagram measured in the worker, with the
loop's own iterations 13-15 % of it). The jitter buffer plays on the tick anyway, so a leg loses nothing
by reading there: `drain` asks one epoll (not the event loop's) which sockets have data and reads them
all in one warm batch, one datagram per ready socket per round until none is left.

Arrival times stay true: the kernel stamps each datagram when it arrives (SO_TIMESTAMPNS, wall clock),
converted here to the loop's monotonic clock, so the jitter buffer sees the network's timing, not the
tick's (and no longer our own event loop's stalls either). A socket without a stamp gets the drain's `now`.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from services.kernel.log import get_logger

__all__ = ["MAX_DATAGRAM", "TickReader", "arrival_clock_offset"]

MAX_DATAGRAM = 8192  # media and DTLS records fit in an MTU; longer ones are cut and fail to parse
# One datagram per ready socket per round: a burst of this many frames per socket is read in one tick,
# the rest stays in the kernel's buffer (with its arrival stamps) for the next one, so a flood on one leg
# cannot hold up the tick for every other.
MAX_ROUNDS = 8
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's number where Python lacks the name
_ANCILLARY = socket.CMSG_SPACE(16)  # one struct timespec
_TIMESPEC = struct.Struct("@qq")
log = get_logger()

# (datagram, source address, arrival on the loop clock)
Handler = Callable[[bytes, Any, float], None]


def arrival_clock_offset() -> float:
    """Wall clock minus the loop's (monotonic) clock, to turn the kernel's stamps into loop time; taken
    at each drain, so a wall-clock step (NTP) shifts arrivals for at most one tick."""
    return time.time() - time.monotonic()


class TickReader:
    """Sockets drained by whoever ticks (the worker's MediaClock; a standalone WebRTC leg's own timer).
    A socket belongs to at most one reader; whoever adds it removes it before closing it."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._sockets: dict[int, tuple[socket.socket, Handler]] = {}
        self.datagrams = 0  # read so far, for the benchmark and tests

    @property
    def count(self) -> int:
        """How many sockets it reads."""
        return len(self._sockets)

    def add(self, sock: socket.socket, handler: Handler) -> None:
        """`sock` is read by `drain` from now on; the event loop must not read it too (pause its
        transport's reading first). Its datagrams are stamped on arrival from now on."""
        fd = sock.fileno()
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        try:
            self._epoll.register(fd, select.EPOLLIN)
        except FileExistsError:
            self._epoll.modify(fd, select.EPOLLIN)
        self._sockets[fd] = (sock, handler)

    def remove(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if fd < 0:  # closed already (the kernel dropped it from the epoll set): find its old number
            fd = next((n for n, (s, _) in self._sockets.items() if s is sock), -1)
        entry = self._sockets.get(fd)
        if entry is None or entry[0] is not sock:
            return
        del self._sockets[fd]
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):  # closed already: the kernel dropped it from the epoll set
            pass

    def holds(self, sock: socket.socket) -> bool:
        entry = self._sockets.get(sock.fileno())
        return entry is not None and entry[0] is sock

    def drain(self, now: float) -> int:
        """Everything waiting on every socket, in arrival order per socket, each with its arrival time;
        returns how many datagrams were read."""
        if not self._sockets:
            return 0
        offset = 0.0
        read = 0
        recv = socket.socket.recvmsg
        for _ in range(MAX_ROUNDS):
            ready = self._epoll.poll(0)
            if not ready:
                break
            if not offset:
                offset = arrival_clock_offset()
            for fd, _events in ready:
                entry = self._sockets.get(fd)
                if entry is None:
                    continue
                sock, handler = entry
                try:
                    data, ancillary, _flags, addr = recv(sock, MAX_DATAGRAM, _ANCILLARY)
                except BlockingIOError:
                    continue
                except OSError:
                    # An ICMP error the socket reported (the peer's port is gone): read, nothing else
                    # to do, as asyncio's error_received did. A socket closed under us is forgotten.
                    if sock.fileno() < 0:
                        self._sockets.pop(fd, None)
                    continue
                arrival = now
                if ancillary:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(ancillary[0][2])
                    arrival = seconds + nanoseconds * 1e-9 - offset
                read += 1
                try:
                    handler(data, addr, arrival)
                except Exception:  # a bad packet must never take the tick down
                    log.exception("tick_read_failed")
        self.datagrams += read
        return read

    def close(self) -> None:
        self._sockets.clear()
        self._epoll.close()
