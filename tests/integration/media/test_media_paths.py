"""Media paths over the wire: the caller's hold/resume, stop/unhold, in-band and RFC 4733 digits, WAV
(resampled) and raw G.711 prompts checked by Goertzel, a prompt interrupted by a digit, late offer,
the cached apology, IP-allowlist rejection, route-cache invalidation and overload shedding."""

from __future__ import annotations

import asyncio
import io
import secrets
import wave

import asyncpg
import numpy as np

from services.kernel import events as ev
from services.kernel.bus import connect
from services.kernel.ids import new_id
from services.media.dsp.tones import dtmf_tone
from services.media.prompts import APOLOGY, PromptStore
from services.media.rtp.g711 import ulaw_encode

from .conftest import start_media
from .harness import Events, answered_call, sdp_port, send_audio, send_rfc4733, tone_power
from .sipclient import RtpReceiver, UdpSip, header, request, sdp, status_of


def _sine(frequency: float, seconds: float, rate: int, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * frequency * t)


def _wav(samples: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(samples, -32768, 32767).astype("<i2").tobytes())
    return out.getvalue()


def _audio_between(rtp: RtpReceiver, start: int) -> np.ndarray:
    """Decoded PCMU received since packet index `start`, silence (mu-law 0xFF) dropped."""
    packets = [p for p in rtp.packets[start:] if p.payload_type == 0 and set(p.payload) != {0xFF}]
    from services.media.rtp.g711 import ulaw_decode

    return ulaw_decode(b"".join(p.payload for p in packets)).astype(np.float64)


async def test_caller_hold_resume_and_stop_unhold_commands(media_edge) -> None:
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    caller = await answered_call(media_edge.port, media_edge.flow_number, events)
    cid = caller.platform_call_id
    try:
        # The caller holds (sendonly): our answer is recvonly and call.held(by remote) is published.
        caller.send("INVITE", body=sdp(caller.rtp.port, direction="sendonly"))
        ok = await caller.final()
        assert status_of(ok) == 200 and b"a=recvonly" in ok
        caller.send("ACK")
        held = await events.wait_for(ev.CallHeld, lambda e: e.call_id == cid)
        assert held.held and held.by == "remote"
        caller.send("INVITE", body=sdp(caller.rtp.port, direction="inactive"))
        ok = await caller.final()
        assert status_of(ok) == 200 and b"a=inactive" in ok
        caller.send("ACK")
        # Resume: sendrecv again, call.held(held=False).
        caller.send("INVITE", body=sdp(caller.rtp.port))
        ok = await caller.final()
        assert status_of(ok) == 200 and b"a=sendrecv" in ok
        caller.send("ACK")
        resumed = await events.wait_for(ev.CallHeld, lambda e: e.call_id == cid and not e.held)
        assert resumed.by == "remote"
        assert [e.held for e in events.all(ev.CallHeld, lambda e: e.call_id == cid)] == [True, False]

        # stop ends a looping prompt and a collection.
        play = ev.MediaPlay(tenant_id=events.tenant, call_id=cid, tone="moh", loop=True)
        assert (await events.command(play)).ok
        collect = ev.MediaCollect(tenant_id=events.tenant, call_id=cid, max_digits=4, first_digit_timeout=30)
        assert (await events.command(collect)).ok
        assert (await events.command(ev.MediaStop(tenant_id=events.tenant, call_id=cid))).ok
        finished = await events.wait_for(ev.CallPlayFinished, lambda e: e.play_id == play.id)
        assert finished.reason == "stopped"
        collected = await events.wait_for(ev.CallCollected, lambda e: e.collect_id == collect.id)
        assert collected.reason == "stopped" and collected.digits == ""

        # hold then unhold: our re-INVITEs sendonly then sendrecv, call.held(by local) both ways.
        for command, direction, answer in (
            (ev.MediaHold, b"a=sendonly", "recvonly"),
            (ev.MediaUnhold, b"a=sendrecv", "sendrecv"),
        ):
            assert (await events.command(command(tenant_id=events.tenant, call_id=cid))).ok
            reinvite = await asyncio.to_thread(_recv_request, caller.client, "INVITE")
            assert reinvite is not None and reinvite.startswith(b"INVITE ") and direction in reinvite
            caller.client.send(_ok(reinvite, sdp(caller.rtp.port, direction=answer)))
            ack = await asyncio.to_thread(_recv_request, caller.client, "ACK")
            assert ack is not None and ack.startswith(b"ACK ")
        # The event of the last re-INVITE is published after its ACK: wait for it before counting.
        await events.wait_for(ev.CallHeld, lambda e: e.call_id == cid and e.by == "local" and not e.held)
        local = [e.held for e in events.all(ev.CallHeld, lambda e: e.call_id == cid and e.by == "local")]
        assert local == [True, False]
        await caller.bye()
    finally:
        await events.close()


