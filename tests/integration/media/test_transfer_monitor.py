"""Attended transfer (`consult`, `complete_transfer`, `cancel_transfer`) and supervisor monitoring
(`monitor` listen / whisper / barge, `unmonitor`) over the wire, checked by what each party actually hears.

Every party says its own tone at the same time (caller 1100 Hz, agent 1700 Hz, the third party 2300 Hz:
the supervisor or the consult target), and each ear is checked by Goertzel for exactly the parties it should
hear and none of the others. Callers are raw SIP callers, agents and supervisors aiortc peers in the test
process (or SIP callers, for the no-decode relay), and the outside number a small UAS written here behind the
tenant's trunk."""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import asyncpg
import numpy as np
import pytest

from services.kernel import events as ev
from services.kernel.ids import new_id
from services.kernel.messages import Reply, decode, encode
from services.kernel.waits import flushed
from services.media import sip
from services.media.rtp.g711 import G711, ulaw_decode
from services.media.rtp.packet import RtpPacket
from services.media.webrtc import LegState, WebRtcConfig, WebRtcLeg
from services.recording.chunks import shipped_spool

from .harness import Caller, Events, answered_call, send_audio, tone_power
from .sipclient import RtpReceiver, sdp

CALLER_HZ, AGENT_HZ, THIRD_HZ = 1100.0, 1700.0, 2300.0
HEARD, NOT_HEARD = 0.1, 0.01


def _tone(frequency: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 8000)) / 8000
    return (8000 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    """Ends the SIP parties' listening threads after the test, whether it passed or not."""
    event = threading.Event()
    yield event
    event.set()


def _listen(rtp: RtpReceiver, stop: threading.Event) -> None:
    """Blocking: every RTP packet to `rtp` until `stop` (a thread per SIP party)."""
    rtp.sock.settimeout(0.05)
    while not stop.is_set():
        try:
            data, _ = rtp.sock.recvfrom(2048)
        except TimeoutError:
            continue
        except OSError:
            return
        rtp.packets.append(RtpPacket.parse(data))


class SipParty:
    """A SIP leg seen from outside: says its tone as PCMU RTP, hears the decoded PCMU it receives."""

    def __init__(self, caller: Caller, frequency: float, stop: threading.Event) -> None:
        self.caller = caller
        self.frequency = frequency
        self.call_id = caller.platform_call_id
        self.ear = asyncio.create_task(asyncio.to_thread(_listen, caller.rtp, stop))

    def mark(self) -> int:
        return len(self.caller.rtp.packets)

    def since(self, start: int) -> np.ndarray:
        packets = [p for p in self.caller.rtp.packets[start:] if p.payload_type == 0]
        return ulaw_decode(b"".join(p.payload for p in packets)).astype(np.float64)

    async def say(self, seconds: float) -> None:
        await asyncio.to_thread(send_audio, self.caller, _tone(self.frequency, seconds), lead_silence=0.0)


class WebParty:
    """An aiortc peer (an agent's or supervisor's browser) that records what it hears."""

    def __init__(self, frequency: float) -> None:
        self.frequency = frequency
        self.heard: list[np.ndarray] = []
        self.leg = WebRtcLeg(WebRtcConfig(), peer_law=G711.PCMU, on_audio=self.heard.append)
        self.call_id = uuid.uuid4()

    def mark(self) -> int:
        return len(self.heard)

    def since(self, start: int) -> np.ndarray:
        frames = self.heard[start:]
        return np.concatenate(frames).astype(np.float64) if frames else np.zeros(0)

    async def say(self, seconds: float) -> None:
        samples = _tone(self.frequency, seconds)
        for start in range(0, len(samples), 160):
            self.leg.send_audio(samples[start : start + 160])
            await asyncio.sleep(0.02)


Party = SipParty | WebParty


async def _command(events: Events, cmd, timeout: float = 10.0) -> Reply:  # type: ignore[no-untyped-def]
    msg = await events.nc.request(f"sb.{events.tenant}.cmd.media.{cmd.name}", encode(cmd), timeout=timeout)
    return decode(msg.data, Reply)


async def _wait(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def _web_party(events: Events, frequency: float, name: str, call_id: uuid.UUID | None) -> WebParty:
    party = WebParty(frequency)
    offer = ev.MediaWebRtcOffer(
        tenant_id=events.tenant,
        leg_id=party.call_id,
        agent_id=name,
        sdp=await party.leg.create_offer(),
        call_id=call_id,
    )
    reply = await _command(events, offer)
    assert reply.ok, reply
    await party.leg.accept_answer(str(reply.data["sdp"]))
    await _wait(lambda: party.leg.state is LegState.CONNECTED)
    await events.wait_for(ev.CallAnswered, lambda e: e.call_id == party.call_id)
    return party


async def _talk(parties: dict[str, Party], seconds: float = 1.0) -> dict[str, np.ndarray]:
    """Everybody says their tone at once; what each one heard meanwhile."""
    marks = {name: p.mark() for name, p in parties.items()}
    await asyncio.gather(*(p.say(seconds) for p in parties.values()))
    await asyncio.sleep(0.3)
    return {name: p.since(marks[name]) for name, p in parties.items()}


def _check(heard: dict[str, np.ndarray], parties: dict[str, Party], expected: dict[str, set[str]]) -> None:
    """Each listener hears exactly the speakers in `expected[listener]` (and never itself)."""
    for listener, audio in heard.items():
        for speaker, party in parties.items():
            if speaker == listener:
                continue
            power = tone_power(audio, party.frequency)
            if speaker in expected[listener]:
                assert power > HEARD, f"{listener} does not hear {speaker} ({power:.3f})"
            else:
                assert power < NOT_HEARD, f"{listener} hears {speaker} ({power:.3f})"


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio**2))) if len(audio) else 0.0


