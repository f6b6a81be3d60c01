# Benchmark of reporting (docs/reporting.md): embedded PostgreSQL and NATS, the reporting service and the API
# as subprocesses, the reports read in this process.
#
#   python tests/bench/bench_reporting.py                 # full sizes
#   python tests/bench/bench_reporting.py --quick         # small sizes
#   python tests/bench/bench_reporting.py --only ingest --events 42000   # one part, another size
#
# ingest_events_per_s       a live-like stream of 20 tenants (live_stream) published on SB_EVENTS first, then
#                           drained by the reporting service process (python -m services.reporting) into
#                           facts and rollups: first delivery to last acknowledgement
# ingest_cpu_us_per_event   CPU of the service process per event (NATS client, decode, facts, writes),
# ingest_postgres_cpu_us_per_event  and of the PostgreSQL server's processes: less load-bound than the rate
# ingest_nats_cpu_us_per_event  and of the NATS server (delivering the backlog, taking the acks): the three
#                           together are what 20,000 events/s must fit in on two cores
# ingest_load_average_1m    the load meanwhile
# store_events_per_s        FactStore alone, no NATS: 10,000 agents' day handed to it directly
# store_cpu_us_per_event    CPU of this process (FactStore's Python) and of PostgreSQL per event of that day,
# store_postgres_cpu_us_per_event  steadier than the rate on a shared machine
# day_report_10k_agents_ms  the whole agent report, one day in 30-minute intervals, 10,000 agents, as CSV
#                           (GET /v1/reports/agents.csv, as `switchboard report agents --format csv` fetches
#                           it): over HTTP from the API process, to the last byte
# day_report_10k_agents_json_ms  the same day in the JSON form: every page of 2,000 agents in turn, over HTTP
# day_report_page_ms        one JSON page of 500 agents (the API's default) of the same report, over HTTP
# day_report_load_average_1m     the highest 1-minute load average seen during those
# month_report_*_ms         queue report, one month in days, over the rollups of N generated contacts
# event_to_feed_p95_ms      queue.stats published -> message read from /v1/realtime/feed
#
# Prints a table and writes .bench/reporting.json as [{"metric","value","unit","goal","better"}].
# Not a test: nothing here asserts a timing.
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from websockets.asyncio.client import connect as ws_connect

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from services.kernel import db  # noqa: E402
from services.kernel import events as ev  # noqa: E402
from services.kernel.bus import connect  # noqa: E402
from services.kernel.ids import new_id  # noqa: E402
from services.kernel.messages import Event  # noqa: E402
from services.kernel.waits import close_pool  # noqa: E402
from services.reporting import queries  # noqa: E402
from services.reporting.store import FactStore  # noqa: E402
from services.runtime.embedded import APP_ROLE, DATABASE, EmbeddedNats, EmbeddedPostgres, Secrets, free_port  # noqa: E402

DAY0 = datetime(2026, 10, 1, tzinfo=UTC)


async def make_tenant(pool, queues: int = 1) -> tuple[uuid.UUID, list[str]]:  # type: ignore[no-untyped-def]
    tenant_id = new_id()
    ids = [new_id() for _ in range(queues)]
    async with db.tenant_tx(pool, tenant_id) as conn:
        await conn.execute(
            "INSERT INTO tenants (id, name, admin_email) VALUES ($1, 'B', 'b@b.example')", tenant_id
        )
        for i, qid in enumerate(ids):
            await conn.execute(
                "INSERT INTO queues (id, tenant_id, name) VALUES ($1, $2, $3)", qid, tenant_id, f"q{i}"
            )
    return tenant_id, [str(q) for q in ids]


def uuid7_at(ts: float) -> uuid.UUID:
    """A UUIDv7 whose embedded time is `ts` (as media gives a call at its arrival; it picks the month)."""
    value = (int(ts * 1000) << 80) | (0x7 << 76) | (uuid.uuid4().int & ((1 << 76) - 1))
    return uuid.UUID(int=(value & ~(0xC << 60)) | (0x8 << 60))


