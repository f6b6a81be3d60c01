"""The IVR adapter on real NATS and PostgreSQL, with a fake media/routing responder on the bus as its peer
(the real media service is not wired to it yet): a call to a number routed to a flow is answered, prompted,
takes a signed lookup against a local HTTP server (and its timeout fallback), reaches a queue with the
screen-pop attributes; calls keep their flow version across a deploy; a restart resumes a call mid-flow."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import msgspec
import pytest

from services.ivr.adapter import CALLS_BUCKET, IvrAdapter
from services.ivr.lookup import derive_secret, verify
from services.kernel import db
from services.kernel.bus import Bus, connect
from services.kernel.events import (
    CallCollected,
    CallEnded,
    CallPlayFinished,
    IvrCompleted,
    IvrRun,
    RoutingEnqueue,
)
from services.kernel.messages import Reply, ReplyCode, encode
from services.kernel.waits import flushed
from services.routing.partitions import tenant_commands_subject
from tests.integration.api.conftest import signup, unique_e164

FLOW = """\
name: line
start: greet
fallback: agents
nodes:
  greet: {{type: play, prompt: {{say: "Hello"}}, next: crm}}
  crm:
    type: lookup
    url: {url}
    timeout: 0.5
    results: {{vip: vip}}
    next: menu
    on_error: menu
  menu:
    type: menu
    prompt: {{say: "{menu}"}}
    options: {{"1": sales, "0": agents}}
    timeout: 2
    on_fail: agents
  sales: {{type: queue, queue: {sales}}}
  agents: {{type: queue, queue: support}}