async def _recording_events(events: Events) -> list[ev.CallRecording]:
    """call.recording (the harness's Events knows the older kinds)."""
    seen: list[ev.CallRecording] = []

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        seen.append(decode(msg.data, ev.CallRecording))

    await events.nc.subscribe(f"sb.{events.tenant}.evt.call.recording", cb=on_event)
    await flushed(events.nc)
    return seen


async def test_monitor_listen_whisper_barge_by_what_each_party_hears(
    media_edge, stop: threading.Event
) -> None:
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    tenant = events.tenant
    caller = SipParty(await answered_call(media_edge.port, media_edge.flow_number, events), CALLER_HZ, stop)
    agent = await _web_party(events, AGENT_HZ, "agent-m", caller.call_id)
    supervisor = await _web_party(events, THIRD_HZ, "supervisor-m", None)
    parties: dict[str, Party] = {"caller": caller, "agent": agent, "supervisor": supervisor}
    sup, target = supervisor.call_id, agent.call_id

    def monitor(mode: str, on: uuid.UUID = target, by: uuid.UUID = sup) -> ev.MediaMonitor:
        return ev.MediaMonitor(tenant_id=tenant, call_id=by, target_call_id=on, mode=mode)  # type: ignore[arg-type]

    try:
        not_bridged = await _command(events, monitor("listen"))
        assert not not_bridged.ok and not_bridged.code == "state"
        bridge = ev.MediaBridge(tenant_id=tenant, call_id=caller.call_id, other_call_id=target)
        assert (await _command(events, bridge)).ok
        nowhere = await _command(events, monitor("listen", on=uuid.uuid4()))
        assert not nowhere.ok and nowhere.code == "not_found"
        itself = await _command(events, monitor("listen", on=sup))
        assert not itself.ok and itself.code == "invalid"
        nothing = await _command(events, ev.MediaUnmonitor(tenant_id=tenant, call_id=sup))
        assert not nothing.ok and nothing.code == "state"

        expected = {
            "listen": {"caller": {"agent"}, "agent": {"caller"}, "supervisor": {"caller", "agent"}},
            "whisper": {
                "caller": {"agent"},
                "agent": {"caller", "supervisor"},
                "supervisor": {"caller", "agent"},
            },
            "barge": {
                "caller": {"agent", "supervisor"},
                "agent": {"caller", "supervisor"},
                "supervisor": {"caller", "agent"},
            },
        }
        for mode, hears in expected.items():  # joined in listen, then changed on the fly
            reply = await _command(events, monitor(mode))
            assert reply.ok and reply.data["mode"] == mode, reply
            assert reply.data["caller_call_id"] == str(caller.call_id)
            _check(await _talk(parties), parties, hears)
        again = await _command(events, monitor("barge"))  # the same mode again: ok, nothing changes
        assert again.ok

        # The supervisor's leg is taken while it monitors; it cannot monitor a second call at once.
        busy = await _command(
            events, ev.MediaBridge(tenant_id=tenant, call_id=sup, other_call_id=caller.call_id)
        )
        assert not busy.ok and busy.code == "conflict"
        elsewhere = await _command(events, monitor("listen", on=uuid.uuid4()))
        assert not elsewhere.ok and elsewhere.code == "conflict"

        # Leaving: the supervisor hears nobody, caller and agent go on as before.
        assert (await _command(events, ev.MediaUnmonitor(tenant_id=tenant, call_id=sup))).ok
        quiet = {"caller": {"agent"}, "agent": {"caller"}, "supervisor": set()}
        _check(await _talk(parties), parties, quiet)

        # Mode "none" leaves as well; then the caller hangs up mid-barge: the monitor ends with the bridge,
        # the supervisor's leg stays up.
        assert (await _command(events, monitor("listen"))).ok
        assert (await _command(events, monitor("none"))).ok
        assert (await _command(events, monitor("barge"))).ok
        await caller.caller.bye()
        await events.wait_for(ev.CallEnded, lambda e: e.call_id == caller.call_id)
        left = await _command(events, ev.MediaUnmonitor(tenant_id=tenant, call_id=sup))
        assert not left.ok and left.code == "state", left  # the monitor ended with the bridge
        assert not events.all(ev.CallEnded, lambda e: e.call_id in (sup, target))
        assert (await _command(events, ev.MediaHangup(tenant_id=tenant, call_id=sup))).ok
        assert (await _command(events, ev.MediaHangup(tenant_id=tenant, call_id=target))).ok
    finally:
        stop.set()
        await agent.leg.close()
        await supervisor.leg.close()
        await events.close()