async def test_prompts_digits_and_interrupt_over_the_wire(media_edge, infra) -> None:
    folder = infra.data_dir / "test-prompts"
    folder.mkdir(exist_ok=True)
    # A 16 kHz WAV of 1 kHz (resampled to 8 kHz on load) and a raw u-law file of 600 Hz.
    (folder / "khz.wav").write_bytes(_wav(_sine(1000.0, 1.0, 16000), 16000))
    (folder / "tone600.ulaw").write_bytes(ulaw_encode(_sine(600.0, 1.0, 8000).astype(np.int16)))
    (folder / "long.wav").write_bytes(_wav(_sine(440.0, 20.0, 8000), 8000))
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    caller = await answered_call(media_edge.port, media_edge.flow_number, events)
    cid, tenant = caller.platform_call_id, events.tenant
    receiving = asyncio.create_task(asyncio.to_thread(caller.rtp.receive_for, 6.0))
    try:
        for name, frequency, other in (("khz.wav", 1000.0, 600.0), ("tone600.ulaw", 600.0, 1000.0)):
            start = len(caller.rtp.packets)
            play = ev.MediaPlay(tenant_id=tenant, call_id=cid, file=f"test-prompts/{name}")
            assert (await events.command(play)).ok
            done = await events.wait_for(ev.CallPlayFinished, lambda e, p=play: e.play_id == p.id)
            assert done.reason == "done"
            await asyncio.sleep(0.1)
            audio = _audio_between(caller.rtp, start)
            assert len(audio) > 4000, f"{name}: too little audio"
            assert tone_power(audio, frequency) > 0.5, name
            assert tone_power(audio, other) < 0.01, name

        # An interruptible prompt, then an in-band "5" from the caller: call.dtmf (inband) and the
        # prompt ends interrupted by that digit.
        long_play = ev.MediaPlay(
            tenant_id=tenant, call_id=cid, file="test-prompts/long.wav", interruptible=True
        )
        assert (await events.command(long_play)).ok
        await asyncio.to_thread(send_audio, caller, dtmf_tone("5", 0.08))
        dtmf = await events.wait_for(ev.CallDtmf, lambda e: e.call_id == cid)
        assert (dtmf.digit, dtmf.source) == ("5", "inband")
        stopped = await events.wait_for(ev.CallPlayFinished, lambda e: e.play_id == long_play.id)
        assert stopped.reason == "interrupted" and stopped.digit == "5"

        # A collection fed by in-band digits and an RFC 4733 terminator; the "5" that interrupted the
        # prompt (no collection was running) is its first key.
        collect = ev.MediaCollect(tenant_id=tenant, call_id=cid, max_digits=5, terminator="#")
        assert (await events.command(collect)).ok
        gap = np.zeros(800)
        await asyncio.to_thread(
            send_audio, caller, np.concatenate([dtmf_tone("2", 0.08), gap, dtmf_tone("7", 0.08)])
        )
        await asyncio.sleep(0.2)
        await asyncio.to_thread(send_rfc4733, caller, "#")
        collected = await events.wait_for(ev.CallCollected, lambda e: e.collect_id == collect.id)
        assert collected.digits == "527" and collected.reason == "terminator"
        sources = [(e.digit, e.source) for e in events.all(ev.CallDtmf, lambda e: e.call_id == cid)]
        assert sources == [("5", "inband"), ("2", "inband"), ("7", "inband"), ("#", "rfc4733")]
        await receiving
        await caller.bye()
    finally:
        receiving.cancel()
        await events.close()


