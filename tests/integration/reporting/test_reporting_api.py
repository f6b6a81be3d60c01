"""Reporting through the real API process and the SDK: interval reports naming their formula and thresholds,
the real-time view, the websocket feed (event to client well under a second), bad input as 422, and two
tenants that never see each other's figures or feed."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import switchboard
from reporting_harness import T0, contact_events, scenario
from switchboard import staffing
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from services.contacts.records import ContactRecord, save_contact
from services.kernel import db
from services.kernel import events as ev
from services.kernel.bus import Bus
from services.reporting.store import FactStore

ARTIFACTS = Path(__file__).resolve().parents[3] / ".artifacts"
ARTIFACTS.mkdir(exist_ok=True)


def new_tenant(api_server: str) -> tuple[switchboard.Client, uuid.UUID, str]:
    anonymous = switchboard.Client(base_url=api_server)
    result = anonymous.signup(f"Rep {uuid.uuid4().hex[:6]}", f"ops-{uuid.uuid4().hex[:6]}@example.com")
    anonymous.close()
    client = switchboard.Client(api_key=result.api_key.key, base_url=api_server)
    queue = client.queues.create(f"support-{uuid.uuid4().hex[:4]}", sl_seconds=20, short_abandon_seconds=5)
    return client, uuid.UUID(result.tenant.id), queue.id


async def test_reports_and_realtime_over_the_api_and_sdk(api_server: str, pool: asyncpg.Pool) -> None:
    a, tenant_a, queue_a = new_tenant(api_server)
    b, _, _ = new_tenant(api_server)
    await FactStore(pool).write(tenant_a, scenario(tenant_a, queue_a, str(uuid.uuid4())))
    start, end = datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + 1800, UTC)

    report = a.reports.queues(start=start, end=end, interval="30m")
    assert "abandoned after the short-abandon threshold" in report["formula"]["service_level"]
    (row,) = report["rows"]
    assert row["queue_id"] == queue_a and row["service_level"] == pytest.approx(0.5)
    assert (row["sl_seconds"], row["short_abandon_seconds"]) == (20, 5)
    agents = a.reports.agents(start=start, end=end, interval="30m")
    assert agents["rows"][0]["handled"] == 4
    assert a.reports.ivr(start=start, end=end, interval="day")["rows"][0]["containment"] == pytest.approx(0.5)
    # The same interval asked by tenant B: nothing.
    assert b.reports.queues(start=start, end=end)["rows"] == []
    assert b.reports.agents(start=start, end=end)["rows"] == []

    live = a.realtime.queues()
    (q,) = live["queues"]
    assert q["queue_id"] == queue_a and q["offered"] == 0  # the scenario is not today
    assert q["waiting"] == 2 and q["agents"] == {"available": 1}  # routing's latest snapshot
    assert [x["queue_id"] for x in b.realtime.queues()["queues"]] != [queue_a]
    assert a.realtime.agents()["agents"] == []  # no agent objects in this tenant

    with pytest.raises(switchboard.ApiError) as bad:
        a.reports.queues(start=start, end=end, interval="7m")
    assert bad.value.status == 422 and "interval" in bad.value.message
    with pytest.raises(switchboard.ApiError) as backwards:
        a.reports.queues(start=end, end=start)
    assert backwards.value.status == 422
    a.close()
    b.close()


async def test_feed_delivers_the_tenants_events_only_and_fast(api_server: str, bus: Bus) -> None:
    a, tenant_a, queue_a = new_tenant(api_server)
    b, tenant_b, queue_b = new_tenant(api_server)
    url = api_server.replace("http://", "ws://") + "/v1/realtime/feed"

    async with ws_connect(url) as ws:  # no key, no feed: a browser's socket is told why and closed
        await ws.send(json.dumps({"type": "auth", "token": "nonsense"}))
        assert json.loads(await ws.recv(decode=True))["type"] == "error"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

    async with ws_connect(url, additional_headers={"Authorization": f"Bearer {a.api_key}"}) as ws:
        snapshot = json.loads(await ws.recv(decode=True))
        assert snapshot["type"] == "snapshot"
        assert [q["queue_id"] for q in snapshot["queues"]["queues"]] == [queue_a]
        latencies = []
        for i in range(5):
            # Tenant B's event first: if the feed leaked it, it would arrive before A's.
            await bus.publish(
                ev.QueueStats(tenant_id=tenant_b, queue_id=queue_b, waiting=99, longest_wait_s=1.0)
            )
            sent = time.time()
            await bus.publish(
                ev.QueueStats(tenant_id=tenant_a, queue_id=queue_a, waiting=i, longest_wait_s=2.0, ts=sent)
            )
            message = json.loads(await ws.recv(decode=True))
            latencies.append(time.time() - sent)
            assert message["type"] == "queue" and message["queue_id"] == queue_a and message["waiting"] == i
        await bus.publish(
            ev.AgentStateChanged(tenant_id=tenant_a, agent_id="ag", old="away", new="available", reason=None)
        )
        agent = json.loads(await ws.recv(decode=True))
        assert agent == agent | {"type": "agent", "agent_id": "ag", "state": "available", "previous": "away"}
        call = uuid.uuid4()
        await bus.publish(ev.ContactQueued(tenant_id=tenant_a, call_id=call, queue=queue_a))
        contact = json.loads(await ws.recv(decode=True))
        assert contact == contact | {
            "type": "contact",
            "event": "queued",
            "contact_id": str(call),
            "queue_id": queue_a,
        }
    print(f"event to feed: max {max(latencies) * 1000:.1f} ms over {len(latencies)}")
    assert max(latencies) < 1.0
    a.close()
    b.close()


def run_cli(api_server: str, key: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SB_API_URL": api_server, "SB_API_KEY": key, "COLUMNS": "200"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "switchboard"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def test_cli_report_and_monitor(api_server: str, pool: asyncpg.Pool) -> None:
    a, tenant_a, queue_a = new_tenant(api_server)
    await FactStore(pool).write(tenant_a, scenario(tenant_a, queue_a, str(uuid.uuid4())))
    period = ["--from", "2026-09-21T09:00Z", "--to", "2026-09-21T09:30Z", "--interval", "30m"]
    key = a.api_key or ""

    as_csv = run_cli(api_server, key, "report", "queues", *period, "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    header, line = as_csv.stdout.strip().splitlines()
    row = dict(zip(header.split(","), line.split(","), strict=True))
    assert (
        row["queue_name"].startswith("support-") and row["service_level"] == "0.5" and row["offered"] == "7"
    )

    as_table = run_cli(api_server, key, "report", "queues", *period)
    assert as_table.returncode == 0 and "50.0%" in as_table.stdout and "short-abandon" in as_table.stdout

    chart = Path(tempfile.mkdtemp(prefix="sbplot-")) / "sl.png"
    plotted = run_cli(
        api_server,
        key,
        "report",
        "queues",
        "--from",
        "2026-09-21T08:00Z",
        "--to",
        "2026-09-21T11:00Z",
        "--plot",
        str(chart),
    )
    assert plotted.returncode == 0, plotted.stderr
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 5000
    shutil.copy(chart, ARTIFACTS / "report-queues-sl.png")

    as_json = run_cli(api_server, key, "report", "agents", *period, "--json")
    assert json.loads(as_json.stdout)["rows"][0]["handled"] == 4

    bad = run_cli(
        api_server, key, "report", "queues", "--from", "2026-09-21T10:00Z", "--to", "2026-09-21T09:00Z"
    )
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "after" in bad.stderr

    once = run_cli(api_server, key, "monitor", "--once", "--json")
    assert once.returncode == 0, once.stderr
    snap = json.loads(once.stdout)
    assert [q["queue_id"] for q in snap["queues"]["queues"]] == [queue_a]

    live = run_cli(api_server, key, "monitor", "--seconds", "2")
    assert live.returncode == 0, live.stderr
    assert "Queues (today)" in live.stdout and queue_a not in live.stdout  # names, not ids
    a.close()


async def test_contacts_export_streams_csv_for_the_tenant_only(
    api_server: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    a, tenant_a, _ = new_tenant(api_server)
    b, tenant_b, _ = new_tenant(api_server)
    inside = datetime(2026, 9, 21, 10, 0, tzinfo=UTC).timestamp()
    for tenant_id, at, caller in [
        (tenant_a, inside, "+15550000001"),
        (tenant_a, inside + 60, "+15550000002"),
        (tenant_a, inside + 86400 * 3, "+15550000003"),  # outside the period
        (tenant_b, inside + 30, "+15550000004"),  # another tenant
    ]:
        async with db.tenant_tx(pool, tenant_id) as conn:
            await save_contact(
                conn,
                ContactRecord(
                    id=uuid.uuid4(),
                    tenant_id=tenant_id,
                    state="ended",
                    arrived_at=at,
                    caller=caller,
                    talk_s=42.0,
                ),
            )
    period = ["--from", "2026-09-21T00:00Z", "--to", "2026-09-22T00:00Z"]
    out = tmp_path / "contacts.csv"
    done = run_cli(api_server, a.api_key or "", "contacts", "export", *period, "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert "2 contact records written" in done.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["caller"] for r in rows] == ["+15550000001", "+15550000002"]
    assert rows[0]["talk_s"] == "42.0" and rows[0]["arrived_at"].startswith("2026-09-21T10:00")
    to_stdout = run_cli(api_server, b.api_key or "", "contacts", "export", *period)
    assert [r["caller"] for r in csv.DictReader(io.StringIO(to_stdout.stdout))] == ["+15550000004"]
    bad = run_cli(
        api_server,
        a.api_key or "",
        "contacts",
        "export",
        "--from",
        "2026-09-22T00:00Z",
        "--to",
        "2026-09-21T00:00Z",
    )
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and bad.stdout == ""
    a.close()
    b.close()


async def test_cli_staffing_needs_beside_logged_in(api_server: str, pool: asyncpg.Pool) -> None:
    a, tenant_a, queue_a = new_tenant(api_server)
    await FactStore(pool).write(tenant_a, scenario(tenant_a, queue_a, str(uuid.uuid4())))
    name = a.queues.get(queue_a).name
    done = run_cli(api_server, a.api_key or "", "staffing", "--queue", name, "--date", "2026-09-21", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    (interval,) = plan["intervals"]
    assert interval["interval_start"].startswith("2026-09-21T09:00") and interval["offered"] == 7
    expected = staffing.agents_for_target(7 * 100.0 / 1800, 100.0, 0.80, 20).agents
    assert interval["needed"] == expected and interval["logged_in_avg"] == 1.0
    table = run_cli(
        api_server, a.api_key or "", "staffing", "--queue", name, "--date", "2026-09-21", "--shrinkage", "50"
    )
    assert table.returncode == 0 and "09:00" in table.stdout and "NEEDED" in table.stdout
    missing = run_cli(api_server, a.api_key or "", "staffing", "--queue", "nope", "--date", "2026-09-21")
    assert missing.returncode == 1 and "no queue named" in missing.stderr
    a.close()


async def test_agent_report_comes_in_pages_over_the_api_sdk_and_cli(
    api_server: str, pool: asyncpg.Pool
) -> None:
    a, tenant_a, queue_a = new_tenant(api_server)
    agents = [f"agent-{i}" for i in range(5)]
    events = [
        e
        for i, agent in enumerate(agents)
        for e in contact_events(
            tenant_a, queue_a, T0 + 60 * i, answer_after=3.0, abandon_after=None, agent_id=agent
        )
    ]
    await FactStore(pool).write(tenant_a, events)
    period = {"start": "2026-09-21T09:00:00Z", "end": "2026-09-21T10:00:00Z", "interval": "30m"}

    first = a.reports.agents(**period, limit=2)
    assert first["page"] == {"limit": 2, "agents": 2, "next_cursor": "agent-1"}
    assert [r["agent_id"] for r in first["rows"]] == ["agent-0", "agent-1"]
    assert "occupancy" in first["formula"] and first["rows"][0]["handled"] == 1
    pages = list(a.reports.agent_pages(**period, limit=2))
    assert [p["page"]["agents"] for p in pages] == [2, 2, 1] and pages[-1]["page"]["next_cursor"] is None
    assert [r["agent_id"] for p in pages for r in p["rows"]] == agents
    assert a.reports.agents(**period)["page"]["limit"] == 500  # the default page
    async with switchboard.AsyncClient(api_key=a.api_key, base_url=api_server) as client:
        walked = [
            r["agent_id"] async for p in client.reports.agent_pages(**period, limit=3) for r in p["rows"]
        ]
    assert walked == agents
    for bad in (0, 2001):
        with pytest.raises(switchboard.ApiError) as refused:
            a.reports.agents(**period, limit=bad)
        assert refused.value.status == 422 and "limit" in refused.value.message

    # The whole report as CSV in one request (the sync and async SDK alike), the figures of the pages.
    text = b"".join(a.reports.agents_csv(**period)).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.startswith("interval_start,agent_id,handled,aht_s,occupancy,transfers,available_s,")
    assert [r["agent_id"] for r in rows] == agents
    by_page = [r for p in pages for r in p["rows"]]
    assert [(int(r["handled"]), float(r["aht_s"])) for r in rows] == [
        (r["handled"], r["aht_s"]) for r in by_page
    ]
    async with switchboard.AsyncClient(api_key=a.api_key, base_url=api_server) as client:
        assert b"".join([c async for c in client.reports.agents_csv(**period)]).decode() == text
    with pytest.raises(switchboard.ApiError) as refused:
        list(a.reports.agents_csv(**period | {"interval": "7m"}))
    assert refused.value.status == 422 and "interval" in refused.value.message
    other, _, _ = new_tenant(api_server)
    assert b"".join(other.reports.agents_csv(**period)).decode().splitlines() == [text.splitlines()[0]]
    other.close()

    key = a.api_key or ""
    cli_period = ["--from", "2026-09-21T09:00Z", "--to", "2026-09-21T10:00Z"]
    streamed = run_cli(
        api_server, key, "report", "agents", *cli_period, "--format", "csv", "--page-size", "2"
    )
    assert streamed.returncode == 0, streamed.stderr
    lines = streamed.stdout.strip().splitlines()
    assert lines[0].startswith("interval_start,agent_id,handled")
    assert [line.split(",")[1] for line in lines[1:]] == agents  # every page, one header
    whole = run_cli(api_server, key, "report", "agents", *cli_period, "--page-size", "3", "--json")
    assert [r["agent_id"] for r in json.loads(whole.stdout)["rows"]] == agents
    assert "page" not in json.loads(whole.stdout)
    a.close()