async def test_monitoring_a_sip_relay_decodes_only_while_the_supervisor_is_there(
    media_edge, infra, stop: threading.Event
) -> None:
    """Caller, agent and supervisor all SIP: whisper through the mix, then the supervisor hangs up and the
    bridge is the no-decode relay again (zero frames decoded since), one continuous stream throughout."""
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    tenant = events.tenant
    calls = [await answered_call(media_edge.port, media_edge.flow_number, events) for _ in range(3)]
    caller, agent, supervisor = (
        SipParty(c, hz, stop) for c, hz in zip(calls, (CALLER_HZ, AGENT_HZ, THIRD_HZ), strict=True)
    )
    parties: dict[str, Party] = {"caller": caller, "agent": agent, "supervisor": supervisor}
    try:
        bridge = ev.MediaBridge(tenant_id=tenant, call_id=caller.call_id, other_call_id=agent.call_id)
        reply = await _command(events, bridge)
        assert reply.ok and reply.data["path"] == "passthrough"
        recording = await _command(events, ev.MediaRecordStart(tenant_id=tenant, call_id=caller.call_id))
        assert recording.ok
        first = agent.mark()
        whisper = ev.MediaMonitor(
            tenant_id=tenant, call_id=supervisor.call_id, target_call_id=agent.call_id, mode="whisper"
        )
        assert (await _command(events, whisper)).ok
        hears = {"caller": {"agent"}, "agent": {"caller", "supervisor"}, "supervisor": {"caller", "agent"}}
        _check(await _talk(parties), parties, hears)

        await supervisor.caller.bye()
        await events.wait_for(ev.CallEnded, lambda e: e.call_id == supervisor.call_id)
        two = {"caller": caller, "agent": agent}
        _check(await _talk(two), two, {"caller": {"agent"}, "agent": {"caller"}})  # type: ignore[arg-type]

        # The agent's leg sent one stream (its SSRC, rising sequence numbers) through relay, mix and relay.
        sent = [p for p in agent.caller.rtp.packets[first:] if p.payload_type == 0]
        assert len({p.ssrc for p in sent}) == 1
        assert all(
            0 < (b.sequence_number - a.sequence_number) % 65536 < 100 for a, b in itertools.pairwise(sent)
        )
        done = await _command(events, ev.MediaUnbridge(tenant_id=tenant, call_id=caller.call_id))
        assert done.ok and done.data["path"] == "passthrough"
        # Nothing decoded since the supervisor left (the counters start again at each join).
        assert done.data["frames_decoded"] == 0 and done.data["relay_decoded"] == 0
        # The recording kept caller and agent through relay, mix and relay; never the supervisor.
        spool = await shipped_spool(events.nc.jetstream(), tenant, uuid.UUID(str(recording.data["spool"])))
        frames = np.frombuffer(spool.frames, dtype=np.uint8)
        channels = {"caller": frames[0::2], "agent": frames[1::2]}
        for name, channel in channels.items():
            audio = ulaw_decode(channel.tobytes()).astype(np.float64)
            assert tone_power(audio, parties[name].frequency) > 0.05, name
            assert tone_power(audio, THIRD_HZ) < NOT_HEARD, name
        await caller.caller.bye()
        await agent.caller.bye()
    finally:
        stop.set()
        await events.close()


