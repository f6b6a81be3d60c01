"""Async helpers for media tests: call events and commands over NATS, an answered call from a raw SIP
caller, an RTP sender for audio and RFC 4733 digits, and a Goertzel tone check."""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import time
import uuid
from dataclasses import dataclass, field

import nats
import numpy as np

from services.kernel import events as ev
from services.kernel.messages import Reply, decode, encode
from services.kernel.waits import flushed
from services.media.rtp.g711 import ulaw_encode
from services.media.rtp.packet import RtpPacket
from services.media.rtp.telephone_event import digit_packets

from .sipclient import RtpReceiver, UdpSip, header, request, sdp, status_of

KINDS: dict[str, type] = {
    "arrived": ev.CallArrived,
    "answered": ev.CallAnswered,
    "dtmf": ev.CallDtmf,
    "collected": ev.CallCollected,
    "held": ev.CallHeld,
    "ended": ev.CallEnded,
    "play_finished": ev.CallPlayFinished,
    "quality": ev.CallQuality,
    "record_finished": ev.CallRecordFinished,
}


@dataclass
class Events:
    """Every call event of one tenant, and its media commands."""

    nc: nats.NATS
    tenant: uuid.UUID
    seen: list[object] = field(default_factory=list)

    @classmethod
    async def connect(cls, url: str, tenant: uuid.UUID) -> Events:
        nc = await nats.connect(url)
        events = cls(nc, tenant)

        async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
            kind = KINDS.get(msg.subject.rsplit(".", 1)[-1])
            if kind is not None:
                events.seen.append(decode(msg.data, kind))

        await nc.subscribe(f"sb.{tenant}.evt.call.*", cb=on_event)
        await flushed(nc)
        return events

    async def command(self, cmd: ev.MediaCommand) -> Reply:
        msg = await self.nc.request(f"sb.{self.tenant}.cmd.media.{cmd.name}", encode(cmd), timeout=5)
        return decode(msg.data, Reply)

    def all(self, kind: type, pred=lambda e: True) -> list:  # type: ignore[no-untyped-def]
        return [e for e in self.seen if isinstance(e, kind) and pred(e)]

    async def wait_for(self, kind: type, pred=lambda e: True, timeout: float = 8.0):  # type: ignore[no-untyped-def]
        for _ in range(int(timeout / 0.05)):
            found = self.all(kind, pred)
            if found:
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no matching {kind.__name__}; saw {self.seen}")

    async def close(self) -> None:
        await self.nc.close()


@dataclass
class Caller:
    """One call from a raw SIP caller, answered by an `answer` command."""

    client: UdpSip
    rtp: RtpReceiver
    uri: str
    call_id: str
    from_tag: str
    to_tag: str
    remote_rtp: int
    platform_call_id: uuid.UUID
    cseq: int = 1
    # One RTP stream for everything the caller sends: SSRC, next sequence number, and the RTP clock's
    # origin, so timestamps follow real time across separate bursts of audio and digits.
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    seq: int = field(default_factory=lambda: secrets.randbits(15))
    ts0: int = field(default_factory=lambda: secrets.randbits(31))
    t0: float = field(default_factory=time.monotonic)

    def rtp_packet(
        self,
        payload_type: int,
        payload: bytes,
        *,
        at: float,
        marker: bool = False,
        timestamp: int | None = None,
    ) -> bytes:
        self.seq = (self.seq + 1) & 0xFFFF
        if timestamp is None:
            timestamp = self.timestamp(at)
        return bytes(
            RtpPacket(
                payload_type=payload_type,
                sequence_number=self.seq,
                timestamp=timestamp,
                ssrc=self.ssrc,
                payload=payload,
                marker=marker,
            )
        )

    def timestamp(self, at: float) -> int:
        return (self.ts0 + round((at - self.t0) * 50) * 160) & 0xFFFFFFFF

    def send(self, method: str, *, body: bytes = b"", content_type: str = "application/sdp") -> None:
        if method != "ACK":
            self.cseq += 1
        self.client.send(
            request(
                method,
                self.uri,
                local_port=self.client.local_port,
                call_id=self.call_id,
                from_tag=self.from_tag,
                to_tag=self.to_tag,
                cseq=self.cseq,
                body=body,
                content_type=content_type,
            )
        )

    async def final(self, timeout: float = 3.0) -> bytes:
        reply = await asyncio.to_thread(self.client.recv_final, timeout)
        assert reply is not None, "no final response"
        return reply

    async def bye(self) -> None:
        self.send("BYE")
        reply = await self.final()
        assert status_of(reply) == 200
        self.client.close()
        self.rtp.close()


