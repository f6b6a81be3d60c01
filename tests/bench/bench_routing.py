# The `routing` benchmark (`make bench BENCH=routing`), at Twilio TaskRouter's workspace limit of 15,000
# workers in one shard:
#
#   0. match_p99_us: the in-memory match at 15,000 logged-in agents, 1,000 waiting contacts, 50 skills,
#      the scenario of bench_routing_core.py (imported, not copied).
#   Then `python -m services.routing` runs as its own process against embedded PostgreSQL and NATS, with
#   the journal in JetStream as in production, and 15,000 agents log in over NATS (seats bought in the
#   tenant row, as the API's seat purchase does):
#   1. enqueue -> offer: a client sends `enqueue` and times until the `contact.offered` event arrives
#      (agents are free, so every contact is offered at once), then cancels the contact; p50/p99.
#   2. decisions per second: enqueue + cancel commands sent with up to 200 in flight for one tenant;
#      every command is one engine decision, journaled before it is answered. Per core: decisions
#      divided by the CPU time (user + system, psutil) the routing process used meanwhile.
#
#   python tests/bench/bench_routing.py [--quick] [--agents N] [--samples N]
#
# Prints a table and writes .bench/routing.json as [{"metric","value","unit","goal","better"}].
# Not a test: nothing here asserts a timing. Client and service share the machine's cores.
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from services.kernel import db
from services.kernel import events as ev
from services.kernel.bus import Bus, connect
from services.kernel.waits import close_pool
from services.runtime.embedded import APP_ROLE, DATABASE, EmbeddedNats, EmbeddedPostgres, Secrets

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_routing_core import run_scenario  # noqa: E402  (the shared in-memory scenario)


async def seed(app_url: str, agents: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    pool = await db.create_pool(app_url)
    tenant, site, queue = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(agents)]
    async with db.tenant_tx(pool, tenant) as conn:
        await conn.execute(
            "INSERT INTO tenants (id, name, admin_email, seats_purchased) VALUES ($1, 'bench', 'b@x.test', $2)",
            tenant,
            agents,
        )
        await conn.execute(
            "INSERT INTO sites (id, tenant_id, name, timezone, kind) VALUES ($1, $2, 'HQ', 'UTC', 'office')",
            site,
            tenant,
        )
        await conn.execute(
            "INSERT INTO queues (id, tenant_id, name, wrap_up_seconds) VALUES ($1, $2, 'sales', 0)",
            queue,
            tenant,
        )
        await conn.executemany(
            "INSERT INTO agents (id, tenant_id, name, email, site_id) VALUES ($1, $2, $3, $4, $5)",
            [(a, tenant, f"agent {i}", f"a{i}@x.test", site) for i, a in enumerate(ids)],
        )
    await close_pool(pool)
    return tenant, ids


async def wait_ready(bus: Bus, tenant: uuid.UUID) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            reply = await bus.request(
                ev.RoutingAgentStatus(tenant_id=tenant, agent_id=uuid.uuid4()), timeout=1
            )
            if reply.ok:
                return
        except Exception:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("routing did not answer within 30 s")


