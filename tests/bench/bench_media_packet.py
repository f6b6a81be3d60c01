# Microbenchmark of the media path's per-packet code, mypyc-compiled against pure Python
# (services/media/native.py): the same loops run in child processes, one with the compiled modules, one with
# SB_MEDIA_PURE=1, alternately, `--rounds` times; each figure is the best of its rounds (the least disturbed by
# the other processes of a shared machine), in microseconds per call.
#
#   python tests/bench/bench_media_packet.py            # compiled vs pure, 5 rounds
#   python tests/bench/bench_media_packet.py --quick    # 2 rounds
#
# Prints a table and writes .bench/media_packet.json as [{"metric","value","unit","better"}]. Not a test.
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _per_call_us(run: Callable[[int], None], n: int, repeats: int = 10) -> float:
    """The least of `repeats` short timings: the one the machine's other processes disturbed least."""
    run(n // 10)  # warm
    k = n // repeats
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run(k)
        best = min(best, time.perf_counter() - started)
    return best / k * 1e6


def measure(n: int) -> dict[str, float]:
    """The figures of this process's modules (compiled or not, as services.media.native decided)."""
    import numpy as np

    from services.media.bridge.relay import StreamRewriter
    from services.media.rtp.concealment import Concealer
    from services.media.rtp.g711 import G711
    from services.media.rtp.jitter_buffer import JitterBuffer
    from services.media.rtp.packet import RtpPacket
    from services.media.rtp.reports import compound_report
    from services.media.rtp.stats import ReceiverStats, SenderStats

    wire = bytes(RtpPacket(0, 1234, 160_000, 0x1234_5678, bytes(160)))
    packets = [RtpPacket(0, (1000 + i) & 0xFFFF, (i * 160) & 0xFFFFFFFF, 7, bytes(160)) for i in range(4096)]
    samples = np.zeros(160, dtype=np.int16)

    def parse(k: int) -> None:
        for _ in range(k):
            RtpPacket.parse(wire)

    def serialise(k: int) -> None:
        packet = packets[0]
        for _ in range(k):
            bytes(packet)

    def jitter(k: int) -> None:
        buffer = JitterBuffer()
        now = 0.0
        for i in range(k):
            p = packets[i & 4095]
            buffer.push(p.sequence_number, p.timestamp, p.payload, now, samples=160, ssrc=7)
            buffer.pop(now)
            now += 0.02

    def stats(k: int) -> None:
        rx = ReceiverStats(8000, min_sequential=1)
        now = 0.0
        for i in range(k):
            p = packets[i & 4095]
            rx.on_packet(p.sequence_number, p.timestamp, now)
            now += 0.02

    rx, tx = ReceiverStats(8000), SenderStats(8000)
    for i in range(50):
        rx.on_packet(packets[i].sequence_number, packets[i].timestamp, i * 0.02)
        tx.on_sent(packets[i].timestamp, 160, i * 0.02)

    def report(k: int) -> None:
        for _ in range(k):
            compound_report(
                ssrc=1, cname="sb-0123456789ab", rx=rx, tx=tx, remote_ssrc=7, now=1.0, wallclock=1e9
            )

    def conceal(k: int) -> None:
        concealer = Concealer()
        for _ in range(k):
            concealer.heard(samples)
            concealer.conceal()

    def rewrite(k: int) -> None:
        rewriter = StreamRewriter(9, first_seq=1, first_ts=1)
        for i in range(k):
            p = packets[i & 4095]
            rewriter.rewrite(p, samples=160, payload_type=0, payload=p.payload)

    def ulaw(k: int) -> None:
        for _ in range(k):
            G711.PCMU.encode(G711.PCMU.decode(wire[12:]))

    cases = {
        "rtp_parse": parse,
        "rtp_serialise": serialise,
        "jitter_push_pop": jitter,
        "stats_on_packet": stats,
        "rtcp_compound_report": report,
        "conceal_heard_conceal": conceal,
        "relay_rewrite": rewrite,
        "ulaw_decode_encode": ulaw,
    }
    return {name: _per_call_us(run, n) for name, run in cases.items()}


class _SimLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock the benchmark sets: the legs see packets 20 ms apart however fast it runs."""

    sim_now = 0.0

    def time(self) -> float:
        return self.sim_now


async def _legs(count: int) -> list[Any]:
    from services.media.rtp.g711 import G711
    from services.media.rtp.session import MediaClock, RtpSession
    from services.media.ua.call import Call

    loop = asyncio.get_running_loop()
    clock = MediaClock()
    legs = []
    sinks = []
    for _ in range(count):
        call = Call(call_id=uuid.uuid4(), tenant_id=uuid.uuid4(), created_at=loop.time())
        call.answered(loop.time())
        # A peer socket nobody reads: the kernel drops what overflows it, as a real peer's loss would not.
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sinks.append(sink)
        session = RtpSession(call, host="127.0.0.1", port=0, emit=lambda events: None, clock=clock)
        rtp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        session._rtp = rtp  # type: ignore[assignment]
        session.configure(
            codec=G711.PCMU,
            payload_type=0,
            te_pt=101,
            remote=sink.getsockname(),
            sending=True,
            receiving=True,
        )
        legs.append(session)
    return legs


def measure_calls(ticks: int) -> dict[str, float]:
    """A SIP leg's whole per-packet path, socket write included: each simulated 20 ms, one PCMU packet in
    (`_on_rtp`: parse, statistics, jitter buffer), `play` (pop, decode, bridge or DTMF detector) and `tick`
    (encode, RTP, `sendto`). In ms of one process's time per leg-second (50 packets in, 50 out)."""
    import numpy as np

    from services.media.bridge.bridging import Bridge
    from services.media.rtp.g711 import G711
    from services.media.rtp.packet import RtpPacket

    loop = _SimLoop()
    asyncio.set_event_loop(loop)
    legs = loop.run_until_complete(_legs(4))
    Bridge(legs[0], legs[1]).join()  # bridged (PCM): the SIP side of a WebRTC PCMU call
    tone = G711.PCMU.encode((3000 * np.sin(np.arange(160) * 2 * np.pi * 440 / 8000)).astype(np.int16))
    peers = {id(leg): ("127.0.0.1", 40000 + i) for i, leg in enumerate(legs)}
    wire = [bytes(RtpPacket(0, t & 0xFFFF, (t * 160) & 0xFFFFFFFF, 99, tone)) for t in range(ticks + 100)]

    def run(group: list[Any], start: int, count: int) -> float:
        started = time.perf_counter()
        for t in range(start, start + count):
            loop.sim_now = now = t * 0.02
            for leg in group:
                leg._on_rtp(wire[t % ticks], peers[id(leg)])
            for leg in group:
                leg.play(now)
            for leg in group:
                leg.tick(now)
        return (time.perf_counter() - started) / (count * len(group))

    async def timed() -> dict[str, float]:  # inside the loop: the legs ask it for the time
        out = {}
        for name, group in (("sip_leg_bridged", legs[:2]), ("sip_leg_unbridged", legs[2:])):
            run(group, 0, 100)  # warm: the jitter buffer settles
            chunk = (ticks - 100) // 10
            best = min(run(group, 100 + i * chunk, chunk) for i in range(10))
            out[f"{name}_ms_per_s"] = best * 50 * 1000  # seconds per leg-tick -> ms per leg-second
        return out

    figures = loop.run_until_complete(timed())
    # The path measured is the real one: every leg decoded (played) what it received, and sent.
    for leg in legs:
        assert leg.decoded_frames >= ticks // 2 and leg.tx.packet_count >= ticks // 2, (
            leg.jitter.stats,
            leg.tx,
        )
    return figures


