"""A SIPp caller through the real media and ivr services: a tenant made through the real API deploys a menu
flow and routes its number to it; the caller hears the menu (RTP energy measured here, on a socket the SDP
offer points at), presses a key from the shipped RFC 4733 pcaps and the flow goes where that key says.

Key 1 goes menu -> play -> hangup: the platform hangs up (SIPp receives the BYE). Key 2 goes to a queue
node: the routing service's side of sb.<tenant>.cmd.routing.* is answered by this test (routing's adapter is
written separately), and the caller hangs up while waiting, which the IVR reports as abandoned."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import numpy as np
import pytest

from services.kernel.events import (
    CallArrived,
    CallDtmf,
    CallEnded,
    CallPlayFinished,
    IvrCompleted,
    IvrNodeEntered,
    IvrNodeExited,
    RoutingCancel,
    RoutingEnqueue,
)
from services.kernel.messages import Reply, encode
from services.kernel.waits import flushed
from services.media.rtp.g711 import alaw_decode, ulaw_decode
from services.routing.partitions import tenant_commands_subject
from services.runtime.demo import DEMO_FLOW_NAME, ensure_demo
from services.runtime.embedded import free_port
from tests.sipp_uac import press, sipp_command, uac_scenario

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"),
]
PCAPS = Path("/usr/share/sip-tester")

FLOW = """\
name: e2e-menu
start: menu
fallback: bye
nodes:
  menu:
    type: menu
    prompt: {say: "Welcome to the test line. For sales, press 1. For support, press 2."}
    options: {"1": sales, "2": support, "0": support}
    timeout: 5
    retries: 1
    on_fail: bye
  sales: {type: play, prompt: {say: "Sales is closed today."}, next: bye}
  support: {type: queue, queue: Support, announce_every: 30}
  bye: {type: hangup, prompt: {say: "Goodbye."}}
"""

_EVENTS: dict[str, type[Any]] = {
    "call.arrived": CallArrived,
    "call.ended": CallEnded,
    "call.dtmf": CallDtmf,
    "call.play_finished": CallPlayFinished,
    "ivr.node_entered": IvrNodeEntered,
    "ivr.node_exited": IvrNodeExited,
    "ivr.completed": IvrCompleted,
}


def _scenario(rtp_port: int, presses: list[tuple[int, str]], *, caller_hangs_up_after_ms: int | None) -> str:
    """INVITE whose SDP points our audio at `rtp_port` (a socket of this test), ACK, then for each press a
    pause (ms) and the digit's RFC 4733 pcap; then either wait for the platform's BYE or hang up after a
    while."""
    return uac_scenario(
        rtp_port=rtp_port,
        payload_types=(0, 8, 101),
        during="".join(press(digit, after_ms=pause_ms) for pause_ms, digit in presses),
        hangup_after_ms=caller_hangs_up_after_ms,
        bye_timeout_ms=15000,
        name="ivr caller",
    )


class _RtpSink(asyncio.DatagramProtocol):
    """Where the platform sends the caller's audio until it latches onto SIPp's own RTP source."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > 12 and data[0] >> 6 == 2:
            count = data[0] & 0x0F
            self.frames.append((data[1] & 0x7F, data[12 + 4 * count :]))

    def rms(self) -> float:
        pcm = [ulaw_decode(p) if pt == 0 else alaw_decode(p) for pt, p in self.frames if pt in (0, 8)]
        if not pcm:
            return 0.0
        samples = np.concatenate(pcm).astype(np.float64)
        return float(np.sqrt(np.mean(samples**2)))


@dataclass
class _Bus:
    events: list[Any] = field(default_factory=list)
    routing: list[Any] = field(default_factory=list)

    def of(self, kind: type[Any], call_id: uuid.UUID | None) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and (call_id is None or e.call_id == call_id)]


@dataclass(frozen=True)
class _Line:
    tenant_id: str
    number: str
    queue_id: str
    version: int


@pytest.fixture(scope="module")
def line(api_server: str) -> _Line:
    """A tenant made through the API: a Support queue, the flow deployed, a number routed to it."""
    with httpx.Client(base_url=api_server, timeout=10) as client:
        r = client.post(
            "/v1/signup", json={"company": f"IVR e2e {uuid.uuid4().hex[:6]}", "email": "ivr-e2e@example.com"}
        )
        assert r.status_code == 201, r.text
        client.headers["Authorization"] = f"Bearer {r.json()['api_key']['key']}"
        tenant_id = r.json()["tenant"]["id"]
        queue = client.post("/v1/queues", json={"name": "Support", "skills": {"support": 1}})
        assert queue.status_code == 201, queue.text
        deployed = client.post("/v1/flows", json={"definition": FLOW})
        assert deployed.status_code == 201, deployed.text
        number = "+1555" + str(uuid.uuid4().int)[:8]
        made = client.post("/v1/numbers", json={"e164": number})
        assert made.status_code == 201, made.text
        routed = client.post(f"/v1/numbers/{number}/route", json={"flow": "e2e-menu"})
        assert routed.status_code == 200, routed.text
        assert routed.json()["flow_id"] == deployed.json()["flow"]["id"]
    return _Line(tenant_id, number, queue.json()["id"], deployed.json()["version"])


