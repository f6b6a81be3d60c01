# The `first-call` benchmark (`make bench BENCH=first_call`, issue 8): a caller dials a number routed straight
# to a queue and reaches a headless agent, on the real processes: embedded PostgreSQL and NATS, then
# `python -m services.api`, `services.media`, `services.routing`, `services.ivr` and `services.contacts`.
# The load generators run in processes of their own: the agents (switchboard.AgentSession, each contact
# with its aiortc WebRTC leg made while it rings, as the desktop does) and the callers (an asyncio SIP UAC
# per call, PCMU, streaming a 600 Hz tone all call long). Each call: queued -> offered -> accept ->
# bridged -> ~1 s of talk -> the agent hangs up -> wrap-up.
#
#   1. offer latency: the routing `contact.queued` event's timestamp -> the agent's socket reads the
#      `contact_offer` (both wall clocks of this machine); calls one at a time, agents free; p50/p95.
#   2. accept -> audio: the agent sends `accept` (once its leg is connected, as auto_answer does) -> the
#      first non-silent frame (RMS > 1000; the tone is ~5,600) decoded in the agent's leg; same calls.
#   3. calls per second through the whole path: callers at a fixed rate for a while per step, rising; the
#      highest rate at which every call went all the way (caller answered and released by the agent's
#      hang-up, agent offered/accepted/connected/heard audio/ended/wrapped up). The ramp stops at the first
#      step with a failure.
#   Stages (per contact, from the bus events' `ts` and the agent's clock): arrival -> queued, queued ->
#   offered (routing), offered -> at the agent (coordinator + API websocket), ring (leg ICE/DTLS), accept ->
#   accepted (API -> routing), accepted -> bridged (coordinator -> media), bridged -> audio at the agent.
#
#   CPU per call of every process (services, NATS, PostgreSQL, agents, callers) is measured per step.
#   Agents are AgentSessions with audio (not audio=False, not SIP agents): the coordinator bridges only to
#   a connected WebRTC leg, and it does not dial SIP endpoints yet (docs/contacts.md).
#
#   python tests/bench/bench_first_call.py [--quick] [--samples N] [--rates 2,4,6] [--step-s S] [--keep]
#       [--agent-leg aiortc|own]   the agents' leg: the SDK's aiortc one (default), or the platform's own
#       WebRTC path (aiortc for ICE and DTLS only, our SRTP): a lighter generator, still DTLS-SRTP over ICE
#   diagnostics: --log-level info, --jitter-prefetch 0 (the agents' aiortc receive buffer),
#   --diag-fetch-timeout 0.25 (caps the coordinator's JetStream fetch timeout by a patch at launch).
#
# Prints a table and writes .bench/first-call.json as [{"metric","value","unit","goal","better"}] and the
# ramp's steps to .bench/first-call-steps.json. With --keep, the data dir keeps the logs, events.json (every
# contact's event times, and when its media and routing commands went out), saves.json (the coordinator's
# KV saves of each contact) and the agents' and callers' records; without it the bench's bus watcher
# subscribes to the events the stages need only (its deliveries count in NATS's CPU).
# Not a test: nothing here asserts a timing. Every process shares the machine's cores.
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from services.runtime.embedded import die_with_parent  # noqa: E402
from tests.bench.first_call_diag import LAG_PROBE, Timeline, failures_by_step, probe_loop  # noqa: E402

CALLER_HZ = 600.0
AUDIO_RMS = 1000.0  # the caller's tone decodes at ~5,600 RMS; silence and comfort noise stay far below
TALK_S = 1.0


MAX_RUNS = 3
AGREE = 0.10  # two runs agree when their platform CPU per call differ by at most 10 % of the smaller


def _agreed(values: list[float]) -> bool:
    return len(values) >= 2 and abs(values[-1] - values[-2]) <= AGREE * min(values[-2:])


def _spread_pct(values: list[float]) -> float:
    return 100.0 * (max(values) - min(values)) / min(values) if len(values) > 1 and min(values) > 0 else 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


# ---------------------------------------------------------------------------------------------------------
# callers (their own process): one asyncio SIP UAC per call


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[bytes] | None) -> None:
        self.queue = queue

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.queue is not None:
            self.queue.put_nowait(data)