async def _bridged_calls(count: int) -> list[tuple[Any, Any, Any, Any]]:
    """`count` SIP PCMU <-> WebRTC PCMU calls as the worker bridges them: a real RtpSession, a real SrtpMedia
    (pylibsrtp sessions keyed here instead of by DTLS; its nominated pair a UDP socket), the WebRtcSession
    around it and the Bridge. Returns (SIP leg, WebRTC session, SrtpMedia, the browser's SRTP sender)."""
    import types

    import pylibsrtp

    from services.media.bridge.bridging import Bridge
    from services.media.rtp.g711 import G711
    from services.media.rtp.session import MediaClock, RtpSession
    from services.media.ua.call import Call
    from services.media.webrtc.calls import WebRtcSession
    from services.media.webrtc.srtp_media import SrtpMedia

    loop = asyncio.get_running_loop()
    key = os.urandom(30)
    inbound, outbound = pylibsrtp.Policy.SSRC_ANY_INBOUND, pylibsrtp.Policy.SSRC_ANY_OUTBOUND

    def srtp(kind: int) -> pylibsrtp.Session:
        return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=kind))

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # nobody reads it: the kernel drops the excess
    sink.bind(("127.0.0.1", 0))
    clock = MediaClock()
    calls = []
    for i in range(count):
        call = Call(call_id=uuid.uuid4(), tenant_id=uuid.uuid4(), created_at=0.0)
        call.answered(0.0)
        sip = RtpSession(call, host="127.0.0.1", port=0, emit=lambda events: None, clock=clock)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sip._rtp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)
        sip._rtp_sock = sock
        sip.configure(
            codec=G711.PCMU,
            payload_type=0,
            te_pt=101,
            remote=sink.getsockname(),
            sending=True,
            receiving=True,
        )
        ice, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        pair = types.SimpleNamespace(
            protocol=types.SimpleNamespace(transport=ice), remote_addr=sink.getsockname()
        )
        link = types.SimpleNamespace(_nominated={1: pair}, data_received=None, _protocols=[])
        dtls = types.SimpleNamespace(state="connected", _rx_srtp=srtp(inbound), _tx_srtp=srtp(outbound))
        holder: list[WebRtcSession] = []
        media = SrtpMedia(
            dtls=dtls,
            ssrc=1000 + i,
            codec="PCMU",
            payload_type=0,
            te_pt=101,
            on_audio=lambda samples, h=holder: h[0].on_audio(samples),  # type: ignore[misc]
            on_payload=lambda payload, h=holder: h[0].on_payload(payload),  # type: ignore[misc]
            on_digit=lambda digit: None,
        )
        media.attach(types.SimpleNamespace(), types.SimpleNamespace(), link)
        leg = types.SimpleNamespace(
            play=media.play,
            transmit=media.transmit,
            send_audio=media.send,
            rate=8000,
            telephone_event_payload_type=101,
            media=media,
        )
        agent = Call(call_id=uuid.uuid4(), tenant_id=call.tenant_id, created_at=0.0)
        agent.answered(0.0)
        session = WebRtcSession(uuid.uuid4(), call.tenant_id, "agent", agent, leg, lambda events: None)  # type: ignore[arg-type]
        holder.append(session)
        session.negotiated()
        Bridge(sip, session, law=G711.PCMU).join()
        calls.append((sip, session, media, srtp(outbound)))
    return calls