async def _call(  # type: ignore[no-untyped-def]
    infra,
    ivr_stack,
    tenant_id: str,
    number: str,
    tmp_path: Path,
    presses: list[tuple[int, str]],
    hangup_ms: int | None,
    also: Callable[[Any], bool] = lambda seen: True,
):
    """One SIPp call; returns (sipp result, what the bus saw, the RTP sink). The bus is watched until the
    call ended, the IVR completed and `also(seen)` holds (for up to 3 s after the SIP exchange)."""
    loop = asyncio.get_running_loop()
    rtp_port = free_port()
    transport, sink = await loop.create_datagram_endpoint(_RtpSink, local_addr=("127.0.0.1", rtp_port))
    (tmp_path / "pcap").symlink_to(PCAPS)
    scenario = tmp_path / "caller.xml"
    scenario.write_text(_scenario(rtp_port, presses, caller_hangs_up_after_ms=hangup_ms))
    seen = _Bus()
    nc = await nats.connect(infra.nats_url)

    async def on_event(msg: Any) -> None:
        kind = _EVENTS.get(".".join(msg.subject.split(".")[3:5]))
        if kind is not None:
            seen.events.append(msgspec.json.decode(msg.data, type=kind))

    async def on_routing(msg: Any) -> None:
        # The routing service's side of the contract: accept, as routing would for a known queue.
        name = msg.subject.rsplit(".", 1)[-1]
        kind = {"enqueue": RoutingEnqueue, "cancel": RoutingCancel}.get(name)
        if kind is not None:
            seen.routing.append(msgspec.json.decode(msg.data, type=kind))
        await msg.respond(encode(Reply(ok=True)))

    await nc.subscribe(f"sb.{tenant_id}.evt.>", cb=on_event)
    # NATS maps routing commands onto their tenant partition (services/routing/partitions.py).
    await nc.subscribe(tenant_commands_subject(tenant_id), cb=on_routing)
    await flushed(nc)
    try:
        sipp = await asyncio.create_subprocess_exec(
            *sipp_command(),
            "-sf", str(scenario), "-s", number,
            f"127.0.0.1:{ivr_stack.sip_port}", "-m", "1", "-timeout", "25", "-timeout_error",
            "-trace_err", cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(sipp.communicate(), 30)
        for _ in range(60):  # the last events trail the SIP exchange a little
            if seen.of(CallEnded, None) and seen.of(IvrCompleted, None) and also(seen):
                break
            await asyncio.sleep(0.05)
        errors = _sipp_errors(tmp_path)
        return sipp.returncode, out.decode(errors="replace")[-2000:] + errors[-2000:], seen, sink
    finally:
        transport.close()
        await nc.close()


def _sipp_errors(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.glob("*_errors.log"))


def _diagnose(ivr_stack: Any) -> str:
    return (
        f"\n--- ivr log ---\n{ivr_stack.ivr_log.read_text(errors='replace')[-3000:]}"
        f"\n--- contacts log ---\n{ivr_stack.contacts_log.read_text(errors='replace')[-3000:]}"
        f"\n--- media log ---\n{ivr_stack.media_log.read_text(errors='replace')[-3000:]}"
    )


async def test_menu_key_1_plays_then_the_platform_hangs_up(infra, ivr_stack, line, tmp_path: Path) -> None:
    code, output, seen, sink = await _call(
        infra, ivr_stack, line.tenant_id, line.number, tmp_path, [(1800, "1")], None
    )
    assert code == 0, output + _diagnose(ivr_stack)
    (arrived,) = seen.of(CallArrived, None)
    call_id = arrived.call_id
    assert arrived.to_e164 == line.number and arrived.flow_id is not None
    # The caller heard the menu: speech-level audio reached the SDP address before SIPp's RTP latched it.
    assert len(sink.frames) >= 25, f"{len(sink.frames)} RTP frames" + _diagnose(ivr_stack)
    assert sink.rms() > 300, sink.rms()
    entered = [e.node for e in seen.of(IvrNodeEntered, call_id)]
    assert entered == ["menu", "sales", "bye"], entered
    # A figure, not a test: the coordinator answers, then hands the caller to the IVR (`ivr.run`).
    first = seen.of(IvrNodeEntered, call_id)[0]
    print(f"\narrival -> the flow's first node: {(first.ts - arrived.ts) * 1000:.1f} ms")
    menu_exit = next(e for e in seen.of(IvrNodeExited, call_id) if e.node == "menu")
    assert menu_exit.digits == "1" and menu_exit.result == "1"
    # The two prompts after the menu were played to their end (the menu's was cut short by the key).
    done = [e for e in seen.of(CallPlayFinished, call_id) if e.reason == "done"]
    assert len(done) >= 2
    (completed,) = seen.of(IvrCompleted, call_id)
    assert completed.outcome == "self_served" and completed.version == line.version
    assert completed.path == ["menu", "sales", "bye"]
    assert completed.attributes["ivr.digits"] == "1" and completed.attributes["dialled"] == line.number
    assert completed.attributes["caller"] == "+15550142"
    (ended,) = seen.of(CallEnded, call_id)
    assert ended.cause == "normal_clearing" and ended.duration > 2.0
    assert not seen.routing


async def test_menu_key_2_enqueues_and_a_caller_leaving_the_queue_is_cancelled(
    infra, ivr_stack, line, tmp_path: Path
) -> None:
    code, output, seen, sink = await _call(
        infra,
        ivr_stack,
        line.tenant_id,
        line.number,
        tmp_path,
        [(1800, "2")],
        2500,
        # The coordinator cancels after it heard the call end: a moment after call.ended.
        also=lambda seen: any(isinstance(c, RoutingCancel) for c in seen.routing),
    )
    assert code == 0, output + _diagnose(ivr_stack)
    (arrived,) = seen.of(CallArrived, None)
    call_id = arrived.call_id
    assert [e.node for e in seen.of(IvrNodeEntered, call_id)] == ["menu", "support"]
    enqueue = next(c for c in seen.routing if isinstance(c, RoutingEnqueue))
    assert enqueue.call_id == call_id and str(enqueue.tenant_id) == line.tenant_id
    assert enqueue.queue == "Support" and str(enqueue.queue_id) == line.queue_id
    assert enqueue.attributes["ivr.path"] == "menu>support" and enqueue.attributes["ivr.digits"] == "2"
    assert enqueue.attributes["ivr.flow"] == f"e2e-menu@{line.version}"
    # The flow handed the caller to the coordinator at the queue node (which enqueued, as above); the caller
    # hung up while waiting: the coordinator tells routing.
    (completed,) = seen.of(IvrCompleted, call_id)
    assert completed.outcome == "transferred" and completed.path == ["menu", "support"]
    assert completed.queue is not None and completed.queue.announce_every == 30
    cancel = next(c for c in seen.routing if isinstance(c, RoutingCancel))
    assert cancel.call_id == call_id and cancel.reason == "abandoned"
    (ended,) = seen.of(CallEnded, call_id)
    assert ended.cause == "remote_bye"
    assert sink.rms() > 300


async def test_demo_line_9_repeats_the_welcome_and_1_reaches_support(
    infra, ivr_stack, api_server: str, tmp_path: Path
) -> None:
    """The flow `switchboard up --demo` deploys (services/runtime/demo.py), on the number it routes."""
    demo = await ensure_demo(api_server, tmp_path)
    presses = [(4000, "9"), (4000, "1")]  # each during the menu prompt, after the welcome
    code, output, seen, sink = await _call(
        infra, ivr_stack, demo.tenant_id, demo.number, tmp_path, presses, 2000
    )
    assert code == 0, output + _diagnose(ivr_stack)
    (arrived,) = seen.of(CallArrived, None)
    call_id = arrived.call_id
    entered = [e.node for e in seen.of(IvrNodeEntered, call_id)]
    assert entered == ["welcome", "menu", "welcome", "menu", "support"], [*entered, _diagnose(ivr_stack)]
    assert [e.digits for e in seen.of(IvrNodeExited, call_id) if e.node == "menu"] == ["9", "1"]
    # A flow step: from the key press (media's call.dtmf) to the IVR entering the next node and commanding
    # its prompt or the enqueue (same clock: one machine). Measured ~5 ms; a second is the failure line.
    keys = [e for e in seen.of(CallDtmf, call_id) if e.source == "rfc4733"]
    assert [k.digit for k in keys] == ["9", "1"]
    nodes = seen.of(IvrNodeEntered, call_id)
    for key, node in zip(keys, (nodes[2], nodes[4]), strict=True):
        assert 0 <= node.ts - key.ts < 1.0, (key, node)
    enqueue = next(c for c in seen.routing if isinstance(c, RoutingEnqueue))
    assert enqueue.queue == "Support" and str(enqueue.queue_id) == demo.queue_id
    assert enqueue.attributes["ivr.path"] == "welcome>menu>welcome>menu>support"
    assert enqueue.attributes["ivr.flow"] == f"{DEMO_FLOW_NAME}@{demo.flow_version}"
    (completed,) = seen.of(IvrCompleted, call_id)
    assert completed.outcome == "transferred" and completed.queue is not None  # handed to the coordinator
    assert sink.rms() > 300  # the welcome was heard