async def test_late_offer_and_the_cached_apology(media_edge, infra) -> None:
    cached = infra.data_dir / "prompts" / f"{PromptStore.text_key(APOLOGY, 'en-us', 160)}.wav"
    # Rendered at start-up, before any caller needed it.
    for _ in range(100):
        if cached.exists():
            break
        await asyncio.sleep(0.1)
    assert cached.exists()
    rendered_at = cached.stat().st_mtime_ns
    for _ in range(2):
        client, rtp = UdpSip(media_edge.port), RtpReceiver()
        uri = f"sip:{media_edge.number}@127.0.0.1:{media_edge.port}"
        call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
        # No SDP in the INVITE: our offer comes in the 200, the caller's answer in the ACK.
        client.send(request("INVITE", uri, local_port=client.local_port, call_id=call_id, from_tag=tag))
        ok = await asyncio.to_thread(client.recv_final, 3.0)
        assert ok is not None and status_of(ok) == 200 and b"m=audio" in ok and b"PCMU" in ok
        to_tag = (header(ok, "To") or "").split("tag=")[1]
        answer = sdp(rtp.port, codecs="0 101").replace(b"a=rtpmap:8 PCMA/8000\r\n", b"")
        client.send(
            request(
                "ACK",
                uri,
                local_port=client.local_port,
                call_id=call_id,
                from_tag=tag,
                to_tag=to_tag,
                body=answer,
            )
        )
        await asyncio.to_thread(rtp.receive_for, 1.5)
        pcm = rtp.pcm(0).astype(np.float64)
        assert len(pcm) > 4000 and float(np.sqrt(np.mean(pcm**2))) > 300  # the apology is audible
        assert sdp_port(ok) > 0
        client.send(
            request(
                "BYE", uri, local_port=client.local_port, call_id=call_id, from_tag=tag, to_tag=to_tag, cseq=2
            )
        )
        client.close()
        rtp.close()
    assert cached.stat().st_mtime_ns == rendered_at  # the second call (and the first) used the cache


async def test_prompt_store_renders_once(tmp_path) -> None:
    store = PromptStore(tmp_path)
    first = await store.text("Cache me")
    assert store.renders == 1 and len(first) > 800
    again = await store.text("Cache me")
    assert again is first and store.renders == 1
    fresh = PromptStore(tmp_path)  # a restarted process: from disk, no espeak-ng
    assert np.array_equal(await fresh.text("Cache me"), first) and fresh.renders == 0
    # Callers arriving together before the first render finished share that one render.
    together = PromptStore(tmp_path)
    results = await asyncio.gather(*(together.text("Welcome to Demo Co.") for _ in range(5)))
    assert together.renders == 1 and all(np.array_equal(r, results[0]) for r in results)


async def test_ip_allowlist_rejects_other_sources(media_edge, infra) -> None:
    conn = await asyncpg.connect(infra.owner_url)
    tenant, number = new_id(), f"+1556{secrets.randbelow(10**7):07d}"
    try:
        await conn.execute(
            "INSERT INTO tenants (id, name, admin_email) VALUES ($1, 'allow', 'allow@example.com')", tenant
        )
        await conn.execute(
            "INSERT INTO numbers (id, tenant_id, e164) VALUES ($1, $2, $3)", new_id(), tenant, number
        )
        await conn.execute(
            "INSERT INTO sip_trunks (id, tenant_id, name, allowed_ips) VALUES ($1, $2, 'c', '{10.9.0.0/16}')",
            new_id(),
            tenant,
        )
    finally:
        await conn.close()
    client = UdpSip(media_edge.port)
    uri = f"sip:{number}@127.0.0.1:{media_edge.port}"
    client.send(request("INVITE", uri, local_port=client.local_port, body=sdp(4030)))
    final = await asyncio.to_thread(client.recv_final, 3.0)
    client.close()
    assert final is not None and status_of(final) == 403  # 127.0.0.1 is not 10.9/16, no digest to try