def live_stream(tenants: list[tuple[uuid.UUID, list[str]]], n_events: int, start: float) -> list[Event]:
    """A platform's stream as routing, media and the coordinator publish it: tenants of Zipf-like sizes
    (the largest takes a third), each contact's 7 events (arrived with a caller, queued, assigned, the
    agent on contact, ended 90 s later, wrapped up 20 s after, the agent available) spread over its two
    minutes and interleaved in time with every other contact of every tenant, and one queue.stats per
    queue every 5 s. In a batch of 2,000 a contact therefore has one or two events: its row is read and
    written again for each step of its life, as live."""
    weights = [1 / (i + 1) for i in range(len(tenants))]
    contacts = n_events // 7
    rate = contacts / 600  # contacts per second over 10 simulated minutes (all tenants)
    out: list[Event] = []
    for (tenant_id, queues), weight in zip(tenants, weights, strict=True):
        share = int(contacts * weight / sum(weights))
        gap = 1 / (rate * weight / sum(weights))
        for i in range(share):
            at = start + i * gap
            call, agent, queue = uuid7_at(at), f"agent{i % 200}", queues[i % len(queues)]
            caller = f"sip:+1555{i % max(1, share * 9 // 10):07d}@pstn"  # a tenth call again
            common = {"tenant_id": tenant_id, "call_id": call, "queue_id": queue, "agent_id": agent}
            out += [
                ev.CallArrived(tenant_id=tenant_id, ts=at, call_id=call, from_uri=caller),
                ev.ContactQueued(tenant_id=tenant_id, ts=at + 1, call_id=call, queue=queue),
                ev.ContactAssigned(**common, ts=at + 9, offer_id="o"),
                ev.AgentStateChanged(
                    tenant_id=tenant_id, ts=at + 9, agent_id=agent, old="available", new="on_contact"
                ),
                ev.ContactEnded(**common, ts=at + 99, talk_s=90.0),
                ev.ContactWrappedUp(**common, ts=at + 119, handle_s=110.0),
                ev.AgentStateChanged(
                    tenant_id=tenant_id, ts=at + 119, agent_id=agent, old="wrap_up", new="available"
                ),
            ]
        for queue in queues:
            out += [
                ev.QueueStats(
                    tenant_id=tenant_id,
                    ts=start + k * 5.0,
                    queue_id=queue,
                    waiting=k % 7,
                    longest_wait_s=float(k % 30),
                    agents={"available": 3, "on_contact": 9},
                    ready=3,
                )
                for k in range(120)
            ]
    out.sort(key=lambda e: e.ts)
    return out