async def test_attended_transfer_to_a_leg_of_the_worker(media_edge, stop: threading.Event) -> None:
    """Consult another leg of the worker (here a second SIP call): the caller hears music, agent and target
    each other; cancel brings agent and caller back; consult again and complete: caller and target talk,
    the agent hears nobody and stays up."""
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    extra = await _recording_events(events)
    tenant = events.tenant
    caller = SipParty(await answered_call(media_edge.port, media_edge.flow_number, events), CALLER_HZ, stop)
    agent = await _web_party(events, AGENT_HZ, "agent-t", caller.call_id)
    target = SipParty(await answered_call(media_edge.port, media_edge.flow_number, events), THIRD_HZ, stop)
    parties: dict[str, Party] = {"caller": caller, "agent": agent, "target": target}

    def consult(other: uuid.UUID | None = target.call_id, to: str | None = None) -> ev.MediaConsult:
        return ev.MediaConsult(tenant_id=tenant, call_id=agent.call_id, other_call_id=other, to=to)

    def complete() -> ev.MediaCompleteTransfer:  # a new command id each time (a repeated id is a replay)
        return ev.MediaCompleteTransfer(tenant_id=tenant, call_id=agent.call_id)

    try:
        unbridged = await _command(events, consult())
        assert not unbridged.ok and unbridged.code == "state"
        assert (
            await _command(
                events, ev.MediaBridge(tenant_id=tenant, call_id=caller.call_id, other_call_id=agent.call_id)
            )
        ).ok
        refusals = {
            "nothing to complete": (complete(), "state"),
            "neither": (consult(other=None), "invalid"),
            "both": (consult(to="+15550100"), "invalid"),
            "the caller": (consult(other=caller.call_id), "invalid"),
            "unknown": (consult(other=uuid.uuid4()), "not_found"),
        }
        for name, (cmd, code) in refusals.items():
            reply = await _command(events, cmd)
            assert not reply.ok and reply.code == code, (name, reply)

        first = consult()
        reply = await _command(events, first)
        assert reply.ok and reply.data == {
            "caller_call_id": str(caller.call_id),
            "target_call_id": str(target.call_id),
        }
        assert (await _command(events, first)) == reply  # the same command id: the first reply, no new act
        second = await _command(events, consult())
        assert not second.ok and second.code == "conflict"
        # Recorded as the coordinator does it: the consultation, then each bridge of the caller, as segments
        # of one contact (docs/recording.md); media passes the labels on.
        contact = caller.call_id

        def segment(n: int, on: uuid.UUID, **labels: str) -> ev.MediaRecordStart:
            rid = uuid.uuid5(contact, f"segment:{n}")
            return ev.MediaRecordStart(
                tenant_id=tenant, call_id=on, recording_id=rid, contact_id=contact, segment=n, **labels
            )  # type: ignore[arg-type]

        consulting = segment(1, agent.call_id, kind="consult", agent_id="first", consulted_agent_id="second")
        assert (await _command(events, consulting)).ok
        await asyncio.sleep(0.2)
        heard = await _talk(parties)
        _check(
            {k: heard[k] for k in ("agent", "target")},
            parties,
            {"agent": {"target"}, "target": {"agent"}},
        )
        assert _rms(heard["caller"]) > 300, "no music for the caller"
        for other in (agent, target):
            assert tone_power(heard["caller"], other.frequency) < 0.05

        cancel = await _command(events, ev.MediaCancelTransfer(tenant_id=tenant, call_id=agent.call_id))
        assert cancel.ok
        assert (await _command(events, segment(2, caller.call_id, agent_id="first"))).ok
        heard = await _talk(parties)
        _check(heard, parties, {"caller": {"agent"}, "agent": {"caller"}, "target": set()})
        assert not events.all(ev.CallEnded, lambda e: e.call_id == target.call_id)  # not ours to hang up

        assert (await _command(events, consult())).ok
        done = await _command(events, complete())
        assert done.ok and done.data["target_call_id"] == str(target.call_id)
        assert done.data["path"] == "passthrough"  # two SIP legs: the relay
        assert (await _command(events, segment(3, caller.call_id, agent_id="second"))).ok
        heard = await _talk(parties)
        _check(heard, parties, {"caller": {"target"}, "target": {"caller"}, "agent": set()})
        assert _rms(heard["agent"]) < 100, "the released agent still hears something"
        again = await _command(events, complete())
        assert not again.ok and again.code == "state"

        assert not events.all(ev.CallEnded, lambda e: e.call_id == agent.call_id)  # released, not hung up
        await caller.caller.bye()
        await target.caller.bye()
        # Each segment holds its two parties, first side left, and nobody else.
        expected = {1: ("agent", "target"), 2: ("caller", "agent"), 3: ("caller", "target")}
        for n, (left, right) in expected.items():
            spool = await shipped_spool(events.nc.jetstream(), tenant, uuid.uuid5(contact, f"segment:{n}"))
            frames = np.frombuffer(spool.frames, dtype=np.uint8)
            for channel, name in enumerate((left, right)):
                audio = ulaw_decode(frames[channel::2].tobytes()).astype(np.float64)
                assert tone_power(audio, parties[name].frequency) > 0.05, (n, name)
                for absent in set(parties) - {name}:
                    assert tone_power(audio, parties[absent].frequency) < NOT_HEARD, (n, name, absent)
        facts = [e for e in extra if e.state == "started"]
        assert [(f.segment, f.kind, f.agent_id, f.consulted_agent_id, f.contact_id) for f in facts] == [
            (1, "consult", "first", "second", contact),
            (2, "talk", "first", "", contact),
            (3, "talk", "second", "", contact),
        ]
        assert (await _command(events, ev.MediaHangup(tenant_id=tenant, call_id=agent.call_id))).ok
    finally:
        stop.set()
        await agent.leg.close()
        await events.close()


