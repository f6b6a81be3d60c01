"""Trunk digest auth, and call control over NATS: answer, SIP INFO digits, collect, play, hold, hangup."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import uuid

import nats
import nats.errors
import pytest

from services.kernel import events as ev
from services.kernel.messages import Reply, decode, encode
from services.kernel.waits import flushed

from .sipclient import RtpReceiver, UdpSip, header, request, sdp, status_of


def _digest(challenge: str, *, user: str, password: str, method: str, uri: str) -> str:
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    alg = params.get("algorithm", "MD5")
    h = (
        (lambda s: hashlib.sha256(s.encode()).hexdigest())
        if alg == "SHA-256"
        else (lambda s: hashlib.md5(s.encode()).hexdigest())
    )
    ha1 = h(f"{user}:{params['realm']}:{password}")
    ha2 = h(f"{method}:{uri}")
    cnonce, nc = secrets.token_hex(4), "00000001"
    response = h(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", uri="{uri}", '
        f'response="{response}", algorithm={alg}, qop=auth, nc={nc}, cnonce="{cnonce}"'
    )


def _auth_attempt(media_edge, password: str | None) -> int:  # type: ignore[no-untyped-def]
    client = UdpSip(media_edge.port)
    uri = f"sip:{media_edge.auth_number}@127.0.0.1:{media_edge.port}"
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    client.send(
        request("INVITE", uri, local_port=client.local_port, call_id=call_id, from_tag=tag, body=sdp(4020))
    )
    first = client.recv_final()
    assert first is not None and status_of(first) == 401
    challenges = [
        line.split(":", 1)[1].strip()
        for line in first.decode().split("\r\n")
        if line.lower().startswith("www-authenticate")
    ]
    assert any("SHA-256" in c for c in challenges) and any("MD5" in c for c in challenges)
    client.send(
        request(
            "ACK",
            uri,
            local_port=client.local_port,
            call_id=call_id,
            from_tag=tag,
            to_tag=header(first, "To").split("tag=")[1],
        )
    )
    if password is None:
        client.close()
        return 401
    auth = _digest(challenges[0], user="trunk", password=password, method="INVITE", uri=uri)
    client.send(
        request(
            "INVITE",
            uri,
            local_port=client.local_port,
            call_id=call_id,
            from_tag=tag,
            cseq=2,
            body=sdp(4020),
            extra=f"Authorization: {auth}\r\n",
        )
    )
    final = client.recv_final(5.0)
    client.close()
    assert final is not None
    return status_of(final)


def test_digest_trunk_auth_success_and_failure(media_edge) -> None:
    assert _auth_attempt(media_edge, "s3cret") == 200
    assert _auth_attempt(media_edge, "wrong") == 401


async def test_call_control_over_nats(media_edge) -> None:
    tenant = media_edge.tenant_id
    nc = await nats.connect(media_edge.nats_url)
    seen: list[object] = []
    arrived: asyncio.Queue[ev.CallArrived] = asyncio.Queue()
    kinds = {
        "arrived": ev.CallArrived,
        "answered": ev.CallAnswered,
        "dtmf": ev.CallDtmf,
        "collected": ev.CallCollected,
        "held": ev.CallHeld,
        "ended": ev.CallEnded,
        "play_finished": ev.CallPlayFinished,
        "quality": ev.CallQuality,
    }

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        event = decode(msg.data, kinds[msg.subject.rsplit(".", 1)[-1]])
        seen.append(event)
        if isinstance(event, ev.CallArrived):
            await arrived.put(event)

    await nc.subscribe(f"sb.{tenant}.evt.call.*", cb=on_event)
    await flushed(nc)

    async def command(cmd: ev.MediaCommand) -> Reply:
        msg = await nc.request(f"sb.{tenant}.cmd.media.{cmd.name}", encode(cmd), timeout=5)
        return decode(msg.data, Reply)

    async def wait_for(kind: type, pred=lambda e: True, timeout: float = 5.0):  # type: ignore[no-untyped-def]
        for _ in range(int(timeout / 0.05)):
            for e in seen:
                if isinstance(e, kind) and pred(e):
                    return e
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind.__name__} event; saw {[type(e).__name__ for e in seen]}")

    client, rtp = UdpSip(media_edge.port), RtpReceiver()
    uri = f"sip:{media_edge.flow_number}@127.0.0.1:{media_edge.port}"
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    client.send(
        request(
            "INVITE", uri, local_port=client.local_port, call_id=call_id, from_tag=tag, body=sdp(rtp.port)
        )
    )
    event = await asyncio.wait_for(arrived.get(), 5)
    assert event.to_e164 == media_edge.flow_number and event.codec == "PCMU"
    cid = event.call_id

    # Idempotent: the same command id twice answers once.
    answer = ev.MediaAnswer(tenant_id=tenant, call_id=cid)
    assert (await command(answer)).ok
    assert (await command(answer)).ok
    final = await asyncio.to_thread(client.recv_final, 3.0)
    assert final is not None and status_of(final) == 200
    to_tag = header(final, "To").split("tag=")[1]
    client.send(
        request("ACK", uri, local_port=client.local_port, call_id=call_id, from_tag=tag, to_tag=to_tag)
    )
    await wait_for(ev.CallAnswered)
    assert len([e for e in seen if isinstance(e, ev.CallAnswered)]) == 1

    # Another tenant cannot touch the call.
    intruder = uuid.uuid4()
    cross = ev.MediaHangup(tenant_id=intruder, call_id=cid)
    # Only the process holding a call answers for it: for another tenant nobody does.
    with pytest.raises(nats.errors.TimeoutError):
        await nc.request(f"sb.{intruder}.cmd.media.hangup", encode(cross), timeout=0.5)

    collect = ev.MediaCollect(
        tenant_id=tenant,
        call_id=cid,
        min_digits=1,
        max_digits=2,
        terminator="#",
        first_digit_timeout=5,
        inter_digit_timeout=3,
    )
    assert (await command(collect)).ok
    cseq = 2
    for digit in ("4", "2"):
        client.send(
            request(
                "INFO",
                uri,
                local_port=client.local_port,
                call_id=call_id,
                from_tag=tag,
                to_tag=to_tag,
                cseq=cseq,
                body=f"Signal={digit}\r\nDuration=160\r\n".encode(),
                content_type="application/dtmf-relay",
            )
        )
        cseq += 1
        reply = await asyncio.to_thread(client.recv_final, 2.0)
        assert reply is not None and status_of(reply) == 200
    collected = await wait_for(ev.CallCollected)
    assert (
        collected.digits == "42" and collected.reason == "max_digits" and collected.collect_id == collect.id
    )
    assert [e.digit for e in seen if isinstance(e, ev.CallDtmf) and e.source == "info"] == ["4", "2"]

    play = ev.MediaPlay(tenant_id=tenant, call_id=cid, text="Hello")
    assert (await command(play)).ok
    finished = await wait_for(ev.CallPlayFinished, lambda e: e.play_id == play.id)
    assert finished.reason == "done"

    # Hold: we get a sendonly re-INVITE, answer it recvonly.
    assert (await command(ev.MediaHold(tenant_id=tenant, call_id=cid))).ok
    reinvite = await asyncio.to_thread(client.recv, 3.0)
    assert reinvite is not None and reinvite.startswith(b"INVITE ") and b"a=sendonly" in reinvite
    ok = _answer(reinvite, sdp(rtp.port, direction="recvonly"))
    client.send(ok)
    held = await wait_for(ev.CallHeld, lambda e: e.by == "local" and e.held)
    assert held.held
    ack = await asyncio.to_thread(client.recv, 2.0)
    assert ack is not None and ack.startswith(b"ACK ")

    assert (await command(ev.MediaHangup(tenant_id=tenant, call_id=cid))).ok
    bye = await asyncio.to_thread(client.recv, 3.0)
    assert bye is not None and bye.startswith(b"BYE ")
    client.send(_answer(bye, b""))
    ended = await wait_for(ev.CallEnded)
    assert ended.cause == "normal_clearing" and ended.duration > 0
    quality = await wait_for(ev.CallQuality)
    assert quality.packets_sent > 0 and 1.0 <= quality.mos <= 4.5
    client.close()
    rtp.close()
    await nc.close()


def _answer(req: bytes, body: bytes) -> bytes:
    head = req.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    keep = [h for h in head[1:] if h.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq")]
    keep = [h + ";tag=abc" if h.lower().startswith("to:") and "tag=" not in h else h for h in keep]
    out = "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContact: <sip:caller@127.0.0.1>\r\n"
    if body:
        out += "Content-Type: application/sdp\r\n"
    return (out + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def test_a_command_for_a_call_reaches_only_the_worker_that_holds_it(media_edge) -> None:
    """Bus.request sends a command naming a call to sb.<tenant>.cmd.media.<name>.<call>, a subject the
    holding worker opens with the call and closes when it ends; the service subject (heard by every
    worker) is not used. Another tenant's subject for the call has no listener."""
    from .harness import Events, answered_call

    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    broadcast: list[str] = []

    async def spy(msg) -> None:  # type: ignore[no-untyped-def]
        broadcast.append(msg.subject)

    try:
        caller = await answered_call(media_edge.port, media_edge.flow_number, events)
        cid = caller.platform_call_id
        await events.nc.subscribe(f"sb.{media_edge.tenant_id}.cmd.media.*", cb=spy)
        await flushed(events.nc)
        play = ev.MediaPlay(tenant_id=media_edge.tenant_id, call_id=cid, tone="moh")
        msg = await events.nc.request(
            f"sb.{media_edge.tenant_id}.cmd.media.play.{cid}", encode(play), timeout=5
        )
        assert decode(msg.data, Reply).ok
        assert broadcast == []  # the other workers never heard it
        intruder = uuid.uuid4()
        cross = ev.MediaHangup(tenant_id=intruder, call_id=cid)
        with pytest.raises(nats.errors.NoRespondersError):
            await events.nc.request(f"sb.{intruder}.cmd.media.hangup.{cid}", encode(cross), timeout=2)
        await caller.bye()
        await events.wait_for(ev.CallEnded, lambda e: e.call_id == cid)
        # The call's subject closes with it: a later command falls back to the service subject.
        stop = ev.MediaStop(tenant_id=media_edge.tenant_id, call_id=cid)
        for _ in range(40):
            try:
                await events.nc.request(
                    f"sb.{media_edge.tenant_id}.cmd.media.stop.{cid}", encode(stop), timeout=0.5
                )
            except nats.errors.NoRespondersError:
                break
            except nats.errors.TimeoutError:
                pass  # the holder no longer answers for it; its subject closes a moment after the end
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the ended call's subject still has a listener")
        # The worker that held it answers a late command at once: unanswered, its sender waited its whole
        # timeout (contacts: 5 s before a caller's apology, for a hangup of an agent leg already ended).
        late = ev.MediaHangup(tenant_id=media_edge.tenant_id, call_id=cid)
        msg = await events.nc.request(f"sb.{media_edge.tenant_id}.cmd.media.hangup", encode(late), timeout=2)
        reply = decode(msg.data, Reply)
        assert not reply.ok and reply.code == "ended"
        with pytest.raises(nats.errors.TimeoutError):  # for another tenant, still nobody
            await events.nc.request(f"sb.{intruder}.cmd.media.hangup", encode(cross), timeout=0.5)
    finally:
        await events.close()