def server_cpu_s(pgdata: Path) -> float:
    """CPU seconds used so far by the PostgreSQL server's processes (the postmaster and its children)."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(entry.name) == postmaster or int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench_ingest(
    pool,
    nats_url: str,
    n_events: int,
    pgdata: Path,
    env: dict[str, str],
    log_path: Path,
    tenants_n: int,
    profile: Path | None = None,
    nats_pid: int | None = None,
) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The reporting service process itself (`python -m services.reporting`, its ingest, alert watch and
    webhook worker) draining a backlog of a live-like stream (`live_stream`). The stream is published
    first: on two cores a publisher running beside the ingest costs more CPU per event than the ingest
    itself, and would be measured instead. Returns events/s (first fetch to last acknowledgement), the
    service process's CPU per event, PostgreSQL's CPU per event, and the load average meanwhile."""
    tenants = [await make_tenant(pool, queues=2) for _ in range(tenants_n)]
    events = live_stream(tenants, n_events, DAY0.timestamp())
    bus = await connect(nats_url, name="bench-publisher")
    await bus.ensure_streams()
    started = time.perf_counter()
    for i in range(0, len(events), 1000):
        await asyncio.gather(*(bus.publish(e) for e in events[i : i + 1000]))
    print(f"  published {len(events)} events of {tenants_n} tenants in {time.perf_counter() - started:.1f} s")
    durable = f"bench_{uuid.uuid4().hex[:6]}"
    proc = start_module(
        "services.reporting",
        env | {"SB_REPORTING_DURABLE": durable, "SB_LOG_LEVEL": "info"},
        log_path,
        command=profiled("services.reporting", profile) if profile is not None else None,
    )
    try:
        # From the first delivery (the process has imported and connected) to the last acknowledgement.
        while True:
            try:
                info = await bus.js.consumer_info("SB_EVENTS", durable)
                if info.delivered.stream_seq > 0:
                    break
            except Exception:  # not made yet
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"the reporting service exited: see {log_path}")
            await asyncio.sleep(0.01)
        started, cpu, server = time.perf_counter(), process_cpu_s(proc.pid), server_cpu_s(pgdata)
        nats_cpu = process_cpu_s(nats_pid) if nats_pid is not None else 0.0
        load = os.getloadavg()[0]
        last = (await bus.js.stream_info("SB_EVENTS")).state.last_seq
        deadline = started + 600
        while (await bus.js.consumer_info("SB_EVENTS", durable)).ack_floor.stream_seq < last:
            if time.perf_counter() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the ingest did not finish: see {log_path}")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        cpu_us = (process_cpu_s(proc.pid) - cpu) / len(events) * 1e6
        server_us = (server_cpu_s(pgdata) - server) / len(events) * 1e6
        nats_us = (process_cpu_s(nats_pid) - nats_cpu) / len(events) * 1e6 if nats_pid is not None else 0.0
        load = max(load, os.getloadavg()[0])
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    await bus.close()
    rate = len(events) / elapsed
    print(
        f"  ingested {len(events)} events in {elapsed:.2f} s: {rate:,.0f} events/s; CPU per event: "
        f"{cpu_us:.1f} us in the reporting service, {server_us:.1f} us in PostgreSQL, {nats_us:.1f} us in NATS "
        f"(load {load:.1f})"
    )
    return {"rate": rate, "cpu": cpu_us, "pg_cpu": server_us, "nats_cpu": nats_us, "load": load}