async def run(
    nats_url: str, app_url: str, agents: int, samples: int, decisions: int, routing_pid: int
) -> dict[str, float]:
    tenant, agent_ids = await seed(app_url, agents)
    bus = await connect(nats_url, name="bench-routing")
    await wait_ready(bus, tenant)
    sem = asyncio.Semaphore(200)  # logins in flight: each is a seat check under the tenant-row lock

    async def login(a: uuid.UUID) -> None:
        async with sem:
            reply = await bus.request(ev.RoutingAgentLogin(tenant_id=tenant, agent_id=a), timeout=30)
            assert reply.ok, reply

    started = time.perf_counter()
    await asyncio.gather(*(login(a) for a in agent_ids))
    login_s = time.perf_counter() - started

    offered: dict[str, asyncio.Future[float]] = {}

    async def on_offer(msg: object) -> None:
        data = json.loads(msg.data)  # type: ignore[attr-defined]
        fut = offered.get(data["call_id"])
        if fut is not None and not fut.done():
            fut.set_result(time.perf_counter())

    await bus.nc.subscribe(f"sb.{tenant}.evt.contact.offered", cb=on_offer)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    for i in range(samples):
        call = uuid.uuid4()
        fut: asyncio.Future[float] = loop.create_future()
        offered[str(call)] = fut
        t0 = time.perf_counter()
        reply = await bus.request(
            ev.RoutingEnqueue(tenant_id=tenant, call_id=call, queue="sales"), timeout=10
        )
        assert reply.ok, reply
        t1 = await asyncio.wait_for(fut, 10)
        if i >= 20:  # warm-up
            latencies.append((t1 - t0) * 1000)
        await bus.request(ev.RoutingCancel(tenant_id=tenant, call_id=call), timeout=10)

    inflight = asyncio.Semaphore(200)

    async def decide(call: uuid.UUID) -> None:
        async with inflight:
            await bus.request(ev.RoutingEnqueue(tenant_id=tenant, call_id=call, queue="sales"), timeout=60)
        async with inflight:
            await bus.request(ev.RoutingCancel(tenant_id=tenant, call_id=call), timeout=60)

    routing = psutil.Process(routing_pid)
    cpu0 = routing.cpu_times()
    started = time.perf_counter()
    await asyncio.gather(*(decide(uuid.uuid4()) for _ in range(decisions // 2)))
    decisions_s = time.perf_counter() - started
    cpu1 = routing.cpu_times()
    routing_cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    await bus.close()
    latencies.sort()
    return {
        "agents": agents,
        "login_per_s": agents / login_s,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "decisions_per_s": (decisions // 2) * 2 / decisions_s,
        "decisions_per_cpu_s": (decisions // 2) * 2 / routing_cpu_s if routing_cpu_s else 0.0,
        "routing_cpu_share": routing_cpu_s / decisions_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--agents", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None)
    args = parser.parse_args()
    agents = args.agents or (100 if args.quick else 15_000)
    samples = args.samples or (200 if args.quick else 1000)
    decisions = 1000 if args.quick else 10_000
    # In memory first, before the servers start and share the cores.
    core_size = (1_000, 100, 10) if args.quick else (15_000, 1_000, 50)
    core = run_scenario(*core_size, rounds=2_000 if args.quick else 5_000)
    print(
        f"in-memory match, {core['agents']:.0f} agents x {core['waiting']:.0f} waiting x"
        f" {core['skills']:.0f} skills: p50 {core['match_p50_us']:.1f} us  p99 {core['match_p99_us']:.1f} us (CPU time)"
    )
    data_dir = Path(tempfile.mkdtemp(prefix="sbbench-routing-"))
    secrets_ = Secrets.load_or_create(data_dir)
    pg, nats_server = EmbeddedPostgres(data_dir, secrets_), EmbeddedNats(data_dir, secrets_)
    proc = None
    try:
        pg.start()
        nats_server.start()

        async def prepare() -> None:
            await db.bootstrap(
                pg.admin_url, database=DATABASE, app_role=APP_ROLE, app_password=secrets_.pg_app_password
            )
            await db.migrate(pg.owner_url, app_role=APP_ROLE)

        asyncio.run(prepare())
        env = {
            **os.environ,
            "SB_DATABASE_URL": pg.app_url,
            "SB_NATS_URL": nats_server.url,
            "SB_TOKEN_SECRET": secrets_.token_secret,
            "SB_DATA_DIR": str(data_dir),
            "SB_LOG_LEVEL": "warning",
        }
        log = open(data_dir / "routing.log", "ab")
        import subprocess

        proc = subprocess.Popen(
            [sys.executable, "-m", "services.routing"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        r = asyncio.run(run(nats_server.url, pg.app_url, agents, samples, decisions, proc.pid))
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
        nats_server.stop()
        pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    print(
        f"routing over NATS, one tenant, {r['agents']:.0f} agents logged in ({r['login_per_s']:.0f} logins/s)"
    )
    print(f"  enqueue -> offer  p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms")
    print(f"  decisions/s (journaled, answered over NATS): {r['decisions_per_s']:.0f}")
    print(
        f"  decisions per CPU-second of the routing process: {r['decisions_per_cpu_s']:.0f}"
        f" (it used {r['routing_cpu_share']:.2f} cores meanwhile)"
    )
    figures = [
        {
            "metric": "match_p99_us",
            "value": round(core["match_p99_us"], 1),
            "unit": "us",
            "goal": 50,
            "better": "lower",
        },
        {
            "metric": "enqueue_to_offer_p99_ms",
            "value": round(r["p99"], 2),
            "unit": "ms",
            "goal": 5,
            "better": "lower",
        },
        {
            "metric": "enqueue_to_offer_p50_ms",
            "value": round(r["p50"], 2),
            "unit": "ms",
            "goal": None,
            "better": "lower",
        },
        {
            "metric": "decisions_per_s_per_core",
            "value": round(r["decisions_per_cpu_s"]),
            "unit": "1/s",
            "goal": 2000,
            "better": "higher",
        },
        {
            "metric": "logged_in_agents",
            "value": round(r["agents"]),
            "unit": "agents",
            "goal": 15000,
            "better": "higher",
        },
        {
            "metric": "decisions_per_s_over_nats",
            "value": round(r["decisions_per_s"]),
            "unit": "1/s",
            "goal": None,
            "better": "higher",
        },
        {
            "metric": "logins_per_s",
            "value": round(r["login_per_s"]),
            "unit": "1/s",
            "goal": None,
            "better": "higher",
        },
    ]
    out = ROOT / ".bench" / "routing.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
