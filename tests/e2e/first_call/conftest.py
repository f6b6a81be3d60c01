"""The whole contact path on real processes: the API (tests/conftest.py's `api_server`) and
`python -m services.media`, `services.routing`, `services.ivr` and `services.contacts` against the session's
PostgreSQL and NATS; tenants made through the API; callers are SIPp or `PhoneCaller` below (an asyncio SIP
UAC that streams a tone and keeps what it hears, so a test controls exactly when it hangs up)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import numpy as np
import pytest

from services.kernel import events as ev
from services.kernel.messages import decode
from services.kernel.waits import flushed
from services.media.rtp.g711 import ulaw_decode, ulaw_encode
from services.media.rtp.packet import RtpPacket
from services.media.rtp.telephone_event import digit_packets
from services.runtime.embedded import free_port
from tests.service_procs import (
    START_LIMIT_S,
    consumer_ready,
    drop_consumers,
    service_env,
    sip_answers,
    stop_all,
)
from tests.sipp_uac import sipp_command

REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Stack:
    api: str
    sip_port: int
    nats_url: str
    logs: dict[str, Path]
    procs: dict[str, subprocess.Popen[bytes]]
    envs: dict[str, dict[str, str]]
    modules: dict[str, str]  # process name -> its `python -m` module

    def kill(self, name: str) -> None:
        """kill -9 one service (a crash: no clean stop)."""
        old = self.procs[name]
        os.kill(old.pid, signal.SIGKILL)
        old.wait(timeout=5)

    def start(self, name: str) -> None:
        """Start a killed service again with the same settings; waits until it is up."""
        starts = self.logs[name].read_text(errors="replace").count("service_started")
        with open(self.logs[name], "ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", self.modules[name]],
                cwd=REPO,
                env=self.envs[name],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while self.logs[name].read_text(errors="replace").count("service_started") <= starts:
            if time.monotonic() > deadline or self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} did not restart:\n{self.logs[name].read_text()[-3000:]}")
            time.sleep(0.05)


def _started(name: str, log: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        text = log.read_text(errors="replace")
        if "service_started" in text or "heartbeat" in text:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not start; see {log}:\n{log.read_text()[-3000:]}")


async def _routing_answers(nats_url: str, timeout: float) -> None:
    """Routing owns its partitions once a command for any tenant gets a reply (an earlier test's worker may
    hold the locks for their 3 s TTL)."""
    nc = await nats.connect(nats_url)
    try:
        deadline = time.monotonic() + timeout
        probe = ev.RoutingQueueStatus(tenant_id=uuid.uuid4(), queue_id=uuid.uuid4())
        while time.monotonic() < deadline:
            try:
                await nc.request(
                    f"sb.{probe.tenant_id}.cmd.routing.queue_status", msgspec.json.encode(probe), timeout=1
                )
                return
            except Exception:
                await asyncio.sleep(0.2)
        raise RuntimeError("routing did not answer")
    finally:
        await nc.close()


def _stack(
    infra: Any, api: str, *, media_workers: int = 0, media_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """The services as subprocesses. media_workers 0: one media process on the SIP port; N: the SIP front
    and N workers behind it (docs/media.md, "Sharding"). `media_env`: more settings for media."""
    sip_port = free_port()
    rtp_low = 32000 + ((os.getpid() + sip_port) % 100) * 60
    tag = f"{sip_port}"
    # No overload shedding on the event loop's lag or the process's CPU: on a test machine loaded by other
    # sessions it refused a test's only INVITE with 503 (seen at load 13). Shedding has its own tests
    # (tests/integration/media/test_sans_io_admission.py); a test that wants it passes its own limits.
    media = service_env(
        infra,
        SB_SIP_PORT=str(sip_port),
        SB_SERVICE_NAME="media",
        **{"SB_MEDIA_MAX_LAG_MS": "0", "SB_MEDIA_MAX_CPU": "0", **(media_env or {})},
    )
    envs: dict[str, dict[str, str]] = {}
    modules: dict[str, str] = {}
    if media_workers == 0:
        envs["media"] = {**media, "SB_RTP_PORT_MIN": str(rtp_low), "SB_RTP_PORT_MAX": str(rtp_low + 1500)}
        modules["media"] = "services.media"
    else:
        envs["media-front"], modules["media-front"] = dict(media), "services.media.front"
        for k in range(1, media_workers + 1):
            low = rtp_low + (k - 1) * 600
            envs[f"media-{k}"] = {
                **media,
                "SB_MEDIA_WORKER_ID": f"fc-{tag}-{k}",
                "SB_RTP_PORT_MIN": str(low),
                "SB_RTP_PORT_MAX": str(low + 599),
            }
            modules[f"media-{k}"] = "services.media"
    envs["routing"] = service_env(infra, SB_SERVICE_NAME="routing", SB_ROUTING_WORKER_ID=f"first-call-{tag}")
    # Their own durable consumers: a later module's IVR and coordinator must not replay this module's events.
    envs["ivr"] = service_env(infra, SB_SERVICE_NAME="ivr", SB_IVR_DURABLE=f"ivr-{tag}")
    envs["contacts"] = service_env(infra, SB_SERVICE_NAME="contacts", SB_CONTACTS_DURABLE=f"contacts-{tag}")
    modules.update(routing="services.routing", ivr="services.ivr", contacts="services.contacts")
    logs: dict[str, Path] = {}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, env in envs.items():
            logs[name] = infra.data_dir / f"first-call-{name}-{tag}.log"
            with open(logs[name], "ab") as log:
                procs[name] = subprocess.Popen(
                    [sys.executable, "-m", modules[name]],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        for name, proc in procs.items():
            _started(name, logs[name], proc, START_LIMIT_S)
        asyncio.run(consumer_ready(infra.nats_url, envs["contacts"]["SB_CONTACTS_DURABLE"], START_LIMIT_S))
        asyncio.run(consumer_ready(infra.nats_url, envs["ivr"]["SB_IVR_DURABLE"], START_LIMIT_S))
        if not sip_answers(sip_port, START_LIMIT_S):
            raise RuntimeError("nothing answers OPTIONS on the SIP port")
        asyncio.run(_routing_answers(infra.nats_url, START_LIMIT_S))
        yield Stack(
            api=api,
            sip_port=sip_port,
            nats_url=infra.nats_url,
            logs=logs,
            procs=procs,
            envs=envs,
            modules=modules,
        )
    finally:
        stop_all(list(reversed(procs.values())))
        asyncio.run(
            drop_consumers(
                infra.nats_url, envs["contacts"]["SB_CONTACTS_DURABLE"], envs["ivr"]["SB_IVR_DURABLE"]
            )
        )


# The sharded stack's RTP inactivity timeout (SB_MEDIA_TIMEOUT_S) and RFC 4028 Min-SE (SB_SIP_MIN_SE): short,
# so that test_no_ghosts sees SIP callers that vanished without a BYE, or never refreshed the session timer
# they asked for, ended in seconds. Every other caller on it streams RTP all call long and asks no timer.
SHARDED_MEDIA_TIMEOUT_S = 3.0
SHARDED_MIN_SE = 4


class _Stacks:
    """One stack at a time, shared by every module of this folder (starting one costs 5-10 s, and a folder
    of ~20 modules started one each). Tests isolate themselves with tenants of their own (make_tenant).

    Only one runs at a time: two contact coordinators or IVRs on one NATS would both act on every call. A
    module asking for the other kind stops the running one first (conftest sorts the sharded modules last,
    so that happens once). A module that killed a service and left it down gets it started again before
    the next module uses the stack. The folder's last test stops it (tests/conftest.py's FolderScope):
    these processes answer calls and commands of every tenant on the session's NATS, so they must not
    outlive the folder (other folders run their own adapters)."""

    def __init__(self, infra: Any, api: str) -> None:
        self.infra, self.api = infra, api
        self.kind: str | None = None
        self.running: contextlib.AbstractContextManager[Stack] | None = None
        self.stack: Stack | None = None

    def get(self, kind: str) -> Stack:
        if self.kind != kind:
            self.close()
            media_workers, media_env = (
                (
                    2,
                    {
                        "SB_MEDIA_TIMEOUT_S": str(SHARDED_MEDIA_TIMEOUT_S),
                        "SB_SIP_MIN_SE": str(SHARDED_MIN_SE),
                    },
                )
                if kind == "sharded"
                else (0, {})
            )
            running = contextlib.contextmanager(_stack)(
                self.infra, self.api, media_workers=media_workers, media_env=media_env
            )
            self.stack = running.__enter__()
            self.running, self.kind = running, kind
        assert self.stack is not None
        for name, proc in list(self.stack.procs.items()):
            if proc.poll() is not None:
                self.stack.start(name)  # an earlier module killed it (worker loss) and left it down
        return self.stack

    def close(self) -> None:
        running, self.running, self.stack, self.kind = self.running, None, None, None
        if running is not None:
            running.__exit__(None, None, None)


_HERE = Path(__file__).resolve().parent


def _stacks(folder_scope: Any, infra: Any, api: str) -> _Stacks:
    return folder_scope.share(_HERE, "stacks", lambda: contextlib.closing(_Stacks(infra, api)))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def first_call_stack(folder_scope, infra, api_server: str) -> Stack:  # type: ignore[no-untyped-def]
    """The API, one media process on the SIP port, routing, IVR and the contact coordinator."""
    return _stacks(folder_scope, infra, api_server).get("plain")


@pytest.fixture(scope="module")
def sharded_stack(folder_scope, infra, api_server: str) -> Stack:  # type: ignore[no-untyped-def]
    """The same with the SIP front and two media workers (and the short timers above)."""
    return _stacks(folder_scope, infra, api_server).get("sharded")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules on the sharded stack run after the others of this folder (stable otherwise), so that the
    shared stack changes kind once. Called with the whole session's items: only this folder's move."""
    mine = [k for k, item in enumerate(items) if _HERE in Path(item.path).parents]
    if mine:
        ordered = sorted((items[k] for k in mine), key=lambda item: "sharded_stack" in item.fixturenames)
        for k, item in zip(mine, ordered, strict=True):
            items[k] = item