async def test_legs_ending_mid_consult_and_monitor_consult_conflicts(
    media_edge, stop: threading.Event
) -> None:
    """A monitored call cannot consult (nor a consulting one be monitored); the target hanging up mid-consult
    brings agent and caller back together; the agent hanging up mid-consult completes the transfer."""
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    tenant = events.tenant
    caller = SipParty(await answered_call(media_edge.port, media_edge.flow_number, events), CALLER_HZ, stop)
    agent = await _web_party(events, AGENT_HZ, "agent-e", caller.call_id)
    first, second, supervisor = [
        SipParty(await answered_call(media_edge.port, media_edge.flow_number, events), THIRD_HZ, stop)
        for _ in range(3)
    ]

    def consult(target: SipParty) -> ev.MediaConsult:
        return ev.MediaConsult(tenant_id=tenant, call_id=agent.call_id, other_call_id=target.call_id)

    def monitor(mode: str) -> ev.MediaMonitor:
        return ev.MediaMonitor(
            tenant_id=tenant,
            call_id=supervisor.call_id,
            target_call_id=agent.call_id,
            mode=mode,  # type: ignore[arg-type]
        )

    try:
        assert (
            await _command(
                events, ev.MediaBridge(tenant_id=tenant, call_id=caller.call_id, other_call_id=agent.call_id)
            )
        ).ok
        assert (await _command(events, monitor("listen"))).ok
        monitored = await _command(events, consult(first))
        assert not monitored.ok and monitored.code == "conflict"
        assert (await _command(events, monitor("none"))).ok

        assert (await _command(events, consult(first))).ok
        consulting = await _command(events, monitor("listen"))
        assert not consulting.ok and consulting.code == "conflict"
        busy = await _command(
            events, ev.MediaConsult(tenant_id=tenant, call_id=agent.call_id, to="+15550100")
        )
        assert not busy.ok and busy.code == "conflict"
        await first.caller.bye()
        await events.wait_for(ev.CallEnded, lambda e: e.call_id == first.call_id)
        two = {"caller": caller, "agent": agent}
        _check(await _talk(two), two, {"caller": {"agent"}, "agent": {"caller"}})  # type: ignore[arg-type]

        assert (await _command(events, consult(second))).ok
        assert (await _command(events, ev.MediaHangup(tenant_id=tenant, call_id=agent.call_id))).ok
        await events.wait_for(ev.CallEnded, lambda e: e.call_id == agent.call_id)
        pair = {"caller": caller, "second": second}
        _check(await _talk(pair), pair, {"caller": {"second"}, "second": {"caller"}})  # type: ignore[arg-type]
        for party in (caller, second, supervisor):
            await party.caller.bye()
    finally:
        stop.set()
        await agent.leg.close()
        await events.close()


