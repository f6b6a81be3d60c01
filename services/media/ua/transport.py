"""SIP over UDP and TCP: sockets, framing, the per-source rate limit, malformed input and sending.

Hands each parsed message to `on_message(message, peer)` (requests already stamped with received/rport,
RFC 3581); answers what cannot go further itself: 400/505/513 for malformed requests (to the packet's
source), 503 for a source over its rate, silence for a banned source or unanswerable garbage. Nothing
raises out of here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from services.kernel.log import get_logger
from services.media import sip
from services.media.ua.ratelimit import SourceLimiter, Verdict

__all__ = ["Peer", "SipTransport", "as_peer"]

log = get_logger()
Peer = tuple[str, str, int]  # (transport "udp"|"tcp", host, port)
OnMessage = Callable[[sip.SipMessage, Peer], None]


def as_peer(value: object) -> Peer:
    """A peer back from the sans-IO SIP layer, which carries it untyped (it is whatever we gave it)."""
    if isinstance(value, tuple) and len(value) == 3:
        kind, host, port = value
        if isinstance(kind, str) and isinstance(host, str) and isinstance(port, int):
            return kind, host, port
    raise TypeError(f"not a SIP peer (transport, host, port): {value!r}")


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, transport: SipTransport) -> None:
        self.owner = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.owner.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors for a peer that went away


class SipTransport:
    def __init__(self, host: str, port: int, *, limiter: SourceLimiter, on_message: OnMessage) -> None:
        self.host = host
        self.port = port
        # The SIP address callers see when it is not this one's: behind the SIP front, the front's (it says
        # so on the link, front/link.py). Via and Contact name it; SDP keeps naming our own RTP address.
        self.public: tuple[str, int] | None = None
        self.limiter = limiter
        self.on_message = on_message
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._tcp: dict[tuple[str, int], asyncio.StreamWriter] = {}
        self._outbound: set[asyncio.Task[None]] = set()
        self.stats = {"received": 0, "dropped": 0, "bad": 0, "rejected_rate": 0}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(self.host, self.port))
        self._udp = udp
        self._server = await asyncio.start_server(self._on_tcp, self.host, self.port)

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
        for writer in list(self._tcp.values()):
            writer.close()
        for task in list(self._outbound):
            task.cancel()

    # --- in ---

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.stats["received"] += 1
            if sip.is_keepalive(data):
                return
            verdict = self.limiter.check(addr[0], asyncio.get_running_loop().time())
            if verdict is Verdict.IGNORE:
                self.stats["dropped"] += 1
                return
            peer: Peer = ("udp", addr[0], addr[1])
            try:
                message = sip.parse_datagram(data)
            except sip.SipParseError as err:
                self._parse_error(err, peer)
                return
            self._deliver(message, peer, verdict)
        except Exception:
            self.stats["bad"] += 1
            log.exception("sip_datagram_failed", peer=f"{addr[0]}:{addr[1]}")

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve_stream(reader, writer)

    async def connect_tcp(self, host: str, port: int, timeout: float = 5.0) -> Peer:
        """An outbound TCP connection (originate to a TCP trunk); its responses arrive like inbound ones."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        addr = writer.get_extra_info("peername")
        self._tcp[(addr[0], addr[1])] = writer
        task = asyncio.ensure_future(self._serve_stream(reader, writer))
        self._outbound.add(task)
        task.add_done_callback(self._outbound.discard)
        return ("tcp", addr[0], addr[1])

    async def _serve_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = writer.get_extra_info("peername")
        key = (addr[0], addr[1])
        self._tcp[key] = writer
        parser = sip.StreamParser()
        peer: Peer = ("tcp", addr[0], addr[1])
        loop = asyncio.get_running_loop()
        try:
            while not parser.broken:
                data = await reader.read(65536)
                if not data:
                    break
                parser.feed(data)
                while True:
                    try:
                        message = parser.next_message()
                    except sip.SipParseError as err:
                        self._parse_error(err, peer)
                        if err.fatal:
                            break  # framing is lost: close the connection
                        continue
                    if message is None:
                        break
                    try:
                        verdict = self.limiter.check(addr[0], loop.time())
                        if verdict is not Verdict.IGNORE:
                            self._deliver(message, peer, verdict)
                    except Exception:
                        log.exception("sip_tcp_message_failed")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._tcp.pop(key, None)
            await asyncio.sleep(0.01)  # let the last responses leave
            writer.close()

    def _parse_error(self, err: sip.SipParseError, peer: Peer) -> None:
        self.stats["bad"] += 1
        response = sip.error_response(err, to_tag=sip.new_tag())
        if response is not None:
            self.send(response, peer)

    def _deliver(self, message: sip.SipMessage, peer: Peer, verdict: Verdict) -> None:
        if isinstance(message, sip.SipRequest):
            if verdict is Verdict.REJECT:
                self.stats["rejected_rate"] += 1
                if message.method != "ACK":
                    busy = sip.make_response(
                        message, 503, headers=[("Retry-After", "30")], to_tag=sip.new_tag()
                    )
                    self.send(busy, peer)
                return
            message = stamp_via(message, peer)
        self.on_message(message, peer)

    # --- out ---

    def send(self, message: sip.SipMessage, peer: object) -> None:
        if not isinstance(peer, tuple) or len(peer) != 3:
            return
        data = bytes(message)
        kind, host, port = peer
        try:
            if kind == "tcp":
                writer = self._tcp.get((host, port))
                if writer is not None and not writer.is_closing():
                    writer.write(data)
            elif self._udp is not None:
                self._udp.sendto(data, (host, port))
        except Exception as exc:
            log.warning("sip_send_failed", error=str(exc))


def stamp_via(request: sip.SipRequest, peer: Peer) -> sip.SipRequest:
    """RFC 3261 §18.2.1 / RFC 3581: received= (and rport=) on the top Via of an incoming request."""
    try:
        via = request.top_via
    except sip.SipParseError:
        return request
    params = via.params.copy()
    if via.host != peer[1]:
        params.set("received", peer[1])
    if via.wants_rport:
        params.set("rport", str(peer[2]))
        params.set("received", peer[1])
    if params == via.params:
        return request
    stamped = sip.Via(via.transport, via.host, via.port, params)
    request.headers.replace_first("Via", str(stamped))
    return request