class Tones:
    """Every call's tone on one 20 ms clock: each tick sends the next PCMU packet of every call that talks.
    One timer for all calls instead of a task and a sleep per call and packet (what the callers' CPU went
    to); the packets are what a phone sends: RTP version 2, payload type 0, 160 bytes, marker on the first."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.calls: dict[int, list[Any]] = {}  # id -> [transport, address, ssrc, seq, ts, frame number]
        self._timer: asyncio.TimerHandle | None = None

    def add(self, transport: asyncio.DatagramTransport, port: int) -> int:
        key = id(transport)
        self.calls[key] = [transport, ("127.0.0.1", port), *(secrets.randbits(n) for n in (32, 16, 32)), 0]
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time(), self._tick, loop.time())
        return key

    def remove(self, key: int) -> None:
        self.calls.pop(key, None)

    def _tick(self, due: float) -> None:
        payload = self.payload
        for call in self.calls.values():
            transport, address, ssrc, seq, ts, i = call
            chunk = payload[(i % 50) * 160 : (i % 50 + 1) * 160]
            header = struct.pack("!BBHII", 0x80, 0x80 if i == 0 else 0, seq, ts, ssrc)
            transport.sendto(header + chunk, address)
            call[3], call[4], call[5] = (seq + 1) & 0xFFFF, (ts + 160) & 0xFFFFFFFF, i + 1
        loop = asyncio.get_running_loop()
        if not self.calls:
            self._timer = None
            return
        due = max(due + 0.02, loop.time())
        self._timer = loop.call_at(due, self._tick, due)


async def one_call(port: int, number: str, caller: str, tones: Tones, timeout: float) -> dict[str, Any]:
    """INVITE (retransmitted per RFC 3261 timer A until a response), ACK, the tone all call long, answer
    the platform's BYE (the agent hung up). Never hangs up itself unless `timeout` passes."""
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[bytes] = asyncio.Queue()
    sip, _ = await loop.create_datagram_endpoint(lambda: _Udp(inbox), local_addr=("127.0.0.1", 0))
    rtp, _ = await loop.create_datagram_endpoint(lambda: _Udp(None), local_addr=("127.0.0.1", 0))
    local = sip.get_extra_info("sockname")[1]
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    uri = f"sip:{number}@127.0.0.1:{port}"
    result: dict[str, Any] = {"caller": caller, "t_invite": time.time(), "ok": False}
    talk: int | None = None

    # A retransmitted INVITE is the same request (RFC 3261 17.1.1.2): the same branch. A fresh branch made
    # each one a new request, which media answered as a second call before it refused merged requests
    # (482): an agent took it and heard no caller audio (docs/media.md, "What fails next").
    invite_branch = f"z9hG4bK{secrets.token_hex(6)}"

    def send(method: str, cseq: int, to_tag: str | None = None, body: bytes = b"") -> None:
        branch = invite_branch if method == "INVITE" else f"z9hG4bK{secrets.token_hex(6)}"
        head = (
            f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{caller}@127.0.0.1>;tag={tag}\r\n"
            f"To: <{uri}>{';tag=' + to_tag if to_tag else ''}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:caller@127.0.0.1:{local}>\r\n"
        )
        if body:
            head += "Content-Type: application/sdp\r\n"
        sip.sendto(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body, ("127.0.0.1", port))

    try:
        rtp_port = rtp.get_extra_info("sockname")[1]
        sdp = (
            f"v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
        ).encode()
        send("INVITE", 1, body=sdp)
        deadline = time.monotonic() + timeout
        t1, next_retx, got_response = 0.5, time.monotonic() + 0.5, False
        ok: bytes | None = None
        while ok is None:
            now = time.monotonic()
            if now > deadline:
                result["error"] = "no final response"
                return result
            wait = min(deadline, next_retx if not got_response else deadline) - now
            try:
                data = await asyncio.wait_for(inbox.get(), max(0.001, wait))
            except TimeoutError:
                if not got_response:
                    send("INVITE", 1, body=sdp)
                    t1 = min(t1 * 2, 4.0)
                    next_retx = time.monotonic() + t1
                continue
            if not data.startswith(b"SIP/2.0 "):
                continue
            got_response = True
            code = int(data[8:11])
            if code >= 300:
                result["error"] = data.split(b"\r\n", 1)[0].decode(errors="replace")[8:]
                return result
            if code >= 200:
                ok = data
        result["t_200"] = time.time()
        to_tag = re.search(rb"^To:.*;tag=([^;\r\n]+)", ok, re.M | re.I).group(1).decode()  # type: ignore[union-attr]
        remote = int(re.search(rb"m=audio (\d+) ", ok).group(1))  # type: ignore[union-attr]
        send("ACK", 1, to_tag)
        talk = tones.add(rtp, remote)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                send("BYE", 2, to_tag)
                result["error"] = "the platform never hung up"
                return result
            try:
                data = await asyncio.wait_for(inbox.get(), left)
            except TimeoutError:
                continue
            if data.startswith(b"SIP/2.0 200") and b" INVITE" in data.split(b"CSeq:", 1)[-1][:40]:
                send("ACK", 1, to_tag)  # a retransmitted 200: our ACK was late or lost
                continue
            if data.startswith(b"SIP/2.0"):
                continue
            head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
            keep = [
                line
                for line in head.split("\r\n")[1:]
                if line.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq")
            ]
            sip.sendto(
                ("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n").encode(),
                ("127.0.0.1", port),
            )
            if data.startswith(b"BYE "):
                result["t_bye"] = time.time()
                result["ok"] = True
                return result
    finally:
        if talk is not None:
            result["rtp_sent"] = tones.calls[talk][5] if talk in tones.calls else None
            result["rtp_port"] = rtp.get_extra_info("sockname")[1]
            result["media_port"] = remote
            tones.remove(talk)
        sip.close()
        rtp.close()


async def callers_main(args: argparse.Namespace) -> None:
    import numpy as np

    from services.media.rtp.g711 import ulaw_encode

    t = np.arange(8000) / 8000
    tones = Tones(ulaw_encode((8000 * np.sin(2 * np.pi * CALLER_HZ * t)).astype(np.int16)))
    out = open(args.out, "a", buffering=1)  # noqa: ASYNC230  (a load generator's own log: small, line-buffered writes)
    tasks: list[asyncio.Task[None]] = []
    probe = asyncio.create_task(probe_loop(args.lag_file, "callers")) if args.lag_file else None
    # The calls' CPU, not the interpreter's start and imports (a few hundred ms, once per process).
    ready_cpu = time.process_time()

    async def run(i: int) -> None:
        caller = f"+1666{args.seed:03d}{i:07d}"
        r = await one_call(args.port, args.number, caller, tones, args.timeout)
        out.write(json.dumps(r) + "\n")

    if args.sequential:
        for i in range(args.calls):
            await run(i)
            await asyncio.sleep(args.gap)
    else:
        start = time.monotonic()
        for i in range(args.calls):
            await asyncio.sleep(max(0.0, start + i / args.rate - time.monotonic()))
            tasks.append(asyncio.create_task(run(i)))
        await asyncio.gather(*tasks)
    out.write(json.dumps({"cpu_s": time.process_time() - ready_cpu}) + "\n")
    out.close()
    if probe is not None:
        probe.cancel()


# ---------------------------------------------------------------------------------------------------------
# agents (their own process): switchboard.AgentSession with audio, accepting once the leg is connected

FIRST_AUDIO: dict[str, float] = {}
LOUDEST: dict[str, float] = {}  # own-path legs: the loudest frame each leg played (a failure's diagnosis)


