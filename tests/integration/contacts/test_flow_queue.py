"""A flow's queue, waited in the contact coordinator (issue 22 item 4 step 2): the coordinator and the IVR
adapters in this process on the session's real NATS and PostgreSQL, the flow deployed through the API, media
and routing answered by the bus-level responder. The IVR's queue node hands the caller back in
`ivr.completed`; the coordinator enqueues with the node's priority, skills and the flow's attributes, plays
the node's music, offers the call back on the node's digit (keeping the place), gives up at the maximum
wait and continues the flow at `on_timeout`; a coordinator restarted mid-wait plays the music again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from services.contacts.adapter import ContactsAdapter
from services.ivr.adapter import CALLS_BUCKET, IvrAdapter
from services.kernel import events as ev
from services.kernel.bus import Bus, connect
from services.kernel.db import create_pool, tenant_tx
from tests.integration.api.conftest import make_app, serve, signup, unique_e164
from tests.integration.scaleout import Responder, wait_for

FLOW = """\
name: waiting
start: menu
fallback: bye
nodes:
  menu: {type: menu, prompt: {say: "Press 1"}, options: {"1": line}, timeout: 2, on_fail: line}
  line:
    type: queue
    queue: sales
    priority: 70
    skills: {spanish: 3}
    attributes: {intent: "sales for {caller}"}
    music: {say: "Hold music"}
    announce_every: 30
    callback_after: 0.3
    callback_digit: "2"
    max_wait: MAX_WAIT
    on_timeout: bye
  bye: {type: hangup, prompt: {say: "Goodbye"}}