"""


class Crm(BaseHTTPRequestHandler):
    secret: bytes = b""
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ok = verify(
            self.secret,
            self.headers.get("X-Switchboard-Timestamp", ""),
            self.headers.get("X-Switchboard-Signature", ""),
            body,
            time.time(),
        )
        self.seen.append({"path": self.path, "ok": ok, "body": json.loads(body)})
        if self.path == "/slow":
            time.sleep(1.5)
        answer = json.dumps({"vip": ok}).encode() if ok else b'{"error": "bad signature"}'
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def crm() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Crm)
    Crm.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class FakeMedia:
    """Answers media and routing commands on the bus as those services would, and plays the caller: keys
    for each collect come from `digits[call_id]` (none: the caller stays silent, nothing is answered)."""

    bus: Bus
    tenant: str
    digits: dict[uuid.UUID, list[str]] = field(default_factory=dict)
    commands: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    mute: set[uuid.UUID] = field(default_factory=set)
    refuse_routing: bool = False
    # When the last keys were sent and when the next command arrived: the IVR's step time, printed.
    keyed_at: float = 0.0
    step_s: list[float] = field(default_factory=list)
    completed: dict[uuid.UUID, IvrCompleted] = field(default_factory=dict)

    async def start(self) -> None:
        await self.bus.nc.subscribe(f"sb.{self.tenant}.cmd.media.>", cb=self._media)
        await self.bus.nc.subscribe(f"sb.{self.tenant}.evt.ivr.completed", cb=self._completed)
        # NATS maps routing commands onto their tenant partition (services/routing/partitions.py).
        await self.bus.nc.subscribe(tenant_commands_subject(self.tenant), cb=self._routing)

    def of(self, name: str, call_id: uuid.UUID) -> list[dict[str, Any]]:
        return [c for n, c in self.commands if n == name and c["call_id"] == str(call_id)]

    def enqueue(self, call_id: uuid.UUID) -> RoutingEnqueue | None:
        """The enqueue the flow handed to the coordinator (`ivr.completed` with its queue), if it did."""
        done = self.completed.get(call_id)
        return done.queue.enqueue if done is not None and done.queue is not None else None

    async def _completed(self, msg: Any) -> None:
        if self.keyed_at:
            self.step_s.append(time.monotonic() - self.keyed_at)
            self.keyed_at = 0.0
        done = msgspec.json.decode(msg.data, type=IvrCompleted)
        self.completed[done.call_id] = done

    async def _routing(self, msg: Any) -> None:
        if self.keyed_at:
            self.step_s.append(time.monotonic() - self.keyed_at)
            self.keyed_at = 0.0
        self.commands.append(("routing." + msg.subject.rsplit(".", 1)[-1], json.loads(msg.data)))
        await msg.respond(
            encode(Reply(ok=not self.refuse_routing, error="refused" if self.refuse_routing else None))
        )

    async def _media(self, msg: Any) -> None:
        # sb.<tenant>.cmd.media.<name>, or .<name>.<call> (Bus.request's subject for the call's holder)
        name = msg.subject.split(".")[4]
        data = json.loads(msg.data)
        self.commands.append((f"media.{name}", data))
        await msg.respond(encode(Reply(ok=True)))
        call_id = uuid.UUID(data["call_id"])
        tenant = uuid.UUID(self.tenant)
        if call_id in self.mute:
            return
        if name == "play" and not data.get("loop"):
            await self.bus.publish(
                CallPlayFinished(tenant_id=tenant, call_id=call_id, play_id=uuid.UUID(data["id"]))
            )
        elif name == "collect":
            script = self.digits.get(call_id, [])
            if script:
                keys = script.pop(0)
                self.keyed_at = time.monotonic()
                await self.bus.publish(
                    CallCollected(
                        tenant_id=tenant,
                        call_id=call_id,
                        collect_id=uuid.UUID(data["id"]),
                        digits=keys,
                        reason="max_digits",
                    )
                )


@dataclass
class World:
    api: httpx.AsyncClient
    headers: dict[str, str]
    tenant: str
    e164: str
    media: FakeMedia
    bus: Bus
    pool: Any
    secret: str


@pytest.fixture
async def world(api: httpx.AsyncClient, infra: Any) -> AsyncIterator[World]:
    t = await signup(api)
    for name in ("sales", "support", "priority"):
        assert (await api.post("/v1/queues", json={"name": name}, headers=t.headers)).status_code == 201
    e164 = unique_e164()
    assert (await api.post("/v1/numbers", json={"e164": e164}, headers=t.headers)).status_code == 201
    bus = await connect(infra.nats_url, name="fake-media")
    await bus.ensure_streams()
    # Calls other folders' IVR processes left in the bucket (e2e stacks stopped mid-call) are not this
    # test's: an adapter started here would resume them all first.
    try:
        await bus.js.delete_key_value(CALLS_BUCKET)
    except Exception:
        pass
    pool = await db.create_pool(infra.app_url, max_size=3)
    media = FakeMedia(bus, t.id)
    await media.start()
    try:
        yield World(api, t.headers, t.id, e164, media, bus, pool, infra.token_secret)
    finally:
        try:  # bounded: a connection a cancelled task still holds must not hang the session
            await asyncio.wait_for(pool.close(), 5.0)
        except TimeoutError:
            pool.terminate()
        await bus.close()


async def deploy(w: World, url: str, *, menu: str = "Press 1", sales: str = "sales") -> int:
    r = await w.api.post(
        "/v1/flows", json={"definition": FLOW.format(url=url, menu=menu, sales=sales)}, headers=w.headers
    )
    assert r.status_code == 201, r.text
    await w.api.post(f"/v1/numbers/{w.e164}/route", json={"flow": "line"}, headers=w.headers)
    return int(r.json()["version"])


async def tenant_secret(w: World) -> bytes:
    """The signing key as the tenant gets it from the API (what its CRM uses to verify)."""
    body = (await w.api.get("/v1/ivr/lookup-secret", headers=w.headers)).json()
    return bytes.fromhex(body["secret"])


async def start_adapter(w: World, *, private: bool = True) -> IvrAdapter:
    adapter = IvrAdapter(w.bus, w.pool, platform_secret=w.secret, allow_private_lookups=private)
    await adapter.start()
    return adapter


async def arrive(w: World, call_id: uuid.UUID, caller: str = "+15551230000", flow: str = "line") -> Reply:
    """What the contact coordinator does for a caller on a number with a flow once it answered it: `ivr.run`
    (the IVR runs flows as a step of the contact; it answers no call itself)."""
    run = IvrRun(tenant_id=uuid.UUID(w.tenant), call_id=call_id, flow=flow, caller=caller, dialled=w.e164)
    return await w.bus.request(run, timeout=5.0)


async def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.01)


async def test_call_runs_the_flow_with_a_signed_lookup_and_ends_in_a_queue(world: World, crm: str) -> None:
    Crm.secret = await tenant_secret(world)
    assert Crm.secret == derive_secret(world.secret, uuid.UUID(world.tenant))
    await deploy(world, f"{crm}/caller")
    adapter = await start_adapter(world)
    try:
        call = uuid.uuid4()
        world.media.digits[call] = ["1"]
        await arrive(world, call)
        await until(lambda: world.media.enqueue(call))
        print(f"digit -> hand-back: {world.media.step_s[0] * 1000:.1f} ms")  # a figure, not a test
        names = [n for n, c in world.media.commands if c["call_id"] == str(call)]
        assert names == ["media.play", "media.collect"], names  # the IVR neither enqueues nor plays music
        enqueue = world.media.enqueue(call)
        assert enqueue is not None
        queues = (await world.api.get("/v1/queues", headers=world.headers)).json()["items"]
        assert str(enqueue.queue_id) == next(q["id"] for q in queues if q["name"] == "sales")
        assert enqueue.attributes["vip"] == "true"  # the CRM verified our signature
        assert (
            enqueue.attributes["ivr.path"] == "greet>crm>menu>sales"
            and enqueue.attributes["ivr.digits"] == "1"
        )
        assert Crm.seen[0]["ok"] and Crm.seen[0]["body"] == {"caller": "+15551230000"}
        assert world.media.completed[call].outcome == "transferred"
        # The IVR's step is over: the call is neither in memory nor in the KV bucket.
        await until(lambda: call not in adapter.calls)
        assert f"{world.tenant}.{call}" not in [key for key, _ in await world.bus.kv_latest(CALLS_BUCKET)]
    finally:
        await adapter.stop()


async def test_lookup_timeout_takes_the_fallback_branch(world: World, crm: str) -> None:
    Crm.secret = derive_secret(world.secret, uuid.UUID(world.tenant))
    await deploy(world, f"{crm}/slow")
    adapter = await start_adapter(world)
    try:
        call = uuid.uuid4()
        world.media.digits[call] = ["1"]
        await arrive(world, call)
        await until(lambda: world.media.enqueue(call))
        enqueue = world.media.enqueue(call)
        assert enqueue is not None and enqueue.queue == "sales"
        assert enqueue.attributes["lookup_error"] == "timeout" and "vip" not in enqueue.attributes
    finally:
        await adapter.stop()


async def test_lookups_to_private_addresses_are_refused_by_default(world: World, crm: str) -> None:
    await deploy(world, f"{crm}/caller")
    adapter = await start_adapter(world, private=False)
    try:
        call = uuid.uuid4()
        world.media.digits[call] = ["1"]
        await arrive(world, call)
        await until(lambda: world.media.enqueue(call))
        error = world.media.completed[call].attributes["lookup_error"]
        assert "non-public address (127.0.0.1)" in error
        assert Crm.seen == []  # the request was never sent
    finally:
        await adapter.stop()


async def test_restart_resumes_mid_call_and_calls_keep_their_version(world: World, crm: str) -> None:
    Crm.secret = derive_secret(world.secret, uuid.UUID(world.tenant))
    assert await deploy(world, f"{crm}/caller", menu="Version one menu") == 1
    adapter = await start_adapter(world)
    call = uuid.uuid4()
    await arrive(world, call)  # no digits scripted: the caller is at the menu when the IVR goes down
    await until(lambda: world.media.of("media.collect", call))
    await adapter.stop()  # the process dies; its state stays in the KV bucket

    # A new version is deployed while the call is in progress; it routes 1 elsewhere.
    assert await deploy(world, f"{crm}/caller", menu="Version two menu", sales="priority") == 2

    world.media.digits[call] = ["1"]
    adapter = await start_adapter(world)
    try:
        await until(lambda: world.media.enqueue(call))
        collects = world.media.of("media.collect", call)
        assert len(collects) == 2 and collects[-1]["text"] == "Version one menu"  # re-prompted, same version
        assert world.media.completed[call].queue.enqueue.queue == "sales"  # type: ignore[union-attr]
        # A new call gets version 2.
        fresh = uuid.uuid4()
        world.media.digits[fresh] = ["1"]
        await arrive(world, fresh)
        await until(lambda: world.media.enqueue(fresh))
        assert world.media.of("media.collect", fresh)[0]["text"] == "Version two menu"
        assert world.media.completed[fresh].queue.enqueue.queue == "priority"  # type: ignore[union-attr]
    finally:
        await adapter.stop()


async def test_a_hang_up_while_the_ivr_is_down_is_handled_when_it_is_back(world: World, crm: str) -> None:
    """The IVR reads call events from its durable consumer: one published while no IVR runs is not lost
    (on core NATS it was, and the call stayed in the bucket, re-prompting nobody after every restart)."""
    Crm.secret = derive_secret(world.secret, uuid.UUID(world.tenant))
    await deploy(world, f"{crm}/caller")
    adapter = await start_adapter(world)
    call = uuid.uuid4()
    await arrive(world, call)
    await until(lambda: world.media.of("media.collect", call))
    await adapter.stop()
    ended = CallEnded(tenant_id=uuid.UUID(world.tenant), call_id=call, cause="remote_bye", duration=3.0)
    await world.bus.publish(ended)
    adapter = await start_adapter(world)
    try:
        await until(lambda: call not in adapter.calls)
        assert (uuid.UUID(world.tenant), call) not in [
            tuple(uuid.UUID(p) for p in key.split(".", 1))
            for key, _ in await world.bus.kv_latest(CALLS_BUCKET)
        ]
    finally:
        await adapter.stop()


async def test_an_unknown_flow_is_refused_and_failed_commands_get_no_silence(world: World, crm: str) -> None:
    adapter = await start_adapter(world)
    try:
        call = uuid.uuid4()
        refused = await arrive(world, call)  # no flow of that name yet
        assert not refused.ok and refused.code == "unknown_flow", refused
        assert [n for n, c in world.media.commands if c["call_id"] == str(call)] == []
        assert call not in adapter.calls
    finally:
        await adapter.stop()
    # A queue routing refuses is the coordinator's to handle now (the flow continues at its fallback:
    # tests/unit/contacts/test_flow_queue.py); the IVR only hands the caller back.


async def test_a_run_at_a_node_continues_the_flow_there_with_what_it_had_learned(
    world: World, crm: str
) -> None:
    """`ivr.run` with `node` and `attributes` (a queue node's on_timeout/on_callback continuing after the
    coordinator's wait): the flow starts at that node, skips what came before it (the greeting, the CRM
    lookup) and carries the attributes into the screen pop; a node the flow lacks is refused, untouched."""
    await deploy(world, f"{crm}/caller")
    await flushed(world.bus.nc)
    adapter = await start_adapter(world)
    tenant = uuid.UUID(world.tenant)
    try:
        lost = uuid.uuid4()
        refused = await world.bus.request(
            IvrRun(tenant_id=tenant, call_id=lost, flow="line", node="nowhere", dialled=world.e164),
            timeout=5.0,
        )
        assert not refused.ok and refused.code == ReplyCode.INVALID and "nowhere" in refused.error, refused
        assert [
            n for n, c in world.media.commands if c["call_id"] == str(lost)
        ] == [] and lost not in adapter.calls

        call = uuid.uuid4()
        world.media.digits[call] = ["1"]
        lookups = len(Crm.seen)
        run = IvrRun(
            tenant_id=tenant,
            call_id=call,
            flow="line",
            node="menu",
            attributes={"vip": "gold", "caller": "+1forged"},
            caller="+15551230000",
            dialled=world.e164,
        )
        assert (await world.bus.request(run, timeout=5.0)).ok
        await until(lambda: world.media.enqueue(call))
        names = [n for n, c in world.media.commands if c["call_id"] == str(call)]
        assert names == ["media.collect"], names  # no greeting played
        assert len(Crm.seen) == lookups  # the lookup before the menu did not run again
        attributes = world.media.completed[call].attributes
        assert attributes["vip"] == "gold" and attributes["caller"] == "+15551230000"
        assert attributes["ivr.path"] == "menu>sales" and attributes["ivr.digits"] == "1"
    finally:
        await adapter.stop()