def _patch_leg_reader() -> None:
    """Time the first non-silent frame each leg decodes. The SDK's reader only records after
    `contact_connected`; this replaces it in this process (nothing is recorded here) instead of adding a hook
    to sdk/switchboard/_agent_audio.py."""
    import numpy as np
    from aiortc.mediastreams import MediaStreamError
    from switchboard._agent_audio import AgentLeg

    async def _read(self: Any, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if getattr(self, "bench_heard", False):
                continue  # once per leg: the agent takes its time out of FIRST_AUDIO
            samples = frame.to_ndarray().astype(np.float32)
            if samples.size and float(np.sqrt(np.mean(samples * samples))) > AUDIO_RMS:
                FIRST_AUDIO[self.contact_id] = time.time()
                self.bench_heard = True

    AgentLeg._read = _read  # type: ignore[method-assign]


def _use_own_path_legs() -> None:
    """`--agent-leg own`: each agent's leg is the platform's own WebRTC leg (services.media.webrtc.WebRtcLeg
    with own_media) instead of the SDK's aiortc one. Still a real WebRTC peer, the platform side untouched:
    aiortc gathers ICE and runs the DTLS handshake, the media is SRTP keyed from it (pylibsrtp), G.711 by
    table, sent and played on a 20 ms timer per leg. What it drops is aiortc's per-packet Python on the
    agents' side: the encoder in a thread pool, a decoder thread per leg, its jitter buffer. Replaces the
    SDK's AgentLeg in this process only (the SDK imports it when an offer rings)."""
    import numpy as np
    import switchboard._agent_audio as agent_audio

    from services.media.rtp.g711 import G711
    from services.media.webrtc import LegState, WebRtcConfig, WebRtcLeg

    class OwnPathLeg:
        def __init__(self, contact_id: str, ice_servers: Any, **_unused: Any) -> None:
            if ice_servers:
                raise RuntimeError("the benchmark's agents use host candidates only")
            self.contact_id = contact_id
            self.leg_id: str | None = None
            self.connected = asyncio.Event()
            self.finished = asyncio.Event()
            self.heard = False
            self.leg = WebRtcLeg(
                WebRtcConfig(own_media=True),
                peer_law=G711.PCMU,
                on_audio=self._heard,
                on_state=self._state,
            )

        def _heard(self, samples: Any) -> None:
            if self.heard or not len(samples):
                return  # once per leg: the agent takes its time out of FIRST_AUDIO
            x = samples.astype(np.float32)
            rms = float(np.sqrt(np.mean(x * x)))
            LOUDEST[self.contact_id] = max(LOUDEST.get(self.contact_id, 0.0), rms)
            if rms > AUDIO_RMS:
                FIRST_AUDIO[self.contact_id] = time.time()
                self.heard = True

        def _state(self, state: Any) -> None:
            if state is LegState.CONNECTED:
                self.connected.set()
            elif state in (LegState.FAILED, LegState.CLOSED):
                self.finished.set()

        async def create_offer(self) -> str:
            return await self.leg.create_offer(data_channel=False)  # the SDK's leg has no data channel

        async def accept_answer(self, leg_id: str, sdp: str) -> None:
            self.leg_id = leg_id
            await self.leg.accept_answer(sdp)

        # The SDK's wait, on the same two events.
        wait_connected = agent_audio.AgentLeg.wait_connected

        def start(self) -> None:
            """The contact is connected: the leg already sends silence, as the SDK's does without a file."""

        async def close(self) -> None:
            self.finished.set()
            try:
                await asyncio.wait_for(self.leg.close(), 5)
            except Exception:
                pass  # aiortc's close can hang on a dead transport; the leg is gone either way

    agent_audio.AgentLeg = OwnPathLeg  # type: ignore[misc,assignment]


async def agents_main(args: argparse.Namespace) -> None:
    import httpx
    from switchboard import AgentSession
    from switchboard.agent_events import (
        ContactConnected,
        ContactEnded,
        ContactOffer,
        ContactWithdrawn,
        ErrorMessage,
    )

    if args.agent_leg == "own":
        _use_own_path_legs()
    else:
        _patch_leg_reader()
    if args.jitter_prefetch >= 0:
        # Diagnostic: aiortc's audio receiver holds 4 frames (prefetch) before it decodes the first one.
        import aiortc.rtcrtpreceiver as receiver
        from aiortc.jitterbuffer import JitterBuffer

        def buffer(capacity: int, prefetch: int = 0, is_video: bool = False) -> JitterBuffer:
            return JitterBuffer(capacity, prefetch if is_video else args.jitter_prefetch, is_video)

        receiver.JitterBuffer = buffer  # type: ignore[assignment,misc]
    config = json.loads(Path(args.config).read_text())  # noqa: ASYNC240  (once, before any call)
    http = httpx.AsyncClient(
        base_url=config["api"], headers={"Authorization": f"Bearer {config['key']}"}, timeout=30
    )
    out = open(args.out, "a", buffering=1)  # noqa: ASYNC230  (a load generator's own log: small, line-buffered writes)

    class TimedSession(AgentSession):
        """Stamps the moment the socket reads each contact push (not when the loop below takes it)."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.rx: dict[tuple[str, str], float] = {}

        def _handle(self, event: Any) -> bool:
            cid = getattr(event, "contact_id", None)
            if cid:
                self.rx.setdefault((type(event).__name__, cid), time.time())
            return super()._handle(event)

    def token_source(agent_id: str) -> Any:
        async def fresh() -> str:
            r = await http.post(f"/v1/agents/{agent_id}/token")
            r.raise_for_status()
            return str(r.json()["token"])

        return fresh

    async def expect(session: TimedSession, kind: type, cid: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind.__name__}")
            event = await session.next_event(left)
            if event is None:
                continue
            if isinstance(event, kind) and (not cid or getattr(event, "contact_id", "") == cid):
                return event
            if isinstance(event, ContactWithdrawn) and event.contact_id == cid:
                raise RuntimeError(f"withdrawn: {event.reason}")
            if isinstance(event, ErrorMessage) and cid and cid in event.reason:
                raise RuntimeError(f"{event.code}: {event.reason}")

    async def work(session: TimedSession, agent_id: str) -> None:
        while True:
            offer = await expect(session, ContactOffer, "", 1e9)
            cid = offer.contact_id
            rec: dict[str, Any] = {"contact_id": cid, "agent_id": agent_id, "ok": False}
            rec["t_offer_rx"] = session.rx.get(("ContactOffer", cid))
            stage = "leg"
            try:
                deadline = time.monotonic() + 10
                while session.leg(cid) is None and time.monotonic() < deadline:  # noqa: ASYNC110  (the SDK makes the leg in a task of its own; no event to await)
                    await asyncio.sleep(0.002)
                leg = session.leg(cid)
                if leg is None or not await leg.wait_connected(max(0.1, deadline - time.monotonic())):
                    raise RuntimeError("the leg did not connect")
                rec["t_leg"] = time.time()
                stage = "accept"
                rec["t_accept"] = time.time()
                await session.accept(cid, offer.offer_id)
                rec["t_accept_ack"] = time.time()
                stage = "connected"
                await expect(session, ContactConnected, cid, 10)
                rec["t_connected_rx"] = session.rx.get(("ContactConnected", cid))
                stage = "talk"
                await asyncio.sleep(args.talk)
                for _ in range(100):  # at most 1 s more for the first audio
                    if cid in FIRST_AUDIO:
                        break
                    await asyncio.sleep(0.01)
                rec["t_first_audio"] = FIRST_AUDIO.pop(cid, None)
                rec["loudest_rms"] = LOUDEST.pop(cid, None)
                if rec["t_first_audio"] is None:
                    own = getattr(leg, "leg", None)  # --agent-leg own: what the leg did receive
                    frames = getattr(own, "received_frames", None)
                    jitter = getattr(getattr(own, "media", None), "jitter", None)
                    st = jitter.stats if jitter is not None else None
                    buffered = (
                        f", jitter buffer: {st.accepted} in, {st.played} played, {st.missing} missing,"
                        f" {st.late} late, {st.dropped} dropped, {st.restarts} restarts"
                        if st is not None
                        else ""
                    )
                    heard = (
                        f" ({frames} frames played, loudest RMS {LOUDEST.get(cid, 0):.0f}{buffered})"
                        if own
                        else ""
                    )
                    raise RuntimeError(f"no caller audio at the agent{heard}")
                stage = "hangup"
                rec["t_hangup"] = time.time()
                await session.hangup(cid)
                await expect(session, ContactEnded, cid, 10)
                rec["t_ended_rx"] = session.rx.get(("ContactEnded", cid))
                stage = "wrap_up"
                await session.wrap_up(cid, "bench")
                rec["t_wrapped"] = time.time()
                rec["ok"] = True
            except Exception as exc:
                rec["error"] = f"{stage}: {type(exc).__name__}: {exc}"
                for step in (session.hangup(cid), session.wrap_up(cid, "bench")):
                    try:
                        await asyncio.wait_for(step, 5)
                    except Exception:
                        pass
            out.write(json.dumps(rec) + "\n")

    sessions: list[tuple[TimedSession, str]] = []
    sem = asyncio.Semaphore(20)
    if args.lag_file:
        probe = asyncio.create_task(probe_loop(args.lag_file, Path(args.out).stem))
        probe.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def start(agent_id: str) -> None:
        async with sem:
            session = TimedSession(config["api"], token_source(agent_id), audio=True, auto_answer=False)
            await session.__aenter__()
            await session.login(state="available")
            sessions.append((session, agent_id))

    await asyncio.gather(*(start(a) for a in config["agents"]))
    workers = [asyncio.create_task(work(s, a)) for s, a in sessions]
    Path(args.out + ".ready").write_text(str(len(sessions)))  # noqa: ASYNC240  (once, after the logins)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    await asyncio.gather(*(asyncio.wait_for(s.close(), 10) for s, _ in sessions), return_exceptions=True)
    await http.aclose()
    out.close()


# ---------------------------------------------------------------------------------------------------------
# orchestrator: the stack, the tenant, the bus watcher, the phases


class Watcher:
    """The tenant's events the stages need, per call id: the first `ts` of each kind. It subscribes to those
    subjects only: its deliveries are NATS work the platform's figure counts (every event of the tenant,
    its commands and KV saves were about 50 deliveries per call, a third of what NATS sent). With `diag`
    (--keep) it also notes when each media and routing command went out and each KV save of a contact."""

    WANTED = {
        "call.arrived",
        "call.answered",
        "contact.queued",
        "contact.offered",
        "contact.accepted",
        "call.ended",
    }

    def __init__(self) -> None:
        self.ts: dict[str, dict[str, float]] = {}
        self.saves: dict[str, list[float]] = {}
        self.quality: dict[str, Any] = {}  # (--keep) each leg's call.quality: what media received and lost
        self.by_caller: dict[str, str] = {}  # the caller's number -> the contact (call) id

    async def start(self, url: str, tenant: uuid.UUID, *, diag: bool) -> None:
        import msgspec
        import nats

        self.nc = await nats.connect(url)

        async def on_event(msg: Any) -> None:
            parts = msg.subject.split(".")
            name = ".".join(parts[3:5])
            if name == "contact.state_changed":
                data = msgspec.json.decode(msg.data)
                name = f"state.{data.get('new')}"
            elif name == "webrtc.signal":
                data = msgspec.json.decode(msg.data)
                if data.get("kind") != "state" or data.get("state") != "connected":
                    return
                name = "leg.connected"
            elif name not in self.WANTED:
                return
            else:
                data = msgspec.json.decode(msg.data)
            call = str(data.get("call_id"))
            if name == "call.arrived":
                found = re.search(r"sip:([^@;>]+)", str(data.get("from_uri", "")))
                if found:
                    self.by_caller[found.group(1)] = call
            seen = self.ts.setdefault(call, {})
            if name not in seen:
                seen[name] = float(data["ts"])
                seen["rx:" + name] = time.time()  # when the bus delivered it (publish delays show here)

        for name in (*self.WANTED, "contact.state_changed", "webrtc.signal"):
            await self.nc.subscribe(f"sb.{tenant}.evt.{name}", cb=on_event)
        if diag:
            await self._diagnostics(tenant)
        from services.kernel.waits import flushed

        await flushed(self.nc)

    async def _diagnostics(self, tenant: uuid.UUID) -> None:
        import msgspec

        async def on_command(msg: Any) -> None:
            # When each media/routing command of a contact went out (who is slow: the sender or the service).
            parts = msg.subject.split(".")
            data = msgspec.json.decode(msg.data)
            call = str(data.get("call_id") or data.get("contact_id") or "")
            if call:
                self.ts.setdefault(call, {}).setdefault(f"cmd:{parts[3]}.{parts[4]}", time.time())

        await self.nc.subscribe(f"sb.{tenant}.cmd.media.>", cb=on_command)

        async def on_saved(msg: Any) -> None:
            # The coordinator saves a contact's state after each step (KV put): the steps' end times.
            call = msg.subject.rsplit(".", 1)[-1]
            self.saves.setdefault(call, []).append(time.time())

        await self.nc.subscribe(f"$KV.sb_contacts.{tenant}.*", cb=on_saved)

        async def on_quality(msg: Any) -> None:
            data = msgspec.json.decode(msg.data)
            self.quality[str(data.get("call_id"))] = data

        await self.nc.subscribe(f"sb.{tenant}.evt.call.quality", cb=on_quality)
        await self.nc.subscribe(f"sb.{tenant}.cmd.routing.*", cb=on_command)

    async def close(self) -> None:
        await self.nc.close()


_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")


def message_kind(subject: str) -> str:
    """A subject without its ids: what kind of message it is (an event, a command, an ack, a KV put...)."""
    parts = subject.split(".")
    if subject.startswith("$JS.ACK."):
        return ".".join(parts[:4]) + ".<ack>"  # $JS.ACK.<stream>.<consumer>.<delivery numbers>
    if subject.startswith("_INBOX."):
        return "_INBOX (replies, JetStream acks and deliveries)"
    if subject.startswith("$KV."):
        return ".".join(parts[:3]) + ".<key>"
    return _ID.sub("<id>", ".".join(parts))


class MessageCounter:
    """Diagnostic (--count-messages): every message NATS routes in the account, by kind."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.nc: Any = None

    async def start(self, url: str) -> None:
        import nats

        from services.kernel.waits import flushed

        self.nc = await nats.connect(url)

        async def on_msg(msg: Any) -> None:
            kind = message_kind(msg.subject)
            if msg.reply.startswith("$JS.ACK."):  # a JetStream delivery, to the consumer named in its reply
                kind = f"delivery to {msg.reply.split('.')[3]}: {kind}"
            elif kind.startswith("_INBOX"):
                kind = (
                    "_INBOX: JetStream publish ack" if msg.data.startswith(b'{"stream"') else "_INBOX: reply"
                )
            self.counts[kind] = self.counts.get(kind, 0) + 1

        await self.nc.subscribe(">", cb=on_msg, pending_msgs_limit=1_000_000, pending_bytes_limit=1 << 30)
        await flushed(self.nc)

    def per_call(self, calls: int) -> dict[str, float]:
        ranked = sorted(self.counts.items(), key=lambda kv: -kv[1])
        return {k: round(n / max(1, calls), 2) for k, n in ranked}

    @staticmethod
    def print(per_call: dict[str, float]) -> None:
        print(f"    NATS messages per call: {sum(per_call.values()):.1f}")
        for kind, n in per_call.items():
            if n >= 0.05:
                print(f"      {n:7.2f}  {kind}")

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()