# --- an outside number behind the tenant's trunk ---

BUSY_NUMBER = "+15550486"
SLOW_NUMBER = "+15550777"


@dataclass
class Uas:
    """The far end of the tenant's trunk: refuses BUSY_NUMBER with 486, rings SLOW_NUMBER until cancelled,
    rings any other number for a moment and answers with one RTP socket (the outside party); confirms
    CANCELs (487 for their INVITE) and BYEs and remembers them."""

    rtp: RtpReceiver
    ring_s: float = 0.6
    media_port: int = 0  # where the answered call's media goes (the INVITE's SDP)
    byes: list[str] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        # Ringing calls by Call-ID: (INVITE, its source, when to answer).
        self.ringing: dict[str, tuple[sip.SipRequest, tuple[str, int], float]] = {}

    def serve(self) -> None:
        self.sock.settimeout(0.02)
        while not self.stop.is_set():
            for call_id, (invite, peer, at) in list(self.ringing.items()):
                if time.monotonic() >= at:
                    del self.ringing[call_id]
                    self._answer(invite, peer)
            try:
                data, peer = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            message = sip.parse_datagram(data)
            if not isinstance(message, sip.SipRequest):
                continue
            if message.method == "INVITE":
                if BUSY_NUMBER in message.uri:
                    self.sock.sendto(bytes(sip.make_response(message, 486, to_tag="busy")), peer)
                    continue
                self.sock.sendto(bytes(sip.make_response(message, 180, to_tag="uas")), peer)
                ring = 60.0 if SLOW_NUMBER in message.uri else self.ring_s
                self.ringing[message.call_id] = (message, peer, time.monotonic() + ring)
            elif message.method == "CANCEL":
                self.sock.sendto(bytes(sip.make_response(message, 200)), peer)
                pending = self.ringing.pop(message.call_id, None)
                if pending is not None:
                    self.cancels.append(message.call_id)
                    self.sock.sendto(bytes(sip.make_response(pending[0], 487, to_tag="uas")), peer)
            elif message.method == "BYE":
                self.byes.append(message.call_id)
                self.sock.sendto(bytes(sip.make_response(message, 200)), peer)

    def _answer(self, invite: sip.SipRequest, peer: tuple[str, int]) -> None:
        self.media_port = int(invite.body.decode().split("m=audio ", 1)[1].split()[0])
        contact = [("Contact", f"<sip:uas@127.0.0.1:{self.port}>")]
        ok = sip.make_response(invite, 200, to_tag="uas", headers=contact, body=sdp(self.rtp.port))
        self.sock.sendto(bytes(ok), peer)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


