"""The `transfer` command to an outside number: a raw SIP caller is answered, media originates through the
tenant's trunk to SIPp (`uas -rtp_echo`), bridges the two legs once SIPp answers, and the caller's tone
comes back echoed through the bridge. Without a usable trunk the reply fails at once (the IVR's on_fail).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from services.kernel import events as ev
from services.kernel.ids import new_id
from services.kernel.messages import Reply, decode, encode
from services.runtime.embedded import free_port
from tests.sipp_uac import sipp_command

from .harness import Events, answered_call, send_audio, tone_power

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"),
]
TONE_HZ = 900.0


async def _set_trunk(owner_url: str, tenant: uuid.UUID, port: int | None) -> None:
    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute("DELETE FROM sip_trunks WHERE tenant_id = $1", tenant)
        if port is not None:
            await conn.execute(
                """INSERT INTO sip_trunks (id, tenant_id, name, allowed_ips, outbound_host, outbound_port)
                   VALUES ($1, $2, 'echo', '{127.0.0.0/8}', '127.0.0.1', $3)""",
                new_id(),
                tenant,
                port,
            )
    finally:
        await conn.close()


async def _transfer(events: Events, call_id: uuid.UUID, to: str) -> tuple[ev.MediaTransfer, Reply]:
    cmd = ev.MediaTransfer(tenant_id=events.tenant, call_id=call_id, to=to, caller_id="+15550100")
    msg = await events.nc.request(f"sb.{events.tenant}.cmd.media.transfer", encode(cmd), timeout=35)
    return cmd, decode(msg.data, Reply)


async def test_transfer_bridges_the_caller_to_an_outside_number(media_edge, infra, tmp_path: Path) -> None:
    uas_port = free_port()
    await _set_trunk(infra.owner_url, media_edge.tenant_id, uas_port)
    uas = await asyncio.create_subprocess_exec(
        *sipp_command(uas_port),
        *["-sn", "uas", "-rtp_echo", "-m", "1", "-timeout", "30"],
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    caller = await answered_call(media_edge.port, media_edge.flow_number, events)
    try:
        await asyncio.sleep(0.3)  # SIPp binds its port
        _, reply = await _transfer(events, caller.platform_call_id, "+15550199")
        assert reply.ok, reply
        other = uuid.UUID(str((reply.data or {})["other_call_id"]))
        await events.wait_for(ev.CallAnswered, lambda e: e.call_id == other)
        caller.rtp.packets.clear()
        t = np.arange(16000) / 8000
        tone = np.sin(2 * np.pi * TONE_HZ * t) * 8000
        await asyncio.gather(
            asyncio.to_thread(send_audio, caller, tone), asyncio.to_thread(caller.rtp.receive_for, 3.0)
        )
        heard = caller.rtp.pcm(0)
        loud = heard[np.abs(heard.astype(np.int32)) > 1500]
        assert len(loud) > 4000, "the echoed tone came back to the caller"
        assert tone_power(heard, TONE_HZ) > 0.3
        # The caller hangs up: the outside leg is released too.
        await caller.bye()
        ended = await events.wait_for(ev.CallEnded, lambda e: e.call_id == other)
        assert ended.cause == "normal_clearing"
    finally:
        await events.close()
        if uas.returncode is None:
            uas.terminate()
            await asyncio.wait_for(uas.wait(), 5)
        await _set_trunk(infra.owner_url, media_edge.tenant_id, None)


async def test_transfer_without_a_trunk_fails_and_the_caller_stays(media_edge, infra) -> None:
    await _set_trunk(infra.owner_url, media_edge.tenant_id, None)
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    caller = await answered_call(media_edge.port, media_edge.flow_number, events)
    try:
        _, reply = await _transfer(events, caller.platform_call_id, "+15550199")
        assert not reply.ok and reply.code == "transfer_failed" and "trunk" in (reply.error or "")
        _, bad = await _transfer(events, caller.platform_call_id, "not-a-number")
        assert not bad.ok and bad.code == "invalid"
        # Still up: a prompt can be played to it.
        play = ev.MediaPlay(tenant_id=events.tenant, call_id=caller.platform_call_id, tone="moh")
        assert (await events.command(play)).ok
    finally:
        await caller.bye()
        await events.close()
