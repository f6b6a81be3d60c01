"""Two IVR processes sharing tenants by partition (services/kernel/partitioned.py), on the session's real
NATS and PostgreSQL, with media and routing answered by the bus-level responder: kill -9 of one, and its
callers, waiting at a menu, are prompted again by the other within 5 s and are handed back for their queue
exactly once; the other worker's callers are not touched. The workers are not numbered (SB_WORKER_INDEX=auto,
as the chart runs them): they find their shares from each other's membership keys."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest

from services.kernel import events as ev
from services.kernel.bus import Bus, connect
from tests.integration.api.conftest import signup, unique_e164
from tests.integration.scaleout import (
    Responder,
    Workers,
    all_moved,
    drop_stream,
    homes_owned,
    wait_for,
    workers,
)

FLOW = """\
name: line
start: menu
fallback: agents
nodes:
  menu:
    type: menu
    prompt: {say: "Press 1 for sales"}
    options: {"1": sales}
    timeout: 20
    on_fail: agents
  sales: {type: queue, queue: sales}
  agents: {type: queue, queue: support}
"""


@dataclass
class Line:
    tenant: uuid.UUID
    e164: str


@pytest.fixture
async def bus(infra: Any) -> AsyncIterator[Bus]:
    b = await connect(infra.nats_url, name="ivr-workers-test")
    await b.ensure_streams()
    yield b
    await b.close()


async def line_homed_on(api: httpx.AsyncClient, w: Workers, index: int) -> Line:
    """A tenant whose partition is worker `index`'s home, with a number running FLOW."""
    while True:
        t = await signup(api)
        if w.home_of(uuid.UUID(t.id)) == index:
            break
    headers = {"Authorization": f"Bearer {t.key}"}
    for name in ("sales", "support"):
        assert (await api.post("/v1/queues", json={"name": name}, headers=headers)).status_code == 201
    e164 = unique_e164()
    assert (await api.post("/v1/numbers", json={"e164": e164}, headers=headers)).status_code == 201
    assert (await api.post("/v1/flows", json={"definition": FLOW}, headers=headers)).status_code == 201
    r = await api.post(f"/v1/numbers/{e164}/route", json={"flow": "line"}, headers=headers)
    assert r.status_code < 300, r.text
    return Line(uuid.UUID(t.id), e164)


def no_reaction(name: str, data: dict[str, Any]) -> list[ev.Event]:
    return []  # callers stay silent at the menu until the test presses keys


async def test_kill_9_hands_callers_at_a_menu_to_the_other_ivr(
    infra: Any, api: httpx.AsyncClient, bus: Bus
) -> None:
    with workers(infra, "services.ivr", "SB_IVR_DURABLE", SB_WORKER_INDEX="auto") as w:
        try:
            await homes_owned(bus, w)
            kept, moved = await line_homed_on(api, w, 0), await line_homed_on(api, w, 1)
            media = Responder(bus, [kept.tenant, moved.tenant], no_reaction)
            await media.start()
            handed: dict[uuid.UUID, dict[uuid.UUID, ev.IvrCompleted]] = {}

            async def on_completed(msg: Any) -> None:
                done = msgspec.json.decode(msg.data, type=ev.IvrCompleted)
                handed.setdefault(done.call_id, {})[done.id] = done

            for line in (kept, moved):
                await bus.nc.subscribe(f"sb.{line.tenant}.evt.ivr.completed", cb=on_completed)
            calls = {line.tenant: [uuid.uuid4(), uuid.uuid4()] for line in (kept, moved)}
            for line in (kept, moved):
                for call in calls[line.tenant]:
                    # The coordinator's step for an answered caller on a flow's number; every worker gets it,
                    # the owner of the tenant's partition answers.
                    run = ev.IvrRun(
                        tenant_id=line.tenant,
                        call_id=call,
                        flow="line",
                        caller="+15550001",
                        dialled=line.e164,
                    )
                    assert (await bus.request(run, timeout=5.0)).ok

            def collects(call: uuid.UUID) -> list[dict[str, Any]]:
                return [c for n, c in media.commands if n == "media.collect" and c["call_id"] == str(call)]

            async def at_menu() -> bool:
                return all(collects(c) for cs in calls.values() for c in cs)

            await wait_for(at_menu, 10.0, "every caller at the menu")

            killed = w.kill(1)
            gone = calls[moved.tenant]

            async def prompted_again() -> bool:
                return all(len({c["id"] for c in collects(call)}) == 2 for call in gone)

            await wait_for(prompted_again, 8.0, "the moved callers prompted again by the survivor")
            took = time.monotonic() - killed
            print(f"\nivr failover: kill -9 to the moved callers' menu prompt again {took:.2f} s")
            assert took < 5.0, took
            await all_moved(bus, w.name, f"{w.name}-0", killed)

            # Every caller presses 1 at the menu it hears now: each reaches sales, once.
            for line in (kept, moved):
                for call in calls[line.tenant]:
                    last = collects(call)[-1]
                    await bus.publish(
                        ev.CallCollected(
                            tenant_id=line.tenant,
                            call_id=call,
                            collect_id=uuid.UUID(last["id"]),
                            digits="1",
                            reason="max_digits",
                        )
                    )

            async def all_handed_back() -> bool:
                return all(handed.get(c) for cs in calls.values() for c in cs)

            await wait_for(all_handed_back, 10.0, "every caller handed back for the sales queue")
            for line in (kept, moved):
                for call in calls[line.tenant]:
                    (done,) = handed[call].values()  # once (a JetStream duplicate has the same id)
                    assert done.queue is not None and done.queue.enqueue.queue == "sales", done
                    assert not media.ids("media.answer", call)  # the coordinator answers, not the IVR
                    assert not media.ids("routing.enqueue", call)  # the coordinator enqueues
            # The survivor's own callers heard their menu once: nothing of theirs was replayed.
            assert all(len({c["id"] for c in collects(call)}) == 1 for call in calls[kept.tenant])
        finally:
            await drop_stream(bus, w.name)