class OutsideParty(SipParty):
    """The person at the outside number: speaks from the UAS's RTP socket to the media port it answered."""

    def __init__(self, uas: Uas, frequency: float, stop: threading.Event) -> None:
        fake = Caller(None, uas.rtp, "", "", "", "", 0, uuid.uuid4())  # type: ignore[arg-type]
        super().__init__(fake, frequency, stop)
        self.uas = uas

    async def say(self, seconds: float) -> None:
        self.caller.remote_rtp = self.uas.media_port
        await super().say(seconds)


async def _tenant_with_trunk(owner_url: str, uas_port: int) -> tuple[uuid.UUID, str]:
    conn = await asyncpg.connect(owner_url)
    tenant, queue = new_id(), new_id()
    number = f"+1556{str(int(time.time() * 1000))[-7:]}"
    try:
        await conn.execute(
            "INSERT INTO tenants (id, name, admin_email, max_concurrent_calls) VALUES ($1, 'consult', 'c@example.com', 20)",
            tenant,
        )
        await conn.execute("INSERT INTO queues (id, tenant_id, name) VALUES ($1, $2, 'main')", queue, tenant)
        await conn.execute(
            "INSERT INTO numbers (id, tenant_id, e164, queue_id) VALUES ($1, $2, $3, $4)",
            new_id(),
            tenant,
            number,
            queue,
        )
        await conn.execute(
            """INSERT INTO sip_trunks (id, tenant_id, name, allowed_ips, outbound_host, outbound_port)
               VALUES ($1, $2, 'carrier', '{127.0.0.0/8}', '127.0.0.1', $3)""",
            new_id(),
            tenant,
            uas_port,
        )
    finally:
        await conn.close()
    return tenant, number