def measure_bridged_call(ticks: int, count: int = 20) -> dict[str, float]:
    """A bridged SIP PCMU <-> WebRTC PCMU call's per-packet work in one process: each simulated 20 ms one RTP
    packet into the SIP leg (`_on_rtp`) and one SRTP packet into the WebRTC leg (`SrtpMedia.receive`:
    unprotect, parse, jitter buffer), then the clock's two passes over both legs (the bridge, G.711 or its
    payload as it is, RTP, SRTP protect, `sendto`). No socket reads, no event loop, no NATS: the worker spends
    more (docs/media.md, issue 21). In ms of CPU (thread time) per call-second, best of 10 chunks."""
    import numpy as np

    from services.media.rtp.g711 import G711
    from services.media.rtp.packet import RtpPacket

    loop = _SimLoop()
    asyncio.set_event_loop(loop)
    calls = loop.run_until_complete(_bridged_calls(count))
    tone = G711.PCMU.encode((3000 * np.sin(np.arange(160) * 2 * np.pi * 440 / 8000)).astype(np.int16))
    sip_wire = [bytes(RtpPacket(0, t & 0xFFFF, (t * 160) & 0xFFFFFFFF, 99, tone)) for t in range(ticks)]
    srtp_wire = [
        [
            browser.protect(bytes(RtpPacket(0, t & 0xFFFF, (t * 160) & 0xFFFFFFFF, 77 + k, tone)))
            for t in range(ticks)
        ]
        for k, (_, _, _, browser) in enumerate(calls)
    ]
    legs = [leg for sip, session, _, _ in calls for leg in (sip, session)]
    peer = ("127.0.0.1", 40000)

    def run(start: int, n: int) -> None:
        for t in range(start, start + n):
            loop.sim_now = now = 1.0 + t * 0.02
            for k, (sip, _, media, _) in enumerate(calls):
                sip._on_rtp(sip_wire[t], peer, now)
                media.receive(srtp_wire[k][t], now)
            for leg in legs:
                leg.play(now)
            for leg in legs:
                leg.tick(now)

    async def timed() -> float:
        run(0, 100)  # the jitter buffers settle
        chunk = (ticks - 100) // 10
        best = float("inf")
        for i in range(10):
            started = time.thread_time()
            run(100 + i * chunk, chunk)
            best = min(best, time.thread_time() - started)
        return best / (chunk * count) * 50 * 1000

    figure = loop.run_until_complete(timed())
    for sip, _, media, _ in calls:  # the real path: everything was heard and sent, nothing refused
        assert media.counters.rtp_sent >= ticks // 2 and sip.tx.packet_count >= ticks // 2
        assert media.counters.srtp_rejected == 0 and sip.payload_out is not None
    return {"pcmu_bridged_call_ms_per_s": figure}