async def bench_live(
    pool,
    nats_url: str,
    n_events: int,
    pgdata: Path,
    env: dict[str, str],
    log_path: Path,
    tenants_n: int,
    profile: Path | None = None,
    nats_pid: int | None = None,
) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The same stream published while the service runs (`--only live`, not in the default set): its
    webhook worker (durable `webhooks`, new events only) then takes every contact event too, one at a
    time, which the backlog above never shows. The publisher shares the machine, so the rate is the
    publisher's; the figures are the service's and PostgreSQL's CPU per event, from the first publication
    until both consumers have acknowledged everything."""
    tenants = [await make_tenant(pool, queues=2) for _ in range(tenants_n)]
    events = live_stream(tenants, n_events, DAY0.timestamp())
    bus = await connect(nats_url, name="bench-publisher")
    await bus.ensure_streams()
    durables = {
        "SB_REPORTING_DURABLE": f"bench_{uuid.uuid4().hex[:6]}",
        "SB_WEBHOOKS_DURABLE": f"benchwh_{uuid.uuid4().hex[:6]}",
    }
    proc = start_module(
        "services.reporting",
        env | durables | {"SB_LOG_LEVEL": "info"},
        log_path,
        command=profiled("services.reporting", profile) if profile is not None else None,
    )
    try:
        for durable in durables.values():  # both consumers exist before the first event
            while True:
                try:
                    await bus.js.consumer_info("SB_EVENTS", durable)
                    break
                except Exception:  # not made yet
                    if proc.poll() is not None:
                        raise RuntimeError(f"the reporting service exited: see {log_path}") from None
                    await asyncio.sleep(0.05)
        started, cpu, server = time.perf_counter(), process_cpu_s(proc.pid), server_cpu_s(pgdata)
        nats_cpu = process_cpu_s(nats_pid) if nats_pid is not None else 0.0
        load = os.getloadavg()[0]
        for i in range(0, len(events), 1000):
            await asyncio.gather(*(bus.publish(e) for e in events[i : i + 1000]))
        published = time.perf_counter() - started
        deadline = started + 600
        for durable in durables.values():
            while True:
                info = await bus.js.consumer_info("SB_EVENTS", durable)
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    break
                if time.perf_counter() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{durable} did not finish: see {log_path}")
                await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu_us = (process_cpu_s(proc.pid) - cpu) / len(events) * 1e6
        server_us = (server_cpu_s(pgdata) - server) / len(events) * 1e6
        # The NATS server's share includes taking the publications (the publisher is this process).
        nats_us = (process_cpu_s(nats_pid) - nats_cpu) / len(events) * 1e6 if nats_pid is not None else 0.0
        load = max(load, os.getloadavg()[0])
        # Events the webhook worker took more than once (a handler that failed, e.g. on the pool's wait).
        webhooks = await bus.js.consumer_info("SB_EVENTS", durables["SB_WEBHOOKS_DURABLE"])
        redelivered = webhooks.num_redelivered
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    await bus.close()
    print(
        f"  live: {len(events)} events published in {published:.1f} s, all handled in {elapsed:.1f} s; CPU per "
        f"event: {cpu_us:.1f} us in the reporting service, {server_us:.1f} us in PostgreSQL, {nats_us:.1f} us in NATS "
        f"(load {load:.1f}); "
        f"{redelivered} redelivered to the webhook worker"
    )
    return {"cpu": cpu_us, "pg_cpu": server_us, "nats_cpu": nats_us, "load": load}


def profiled(module: str, out: Path) -> list[str]:
    """The command running `module` under cProfile in CPU time (`time.process_time`: the wall clock would
    count the time the process sat preempted on this shared machine), its stats written to `out` when it
    exits (`python -m pstats`)."""
    code = (
        "import cProfile, runpy, time\n"
        "profile = cProfile.Profile(time.process_time)\n"
        "profile.enable()\n"
        "try:\n"
        f"    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
        "finally:\n"
        "    profile.disable()\n"
        f"    profile.dump_stats({str(out)!r})\n"
    )
    return [sys.executable, "-c", code]


def agent_day(tenant_id: uuid.UUID, queue: str, agent: str, day0: float) -> list[Event]:
    """One agent's day: on shift from 08:00 (plus a few seconds' jitter), 32 state changes every 15 minutes
    and 16 contacts answered (queued, assigned, ended, wrapped up), logged out at the end."""
    jitter = hash(agent) % 300
    out: list[Event] = []
    for k in range(32):
        at = day0 + 8 * 3600 + k * 900 + jitter
        new = "on_contact" if k % 2 == 0 else "available"
        out.append(ev.AgentStateChanged(tenant_id=tenant_id, ts=at, agent_id=agent, old="", new=new))
        if k % 2 == 0:
            call = uuid.uuid4()
            common = {"tenant_id": tenant_id, "call_id": call, "queue_id": queue, "agent_id": agent}
            out += [
                ev.ContactQueued(tenant_id=tenant_id, ts=at - 5, call_id=call, queue=queue),
                ev.ContactAssigned(**common, ts=at, offer_id="o"),
                ev.ContactEnded(**common, ts=at + 395, talk_s=395.0),
                ev.ContactWrappedUp(**common, ts=at + 445, handle_s=445.0),
            ]
    out.append(
        ev.AgentStateChanged(
            tenant_id=tenant_id, ts=day0 + 16 * 3600 + jitter, agent_id=agent, old="", new="logged_out"
        )
    )
    return out


async def api_tenant(
    env: dict[str, str], data_dir: Path
) -> tuple[subprocess.Popen[bytes], str, str, uuid.UUID]:
    """The API process (python -m services.api) and a signed-up tenant: (process, base URL, key, tenant)."""
    port = free_port()
    proc = start_module("services.api", env | {"SB_HTTP_PORT": str(port)}, data_dir / "api.log")
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(300):
                try:
                    await http.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            email = f"b{uuid.uuid4().hex[:8]}@bench.example"
            signup = (await http.post("/v1/signup", json={"company": "Bench", "email": email})).json()
    except BaseException:
        proc.terminate()
        proc.wait(timeout=15)
        raise
    return proc, base, signup["api_key"]["key"], uuid.UUID(signup["tenant"]["id"])


async def bench_day_agents(
    pool, agents: int, env: dict[str, str], data_dir: Path, pgdata: Path
) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """`agents` agents' day written through FactStore (facts, rollups and the agents' CSV lines, batches of
    2,000 events), then the agent report over the day in 30-minute intervals as a client gets it: over HTTP
    from the API process, to the last byte. Two forms: the CSV (one streamed request, the figure the goal
    is about) and the JSON pages (every page of 2,000 agents in turn, as `agent_pages` walks them)."""
    proc, base, key, tenant_id = await api_tenant(env, data_dir)
    try:
        return await _day_report(pool, agents, pgdata, base, key, tenant_id)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


async def _day_report(  # type: ignore[no-untyped-def]
    pool, agents: int, pgdata: Path, base: str, key: str, tenant_id: uuid.UUID
) -> dict[str, float]:
    start = DAY0
    queue = str(new_id())
    async with db.tenant_tx(pool, tenant_id) as conn:
        await conn.execute(
            "INSERT INTO queues (id, tenant_id, name) VALUES ($1, $2, 'q0')", uuid.UUID(queue), tenant_id
        )
        await conn.execute(
            """INSERT INTO agents (id, tenant_id, name, email)
               SELECT gen_random_uuid(), $1, 'a' || g, 'a' || g || '@b.example'
               FROM generate_series(1, $2) g""",
            tenant_id,
            agents,
        )
        ids = [r["id"] for r in await conn.fetch("SELECT id::text AS id FROM agents")]
    store = FactStore(pool)
    days = [agent_day(tenant_id, queue, agent, start.timestamp()) for agent in ids]
    written, t = 0, time.perf_counter()
    cpu, server = process_cpu_s(os.getpid()), server_cpu_s(pgdata)
    pending: list[Event] = []
    for day in days:
        pending += day
        if len(pending) >= 2000:
            await store.write(tenant_id, pending)
            written, pending = written + len(pending), []
    if pending:
        await store.write(tenant_id, pending)
        written += len(pending)
    rate = written / (time.perf_counter() - t)
    cpu_us = (process_cpu_s(os.getpid()) - cpu) / written * 1e6
    server_us = (server_cpu_s(pgdata) - server) / written * 1e6
    print(
        f"  wrote {written:,} events of {agents:,} agents' day through FactStore: {rate:,.0f} events/s; CPU per "
        f"event {cpu_us:.1f} us in this process, {server_us:.1f} us in PostgreSQL (load {os.getloadavg()[0]:.1f})"
    )
    async with pool.acquire() as conn:
        await conn.execute("ANALYZE rpt_agent_rollup; ANALYZE rpt_agent_now; ANALYZE rpt_agent_day")
    span = {"from": start.isoformat(), "to": (start + timedelta(days=1)).isoformat(), "interval": "30m"}
    loads: list[float] = []
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as http:

        async def fetch(path: str, params: dict[str, str | int], keep: bool = False) -> tuple[int, bytes]:
            """A GET read to its last byte: its size, and its body if `keep`."""
            async with http.stream("GET", path, params=params) as response:
                response.raise_for_status()
                size, kept = 0, []
                async for chunk in response.aiter_raw():
                    size += len(chunk)
                    if keep:
                        kept.append(chunk)
            return size, b"".join(kept)

        async def whole_json() -> int:
            cursor, size = None, 0
            while True:
                params: dict[str, str | int] = span | {"limit": queries.AGENT_PAGE_MAX}
                if cursor is not None:
                    params["cursor"] = cursor
                async with http.stream("GET", "/v1/reports/agents", params=params) as response:
                    response.raise_for_status()
                    body = await response.aread()
                size += len(body)
                cursor = json.loads(body)["page"]["next_cursor"]
                if cursor is None:
                    return size

        csv_ms, json_ms, page_ms = [], [], []
        for run in range(5):
            loads.append(os.getloadavg()[0])
            t = time.perf_counter()
            csv_size, _ = await fetch("/v1/reports/agents.csv", span)
            csv_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            _, page = await fetch("/v1/reports/agents", span | {"limit": queries.AGENT_PAGE_DEFAULT}, True)
            page_ms.append((time.perf_counter() - t) * 1000)
            if run < 3:  # the JSON form takes seconds: three runs
                t = time.perf_counter()
                json_size = await whole_json()
                json_ms.append((time.perf_counter() - t) * 1000)
        loads.append(os.getloadavg()[0])
        csv_lines = (await http.get("/v1/reports/agents.csv", params=span)).text.count("\n") - 1
    n_rows = len(json.loads(page)["rows"])
    print(
        f"  day report over HTTP (API process, to the last byte), {agents:,} agents, load {min(loads):.1f}-{max(loads):.1f}:\n"
        f"    CSV, one streamed request (GET /v1/reports/agents.csv: {csv_lines:,} rows, {csv_size / 1e6:.1f} MB): "
        f"median {statistics.median(csv_ms):.0f} ms of {', '.join(f'{x:.0f}' for x in csv_ms)}\n"
        f"    JSON, every page of {queries.AGENT_PAGE_MAX} agents in turn ({json_size / 1e6:.1f} MB): "
        f"median {statistics.median(json_ms):.0f} ms of {', '.join(f'{x:.0f}' for x in json_ms)}\n"
        f"    JSON, one page of {queries.AGENT_PAGE_DEFAULT} agents ({n_rows:,} rows): median {statistics.median(page_ms):.1f} ms"
    )
    return {
        "day": statistics.median(csv_ms),
        "day_json": statistics.median(json_ms),
        "page": statistics.median(page_ms),
        "day_load": max(loads),
        "store": rate,
        "store_cpu": cpu_us,
        "store_pg_cpu": server_us,
    }


async def bench_month_contacts(pool, contacts: int) -> float:  # type: ignore[no-untyped-def]
    """The queue rollups of `contacts` generated contacts over 30 days and 20 queues (built in SQL from the
    generated series, as the ingest would have left them; the contact rows themselves are not stored: the
    report reads only the rollups), then the month's queue report by day."""
    tenant_id, queues = await make_tenant(pool, queues=20)
    start = DAY0
    t = time.perf_counter()
    async with db.tenant_tx(pool, tenant_id) as conn:
        chunk = 2_000_000  # one statement each: asyncpg's command timeout is 30 s
        for offset in range(0, contacts, chunk):
            await conn.execute(
                """INSERT INTO rpt_queue_rollup AS r (tenant_id, queue_id, bucket, offered, answered,
                                                     answered_within, abandoned_short, abandoned_long,
                                                     wait_sum, handle_sum, handled)
                   SELECT $1, ($3::text[])[1 + g % 20] AS queue_id,
                          to_timestamp(floor(extract(epoch FROM q) / 900) * 900) AS bucket,
                          count(*), count(*) FILTER (WHERE g % 10 <> 0),
                          count(*) FILTER (WHERE g % 10 <> 0 AND g % 40 <= 20),
                          count(*) FILTER (WHERE g % 10 = 0 AND g % 60 < 5),
                          count(*) FILTER (WHERE g % 10 = 0 AND g % 60 >= 5),
                          coalesce(sum(g % 40) FILTER (WHERE g % 10 <> 0), 0),
                          coalesce(sum(300) FILTER (WHERE g % 10 <> 0), 0), count(*) FILTER (WHERE g % 10 <> 0)
                   FROM generate_series($4::bigint, $5::bigint) g,
                        LATERAL (SELECT $2::timestamptz + make_interval(secs => (g * 2591999 / $6) % 2592000) AS q) x
                   GROUP BY 2, 3
                   ON CONFLICT (tenant_id, bucket, queue_id) DO UPDATE SET
                       offered = r.offered + EXCLUDED.offered, answered = r.answered + EXCLUDED.answered,
                       answered_within = r.answered_within + EXCLUDED.answered_within,
                       abandoned_short = r.abandoned_short + EXCLUDED.abandoned_short,
                       abandoned_long = r.abandoned_long + EXCLUDED.abandoned_long,
                       wait_sum = r.wait_sum + EXCLUDED.wait_sum, handle_sum = r.handle_sum + EXCLUDED.handle_sum,
                       handled = r.handled + EXCLUDED.handled""",
                tenant_id,
                start,
                queues,
                offset,
                min(offset + chunk, contacts) - 1,
                contacts,
            )
    async with pool.acquire() as conn:
        await conn.execute("ANALYZE rpt_queue_rollup")
    print(f"  generated the rollups of {contacts:,} contacts in {time.perf_counter() - t:.0f} s")
    times = []
    for _ in range(3):
        async with db.tenant_tx(pool, tenant_id, readonly=True) as conn:
            t = time.perf_counter()
            report = await queries.queue_report(conn, start, start + timedelta(days=30), "day", zone="UTC")
            times.append((time.perf_counter() - t) * 1000)
    total = sum(r["offered"] for r in report["rows"])
    print(
        f"  month report over {total:,} contacts: {len(report['rows'])} rows, median {statistics.median(times):.0f} ms"
    )
    return statistics.median(times)