def wait_ready_file(path: Path, procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"an agents process exited with {p.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear within {timeout} s")
        time.sleep(0.1)


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stages(agent_recs: list[dict[str, Any]], watch: dict[str, dict[str, float]]) -> dict[str, list[float]]:
    """Per-stage milliseconds over the contacts that went all the way."""
    out: dict[str, list[float]] = {
        k: []
        for k in (
            "arrived_to_queued",
            "arrived_to_answered",
            "answered_to_queued",
            "queued_to_offered",
            "offered_to_agent",
            "offered_to_coordinator",
            "coordinator_to_agent",
            "offer_latency",
            "ring_leg_connected",
            "accept_to_accepted",
            "accepted_to_bridged",
            "bridged_to_audio",
            "accept_to_audio",
            "bridged_to_connected_push",
            "hangup_to_ended_push",
        )
    }
    for r in agent_recs:
        if not r.get("ok"):
            continue
        w = watch.get(r["contact_id"], {})

        def add(key: str, a: float | None, b: float | None) -> None:
            if a is not None and b is not None:
                out[key].append((b - a) * 1000)

        add("arrived_to_queued", w.get("call.arrived"), w.get("contact.queued"))
        add("arrived_to_answered", w.get("call.arrived"), w.get("call.answered"))
        add("answered_to_queued", w.get("call.answered"), w.get("contact.queued"))
        add("queued_to_offered", w.get("contact.queued"), w.get("contact.offered"))
        add("offered_to_agent", w.get("contact.offered"), r["t_offer_rx"])
        add("offered_to_coordinator", w.get("contact.offered"), w.get("state.offered"))
        add("coordinator_to_agent", w.get("state.offered"), r["t_offer_rx"])
        add("offer_latency", w.get("contact.queued"), r["t_offer_rx"])
        add("ring_leg_connected", r["t_offer_rx"], r["t_leg"])
        add("accept_to_accepted", r["t_accept"], w.get("contact.accepted"))
        add("accepted_to_bridged", w.get("contact.accepted"), w.get("state.connected"))
        add("bridged_to_audio", w.get("state.connected"), r["t_first_audio"])
        add("accept_to_audio", r["t_accept"], r["t_first_audio"])
        add("bridged_to_connected_push", w.get("state.connected"), r["t_connected_rx"])
        add("hangup_to_ended_push", r["t_hangup"], r["t_ended_rx"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int, default=None, help="calls, one at a time, for the latencies")
    parser.add_argument("--rates", default=None, help="calls per second, comma-separated, in order")
    parser.add_argument("--step-s", type=float, default=None, help="seconds of calls per rate step")
    parser.add_argument("--agents", type=int, default=None)
    parser.add_argument("--agent-procs", type=int, default=2)
    parser.add_argument("--talk", type=float, default=TALK_S)
    parser.add_argument(
        "--jitter-prefetch",
        type=int,
        default=-1,
        help="diagnostic: the agents' aiortc audio prefetch (default 4)",
    )
    parser.add_argument(
        "--diag-fetch-timeout",
        type=float,
        default=0.0,
        help="diagnostic: cap the coordinator's fetch timeout",
    )
    parser.add_argument(
        "--agent-leg",
        choices=("aiortc", "own"),
        default="aiortc",
        help="the agents' WebRTC leg: the SDK's (aiortc carries the media) or the platform's own path"
        " (aiortc for ICE and DTLS, our SRTP): a lighter load generator, still DTLS-SRTP over ICE",
    )
    parser.add_argument(
        "--count-messages",
        action="store_true",
        help="diagnostic: a side connection subscribed to `>` counts every NATS message per call by subject"
        " (its deliveries add to NATS's CPU)",
    )
    parser.add_argument(
        "--profile",
        default="",
        help="diagnostic: comma-separated services run under cProfile with CPU time (time.thread_time);"
        " the stats go to <data dir>/<service>.prof and their top functions are printed (implies --keep)",
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="diagnostic: each service's event-loop lag (a 20 ms probe) and every process's CPU, second by"
        " second, in .bench/first-call-timeline.jsonl; each step prints its worst lag and busiest second",
    )
    parser.add_argument("--log-level", default="warning", help="the services' SB_LOG_LEVEL")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs) at the end")
    # roles (the load generators re-run this file)
    parser.add_argument("--role", choices=("agents", "callers"), default=None)
    parser.add_argument("--config", default="")
    parser.add_argument("--out", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--number", default="")
    parser.add_argument("--calls", type=int, default=0)
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--sequential", action="store_true")
    parser.add_argument("--gap", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lag-file", default="", help="(roles) write the loop probe's lines here")
    args = parser.parse_args()
    if args.role == "callers":
        asyncio.run(callers_main(args))
        return
    if args.role == "agents":
        asyncio.run(agents_main(args))
        return
    orchestrate(args)


def orchestrate(args: argparse.Namespace) -> None:
    import httpx
    import psutil

    from services.kernel import db
    from services.runtime.embedded import (
        APP_ROLE,
        DATABASE,
        EmbeddedNats,
        EmbeddedPostgres,
        Secrets,
        free_port,
    )
    from tests.e2e.first_call.conftest import _routing_answers, make_tenant

    samples = args.samples or (15 if args.quick else 100)
    rates = [
        float(r) for r in (args.rates or ("2,4" if args.quick else "2,3,4,5,6,8,10,12,15,20,25")).split(",")
    ]
    step_s = args.step_s or (10.0 if args.quick else 25.0)
    agents_n = args.agents or int(max(rates) * (args.talk + 2.5) * 1.5) + 4
    data_dir = Path(tempfile.mkdtemp(prefix="sbbench-first-call-"))
    secrets_ = Secrets.load_or_create(data_dir)
    pg, nats_server = EmbeddedPostgres(data_dir, secrets_), EmbeddedNats(data_dir, secrets_)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    agent_procs: list[subprocess.Popen[bytes]] = []
    started_at = time.time()
    load_before = os.getloadavg()
    # SIGTERM (a time budget's `timeout`) unwinds through the `finally` below like Ctrl-C; PostgreSQL runs as
    # our supervised child and every process we start dies with us, so even a kill -9 leaves nothing behind.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        pg.start(supervised=True)
        nats_server.start()

        async def prepare() -> None:
            await db.bootstrap(
                pg.admin_url, database=DATABASE, app_role=APP_ROLE, app_password=secrets_.pg_app_password
            )
            await db.migrate(pg.owner_url, app_role=APP_ROLE)

        asyncio.run(prepare())
        api_port, sip_port = free_port(), free_port()
        base = {
            **os.environ,
            "SB_DATABASE_URL": pg.app_url,
            "SB_NATS_URL": nats_server.url,
            "SB_TOKEN_SECRET": secrets_.token_secret,
            "SB_BIND_HOST": "127.0.0.1",
            "SB_DATA_DIR": str(data_dir),
            "SB_LOG_LEVEL": args.log_level,
        }
        envs = {
            "api": {**base, "SB_HTTP_PORT": str(api_port), "SB_SIGNUP_RATE_PER_MINUTE": "1000"},
            # Production admission (shedding on CPU and loop lag stays on): a shed call is a failed call.
            "media": {
                **base,
                "SB_SIP_PORT": str(sip_port),
                "SB_SIP_RATE": "100000",
                "SB_SIP_BURST": "100000",
                # Below the test stacks' RTP ranges (30000-45000) and the kernel's ephemeral ports (32768+): a
                # benchmark beside the suite must not take a test call's ports (a 503 no_media_port in the IVR e2e).
                "SB_RTP_PORT_MIN": "16000",
                "SB_RTP_PORT_MAX": "19999",
            },
            "routing": {**base, "SB_ROUTING_WORKER_ID": "bench-first-call"},
            "ivr": base,
            "contacts": base,
        }
        for name, env in envs.items():
            log = open(data_dir / f"{name}.log", "ab")
            cmd = [sys.executable, "-m", f"services.{name}"]
            if name == "contacts" and args.diag_fetch_timeout:
                # Diagnostic only (services/ unchanged): the coordinator's JetStream fetch with a shorter
                # timeout, to see whether its late events follow that timeout.
                cmd = [sys.executable, "-c", _FETCH_PATCH % args.diag_fetch_timeout]
            if name in args.profile.split(","):
                cmd = [sys.executable, "-c", _PROFILE % (name, str(data_dir / f"{name}.prof"))]
            elif args.timeline:
                cmd = [sys.executable, "-c", LAG_PROBE % (str(data_dir / f"lag-{name}.jsonl"), name)]
            procs[name] = subprocess.Popen(
                cmd,
                cwd=ROOT,
                preexec_fn=die_with_parent(),
                env={**env, "SB_SERVICE_NAME": name},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        api = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{api}/healthz", timeout=2.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the API did not start") from None
                time.sleep(0.1)
        asyncio.run(_wait_health(nats_server.url, {"media", "routing", "ivr", "contacts"}, 60))
        asyncio.run(_routing_answers(nats_server.url, 30.0))
        tenant = make_tenant(api, agents=agents_n)
        with tenant.client() as client:  # wrap-up ends with the agent's wrap_up; nobody waits for the timer
            client.patch(f"/v1/queues/{tenant.queue_id}", json={"wrap_up_seconds": 5})
        # A signup may hold 10 calls at once (migration 0002): lifted, as an operator would for a big tenant.
        asyncio.run(_lift_call_limit(pg.owner_url, tenant.id))
        print(
            f"stack up in {time.time() - started_at:.1f} s; {agents_n} agents ({args.agent_leg} legs) in"
            f" {args.agent_procs} processes;"
            f" load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
        )
        ids = list(tenant.agents.values())
        me = Path(__file__).resolve()
        agent_out: list[Path] = []
        for p in range(args.agent_procs):
            cfg = data_dir / f"agents-{p}.json"
            cfg.write_text(json.dumps({"api": api, "key": tenant.key, "agents": ids[p :: args.agent_procs]}))
            out = data_dir / f"agents-{p}.jsonl"
            agent_out.append(out)
            log = open(data_dir / f"agents-{p}.log", "ab")
            agent_procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(me),
                        "--role",
                        "agents",
                        "--config",
                        str(cfg),
                        "--out",
                        str(out),
                        "--talk",
                        str(args.talk),
                        "--jitter-prefetch",
                        str(args.jitter_prefetch),
                        "--agent-leg",
                        args.agent_leg,
                        *(["--lag-file", str(data_dir / f"lag-agents-{p}.jsonl")] if args.timeline else []),
                    ],
                    cwd=ROOT,
                    preexec_fn=die_with_parent(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        for out in agent_out:
            wait_ready_file(Path(str(out) + ".ready"), agent_procs, 120)
        result = asyncio.run(
            phases(
                args,
                tenant,
                sip_port,
                nats_server.url,
                data_dir,
                agent_out,
                samples,
                rates,
                step_s,
                {n: p.pid for n, p in procs.items()},
                [p.pid for p in agent_procs],
                psutil,
            )
        )
    finally:
        for p in agent_procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in agent_procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        for proc in reversed(list(procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        nats_server.stop()
        pg.stop()
        for name in filter(None, args.profile.split(",")):
            _print_profile(data_dir / f"{name}.prof", name)
        if args.keep or args.profile:
            print(f"data and logs kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    report(result, args, load_before, time.time() - started_at)


_FETCH_PATCH = """
import runpy
import services.kernel.serving as s
s.FETCH_WAIT_S = min(s.FETCH_WAIT_S, %r)  # Bus.consume's long poll
runpy.run_module("services.contacts", run_name="__main__")
"""


# The service's main thread (its event loop) in CPU time: on a loaded machine wall time would charge a
# function for the moments the process waited for a core.
_PROFILE = """
import cProfile, runpy, time
profile = cProfile.Profile(time.thread_time)
profile.enable()
try:
    runpy.run_module("services.%s", run_name="__main__")
finally:
    profile.disable()
    profile.dump_stats(%r)
"""


def _print_profile(path: Path, name: str) -> None:
    import pstats

    if not path.exists():
        print(f"{name}: no profile written")
        return
    print(f"\n{name}: CPU time (main thread), top functions by own time")
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(25)
    print(f"{name}: top by cumulative time")
    pstats.Stats(str(path)).sort_stats("cumulative").print_stats(40)


async def _lift_call_limit(owner_url: str, tenant: uuid.UUID) -> None:
    import asyncpg

    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute("UPDATE tenants SET max_concurrent_calls = 100000 WHERE id = $1", tenant)
    finally:
        await conn.close()


async def _wait_health(url: str, names: set[str], timeout: float) -> None:
    import nats

    from services.kernel.bus import Bus
    from services.kernel.subjects import HEALTH_BUCKET

    nc = await nats.connect(url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                seen = {k.split(".", 1)[0] for k, _ in await Bus(nc).kv_latest(HEALTH_BUCKET)}
                if names <= seen:
                    return
            except Exception:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"services not up within {timeout} s")
    finally:
        await nc.close()


def _callers(
    args: argparse.Namespace, out: Path, sip_port: int, number: str, extra: list[str]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--role",
            "callers",
            "--out",
            str(out),
            "--port",
            str(sip_port),
            "--number",
            number,
            *extra,
        ],
        cwd=ROOT,
        preexec_fn=die_with_parent(),
    )


async def _wait_proc(proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the callers process did not finish")
        await asyncio.sleep(0.1)


async def phases(
    args: argparse.Namespace,
    tenant: Any,
    sip_port: int,
    nats_url: str,
    data_dir: Path,
    agent_out: list[Path],
    samples: int,
    rates: list[float],
    step_s: float,
    service_pids: dict[str, int],
    agent_pids: list[int],
    psutil: Any,
) -> dict[str, Any]:
    watcher = Watcher()
    await watcher.start(nats_url, tenant.id, diag=args.keep)
    counter = MessageCounter()
    if args.count_messages:
        await counter.start(nats_url)

    def agent_recs() -> list[dict[str, Any]]:
        return [r for out in agent_out for r in read_lines(out)]

    # 1. one call at a time: offer latency, accept -> audio, the stages at rest (2 warm-up calls first)
    warm = 2
    lat_out = data_dir / "callers-latency.jsonl"
    proc = _callers(
        args,
        lat_out,
        sip_port,
        tenant.number,
        ["--sequential", "--calls", str(samples + warm), "--seed", "1", "--gap", "0.2"],
    )
    await _wait_proc(proc, 60 + (samples + warm) * 6)
    calls = [c for c in read_lines(lat_out) if "caller" in c]
    await asyncio.sleep(0.5)
    recs = sorted(agent_recs(), key=lambda r: r.get("t_offer_rx") or 0)
    lat_failed = sum(1 for c in calls if not c["ok"]) + sum(1 for r in recs if not r["ok"])
    at_rest = stages(recs[warm:], watcher.ts)
    seen = len(recs)
    print(f"one call at a time: {len(calls)} calls, {lat_failed} failed")

    # 2. the rate ramp
    procs = {n: psutil.Process(pid) for n, pid in service_pids.items()}
    procs.update({f"agents-{i}": psutil.Process(pid) for i, pid in enumerate(agent_pids)})
    procs["nats"] = next(p for p in psutil.Process().children() if p.name().startswith("nats-server"))
    postmaster = psutil.Process(int((data_dir / "pg" / "postmaster.pid").read_text().split()[0]))

    def cpu_now() -> dict[str, float]:
        out = {k: p.cpu_times().user + p.cpu_times().system for k, p in procs.items()}
        pg = 0.0
        for p in [postmaster, *postmaster.children()]:
            try:
                t = p.cpu_times()
                pg += t.user + t.system
            except psutil.Error:
                pass
        out["postgres"] = pg
        return out

    steps: list[dict[str, Any]] = []
    best = 0.0
    seen_box = [seen]
    timeline = Timeline(cpu_now, psutil, data_dir)
    ramp_t0 = time.time()
    if args.timeline:
        timeline.start()

    async def run_rate(i: int, rate: float, run: int) -> dict[str, Any]:
        seen = seen_box[0]
        n = max(1, int(rate * step_s))
        out = data_dir / f"callers-{i}-{run}.jsonl"
        cpu0 = cpu_now()
        counter.counts.clear()
        t0, wall0 = time.monotonic(), time.time()
        proc = _callers(
            args,
            out,
            sip_port,
            tenant.number,
            [
                *(
                    "--calls",
                    str(n),
                    "--rate",
                    str(rate),
                    "--seed",
                    str(10 + i + 100 * run),
                    "--timeout",
                    "30",
                ),
                *(["--lag-file", str(data_dir / "lag-callers.jsonl")] if args.timeline else []),
            ],
        )
        await _wait_proc(proc, step_s + 90)
        wall = time.monotonic() - t0
        cpu1 = cpu_now()
        # The agents finish wrap-up after the caller's BYE: give them a moment, then take their records.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(agent_recs()) - seen < n:  # noqa: ASYNC110  (the records are files other processes write)
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        recs = sorted(agent_recs(), key=lambda r: r.get("t_offer_rx") or 0)
        step_recs, seen_box[0] = recs[seen:], len(recs)
        lines = read_lines(out)
        calls = [c for c in lines if "caller" in c]
        callers_cpu = sum(c["cpu_s"] for c in lines if "cpu_s" in c)
        failed_calls = [c for c in calls if not c["ok"]]
        failed_agents = [r for r in step_recs if not r["ok"]]
        # A call went all the way when its caller was released by the agent's hang-up and the agent's side
        # of its contact went offer -> accept -> connected -> audio -> ended -> wrapped up.
        by_contact = {r["contact_id"]: r for r in step_recs}
        by_step = failures_by_step(calls, by_contact, watcher.by_caller)
        failures = sum(by_step.values())
        used = {k: cpu1[k] - cpu0[k] for k in cpu1}
        used["callers"] = callers_cpu
        cpu = {k: v / wall for k, v in used.items()}
        platform = sum(v for k, v in used.items() if k in service_pids or k in ("nats", "postgres"))
        generators = sum(v for k, v in used.items() if k.startswith("agents") or k == "callers")
        st = stages(step_recs, watcher.ts)
        step = {
            "rate": rate,
            "calls": len(calls),
            "failures": failures,
            "errors": sorted(
                {c.get("error", "") for c in failed_calls} | {r.get("error", "") for r in failed_agents}
            )[:6],
            "failures_by_step": by_step,
            "offer_p95": pct(st["offer_latency"], 0.95),
            "accept_audio_p95": pct(st["accept_to_audio"], 0.95),
            "stages_p50": {k: pct(v, 0.5) for k, v in st.items()},
            "cpu": cpu,
            "wall_s": wall,
            "cpu_ms_per_call": {k: 1000 * v / max(1, len(calls)) for k, v in used.items()},
            "platform_cpu_ms_per_call": 1000 * platform / max(1, len(calls)),
            "generators_cpu_ms_per_call": 1000 * generators / max(1, len(calls)),
            "load1": os.getloadavg()[0],
        }
        print(
            f"  {rate:5.1f} calls/s x {step_s:.0f} s (run {run + 1}): {len(calls)} calls, {failures} failed;"
            f" offer p95 {step['offer_p95']:.0f} ms, accept->audio p95 {step['accept_audio_p95']:.0f} ms;"
            f" CPU (cores) "
            + " ".join(f"{k} {v:.2f}" for k, v in cpu.items())
            + f"; load {step['load1']:.2f}"
        )
        print(
            f"    CPU per call: platform {step['platform_cpu_ms_per_call']:.0f} ms (services, NATS, PostgreSQL),"
            f" load generators {step['generators_cpu_ms_per_call']:.0f} ms"
        )
        for where, n in by_step.items():
            print(f"    {n:4d} failed at {where}")
        if args.timeline:
            step["timeline"] = timeline.window(wall0, time.time())
            lag = step["timeline"]["worst_lag_s"]
            peak = step["timeline"]["peak_cores"]
            print(
                "    worst loop lag (s) "
                + " ".join(f"{k} {v:.2f}" for k, v in sorted(lag.items()))
                + "; busiest second (cores) "
                + " ".join(f"{k} {v:.2f}" for k, v in peak.items())
            )
        if args.count_messages:
            step["messages_per_call"] = counter.per_call(len(calls))
            counter.print(step["messages_per_call"])
        return step

    for i, rate in enumerate(rates):
        # A passing rate runs again until two runs agree within AGREE on platform CPU per call (at most
        # MAX_RUNS, every run must pass); the step keeps the last run, with the runs and their spread.
        runs = [await run_rate(i, rate, 0)]
        per_call = [runs[0]["platform_cpu_ms_per_call"]]
        while not runs[-1]["failures"] and len(runs) < MAX_RUNS and not _agreed(per_call):
            runs.append(await run_rate(i, rate, len(runs)))
            per_call.append(runs[-1]["platform_cpu_ms_per_call"])
        step = runs[-1]
        step["cpu_runs_ms_per_call"] = per_call
        step["cpu_spread_pct"] = _spread_pct(per_call)
        if len(runs) >= 2 and not step["failures"]:
            step["platform_cpu_ms_per_call"] = sum(per_call[-2:]) / 2
        steps.append(step)
        print(
            f"    {rate:.1f} calls/s: platform CPU per call over {len(runs)} runs "
            f"({', '.join(f'{v:.0f}' for v in per_call)} ms; spread {step['cpu_spread_pct']:.0f} %)"
        )
        if step["failures"]:
            break
        best = rate
    await watcher.close()
    await counter.close()
    await timeline.close()
    if args.timeline:
        timeline.dump(data_dir / "timeline.jsonl", ramp_t0)
        (ROOT / ".bench").mkdir(exist_ok=True)
        shutil.copy(data_dir / "timeline.jsonl", ROOT / ".bench" / "first-call-timeline.jsonl")
        print(
            f"    second-by-second CPU and loop lag: .bench/first-call-timeline.jsonl (s from {ramp_t0:.0f})"
        )
    (data_dir / "events.json").write_text(json.dumps(watcher.ts))
    (data_dir / "saves.json").write_text(json.dumps(watcher.saves))
    (data_dir / "quality.json").write_text(json.dumps(watcher.quality))
    return {
        "at_rest": at_rest,
        "latency_failed": lat_failed,
        "steps": steps,
        "best": best,
        "samples": samples,
    }


def report(
    r: dict[str, Any], args: argparse.Namespace, load_before: tuple[float, float, float], took: float
) -> None:
    at = r["at_rest"]
    labels = [
        ("arrived_to_queued", "arrival -> queued"),
        ("arrived_to_answered", "  arrival -> answered (coordinator, media)"),
        ("answered_to_queued", "  answered -> queued (coordinator, routing)"),
        ("queued_to_offered", "queued -> offered (routing: same decision)"),
        ("offered_to_agent", "offered -> at the agent"),
        ("offered_to_coordinator", "  offered -> coordinator's `offered` (lookups)"),
        ("coordinator_to_agent", "  coordinator -> agent's socket (desk.push, API)"),
        ("offer_latency", "= queued -> offer at the agent"),
        ("ring_leg_connected", "offer at the agent -> its leg connected (ring)"),
        ("accept_to_accepted", "accept sent -> contact.accepted (API, routing)"),
        ("accepted_to_bridged", "accepted -> connected (coordinator: bridge by media)"),
        ("bridged_to_audio", "bridged -> first caller audio at the agent"),
        ("accept_to_audio", "= accept -> audio"),
        ("bridged_to_connected_push", "bridged -> contact_connected at the agent"),
        ("hangup_to_ended_push", "hangup sent -> contact_ended at the agent"),
    ]
    print(f"\none call at a time, {len(at['offer_latency'])} calls (ms):  p50     p95     max")
    for key, label in labels:
        v = at[key]
        print(f"  {label:<52} {pct(v, 0.5):7.1f} {pct(v, 0.95):7.1f} {max(v) if v else float('nan'):7.1f}")
    print(f"highest rate with zero failed calls: {r['best']:g} calls/s")
    load = os.getloadavg()
    print(
        f"load average before {load_before[0]:.2f}, after {load[0]:.2f} (2 cores, shared); took {took:.0f} s"
    )
    figures = [
        {
            "metric": "offer_latency_p95_ms",
            "value": round(pct(at["offer_latency"], 0.95), 1),
            "unit": "ms",
            "goal": 50,
            "better": "lower",
        },
        {
            "metric": "accept_to_audio_p95_ms",
            "value": round(pct(at["accept_to_audio"], 0.95), 1),
            "unit": "ms",
            "goal": 150,
            "better": "lower",
        },
        {
            "metric": "full_path_cps_zero_failures",
            "value": r["best"],
            "unit": "1/s",
            "goal": 20,
            "better": "higher",
        },
        {
            "metric": "offer_latency_p50_ms",
            "value": round(pct(at["offer_latency"], 0.5), 1),
            "unit": "ms",
            "goal": None,
            "better": "lower",
        },
        {
            "metric": "accept_to_audio_p50_ms",
            "value": round(pct(at["accept_to_audio"], 0.5), 1),
            "unit": "ms",
            "goal": None,
            "better": "lower",
        },
    ]
    for key, _ in labels:
        if key not in ("offer_latency", "accept_to_audio"):
            figures.append(
                {
                    "metric": f"stage_{key}_p50_ms",
                    "value": round(pct(at[key], 0.5), 1),
                    "unit": "ms",
                    "goal": None,
                    "better": "lower",
                }
            )
    for f in figures:
        if isinstance(f["value"], float) and f["value"] != f["value"]:
            f["value"] = None  # NaN: no sample (JSON has no NaN)
    out = ROOT / ".bench" / "first-call.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    (ROOT / ".bench" / "first-call-steps.json").write_text(json.dumps(r["steps"], indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)} (ramp steps in .bench/first-call-steps.json)")


if __name__ == "__main__":
    main()