"""


def react(name: str, data: dict[str, Any]) -> list[ev.Event]:
    """What media and routing publish after a command: the answer, a prompt's end (the music loops on),
    the digit the menu asks for (1), routing's `queued`, and a hang-up's end of the call."""
    tenant, call = uuid.UUID(data["tenant_id"]), uuid.UUID(data["call_id"])
    if name == "media.answer":
        return [ev.CallAnswered(tenant_id=tenant, call_id=call)]
    if name == "media.play" and not data.get("loop"):
        return [ev.CallPlayFinished(tenant_id=tenant, call_id=call, play_id=uuid.UUID(data["id"]))]
    if name == "media.collect":
        collect = uuid.UUID(data["id"])
        return [
            ev.CallCollected(
                tenant_id=tenant, call_id=call, collect_id=collect, digits="1", reason="max_digits"
            )
        ]
    if name == "routing.enqueue":
        return [ev.ContactQueued(tenant_id=tenant, call_id=call, queue=str(data["queue_id"]), position=1)]
    if name == "media.hangup":
        return [ev.CallEnded(tenant_id=tenant, call_id=call, cause="normal_clearing", duration=3.0)]
    return []


@dataclass
class Line:
    tenant: uuid.UUID
    flow_id: uuid.UUID
    queue_id: uuid.UUID
    bus: Bus
    pool: asyncpg.Pool
    media: Responder

    def commands(self, name: str, call: uuid.UUID) -> list[dict[str, Any]]:
        return [c for n, c in self.media.commands if n == name and c.get("call_id") == str(call)]

    async def arrive(self, call: uuid.UUID) -> None:
        await self.bus.publish(
            ev.CallArrived(
                tenant_id=self.tenant,
                call_id=call,
                from_uri="sip:+15550142@127.0.0.1",
                to_e164="+15550100",
                flow_id=self.flow_id,
            )
        )

    async def record(self, call: uuid.UUID) -> asyncpg.Record | None:
        async with tenant_tx(self.pool, self.tenant, readonly=True) as conn:
            return await conn.fetchrow(
                "SELECT state, outcome, ivr_path, timeline FROM contacts WHERE id = $1", call
            )

    async def in_state(self, call: uuid.UUID, state: str) -> bool:
        row = await self.record(call)
        return row is not None and row["state"] == state


@pytest.fixture(scope="module")
async def api(infra: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_app(infra)) as c:
        yield c


@asynccontextmanager
async def line_with(api: httpx.AsyncClient, infra: Any, max_wait: float) -> AsyncIterator[Line]:
    """A tenant with the flow (its queue's maximum wait given), on a number, and the bus's responder."""
    t = await signup(api)
    queue = await api.post("/v1/queues", json={"name": "sales"}, headers=t.headers)
    assert queue.status_code == 201, queue.text
    deployed = await api.post(
        "/v1/flows", json={"definition": FLOW.replace("MAX_WAIT", str(max_wait))}, headers=t.headers
    )
    assert deployed.status_code == 201, deployed.text
    e164 = unique_e164()
    assert (await api.post("/v1/numbers", json={"e164": e164}, headers=t.headers)).status_code == 201
    bus = await connect(infra.nats_url, name="flow-queue-test")
    await bus.ensure_streams()
    # Calls other tests' IVR processes left in the bucket are not this test's: an IVR started here would
    # resume them first.
    try:
        await bus.js.delete_key_value(CALLS_BUCKET)
    except Exception:
        pass
    pool = await create_pool(infra.app_url, max_size=3)
    media = Responder(bus, [uuid.UUID(t.id)], react)
    await media.start()
    try:
        yield Line(
            uuid.UUID(t.id),
            uuid.UUID(deployed.json()["flow"]["id"]),
            uuid.UUID(queue.json()["id"]),
            bus,
            pool,
            media,
        )
    finally:
        try:
            await asyncio.wait_for(pool.close(), 5.0)
        except TimeoutError:
            pool.terminate()
        await bus.close()


@dataclass
class Services:
    contacts: ContactsAdapter
    ivr: IvrAdapter
    names: tuple[str, str]

    async def stop(self) -> None:
        await self.ivr.stop()
        await self.contacts.stop()


async def start(line: Line, infra: Any, names: tuple[str, str] | None = None) -> Services:
    names = names or (f"c{uuid.uuid4().hex[:10]}", f"i{uuid.uuid4().hex[:10]}")
    ivr = IvrAdapter(line.bus, line.pool, platform_secret=infra.token_secret, consumer=names[1])
    await ivr.start()
    contacts = ContactsAdapter(line.bus, line.pool, consumer=names[0])
    await contacts.start()
    return Services(contacts, ivr, names)


async def forget(line: Line, services: Services) -> None:
    await services.stop()
    for name in services.names:
        try:
            await asyncio.wait_for(line.bus.js.delete_consumer("SB_EVENTS", name), 5.0)
        except Exception:
            pass


@pytest.fixture
async def line(api: httpx.AsyncClient, infra: Any) -> AsyncIterator[Line]:
    async with line_with(api, infra, max_wait=2.0) as made:
        yield made


async def test_the_queue_node_hands_back_and_the_coordinator_enqueues_with_its_terms(
    line: Line, infra: Any
) -> None:
    """The enqueue carries the node's priority, skills and the flow's attributes (screen pop), is sent by
    the coordinator, not the IVR, and the caller hears the node's music; at the maximum wait (2 s) routing
    is told and the flow continues at on_timeout (goodbye): the contact ends self_served."""
    services = await start(line, infra)
    try:
        call = uuid.uuid4()
        await line.arrive(call)

        async def queued() -> bool:
            return await line.in_state(call, "queued")

        await wait_for(queued, 10.0, "the caller in line")
        (enqueue,) = line.commands("routing.enqueue", call)
        assert uuid.UUID(enqueue["queue_id"]) == line.queue_id and enqueue["queue"] == "sales"
        assert (enqueue["priority"], enqueue["skills"]) == (70, {"spanish": 3})
        attributes = enqueue["attributes"]
        assert attributes["intent"] == "sales for +15550142" and attributes["ivr.path"] == "menu>line"
        assert attributes["ivr.digits"] == "1" and attributes["ivr.flow"].startswith("waiting@")
        assert {p["text"] for p in line.commands("media.play", call) if p["loop"]} == {"Hold music"}
        assert call not in services.ivr.calls  # the IVR's step is over

        async def ended() -> bool:
            return await line.in_state(call, "ended")

        await wait_for(ended, 10.0, "the maximum wait, the goodbye and the hang-up")
        (cancel,) = line.commands("routing.cancel", call)
        assert cancel["reason"] == "max_wait"
        row = await line.record(call)
        assert row is not None and row["outcome"] == "self_served", row
        assert row["ivr_path"] == ["menu", "line", "bye"]
        plays = [p.get("text") for p in line.commands("media.play", call)]
        assert "Goodbye" in plays and len(line.commands("media.hangup", call)) == 1
    finally:
        await forget(line, services)


async def test_the_callback_digit_keeps_the_place_and_a_restart_plays_the_music_again(
    api: httpx.AsyncClient, infra: Any
) -> None:
    async with line_with(api, infra, max_wait=60.0) as line:
        services = await start(line, infra)
        try:
            call = uuid.uuid4()
            await line.arrive(call)

            def music() -> list[dict[str, Any]]:
                return [p for p in line.commands("media.play", call) if p["loop"]]

            async def offered() -> bool:
                offers = [p for p in line.commands("media.play", call) if p.get("interruptible")]
                return bool(offers) and len(music()) >= 2

            # The node's music at the hand-back, the offer (0.3 s in line), the music again after it.
            await wait_for(offered, 10.0, "the callback offer played")
            # The coordinator dies mid-wait; another takes the same consumer: the music plays again.
            await services.stop()
            services = await start(line, infra, services.names)

            async def music_again() -> bool:
                return len(music()) >= 3

            await wait_for(music_again, 10.0, "the music again after the restart")
            assert {p["text"] for p in music()} == {"Hold music"}
            await line.bus.publish(
                ev.CallDtmf(tenant_id=line.tenant, call_id=call, digit="2", source="rfc4733")
            )

            async def waiting_for_callback() -> bool:
                return await line.in_state(call, "callback")

            await wait_for(waiting_for_callback, 10.0, "the caller hung up to be called back")
            (callback,) = line.commands("routing.callback", call)
            assert callback["keep_place"] and callback["number"] == "+15550142"
            assert uuid.UUID(callback["queue_id"]) == line.queue_id
            assert not line.commands("routing.cancel", call)  # the place is kept
            row = await line.record(call)
            assert row is not None and "callback_requested" in str(row["timeline"]), row
        finally:
            await forget(line, services)