async def test_number_cache_follows_config_changed(media_edge, infra) -> None:
    conn = await asyncpg.connect(infra.owner_url)
    number_id, number = new_id(), f"+1557{secrets.randbelow(10**7):07d}"
    await conn.execute(
        "INSERT INTO numbers (id, tenant_id, e164) VALUES ($1, $2, $3)",
        number_id,
        media_edge.tenant_id,
        number,
    )
    bus = await connect(infra.nats_url, name="cache-test")
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    uri = f"sip:{number}@127.0.0.1:{media_edge.port}"

    async def invite() -> int:
        client = UdpSip(media_edge.port)
        call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
        client.send(
            request(
                "INVITE", uri, local_port=client.local_port, call_id=call_id, from_tag=tag, body=sdp(4040)
            )
        )
        final = await asyncio.to_thread(client.recv_final, 3.0)
        assert final is not None
        if status_of(final) == 200:
            to_tag = (header(final, "To") or "").split("tag=")[1]
            for method, cseq in (("ACK", 1), ("BYE", 2)):
                client.send(
                    request(
                        method,
                        uri,
                        local_port=client.local_port,
                        call_id=call_id,
                        from_tag=tag,
                        to_tag=to_tag,
                        cseq=cseq,
                    )
                )
        client.close()
        return status_of(final)

    try:
        assert await invite() == 200  # cached now: no flow, the apology
        await conn.execute("DELETE FROM numbers WHERE id = $1", number_id)
        assert await invite() == 200  # still cached: nobody said it changed
        await bus.publish(
            ev.ConfigChanged(tenant_id=media_edge.tenant_id, kind="number", op="deleted", object_id=number_id)
        )
        for _ in range(40):  # the event reaches the media process asynchronously
            status = await invite()
            if status == 404:
                break
            await asyncio.sleep(0.1)
        assert status == 404
        # A negative entry is dropped by the next change too.
        await conn.execute(
            "INSERT INTO numbers (id, tenant_id, e164) VALUES ($1, $2, $3)",
            number_id,
            media_edge.tenant_id,
            number,
        )
        await bus.publish(
            ev.ConfigChanged(tenant_id=media_edge.tenant_id, kind="number", op="created", object_id=number_id)
        )
        for _ in range(40):
            status = await invite()
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200
    finally:
        await conn.execute("DELETE FROM numbers WHERE id = $1", number_id)
        await conn.close()
        await bus.close()
        await events.close()


async def test_overload_sheds_with_503_while_admitted_calls_complete(media_edge, infra) -> None:
    with start_media(infra, {"SB_MEDIA_MAX_CALLS": "2"}) as (port, _pid, _log):
        uri = f"sip:{media_edge.number}@127.0.0.1:{port}"
        admitted = []
        for _ in range(2):
            client, rtp = UdpSip(port), RtpReceiver()
            call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
            client.send(
                request(
                    "INVITE",
                    uri,
                    local_port=client.local_port,
                    call_id=call_id,
                    from_tag=tag,
                    body=sdp(rtp.port),
                )
            )
            ok = await asyncio.to_thread(client.recv_final, 3.0)
            assert ok is not None and status_of(ok) == 200
            to_tag = (header(ok, "To") or "").split("tag=")[1]
            client.send(
                request(
                    "ACK", uri, local_port=client.local_port, call_id=call_id, from_tag=tag, to_tag=to_tag
                )
            )
            admitted.append((client, rtp, call_id, tag, to_tag))
        # Past capacity: 503 with Retry-After straight away, no 180 first.
        for _ in range(3):
            client = UdpSip(port)
            client.send(request("INVITE", uri, local_port=client.local_port, body=sdp(4050)))
            replies = [await asyncio.to_thread(client.recv, 3.0)]
            while replies[-1] is not None and status_of(replies[-1]) < 200:
                replies.append(await asyncio.to_thread(client.recv, 3.0))
            client.close()
            assert [status_of(r) for r in replies if r is not None] in ([100, 503], [503])
            assert header(replies[-1], "Retry-After") == "5"  # type: ignore[arg-type]
        # The admitted calls are unaffected and end normally.
        for client, rtp, call_id, tag, to_tag in admitted:
            client.send(
                request(
                    "BYE",
                    uri,
                    local_port=client.local_port,
                    call_id=call_id,
                    from_tag=tag,
                    to_tag=to_tag,
                    cseq=2,
                )
            )
            reply = await asyncio.to_thread(client.recv_final, 3.0, method="BYE")
            assert reply is not None and status_of(reply) == 200
            client.close()
            rtp.close()
        # Capacity is free again.
        client = UdpSip(port)
        call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
        client.send(
            request(
                "INVITE", uri, local_port=client.local_port, call_id=call_id, from_tag=tag, body=sdp(4052)
            )
        )
        ok = await asyncio.to_thread(client.recv_final, 3.0)
        assert ok is not None and status_of(ok) == 200
        to_tag = (header(ok, "To") or "").split("tag=")[1]
        for method, cseq in (("ACK", 1), ("BYE", 2)):
            client.send(
                request(
                    method,
                    uri,
                    local_port=client.local_port,
                    call_id=call_id,
                    from_tag=tag,
                    to_tag=to_tag,
                    cseq=cseq,
                )
            )
        client.close()