async def test_attended_transfer_to_an_outside_number(media_edge, infra, stop: threading.Event) -> None:
    """consult `to`: a busy number is refused (agent and caller are back together), then the agent hears
    ringback, then the outside party; cancel hangs the outside leg up; consult again and complete: caller
    and outside party talk, and the caller's BYE ends the outside leg we originated."""
    uas = Uas(RtpReceiver())
    uas.stop = stop  # the fixture ends its thread even when the test fails early
    tenant, number = await _tenant_with_trunk(infra.owner_url, uas.port)
    serving = asyncio.create_task(asyncio.to_thread(uas.serve))
    events = await Events.connect(media_edge.nats_url, tenant)
    caller = SipParty(await answered_call(media_edge.port, number, events), CALLER_HZ, stop)
    agent = await _web_party(events, AGENT_HZ, "agent-o", caller.call_id)
    outside = OutsideParty(uas, THIRD_HZ, stop)
    parties: dict[str, Party] = {"caller": caller, "agent": agent, "outside": outside}

    def consult(to: str) -> ev.MediaConsult:
        return ev.MediaConsult(tenant_id=tenant, call_id=agent.call_id, to=to, caller_id="+15550100")

    try:
        assert (
            await _command(
                events, ev.MediaBridge(tenant_id=tenant, call_id=caller.call_id, other_call_id=agent.call_id)
            )
        ).ok
        bad = await _command(events, consult("sales"))
        assert not bad.ok and bad.code == "invalid"
        busy = await _command(events, consult(BUSY_NUMBER))
        assert not busy.ok and busy.code == "consult_failed", busy
        await asyncio.sleep(0.3)
        two = {"caller": caller, "agent": agent}
        _check(await _talk(two), two, {"caller": {"agent"}, "agent": {"caller"}})  # type: ignore[arg-type]

        # Cancelled while it still rings: the ringing leg is cancelled, the consult's reply says so.
        slow = asyncio.create_task(_command(events, consult(SLOW_NUMBER)))
        await _wait(lambda: len(uas.ringing) == 1)
        assert (await _command(events, ev.MediaCancelTransfer(tenant_id=tenant, call_id=agent.call_id))).ok
        cancelled = await asyncio.wait_for(slow, 5)
        assert not cancelled.ok and cancelled.code == "cancelled", cancelled
        await _wait(lambda: len(uas.cancels) == 1)
        _check(await _talk(two), two, {"caller": {"agent"}, "agent": {"caller"}})  # type: ignore[arg-type]

        ringing = agent.mark()
        reply = await _command(events, consult("+15550199"))
        assert reply.ok, reply
        assert tone_power(agent.since(ringing), 440) > 0.05, "no ringback for the agent while it rang"
        other = uuid.UUID(str(reply.data["target_call_id"]))
        await events.wait_for(ev.CallAnswered, lambda e: e.call_id == other)
        heard = await _talk(parties)
        _check(
            {k: heard[k] for k in ("agent", "outside")}, parties, {"agent": {"outside"}, "outside": {"agent"}}
        )
        assert _rms(heard["caller"]) > 300, "no music for the caller"
        for party in (agent, outside):
            assert tone_power(heard["caller"], party.frequency) < 0.05

        assert (await _command(events, ev.MediaCancelTransfer(tenant_id=tenant, call_id=agent.call_id))).ok
        ended = await events.wait_for(ev.CallEnded, lambda e: e.call_id == other)
        assert ended.cause == "transfer_cancelled"
        await _wait(lambda: len(uas.byes) == 1)
        _check(await _talk(two), two, {"caller": {"agent"}, "agent": {"caller"}})  # type: ignore[arg-type]

        reply = await _command(events, consult("+15550199"))
        assert reply.ok, reply
        other = uuid.UUID(str(reply.data["target_call_id"]))
        done = await _command(events, ev.MediaCompleteTransfer(tenant_id=tenant, call_id=agent.call_id))
        assert done.ok and done.data["path"] == "passthrough"
        heard = await _talk(parties)
        _check(heard, parties, {"caller": {"outside"}, "outside": {"caller"}, "agent": set()})

        # The outside leg is ours: the caller leaving ends it.
        await caller.caller.bye()
        await events.wait_for(ev.CallEnded, lambda e: e.call_id == other)
        await _wait(lambda: len(uas.byes) == 2)
        assert (await _command(events, ev.MediaHangup(tenant_id=tenant, call_id=agent.call_id))).ok
    finally:
        stop.set()
        uas.close()
        await asyncio.wait_for(serving, 5)
        uas.rtp.close()
        await agent.leg.close()
        await events.close()