@dataclass
class Tenant:
    id: uuid.UUID
    key: str
    queue_id: str
    number: str
    agents: dict[str, str]  # email -> agent id
    api: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api, headers={"Authorization": f"Bearer {self.key}"}, timeout=10)

    def token(self, email: str) -> str:
        with self.client() as client:
            r = client.post(f"/v1/agents/{self.agents[email]}/token")
            assert r.status_code == 201, r.text
            return str(r.json()["token"])


def make_tenant(
    api: str, *, agents: int = 1, flow: str | None = None, offer_timeout_s: int | None = None
) -> Tenant:
    """Sign up, buy seats, add agents and a Support queue, and route a new number to the queue (or to the
    flow `flow`, a YAML definition whose queue node names Support)."""
    with httpx.Client(base_url=api, timeout=10) as client:
        r = client.post(
            "/v1/signup", json={"company": f"First call {uuid.uuid4().hex[:6]}", "email": "fc@example.com"}
        )
        assert r.status_code == 201, r.text
        key = r.json()["api_key"]["key"]
        tenant_id = uuid.UUID(r.json()["tenant"]["id"])
        client.headers["Authorization"] = f"Bearer {key}"
        assert client.post("/v1/seats/purchase", json={"count": agents + 1}).status_code in (200, 201)
        queue_body: dict[str, Any] = {"name": "Support", "skills": {"support": 1}}
        if offer_timeout_s is not None:
            queue_body["offer_timeout_seconds"] = offer_timeout_s
        queue = client.post("/v1/queues", json=queue_body)
        assert queue.status_code == 201, queue.text
        made: dict[str, str] = {}
        for i in range(agents):
            email = f"agent{i}@example.com"
            r = client.post(
                "/v1/agents", json={"name": f"Agent {i}", "email": email, "skills": {"support": 5}}
            )
            assert r.status_code == 201, r.text
            made[email] = r.json()["id"]
        number = "+1555" + str(uuid.uuid4().int)[:8]
        assert client.post("/v1/numbers", json={"e164": number}).status_code == 201
        if flow is not None:
            assert client.post("/v1/flows", json={"definition": flow}).status_code == 201
            name = re.search(r"^name: (\S+)", flow, re.M)
            assert name is not None
            route = client.post(f"/v1/numbers/{number}/route", json={"flow": name.group(1)})
        else:
            route = client.post(f"/v1/numbers/{number}/route", json={"queue": "Support"})
        assert route.status_code == 200, route.text
    return Tenant(tenant_id, key, queue.json()["id"], number, made, api)


