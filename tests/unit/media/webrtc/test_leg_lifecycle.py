"""A WebRTC leg's set-up and teardown: the process's legs share one DTLS certificate until it is rotated
(its fingerprint in every SDP, each leg's SRTP keys still its own), and an ended leg leaves nothing alive."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import uuid
import weakref

import pytest
from OpenSSL import SSL

from services.kernel import events as ev
from services.kernel.messages import Event
from services.media.rtp.g711 import G711
from services.media.rtp.session import MediaClock
from services.media.webrtc import LegState, WebRtcConfig, WebRtcLeg
from services.media.webrtc.calls import WebRtcCalls
from services.media.webrtc.certificate import MAX_LIFETIME_S, CertificateRotation
from tests.unit.media.webrtc.test_webrtc_leg import wait_for


async def connected(config: WebRtcConfig) -> tuple[WebRtcLeg, WebRtcLeg]:
    browser = WebRtcLeg(config, peer_law=G711.PCMU)
    server = WebRtcLeg(config, peer_law=G711.PCMU)
    answer = await server.accept_offer(await browser.create_offer(data_channel=False))
    await browser.accept_answer(answer)
    await wait_for(lambda: browser.media is not None and server.media is not None)
    return browser, server


def fingerprint(sdp: str) -> str:
    lines = [line for line in sdp.split("\r\n") if line.startswith("a=fingerprint:sha-256 ")]
    assert len(lines) == 1, sdp
    return lines[0].split(" ", 1)[1]


def test_the_rotation_keeps_one_certificate_for_its_lifetime() -> None:
    rotation = CertificateRotation()
    first = rotation.current(60.0, now=1000.0)
    assert first is not None
    assert rotation.current(60.0, now=1059.9) is first
    second = rotation.current(60.0, now=1060.0)
    assert second is not None and second is not first
    assert second.getFingerprints() != first.getFingerprints()
    assert rotation.current(60.0, now=1100.0) is second
    assert rotation.current(0.0, now=1100.0) is None  # aiortc makes one per leg
    with pytest.raises(ValueError, match="lifetime"):
        rotation.current(MAX_LIFETIME_S + 1, now=1100.0)
    with pytest.raises(ValueError, match="lifetime"):
        rotation.current(-1.0, now=1100.0)


def test_a_leg_refuses_a_lifetime_outside_the_certificates_validity() -> None:
    for bad in (-1.0, MAX_LIFETIME_S + 1):
        with pytest.raises(ValueError, match="dtls_certificate_lifetime_s"):
            WebRtcConfig(dtls_certificate_lifetime_s=bad)


async def test_legs_share_a_certificate_until_it_is_rotated() -> None:
    shared = WebRtcConfig(own_media=True, dtls_certificate_lifetime_s=0.5)
    first = await connected(shared)
    second = await connected(shared)
    per_leg = await connected(WebRtcConfig(own_media=True, dtls_certificate_lifetime_s=0.0))
    await asyncio.sleep(0.6)
    rotated = await connected(shared)
    try:
        for browser, server in (first, second, per_leg, rotated):
            server.assert_dtls_srtp()
            browser.assert_dtls_srtp()
            assert server.state is LegState.CONNECTED and browser.state is LegState.CONNECTED
        prints = [fingerprint(leg.pc.localDescription.sdp) for leg in (*first, *second)]
        # The fingerprint in each SDP is the certificate the leg's DTLS handshake presented.
        dtls = first[1].sender.transport
        presented = dtls._ssl.get_certificate().to_cryptography()
        assert prints[1] == dtls.getLocalParameters().fingerprints[0].value
        assert presented.fingerprint(presented.signature_hash_algorithm).hex().upper() == prints[1].replace(
            ":", ""
        )
        assert len(set(prints)) == 1
        # One certificate, one handshake per leg: each leg's SRTP keying material is its own, and no DTLS
        # session is kept for another leg to resume.
        keys = {
            leg.sender.transport._ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", 60)
            for leg in (first[1], second[1])
        }
        assert len(keys) == 2
        assert dtls._ssl.get_context().get_session_cache_mode() == SSL.SESS_CACHE_OFF
        # Rotation 0: a certificate per leg; after the lifetime: a new one, and the earlier legs keep theirs.
        assert fingerprint(per_leg[0].pc.localDescription.sdp) != fingerprint(
            per_leg[1].pc.localDescription.sdp
        )
        assert prints[0] not in {fingerprint(leg.pc.localDescription.sdp) for leg in (*per_leg, *rotated)}
        assert fingerprint(rotated[0].pc.localDescription.sdp) == fingerprint(
            rotated[1].pc.localDescription.sdp
        )
        assert first[1].state is LegState.CONNECTED
    finally:
        for browser, server in (first, second, per_leg, rotated):
            await browser.close()
            await server.close()


async def test_an_ended_leg_leaves_no_live_objects(caplog: pytest.LogCaptureFixture) -> None:
    # aioice logs its checks at INFO with the candidate pairs as arguments: when a session logs at INFO (the
    # full suite does), pytest's captured records would keep the legs alive, not the legs themselves.
    caplog.set_level(logging.WARNING, logger="aioice")
    config = WebRtcConfig(own_media=True)
    tasks_before = asyncio.all_tasks()
    browser, server = await connected(config)
    await browser.send_digit("5", duration=0.04)  # the digit handler is one of the leg's references
    # On our path aiortc's sender and receiver never start: no decoder thread, no RTCP or RTP tasks.
    assert [t.name for t in threading.enumerate() if "decoder" in t.name] == []
    running = {task.get_coro().__qualname__ for task in asyncio.all_tasks() - tasks_before}  # type: ignore[union-attr]
    assert not running & {"RTCRtpSender._run_rtp", "RTCRtpSender._run_rtcp", "RTCRtpReceiver._run_rtcp"}, (
        running
    )
    transport = server.sender.transport
    assert server.link is not None
    alive = [
        weakref.ref(thing)
        for thing in (
            browser,
            server,
            server.pc,
            server.media,
            server.link,
            server.link.connection,
            transport,
            transport.transport,
            server.sender,
            server._transceiver.receiver if server._transceiver else None,
        )
        if thing is not None
    ]
    await browser.close()
    await server.close()
    del browser, server, transport
    # The legs' own tasks end on their cancellation: wait for them rather than a fixed 50 ms, which a loaded
    # machine (load 11) overran with the IceLink still referenced by its monitor task.
    ending = _stack_tasks(asyncio.all_tasks() - tasks_before)
    if ending:
        await asyncio.wait(ending, timeout=10.0)
    gc.collect()
    assert [type(ref()).__name__ for ref in alive if ref() is not None] == []
    # The suite shares one loop with other fixtures and with what earlier tests left running (a task of
    # theirs may start another meanwhile; asyncpg's statement cache keeps timers): only the WebRTC stack's
    # tasks and timers count. A sleeping task of a leg is caught by the task check.
    assert [task.get_coro() for task in _stack_tasks(asyncio.all_tasks() - tasks_before)] == []
    timers = [h for h in asyncio.get_running_loop()._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
    assert [h for h in timers if _owner(h).startswith(STACK)] == []


STACK = ("aioice", "aiortc", "services.media")  # the modules a WebRTC leg's tasks and timers run in


def _owner(handle: asyncio.TimerHandle) -> str:
    callback = handle._callback  # type: ignore[attr-defined]
    owner = getattr(callback, "__self__", None)
    return str(type(owner).__module__ if owner is not None else getattr(callback, "__module__", ""))


def _stack_tasks(tasks: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """The tasks running a coroutine of the WebRTC stack (one whose module cannot be told counts too)."""
    current = asyncio.current_task()
    found = set()
    for task in tasks:
        frame = getattr(task.get_coro(), "cr_frame", None)
        module = frame.f_globals.get("__name__", "") if frame is not None else ""
        if task is not current and (not module or module.startswith(STACK)):
            found.add(task)
    return found


async def test_a_worker_leg_ended_by_the_worker_is_freed_with_its_session() -> None:
    # The worker's path: WebRtcCalls answers, the leg ticks on the MediaClock, `end` (a hang-up) emits and
    # closes it in the background; nothing of the leg stays once that is done.
    emitted: list[Event] = []
    clock = MediaClock()
    calls = WebRtcCalls(WebRtcConfig(own_media=True), emit=emitted.extend, clock=clock, now=time.time)
    tenant, leg_id = uuid.uuid4(), uuid.uuid4()
    browser = WebRtcLeg(WebRtcConfig(own_media=True), peer_law=G711.PCMU)
    answer = await calls.offer(
        tenant_id=tenant,
        leg_id=leg_id,
        agent_id="agent-1",
        sdp=await browser.create_offer(data_channel=False),
    )
    await browser.accept_answer(answer)
    await wait_for(lambda: calls.sessions[leg_id].call.answered_at is not None)
    session = calls.sessions[leg_id]
    alive = [
        weakref.ref(thing)
        for thing in (session, session.leg, session.leg.pc, session.leg.media, session.detector)
    ]
    calls.end(session, "hangup")
    del session
    await asyncio.wait(list(calls._tasks), timeout=10.0)
    await browser.close()
    gc.collect()
    assert [type(ref()).__name__ for ref in alive if ref() is not None] == []
    assert calls.sessions == {} and clock.sessions == {} and not any(calls.slots.mine.values())
    assert [type(e).__name__ for e in emitted if isinstance(e, (ev.CallEnded, ev.WebRtcSignal))] == [
        "WebRtcSignal",
        "CallEnded",
        "WebRtcSignal",
    ]
