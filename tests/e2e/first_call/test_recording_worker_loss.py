"""A recorded call whose media worker is killed (kill -9, the SIP front and two workers): the recording is
kept up to the last chunk the worker shipped and marked partial; the caller's tone is in it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from switchboard import AgentSession
from switchboard.agent_events import ContactConnected, ContactOffer

from services.kernel import events as ev
from services.media.rtp.g711 import G711
from tests.e2e.first_call.conftest import PhoneCaller, Stack, Watch, next_of, tone_power
from tests.e2e.first_call.test_recording_call import (
    available,
    download,
    recording_tenant,
    with_recording_service,
)
from tests.e2e.first_call.test_worker_loss import worker_of

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sharded_recording_stack(sharded_stack: Stack, infra: Any) -> Iterator[Any]:
    yield from with_recording_service(sharded_stack, infra)


async def test_killed_media_worker_leaves_a_partial_recording(sharded_recording_stack: Any) -> None:
    stack = sharded_recording_stack
    t = await asyncio.to_thread(recording_tenant, stack.api)
    watch = await Watch.start(stack.nats_url, t.id)
    caller = PhoneCaller(stack.sip_port, t.number)
    try:
        async with AgentSession(stack.api, t.token("agent0@example.com"), auto_answer=True) as agent:
            await agent.login(state="available")
            await caller.dial()
            contact_id = (await next_of(agent, ContactOffer)).contact_id
            await next_of(agent, ContactConnected)
            await watch.wait_for(
                ev.CallRecording, lambda e: str(e.call_id) == contact_id and e.state == "started"
            )
            await asyncio.sleep(3.0)  # about three chunks reach JetStream
            worker, _ = await worker_of(stack, contact_id)
            name = next(n for n, env in stack.envs.items() if env.get("SB_MEDIA_WORKER_ID") == worker)
            stack.kill(name)
            await watch.wait_for(
                ev.CallEnded, lambda e: str(e.call_id) == contact_id and e.cause == "media_worker_lost"
            )
            meta = await asyncio.to_thread(available, stack.api, t.key, contact_id)
            assert meta["partial"] and 1.5 <= meta["duration_s"] <= 4.0, meta
            wav = await asyncio.to_thread(download, stack.api, t.key, contact_id)
            octets = np.frombuffer(wav[wav.index(b"data") + 8 :], dtype=np.uint8)
            caller_channel = G711.PCMU.decode(octets[0::2].tobytes()).astype(np.float64)
            assert tone_power(caller_channel[4000:12000], caller.frequency) > 0.3
    finally:
        caller.close()
        await watch.close()
    # The killed worker stays down for the rest of this module's stack: nothing else uses it here.