def tone(frequency: float, seconds: float, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(seconds * 8000)) / 8000
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def tone_wav(path: Path, frequency: float) -> Path:
    """One second of `frequency` as an 8 kHz mono WAV file (an agent's or a web caller's `play`)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone(frequency, 1.0).tobytes())
    return path


def tone_power(samples: np.ndarray, frequency: float, rate: int = 8000) -> float:
    """The share of the signal's energy at `frequency` (a single DFT bin, normalised)."""
    x = samples.astype(np.float64)
    if len(x) == 0:
        return 0.0
    n = np.arange(len(x))
    bin_ = np.abs(np.sum(x * np.exp(-2j * np.pi * frequency * n / rate))) ** 2
    energy = float(np.sum(x * x)) * len(x) / 2
    return float(bin_ / energy) if energy > 0 else 0.0


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, sink: asyncio.Queue[bytes] | list[bytes]) -> None:
        self.sink = sink
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if isinstance(self.sink, list):
            self.sink.append(data)
        else:
            self.sink.put_nowait(data)


@dataclass
class PhoneCaller:
    """An asyncio SIP caller (PCMU): INVITE, ACK, a tone streamed all call long, what it hears kept, BYE."""

    port: int
    number: str
    frequency: float = 600.0
    host: str = "127.0.0.1"  # where the platform's SIP edge listens; the caller binds the same address
    call_id: str = field(default_factory=lambda: secrets.token_hex(8))
    tag: str = field(default_factory=lambda: secrets.token_hex(4))
    heard: list[bytes] = field(default_factory=list)
    ended_by_platform: asyncio.Event = field(default_factory=asyncio.Event)
    sip_in: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    sip_in_responses: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    digits: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    async def dial(self, timeout: float = 10.0, *, answer: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self.sip, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self.sip_in), local_addr=(self.host, 0)
        )
        self.rtp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self.heard), local_addr=(self.host, 0))
        self.sip_local = self.sip.get_extra_info("sockname")[1]
        rtp_port = self.rtp.get_extra_info("sockname")[1]
        self.uri = f"sip:{self.number}@{self.host}:{self.port}"
        body = (
            f"v=0\r\no=caller 1 1 IN IP4 {self.host}\r\ns=-\r\nc=IN IP4 {self.host}\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
            "a=sendrecv\r\n"
        ).encode()
        self.cseq = 1
        self._send("INVITE", body=body, from_uri=f'"Ada Caller" <sip:+15550100@{self.host}>')
        if not answer:
            return
        ok = await self._final(timeout)
        assert ok.startswith(b"SIP/2.0 200"), ok[:200]
        self.to_tag = re.search(rb"^To:.*;tag=([^;\r\n]+)", ok, re.M | re.I).group(1).decode()  # type: ignore[union-attr]
        self.remote_rtp = int(re.search(rb"m=audio (\d+) ", ok).group(1))  # type: ignore[union-attr]
        self._send("ACK", to_tag=self.to_tag, cseq=1)
        self._talk = asyncio.create_task(self._stream())
        self._listen = asyncio.create_task(self._serve())

    def _send(
        self,
        method: str,
        *,
        body: bytes = b"",
        to_tag: str | None = None,
        cseq: int | None = None,
        from_uri: str | None = None,
    ) -> None:
        to = f"<{self.uri}>" + (f";tag={to_tag}" if to_tag else "")
        head = (
            f"{method} {self.uri} SIP/2.0\r\nVia: SIP/2.0/UDP {self.host}:{self.sip_local};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: {from_uri or f'<sip:+15550100@{self.host}>'};tag={self.tag}\r\nTo: {to}\r\n"
            f"Call-ID: {self.call_id}\r\nCSeq: {cseq or self.cseq} {method}\r\n"
            f"Contact: <sip:caller@{self.host}:{self.sip_local}>\r\n"
        )
        if body:
            head += "Content-Type: application/sdp\r\n"
        data = f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        self.sip.sendto(data, (self.host, self.port))

    async def _final(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            data = await asyncio.wait_for(self.sip_in.get(), max(0.01, deadline - time.monotonic()))
            if data.startswith(b"SIP/2.0 ") and int(data[8:11]) >= 200:
                return data

    async def _stream(self) -> None:
        samples = tone(self.frequency, 1.0)
        payload = ulaw_encode(samples)
        ssrc, seq, ts = secrets.randbits(32), secrets.randbits(15), secrets.randbits(31)
        start, i = time.monotonic(), 0
        while True:
            timestamp = (ts + i * 160) & 0xFFFFFFFF
            if not self.digits.empty():
                # A key press: RFC 4733 packets in place of audio for its length, in the same stream.
                for item in digit_packets(self.digits.get_nowait(), timestamp=timestamp, duration=0.1):
                    packet = RtpPacket(
                        payload_type=101,
                        sequence_number=(seq + i) & 0xFFFF,
                        timestamp=timestamp,
                        ssrc=ssrc,
                        payload=item.payload,
                        marker=item.marker,
                    )
                    self.rtp.sendto(bytes(packet), (self.host, self.remote_rtp))
                    i += 1
                    await asyncio.sleep(max(0.0, start + i * 0.02 - time.monotonic()))
                continue
            chunk = payload[(i % 50) * 160 : (i % 50 + 1) * 160]
            packet = RtpPacket(
                payload_type=0,
                sequence_number=(seq + i) & 0xFFFF,
                timestamp=timestamp,
                ssrc=ssrc,
                payload=chunk,
                marker=i == 0,
            )
            self.rtp.sendto(bytes(packet), (self.host, self.remote_rtp))
            i += 1
            await asyncio.sleep(max(0.0, start + i * 0.02 - time.monotonic()))

    def press(self, digits: str) -> None:
        for digit in digits:
            self.digits.put_nowait(digit)

    async def _serve(self) -> None:
        """Answer the platform's BYE (and re-INVITEs) with 200."""
        while True:
            data = await self.sip_in.get()
            if data.startswith(b"SIP/2.0"):
                self.sip_in_responses.put_nowait(data)
                continue
            method = data.split(b" ", 1)[0]
            head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
            keep = [
                line
                for line in head.split("\r\n")[1:]
                if line.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq")
            ]
            reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n"
            self.sip.sendto(reply.encode(), (self.host, self.port))
            if method == b"BYE":
                self.ended_by_platform.set()
                self._talk.cancel()

    def mark(self) -> int:
        return len(self.heard)

    def pcm_since(self, mark: int) -> np.ndarray:
        packets = [RtpPacket.parse(d) for d in self.heard[mark:]]
        return ulaw_decode(b"".join(p.payload for p in packets if p.payload_type == 0))

    async def hang_up(self) -> None:
        self._talk.cancel()
        self.cseq += 1
        self._send("BYE", to_tag=self.to_tag)
        try:
            await asyncio.wait_for(self.sip_in_responses.get(), 3.0)
        except TimeoutError:
            pass

    async def cancel(self) -> None:
        """CANCEL an unanswered INVITE."""
        self._send("CANCEL", cseq=1)

    def close(self) -> None:
        for task in (getattr(self, "_talk", None), getattr(self, "_listen", None)):
            if task is not None:
                task.cancel()
        for transport in (getattr(self, "sip", None), getattr(self, "rtp", None)):
            if transport is not None:
                transport.close()


@dataclass
class Watch:
    """Every event of one tenant on the bus (core NATS), decoded by subject."""

    nc: Any
    tenant: uuid.UUID
    seen: list[tuple[str, Any]] = field(default_factory=list)

    @classmethod
    async def start(cls, url: str, tenant: uuid.UUID) -> Watch:
        nc = await nats.connect(url)
        watch = cls(nc, tenant)
        kinds = {
            f"{c.domain}.{c.name}": c
            for c in (
                ev.CallArrived,
                ev.CallEnded,
                ev.ContactStateChanged,
                ev.ContactOffered,
                ev.ContactRejected,
                ev.ContactAccepted,
                ev.AgentStateChanged,
                ev.DeskPush,
                ev.ContactQueued,
                ev.ContactRequeued,
                ev.CallDtmf,
                ev.CallRecording,
                ev.IvrNodeEntered,
            )
        }

        async def on_event(msg: Any) -> None:
            name = ".".join(msg.subject.split(".")[3:5])
            kind = kinds.get(name)
            if kind is not None:
                watch.seen.append((name, decode(msg.data, kind)))

        await nc.subscribe(f"sb.{tenant}.evt.>", cb=on_event)
        await flushed(nc)
        return watch

    def all(self, kind: type, pred: Any = lambda e: True) -> list[Any]:
        return [e for _, e in self.seen if isinstance(e, kind) and pred(e)]

    async def wait_for(self, kind: type, pred: Any = lambda e: True, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.all(kind, pred)
            if found:
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"no matching {kind.__name__} within {timeout} s; saw {[n for n, _ in self.seen]}"
        )

    async def close(self) -> None:
        await self.nc.close()


_BACKLOG: dict[int, list[Any]] = {}


async def next_of(agent: Any, kind: type, pred: Any = lambda e: True, timeout: float = 15.0) -> Any:
    """The first event of `kind` matching `pred`; events read past on the way are kept for later calls (the
    coordinator's pushes and routing's agent states reach the socket by different paths, in either order)."""
    backlog = _BACKLOG.setdefault(id(agent), [])
    for i, event in enumerate(backlog):
        if isinstance(event, kind) and pred(event):
            return backlog.pop(i)

    async def find() -> Any:
        async for event in agent:
            if isinstance(event, kind) and pred(event):
                return event
            backlog.append(event)
        raise AssertionError(f"the session closed before a {kind.__name__}")

    return await asyncio.wait_for(find(), timeout)


async def wait_contact(t: Any, contact_id: str, state: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with t.client() as client:
            r = client.get(f"/v1/contacts/{contact_id}")
        if r.status_code == 200 and r.json()["state"] == state:
            return r.json()  # type: ignore[no-any-return]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"contact {contact_id} is not {state}: {r.status_code} {r.text[:500]}")
        await asyncio.sleep(0.1)


# -- calls the platform places: the tenant's trunk answered by SIPp ---------------------------------------


def trunk_to(t: Tenant, port: int, **settings: object) -> None:
    """The tenant's carrier trunk, its outbound side on a SIPp UAS at `port`, and its calling settings."""
    with t.client() as client:
        r = client.post(
            "/v1/trunks",
            json={
                "name": "carrier",
                "allowed_ips": ["127.0.0.0/8"],
                "outbound_host": "127.0.0.1",
                "outbound_port": port,
            },
        )
        assert r.status_code == 201, r.text
        if settings:
            r = client.put("/v1/calling-settings", json=settings)
            assert r.status_code == 200, r.text


def sipp_trace(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.glob("*_messages.log"))


async def sipp_uas(tmp_path: Path, port: int, *args: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        *sipp_command(port),
        *args,
        *["-trace_msg", "-timeout", "60"],
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(0.3)  # SIPp binds its port
    return proc