def service_env(pg_url: str, nats_url: str, secrets_: Secrets, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SB_DATABASE_URL": pg_url,
        "SB_NATS_URL": nats_url,
        "SB_TOKEN_SECRET": secrets_.token_secret,
        "SB_BIND_HOST": "127.0.0.1",
        "SB_DATA_DIR": str(data_dir),
        "SB_LOG_LEVEL": "warning",
    }


def start_module(
    module: str, env: dict[str, str], log_path: Path, command: list[str] | None = None
) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command or [sys.executable, "-m", module], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )


async def bench_feed(env: dict[str, str], data_dir: Path, samples: int) -> float:
    proc, base, key, tenant_id = await api_tenant(env, data_dir)
    try:
        bus = await connect(env["SB_NATS_URL"], name="bench-feed")
        latencies = []
        async with ws_connect(
            base.replace("http", "ws") + "/v1/realtime/feed",
            additional_headers={"Authorization": f"Bearer {key}"},
        ) as ws:
            await ws.recv()  # the snapshot
            for i in range(samples):
                sent = time.time()
                await bus.publish(
                    ev.QueueStats(tenant_id=tenant_id, queue_id="q", waiting=i, longest_wait_s=0.0, ts=sent)
                )
                message = json.loads(await ws.recv())
                latencies.append((time.time() - message["ts"]) * 1000)
                await asyncio.sleep(0.01)
        await bus.close()
        latencies.sort()
        p95 = latencies[int(len(latencies) * 0.95) - 1]
        print(f"  event to feed over {samples}: p50 {statistics.median(latencies):.1f} ms, p95 {p95:.1f} ms")
        return p95
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--agents", type=int, default=None)
    parser.add_argument("--contacts", type=int, default=None)
    parser.add_argument("--tenants", type=int, default=20, help="tenants in the ingest's stream")
    parser.add_argument(
        "--profile",
        type=Path,
        help="cProfile (CPU time) the service process of the ingest (or of --only live) into this file",
    )
    parser.add_argument(
        "--only",
        choices=["ingest", "live", "feed", "day", "month"],
        action="append",
        help="run only these parts (live: not in the default set)",
    )
    args = parser.parse_args()
    n_events = args.events or (12_000 if args.quick else 120_000)
    agents = args.agents or (500 if args.quick else 10_000)
    contacts = args.contacts or (100_000 if args.quick else 10_000_000)
    parts = set(args.only or ["ingest", "feed", "day", "month"])

    data_dir = Path(tempfile.mkdtemp(prefix="sbbench-reporting-"))
    secrets_ = Secrets.load_or_create(data_dir)
    pg, nats_server = EmbeddedPostgres(data_dir, secrets_), EmbeddedNats(data_dir, secrets_)
    try:
        pg.start()
        nats_server.start()

        async def run() -> dict[str, float]:
            await db.bootstrap(
                pg.admin_url, database=DATABASE, app_role=APP_ROLE, app_password=secrets_.pg_app_password
            )
            await db.migrate(pg.owner_url, app_role=APP_ROLE)
            pool = await db.create_pool(pg.app_url, max_size=4)
            out: dict[str, float] = {}
            env = service_env(pg.app_url, nats_server.url, secrets_, data_dir)
            if "ingest" in parts:
                print("ingest")
                ingest = await bench_ingest(
                    pool,
                    nats_server.url,
                    n_events,
                    pg.pgdata,
                    env,
                    data_dir / "reporting.log",
                    args.tenants,
                    args.profile,
                    nats_server.proc.pid if nats_server.proc is not None else None,
                )
                out |= {f"ingest_{k}": v for k, v in ingest.items()}
            if "live" in parts:
                print("live")
                live = await bench_live(
                    pool,
                    nats_server.url,
                    n_events,
                    pg.pgdata,
                    env,
                    data_dir / "live.log",
                    args.tenants,
                    args.profile,
                    nats_server.proc.pid if nats_server.proc is not None else None,
                )
                out |= {f"live_{k}": v for k, v in live.items()}
            if "feed" in parts:
                print("feed")
                out["feed"] = await bench_feed(env, data_dir, 200)
            if "day" in parts:
                print("day report")
                out |= await bench_day_agents(pool, agents, env, data_dir, pg.pgdata)
            if "month" in parts:
                print("month report")
                out["month"] = await bench_month_contacts(pool, contacts)
            await close_pool(pool)
            return out

        r = asyncio.run(run())
    finally:
        nats_server.stop()
        pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    figures = [
        {"metric": metric, "value": round(r[key], 1), "unit": unit, "goal": goal, "better": better}
        for key, metric, unit, goal, better in _figures(agents, contacts)
        if key in r
    ]
    for f in figures:
        print(f"{f['metric']:36} {f['value']:>12} {f['unit']:5} goal {f['goal']}")
    out = ROOT / ".bench" / "reporting.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


