"""Media sharding end to end: the SIP front (`python -m services.media.front`) and two media workers
(`python -m services.media` with SB_MEDIA_WORKER_ID) as real subprocesses, real PostgreSQL and NATS.

Calls through the front's one SIP port spread over both workers (their KV registrations list them); a
worker killed with SIGKILL mid-call ends exactly its own calls (`call.ended`, cause `media_worker_lost`)
and its dialogs get 481 from the front, while the other worker's calls keep their audio and end normally;
new calls go to the survivor. SIPp's built-in `uac` scenario also runs through the front.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import nats
import numpy as np
import pytest
from nats.js.errors import KeyNotFoundError

from services.kernel import events as ev
from services.media.front.link import WORKERS_BUCKET
from services.runtime.embedded import free_port
from tests.integration.media.harness import Caller, Events, answered_call
from tests.integration.media.sipclient import RtpReceiver, TcpSip, UdpSip, header, request, sdp, status_of
from tests.integration.media.test_originate import FakeTrunk, _tenant_with_trunk
from tests.service_procs import service_env, stop_all
from tests.sipp_uac import sipp_command, uac_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
# Kamailio's FR_MS in the Kamailio test: how long a front may take to answer an INVITE or a probe before it
# is marked down. A front starved for 1.5 s (as on a loaded test machine) at 1000 ms was marked down while
# it lived, and the round robin's count was off; a killed front still fails over after this long.
FRONT_ANSWER_MS = 4000

REPO = Path(__file__).resolve().parents[3]
_fixtures = sys.modules["_media_fixtures"]  # tests/integration/media/conftest.py, loaded by ./conftest.py


@dataclass
class Shard:
    port: int
    site: str
    tenant: uuid.UUID
    number: str  # no flow: the apology
    flow_number: str  # waits for `answer`
    nats_url: str
    workers: dict[str, subprocess.Popen[bytes]]
    front: subprocess.Popen[bytes]
    front_log: Path
    spawn_worker: Callable[[str, int], subprocess.Popen[bytes]]  # (name, index): one more worker


def _env(infra, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return service_env(infra, SB_SERVICE_NAME="media", SB_MEDIA_MAX_LAG_MS="0", SB_MEDIA_MAX_CPU="0", **extra)


def _worker_env(infra, port: int, site: str, worker_id: str, rtp_low: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A media worker behind the front on `port`: the public address (Via and Contact) is the front's."""
    return _env(
        infra,
        SB_SIP_PORT=str(port),
        SB_SITE=site,
        SB_MEDIA_WORKER_ID=worker_id,
        SB_RTP_PORT_MIN=str(rtp_low),
        SB_RTP_PORT_MAX=str(rtp_low + 400),
    )


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_log(path: Path, needle: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text(errors="replace").count(needle) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} x{count} not in {path}:\n{path.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def shard(infra) -> Iterator[Shard]:  # type: ignore[no-untyped-def]
    seeded = asyncio.run(_fixtures._seed(infra.owner_url))
    port = free_port()
    # A site of its own: registrations of other tests' workers (none expected) are not ours.
    site = f"shard-{secrets.token_hex(3)}"
    logs = infra.data_dir / f"shard-{port}"
    logs.mkdir()
    front_log = logs / "front.log"
    front = _spawn(
        [sys.executable, "-m", "services.media.front"],
        # A worker whose registrations stop (hung) is lost after 3 s here (5 s by default).
        _env(infra, SB_SIP_PORT=str(port), SB_SITE=site, SB_MEDIA_WORKER_STALE_S="3"),
        front_log,
    )
    workers: dict[str, subprocess.Popen[bytes]] = {}
    rtp_base = 30000 + (os.getpid() % 100) * 40

    def spawn_worker(worker_id: str, index: int) -> subprocess.Popen[bytes]:
        low = rtp_base + 4000 + index * 600
        workers[worker_id] = _spawn(
            [sys.executable, "-m", "services.media"],
            _worker_env(infra, port, site, f"{site}-{worker_id}", low),
            logs / f"{worker_id}.log",
        )
        return workers[worker_id]

    try:
        spawn_worker("w1", 0)
        spawn_worker("w2", 1)
        _wait_log(front_log, "worker_linked", 2, 30.0)
        yield Shard(
            port=port,
            site=site,
            tenant=seeded["tenant"],  # type: ignore[arg-type]
            number=str(seeded["number"]),
            flow_number=str(seeded["flow_number"]),
            nats_url=infra.nats_url,
            workers=workers,
            front=front,
            front_log=front_log,
            spawn_worker=spawn_worker,
        )
    finally:
        stop_all([*workers.values(), front])


async def _registrations(nc: nats.NATS, site: str) -> dict[str, ev.MediaWorkerRegistration]:
    """The live registrations of this site's workers, read key by key (the test knows the ids; nats-py's
    keys() can fail while keys come and go)."""
    kv = await nc.jetstream().key_value(WORKERS_BUCKET)
    out = {}
    for name in ("w1", "w2", "w3"):
        try:
            entry = await asyncio.wait_for(kv.get(f"{site}-{name}"), 3)
        except KeyNotFoundError:  # never registered, or deleted
            continue
        if entry.value:
            out[entry.key] = msgspec.json.decode(entry.value, type=ev.MediaWorkerRegistration)
    return out


async def _holders(nc: nats.NATS, shard: Shard, call_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Which worker holds each call, from the registrations (waits until all are listed as answered:
    a registration follows a change within 0.2 s)."""
    for _ in range(60):
        regs = await _registrations(nc, shard.site)
        held = {
            c.call_id: reg.worker_id.removeprefix(f"{shard.site}-")
            for reg in regs.values()
            if reg.site == shard.site
            for c in reg.calls
            if c.call_id in call_ids and c.answered_at is not None
        }
        if set(held) == call_ids:
            return held
        await asyncio.sleep(0.1)
    raise AssertionError(f"not every call is registered: {call_ids} vs {regs}")


def _audio_rms(caller: Caller, seconds: float) -> tuple[int, float]:
    caller.rtp.packets.clear()
    caller.rtp.receive_for(seconds)
    pcm = caller.rtp.pcm().astype(np.float64)
    return len(caller.rtp.packets), float(np.sqrt(np.mean(pcm * pcm))) if len(pcm) else 0.0


async def test_killing_a_worker_ends_only_its_calls(shard: Shard) -> None:
    events = await Events.connect(shard.nats_url, shard.tenant)
    lost_records: list[ev.MediaWorkerLost] = []

    async def on_lost(msg) -> None:  # type: ignore[no-untyped-def]
        lost_records.append(msgspec.json.decode(msg.data, type=ev.MediaWorkerLost))

    await events.nc.subscribe("sb.sys.media.worker_lost", cb=on_lost)
    try:
        callers = [await answered_call(shard.port, shard.flow_number, events) for _ in range(4)]
        by_id = {c.platform_call_id: c for c in callers}
        holders = await _holders(events.nc, shard, set(by_id))
        # Least-loaded dispatch: two calls each.
        assert sorted(holders.values()) == ["w1", "w1", "w2", "w2"], holders
        victims = {cid for cid, w in holders.items() if w == "w1"}
        survivors = {cid for cid, w in holders.items() if w == "w2"}
        for cid in survivors:
            reply = await events.command(
                ev.MediaPlay(tenant_id=shard.tenant, call_id=cid, tone="moh", loop=True)
            )
            assert reply.ok, reply

        killed_at = time.monotonic()
        os.kill(shard.workers["w1"].pid, signal.SIGKILL)
        shard.workers["w1"].wait(timeout=5)
        for cid in victims:
            ended = await events.wait_for(ev.CallEnded, lambda e, cid=cid: e.call_id == cid, timeout=8)
            assert ended.cause == "media_worker_lost" and ended.duration > 0
        detected = time.monotonic() - killed_at
        print(f"kill -9 to the last call.ended: {detected * 1000:.0f} ms")
        assert detected < 3.0, f"loss noticed after {detected:.1f} s"  # the link's socket died at once
        for _ in range(40):
            if lost_records:
                break
            await asyncio.sleep(0.05)
        assert [(r.worker_id, r.reason, r.calls_ended) for r in lost_records] == [
            (f"{shard.site}-w1", "link_closed", 2)
        ]

        # The lost worker's dialogs are gone: the front answers 481 itself.
        for cid in victims:
            caller = by_id[cid]
            caller.send("BYE")
            reply = await caller.final()
            assert status_of(reply) == 481, reply
        # The survivors still carry audio (music on hold, in real time).
        for cid in survivors:
            packets, rms = await asyncio.to_thread(_audio_rms, by_id[cid], 0.6)
            assert packets >= 20 and rms > 300, (packets, rms)
        # A new call goes to the survivor and is served.
        late = await answered_call(shard.port, shard.flow_number, events)
        assert (await _holders(events.nc, shard, {late.platform_call_id}))[late.platform_call_id] == "w2"
        await late.bye()
        # The survivors end normally, and only the victims ended with the worker.
        for cid in survivors:
            await by_id[cid].bye()
            ended = await events.wait_for(ev.CallEnded, lambda e, cid=cid: e.call_id == cid)
            assert ended.cause == "remote_bye"
        lost = {e.call_id for e in events.all(ev.CallEnded, lambda e: e.cause == "media_worker_lost")}
        assert lost == victims
    finally:
        for caller in by_id.values() if "by_id" in locals() else []:
            caller.client.close()
            caller.rtp.close()
        await events.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_originate_leaves_and_returns_through_the_front(shard: Shard, infra, transport: str) -> None:  # type: ignore[no-untyped-def]
    # The worker's INVITE (and the digest retry, ACK and BYE) leave through the front's socket; the
    # trunk's responses find the worker by the dialog the front learned from that INVITE.
    rtp = RtpReceiver()
    trunk = FakeTrunk(transport, "right-password", rtp.port)
    tenant = await _tenant_with_trunk(infra.owner_url, trunk)
    events = await Events.connect(shard.nats_url, tenant)
    serving = asyncio.create_task(asyncio.to_thread(trunk.run))
    try:
        call_id = uuid.uuid4()
        reply = await events.command(
            ev.MediaOriginate(tenant_id=tenant, call_id=call_id, to="+15550123", caller_id="+15550100")
        )
        assert reply.ok, reply.error
        await events.wait_for(ev.CallAnswered, lambda e: e.call_id == call_id)
        assert trunk.auth_ok == [True]
        if transport == "udp":
            assert trunk.peer == ("127.0.0.1", shard.port)  # the front's address, not a worker's
        await asyncio.to_thread(rtp.receive_for, 0.3)
        assert rtp.packets  # RTP comes straight from the worker
        assert (await events.command(ev.MediaHangup(tenant_id=tenant, call_id=call_id))).ok
        await asyncio.wait_for(serving, 10)
        ended = await events.wait_for(ev.CallEnded, lambda e: e.call_id == call_id)
        assert ended.cause == "normal_clearing"
    finally:
        serving.cancel()
        trunk.close()
        rtp.close()
        await events.close()


def test_tcp_callers_are_framed_by_the_front(shard: Shard) -> None:
    client = TcpSip(shard.port)
    try:
        uri = f"sip:ping@127.0.0.1:{shard.port}"
        first = request("OPTIONS", uri, local_port=client.local_port, transport="TCP", call_id="tcp-1")
        second = request("OPTIONS", uri, local_port=client.local_port, transport="TCP", call_id="tcp-2")
        client.send(first[:30])  # torn, then the rest pipelined with the next message
        time.sleep(0.05)
        client.send(first[30:] + second)
        replies = [client.recv(3.0), client.recv(3.0)]
        assert [status_of(r or b"") for r in replies] == [200, 200]
        assert {header(r or b"", "Call-ID") for r in replies} == {"tcp-1", "tcp-2"}
    finally:
        client.close()


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed")
def test_sipp_calls_through_the_front(shard: Shard, tmp_path: Path) -> None:
    # Runs after the kill above: the surviving worker serves every call; none may fail.
    result = subprocess.run(
        [
            *sipp_command(),
            *("-sn", "uac", "-s", shard.number, f"127.0.0.1:{shard.port}"),
            *("-m", "10", "-r", "10", "-l", "10", "-timeout", "20", "-timeout_error"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=40,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


async def test_a_clean_stop_is_not_a_loss(shard: Shard) -> None:
    # A third worker joins with no calls: being the least loaded it gets one of the next two calls
    # (the first, or the second when w2 is idle too and the tie goes to w2 by id). SIGTERM to w3 ends
    # its calls itself, and the front declares nothing lost.
    proc = shard.spawn_worker("w3", 2)
    await asyncio.to_thread(_wait_log, shard.front_log, "worker_linked", 3, 30.0)
    events = await Events.connect(shard.nats_url, shard.tenant)
    lost_records: list[bytes] = []

    async def on_lost(msg) -> None:  # type: ignore[no-untyped-def]
        lost_records.append(msg.data)

    await events.nc.subscribe("sb.sys.media.worker_lost", cb=on_lost)
    callers = [await answered_call(shard.port, shard.flow_number, events) for _ in range(2)]
    try:
        held = await _holders(events.nc, shard, {c.platform_call_id for c in callers})
        on_w3 = [c for c in callers if held[c.platform_call_id] == "w3"]
        on_w2 = [c for c in callers if held[c.platform_call_id] == "w2"]
        assert on_w3 and len(on_w3) + len(on_w2) == 2, held
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
        for caller in on_w3:
            ended = await events.wait_for(ev.CallEnded, lambda e, c=caller: e.call_id == c.platform_call_id)
            assert ended.cause == "shutdown"
            bye = await asyncio.to_thread(caller.client.recv, 3.0)  # the worker's BYE, via the front
            assert bye is not None and bye.startswith(b"BYE ")
        await asyncio.sleep(0.5)
        assert lost_records == []
        assert sorted(e.cause for e in events.all(ev.CallEnded)) == ["shutdown"] * len(on_w3)
        assert (await _registrations(events.nc, shard.site)).get(f"{shard.site}-w3") is None  # unregistered
        for caller in on_w2:
            await caller.bye()
    finally:
        for caller in callers:
            caller.client.close()
            caller.rtp.close()
        await events.close()


async def test_a_hung_worker_is_lost_and_fences_itself(shard: Shard) -> None:
    # Runs last: whichever worker is still alive takes the call, then stops answering (SIGSTOP): its
    # link stays open, so only its registrations lapsing can tell.
    events = await Events.connect(shard.nats_url, shard.tenant)
    lost_records: list[ev.MediaWorkerLost] = []

    async def on_lost(msg) -> None:  # type: ignore[no-untyped-def]
        lost_records.append(msgspec.json.decode(msg.data, type=ev.MediaWorkerLost))

    await events.nc.subscribe("sb.sys.media.worker_lost", cb=on_lost)
    caller = await answered_call(shard.port, shard.flow_number, events)
    holder = (await _holders(events.nc, shard, {caller.platform_call_id}))[caller.platform_call_id]
    proc = shard.workers[holder]
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        ended = await events.wait_for(
            ev.CallEnded, lambda e: e.call_id == caller.platform_call_id, timeout=10
        )
        assert ended.cause == "media_worker_lost"
        assert 2.0 < time.monotonic() - stopped_at < 7.0
        for _ in range(40):
            if lost_records:
                break
            await asyncio.sleep(0.05)
        assert [(r.reason, r.pid) for r in lost_records] == [("registration_expired", proc.pid)]
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    # Woken up, it reads that it was declared lost and stops by itself, ending nothing twice.
    code = await asyncio.to_thread(proc.wait, 10)
    assert code == 70
    await asyncio.sleep(0.3)
    assert [e.cause for e in events.all(ev.CallEnded, lambda e: e.call_id == caller.platform_call_id)] == [
        "media_worker_lost"
    ]
    caller.send("BYE")
    assert status_of(await caller.final()) == 481
    caller.client.close()
    caller.rtp.close()
    await events.close()


def _kamcmd(ctl: Path, *command: str) -> str:
    return subprocess.run(
        ["kamcmd", "-s", f"unix:{ctl}", *command], capture_output=True, text=True, timeout=10
    ).stdout


def _front_states(ctl: Path) -> dict[int, str]:
    """Kamailio's view of each front: its port -> FLAGS (AP: active and probed, IP: inactive)."""
    states: dict[int, str] = {}
    port = 0
    for line in _kamcmd(ctl, "dispatcher.list").splitlines():
        line = line.strip()
        if line.startswith("URI:"):
            port = int(line.rsplit(":", 1)[1])
        elif line.startswith("FLAGS:"):
            states[port] = line.split(":", 1)[1].strip()
    return states


def _sipp_calls(
    kamailio_port: int, number: str, count: int, workdir: Path
) -> subprocess.CompletedProcess[str]:
    scenario = workdir / "through-kamailio.xml"
    scenario.write_text(uac_scenario(hangup_after_ms=200, routes=True))
    return subprocess.run(
        [
            *sipp_command(),
            *("-sf", str(scenario), "-s", number, f"127.0.0.1:{kamailio_port}"),
            *("-m", str(count), "-r", "10", "-l", str(count), "-timeout", "20", "-timeout_error"),
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=40,
    )


def _contact_and_media(port: int, number: str) -> tuple[str, str]:
    """A call to the front on `port`, answered (the number has no flow: the apology), then hung up through
    its Contact: (the 200's Contact, its SDP's c= address)."""
    client, rtp = UdpSip(port), RtpReceiver()
    try:
        uri, call_id, tag = f"sip:{number}@127.0.0.1:{port}", secrets.token_hex(8), secrets.token_hex(4)
        invite = request(
            "INVITE", uri, local_port=client.local_port, call_id=call_id, from_tag=tag, body=sdp(rtp.port)
        )
        client.send(invite)
        ok = client.recv_final(10.0)
        assert ok is not None and status_of(ok) == 200, ok
        contact = (header(ok, "Contact") or "").strip("<>")
        to_tag = (header(ok, "To") or "").split("tag=")[1]
        ending = {"local_port": client.local_port, "call_id": call_id, "from_tag": tag, "to_tag": to_tag}
        client.send(request("ACK", contact, **ending))  # type: ignore[arg-type]
        client.send(request("BYE", contact, cseq=2, **ending))  # type: ignore[arg-type]
        assert status_of(client.recv_final(5.0) or b"") == 200
        media = next(line for line in ok.decode().split("\r\n") if line.startswith("c=IN IP4 "))
        return contact, media.removeprefix("c=IN IP4 ")
    finally:
        client.close()
        rtp.close()


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed")
def test_kamailio_spreads_calls_over_two_fronts_and_survives_one(shard: Shard, infra, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # examples/kamailio/kamailio.cfg (the operators' sample) dispatches over two fronts, each with a worker
    # of its own site; SIPp calls Kamailio and follows its Record-Route. A front killed with SIGKILL is
    # marked down by Kamailio (an INVITE it does not answer, then the OPTIONS probes) and every call goes on
    # through the other. Front b's worker runs on another address (127.0.0.2, as on another host): its Via
    # and Contact must still name front b, where callers and Kamailio reach it; its SDP names its own.
    fronts: dict[str, subprocess.Popen[bytes]] = {}
    procs: list[subprocess.Popen[bytes]] = []
    ports: dict[str, int] = {}
    kamailio: subprocess.Popen[bytes] | None = None
    # Its processes' logs in the session's data dir, which a failed test keeps (tests/conftest.py).
    logs = infra.data_dir / f"kamailio-{tmp_path.name}"
    logs.mkdir()
    try:
        for index, name in enumerate(("a", "b")):
            ports[name] = port = free_port()
            site = f"kam-{name}-{secrets.token_hex(3)}"
            low = 30000 + (os.getpid() % 100) * 40 + 6000 + index * 600
            fronts[name] = _spawn(
                [sys.executable, "-m", "services.media.front"],
                _env(infra, SB_SIP_PORT=str(port), SB_SITE=site),
                logs / f"front-{name}.log",
            )
            worker_env = _worker_env(infra, port, site, f"{site}-w", low)
            if name == "b":
                worker_env.update(SB_BIND_HOST="127.0.0.2", SB_ADVERTISE_HOST="127.0.0.2")
            procs += [
                fronts[name],
                _spawn([sys.executable, "-m", "services.media"], worker_env, logs / f"w-{name}.log"),
            ]
        for name in fronts:
            _wait_log(logs / f"front-{name}.log", "worker_linked", 1, 30.0)
        # The ACK and BYE went to the Contact: the front, which passed them to its worker.
        assert _contact_and_media(ports["b"], shard.number) == (f"sip:127.0.0.1:{ports['b']}", "127.0.0.2")
        if shutil.which("kamailio") is None:
            pytest.skip("kamailio (Debian kamailio) is not installed: `make test-peers` as root installs it")

        (tmp_path / "dispatcher.list").write_text("".join(f"1 sip:127.0.0.1:{p}\n" for p in ports.values()))
        kamailio_port, ctl = free_port(), tmp_path / "kamailio_ctl"
        kamailio_log = logs / "kamailio.log"
        kamailio = _spawn(
            [
                "kamailio", "-DD", "-E", "-m", "32", "-M", "4",
                "-f", str(REPO / "examples" / "kamailio" / "kamailio.cfg"),
                "-A", f"LISTEN=udp:127.0.0.1:{kamailio_port}",
                "-A", f'DS_LIST="{tmp_path / "dispatcher.list"}"',
                "-A", f'CTL="unix:{ctl}"',
                "-A", "PROBE_S=1",
                "-A", f"FR_MS={FRONT_ANSWER_MS}",
            ],
            dict(os.environ),
            kamailio_log,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while _front_states(ctl) != {ports["a"]: "AP", ports["b"]: "AP"}:
            assert kamailio.poll() is None, kamailio_log.read_text()[-3000:]
            assert time.monotonic() < deadline, (_front_states(ctl), kamailio_log.read_text()[-3000:])
            time.sleep(0.2)

        def dispatched() -> dict[str, int]:
            """INVITEs Kamailio sent to each front (its config logs `dispatch INVITE <Call-ID> to <front>`)."""
            lines = [
                line
                for line in kamailio_log.read_text(errors="replace").splitlines()
                if "dispatch INVITE" in line
            ]
            return {
                name: sum(line.endswith(f"to sip:127.0.0.1:{p}") for line in lines)
                for name, p in ports.items()
            }

        first = _sipp_calls(kamailio_port, shard.number, 6, tmp_path)
        assert first.returncode == 0, first.stdout[-2000:] + kamailio_log.read_text()[-2000:]
        assert dispatched() == {"a": 3, "b": 3}  # round robin

        os.kill(fronts["a"].pid, signal.SIGKILL)
        fronts["a"].wait(timeout=5)
        started = time.monotonic()
        second = _sipp_calls(kamailio_port, shard.number, 6, tmp_path)
        took = time.monotonic() - started
        assert second.returncode == 0, second.stdout[-2000:] + kamailio_log.read_text()[-2000:]
        counts = dispatched()
        assert counts["b"] == 3 + 6, counts  # every new call reached the survivor
        # Marked down by its failed probes (polled: a probe that some later process on the freed port
        # answered would have brought it back for a moment).
        deadline = time.monotonic() + 5
        while not _front_states(ctl)[ports["a"]].startswith("I"):
            assert time.monotonic() < deadline, _front_states(ctl)
            time.sleep(0.2)
        print(f"6 calls through Kamailio after kill -9 of a front: {took:.1f} s")
    finally:
        stop_all([kamailio, *procs] if kamailio is not None else procs)