def _child(pure: bool, n: int) -> tuple[str, dict[str, float]]:
    env = {k: v for k, v in os.environ.items() if k != "SB_MEDIA_PURE"}
    if pure:
        env["SB_MEDIA_PURE"] = "1"
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(n)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    return result["status"], result["figures"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(ROOT))
        from services.media import native

        figures = (
            measure(args.child) | measure_calls(args.child // 10) | measure_bridged_call(args.child // 20)
        )
        print(json.dumps({"status": native.status(), "figures": figures}))
        return
    rounds = 2 if args.quick else args.rounds
    n = 20_000 if args.quick else 50_000
    best: dict[str, dict[str, float]] = {"compiled": {}, "pure": {}}
    compiled_status = ""
    for _ in range(rounds):
        for mode in ("compiled", "pure"):
            status, figures = _child(mode == "pure", n)
            if mode == "compiled":
                compiled_status = status
            for name, us in figures.items():
                best[mode][name] = min(best[mode].get(name, us), us)
    print(f"compiled run: {compiled_status}; best of {rounds} alternate rounds, {n} calls each")
    print(f"{'us per call':24} {'compiled':>9} {'pure':>9} {'speed-up':>9}")
    rows = []
    for name, pure_us in best["pure"].items():
        compiled_us = best["compiled"][name]
        print(f"{name:24} {compiled_us:9.3f} {pure_us:9.3f} {pure_us / compiled_us:8.2f}x")
        rows.append(
            {"metric": f"{name}_compiled_us", "value": round(compiled_us, 3), "unit": "us", "better": "lower"}
        )
        rows.append(
            {"metric": f"{name}_pure_us", "value": round(pure_us, 3), "unit": "us", "better": "lower"}
        )
    out = ROOT / ".bench" / "media_packet.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