def _figures(agents: int, contacts: int) -> list[tuple[str, str, str, float | None, str | None]]:
    """(result key, metric, unit, goal, better) of every figure, in the printed order."""
    k = "10k" if agents == 10_000 else str(agents)
    month = "10m" if contacts == 10_000_000 else str(contacts)
    return [
        ("ingest_rate", "ingest_events_per_s", "1/s", 20_000, "higher"),
        # One core's worth at 20,000 events/s: the ingest (one process) keeps up only below this.
        ("ingest_cpu", "ingest_cpu_us_per_event", "us", 50, "lower"),
        ("ingest_pg_cpu", "ingest_postgres_cpu_us_per_event", "us", 50, "lower"),
        ("ingest_nats_cpu", "ingest_nats_cpu_us_per_event", "us", None, "lower"),
        ("ingest_load", "ingest_load_average_1m", "", None, None),
        # `--only live`: the stream published while the service runs (its webhook worker takes it too).
        ("live_cpu", "live_cpu_us_per_event", "us", None, "lower"),
        ("live_pg_cpu", "live_postgres_cpu_us_per_event", "us", None, "lower"),
        ("live_nats_cpu", "live_nats_cpu_us_per_event", "us", None, "lower"),
        ("live_load", "live_load_average_1m", "", None, None),
        ("store", "store_events_per_s", "1/s", 20_000, "higher"),
        ("store_cpu", "store_cpu_us_per_event", "us", None, "lower"),
        ("store_pg_cpu", "store_postgres_cpu_us_per_event", "us", None, "lower"),
        # The whole day as CSV (GET /v1/reports/agents.csv), over HTTP to the last byte.
        ("day", f"day_report_{k}_agents_ms", "ms", 200, "lower"),
        # The same day in the JSON form: every page of 2,000 agents, over HTTP.
        ("day_json", f"day_report_{k}_agents_json_ms", "ms", None, "lower"),
        ("page", "day_report_page_ms", "ms", 200, "lower"),
        ("day_load", "day_report_load_average_1m", "", None, None),
        ("month", f"month_report_{month}_contacts_ms", "ms", 1000, "lower"),
        ("feed", "event_to_feed_p95_ms", "ms", 1000, "lower"),
    ]


if __name__ == "__main__":
    main()