def sdp_port(message: bytes) -> int:
    found = re.search(rb"m=audio (\d+) ", message)
    assert found is not None, message
    return int(found.group(1))


async def answered_call(port: int, number: str, events: Events) -> Caller:
    client, rtp = UdpSip(port), RtpReceiver()
    uri = f"sip:{number}@127.0.0.1:{port}"
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    # Several tests share the tenant: the arrival is the one that was not there before.
    before = {e.call_id for e in events.all(ev.CallArrived)}
    client.send(
        request(
            "INVITE", uri, local_port=client.local_port, call_id=call_id, from_tag=tag, body=sdp(rtp.port)
        )
    )
    arrived = await events.wait_for(ev.CallArrived, lambda e: e.call_id not in before and e.to_e164 == number)
    assert (await events.command(ev.MediaAnswer(tenant_id=events.tenant, call_id=arrived.call_id))).ok
    ok = await asyncio.to_thread(client.recv_final, 3.0)
    assert ok is not None and status_of(ok) == 200
    to_tag = (header(ok, "To") or "").split("tag=")[1]
    caller = Caller(client, rtp, uri, call_id, tag, to_tag, sdp_port(ok), arrived.call_id)
    caller.send("ACK")
    answered = await events.wait_for(ev.CallAnswered, lambda e: e.call_id == arrived.call_id)
    # The cores run on the media clock (monotonic); what goes on the bus is wall-clock time.
    assert abs(answered.ts - time.time()) < 60, answered
    return caller


def send_audio(caller: Caller, samples: np.ndarray, *, lead_silence: float = 0.2) -> None:
    """Blocking: send 8 kHz samples as 20 ms PCMU packets from the caller's RTP socket, paced in real time."""
    audio = np.concatenate([np.zeros(int(lead_silence * 8000)), samples, np.zeros(1600)])
    payload = ulaw_encode(np.clip(audio, -32768, 32767).astype(np.int16))
    start = time.monotonic()
    for i in range(len(payload) // 160):
        at = start + i * 0.02
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        packet = caller.rtp_packet(0, payload[i * 160 : (i + 1) * 160], at=at, marker=i == 0)
        caller.rtp.sock.sendto(packet, ("127.0.0.1", caller.remote_rtp))


def send_rfc4733(caller: Caller, digit: str, *, payload_type: int = 101) -> None:
    """Blocking: one key press as RFC 4733 packets, paced."""
    start = time.monotonic()
    ts = caller.timestamp(start)
    for item in digit_packets(digit, timestamp=ts, duration=0.1):
        delay = start + item.offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        packet = caller.rtp_packet(
            payload_type, item.payload, at=start + item.offset, marker=item.marker, timestamp=ts
        )
        caller.rtp.sock.sendto(packet, ("127.0.0.1", caller.remote_rtp))


def tone_power(samples: np.ndarray, frequency: float, rate: int = 8000) -> float:
    """Goertzel (as a single DFT bin) power of `frequency`, normalised by the signal's energy."""
    x = samples.astype(np.float64)
    n = np.arange(len(x))
    bin_ = np.abs(np.sum(x * np.exp(-2j * np.pi * frequency * n / rate))) ** 2
    energy = float(np.sum(x * x)) * len(x) / 2
    return float(bin_ / energy) if energy > 0 else 0.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
