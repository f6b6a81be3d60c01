"""The recording events on the bus (issue 20 item 8): recording.started, paused and resumed from media's
call.recording facts, recording.available once stored (a call's and a voicemail's, told apart by `kind`),
recording.deleted on the purge (reason retention; a request's, published by the API, is checked in
test_recordings_api.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from services.kernel import events as ev
from services.kernel.ids import new_id, voicemail_id
from services.kernel.waits import flushed

from .conftest import Stack
from .test_voicemails import write_message

KINDS = [
    ev.RecordingStarted,
    ev.RecordingPaused,
    ev.RecordingResumed,
    ev.RecordingAvailable,
    ev.RecordingDeleted,
]


async def test_started_paused_resumed_available_and_deleted_are_published(stack: Stack) -> None:
    tenant = await stack.tenant()
    await stack.owner.execute("UPDATE tenants SET recording_retention_days = 1 WHERE id = $1", tenant)
    seen: list[Any] = []
    arrived = asyncio.Event()

    async def on_event(event: Any) -> None:
        seen.append(event)
        arrived.set()

    listener = await stack.bus.listen(KINDS, on_event, tenant_id=tenant)
    await flushed(stack.bus.nc)

    async def until(what: str, check: Any) -> None:
        deadline = time.monotonic() + 15
        while not check():
            arrived.clear()
            left = deadline - time.monotonic()
            assert left > 0, f"no {what}; seen {[(type(e).__name__, e.recording_id) for e in seen]}"
            try:
                await asyncio.wait_for(arrived.wait(), left)
            except TimeoutError:
                pass

    def names(rid: Any) -> list[str]:
        return [type(e).__name__ for e in seen if e.recording_id == rid]

    try:
        pipeline = await stack.start_pipeline()
        rid = await stack.record_call(tenant, 1.0, finish=False)
        for state in ("paused", "resumed"):  # media's facts for a pause through the desk or the API
            await stack.bus.publish(
                ev.CallRecording(tenant_id=tenant, call_id=rid, state=state, spool=str(rid))
            )
        await until("resumed", lambda: "RecordingResumed" in names(rid))
        assert names(rid) == ["RecordingStarted", "RecordingPaused", "RecordingResumed"]
        await stack.bus.publish(
            ev.CallEnded(tenant_id=tenant, call_id=rid, cause="media_worker_lost", duration=1)
        )
        await until("available", lambda: "RecordingAvailable" in names(rid))
        (available,) = [e for e in seen if isinstance(e, ev.RecordingAvailable) and e.recording_id == rid]
        row = await stack.wait_status(tenant, rid, "available")
        assert (available.kind, available.partial, available.sha256) == ("call", True, row["sha256"])

        call = new_id()
        write_message(stack.data_dir, call, 0.5)
        await stack.bus.publish(
            ev.CallRecordFinished(
                tenant_id=tenant, call_id=call, file=f"voicemail/{call}.wav", ts=time.time()
            )
        )
        vm = voicemail_id(call)
        await until("voicemail available", lambda: "RecordingAvailable" in names(vm))
        assert [e.kind for e in seen if isinstance(e, ev.RecordingAvailable) and e.recording_id == vm] == [
            "voicemail"
        ]

        # Past their day of retention: the call's recording and the voicemail alike.
        assert {rid, vm} <= set(await pipeline.purge_due(time.time() + 2 * 86400))
        await until("deleted", lambda: "RecordingDeleted" in names(rid))
        assert [e.reason for e in seen if isinstance(e, ev.RecordingDeleted) and e.recording_id == rid] == [
            "retention"
        ]
    finally:
        await listener.stop()