def _recv_request(client: UdpSip, method: str) -> bytes | None:
    """The next request of `method`, skipping late provisional responses of earlier transactions."""
    for _ in range(10):
        data = client.recv(3.0)
        if data is None or data.startswith(method.encode() + b" "):
            return data
    return None


def _ok(req: bytes, body: bytes) -> bytes:
    head = req.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    keep = [h for h in head[1:] if h.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq")]
    out = "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContact: <sip:caller@127.0.0.1>\r\n"
    if body:
        out += "Content-Type: application/sdp\r\n"
    return (out + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def test_pcma_only_offer_gets_pcma_audio(media_edge) -> None:
    client, rtp = UdpSip(media_edge.port), RtpReceiver()
    uri = f"sip:{media_edge.number}@127.0.0.1:{media_edge.port}"
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    offer = sdp(rtp.port, codecs="8 101")
    client.send(
        request("INVITE", uri, local_port=client.local_port, call_id=call_id, from_tag=tag, body=offer)
    )
    ok = await asyncio.to_thread(client.recv_final, 3.0)
    assert ok is not None and status_of(ok) == 200
    body = ok.split(b"\r\n\r\n", 1)[1]
    assert b"m=audio" in body and b" RTP/AVP 8 101" in body and b"PCMU" not in body
    to_tag = (header(ok, "To") or "").split("tag=")[1]
    client.send(
        request("ACK", uri, local_port=client.local_port, call_id=call_id, from_tag=tag, to_tag=to_tag)
    )
    await asyncio.to_thread(rtp.receive_for, 1.0)
    from services.media.rtp.g711 import alaw_decode

    audio = [p for p in rtp.packets if p.payload_type == 8]
    assert audio and not [p for p in rtp.packets if p.payload_type == 0]
    pcm = alaw_decode(b"".join(p.payload for p in sorted(audio, key=lambda p: p.sequence_number)))
    assert float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) > 300  # the apology, audible in A-law
    client.send(
        request(
            "BYE", uri, local_port=client.local_port, call_id=call_id, from_tag=tag, to_tag=to_tag, cseq=2
        )
    )
    client.close()
    rtp.close()


async def test_the_digit_that_interrupts_a_prompt_starts_the_next_collect(media_edge, infra) -> None:
    folder = infra.data_dir / "test-prompts"
    folder.mkdir(exist_ok=True)
    (folder / "long-typeahead.wav").write_bytes(_wav(_sine(440.0, 20.0, 8000), 8000))
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    caller = await answered_call(media_edge.port, media_edge.flow_number, events)
    cid, tenant = caller.platform_call_id, events.tenant
    try:
        play = ev.MediaPlay(
            tenant_id=tenant, call_id=cid, file="test-prompts/long-typeahead.wav", interruptible=True
        )
        assert (await events.command(play)).ok
        await asyncio.to_thread(send_rfc4733, caller, "5")
        stopped = await events.wait_for(ev.CallPlayFinished, lambda e: e.play_id == play.id)
        assert stopped.reason == "interrupted" and stopped.digit == "5"
        # The IVR asks for two digits only now: the "5" pressed during the prompt is the first.
        collect = ev.MediaCollect(tenant_id=tenant, call_id=cid, max_digits=2, first_digit_timeout=10)
        assert (await events.command(collect)).ok
        await asyncio.to_thread(send_rfc4733, caller, "3")
        collected = await events.wait_for(ev.CallCollected, lambda e: e.collect_id == collect.id)
        assert collected.digits == "53" and collected.reason == "max_digits"
        await caller.bye()
    finally:
        await events.close()
