"""Planning from a tenant's own history through the API, SDK and CLI: the forecast by local weekday and time
(in the tenant's time zone, the setting queue hours use too), the staffing math on it, the replay of the
queue's traffic with other numbers of agents, the per-site report, and bad input refused."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
import switchboard
from reporting_harness import contact_events
from switchboard import staffing
from test_reporting_api import run_cli

from services.kernel import events as ev
from services.kernel.messages import Event
from services.reporting.store import FactStore

ZONE = ZoneInfo("Asia/Kolkata")  # UTC+5:30: a local hour is not a UTC hour


async def test_forecast_replay_and_sites(api_server: str, pool: asyncpg.Pool) -> None:
    anonymous = switchboard.Client(base_url=api_server)
    signed = anonymous.signup(f"Plan {uuid.uuid4().hex[:6]}", f"plan-{uuid.uuid4().hex[:6]}@example.com")
    anonymous.close()
    client = switchboard.Client(api_key=signed.api_key.key, base_url=api_server)
    tenant_id = uuid.UUID(signed.tenant.id)
    client.settings.update(timezone="Asia/Kolkata")
    north = client.sites.create("North", timezone="Asia/Kolkata")
    queue = client.queues.create(
        f"sales-{uuid.uuid4().hex[:4]}", sl_seconds=20, short_abandon_seconds=5, site_id=north.id
    )
    agent = client.agents.create("Ravi", f"ravi-{uuid.uuid4().hex[:6]}@example.com", site_id=north.id)

    # History: tomorrow's weekday 1, 2 and 3 weeks back, 10:00-10:30 local: 12, 9 and 6 calls, 200 s each.
    tomorrow = datetime.now(ZONE).date() + timedelta(days=1)
    events: list[Event] = []
    days = []
    for weeks_back, calls in ((1, 12), (2, 9), (3, 6)):
        day = tomorrow - timedelta(days=7 * weeks_back)
        days.append(day)
        ten = datetime(day.year, day.month, day.day, 10, 0, tzinfo=ZONE).timestamp()
        for i in range(calls):
            events += contact_events(
                tenant_id,
                queue.id,
                ten + i * (1500 / calls),
                answer_after=5.0,
                abandon_after=None,
                agent_id=agent.id,
                handle_s=200.0,
            )
    events.append(
        ev.AgentStateChanged(
            tenant_id=tenant_id,
            ts=datetime(days[0].year, days[0].month, days[0].day, 9, 55, tzinfo=ZONE).timestamp(),
            agent_id=agent.id,
            old="",
            new="available",
        )
    )
    await FactStore(pool).write(tenant_id, events)

    forecast = client.reports.forecast(queue.id, days=1, shrinkage=25)
    assert forecast["timezone"] == "Asia/Kolkata" and forecast["history"]["weeks_used"] == 3
    busy = [r for r in forecast["rows"] if r["offered"] > 0]
    (slot,) = busy
    expected_start = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 10, 0, tzinfo=ZONE)
    assert datetime.fromisoformat(slot["interval_start"]) == expected_start  # 04:30 UTC
    assert slot["offered"] == pytest.approx(9.0) and slot["aht_s"] == pytest.approx(200.0)
    load = staffing.traffic_erlangs(9, 1800, 200)
    need = staffing.agents_for_target(load, 200, 0.8, 20).agents
    assert slot["agents"] == need and slot["scheduled"] == staffing.scheduled_with_shrinkage(need, 0.25)
    assert len(forecast["rows"]) == 48  # every half hour of the local day

    # Replay last week's day with 1 agent and with 20: 12 calls of 200 s in 25 minutes swamp one agent.
    day = days[0]
    start = datetime(day.year, day.month, day.day, tzinfo=ZONE)
    replay = client.reports.replay(queue.id, agents=[20, 1], start=start, end=start + timedelta(days=1))
    assert replay["actual"]["offered"] == 12 and replay["actual"]["service_level"] == 1.0
    one, twenty = replay["rows"]
    assert (one["agents"], twenty["agents"]) == (1, 20)
    assert twenty["service_level"] == 1.0 and twenty["asa_s"] == 0.0
    assert one["service_level"] < 0.5 and one["asa_s"] > 60 and one["answered"] == 12

    sites = client.reports.sites(start=start, end=start + timedelta(days=1), interval="day")
    (row,) = sites["rows"]
    assert row["site_id"] == north.id and row["site_name"] == "North"
    assert row["offered"] == 12 and row["service_level"] == 1.0 and row["agents"] == 1
    assert (
        row["interval_start"].startswith(f"{day.isoformat()}T00:00:00+05:30")
        or datetime.fromisoformat(row["interval_start"]) == start
    )

    # Bad input: a clear 4xx naming the field.
    with pytest.raises(switchboard.ApiError) as bad:
        client.reports.replay(queue.id, agents=[0], start=start, end=start + timedelta(days=1))
    assert bad.value.status == 422 and "agents" in bad.value.message
    with pytest.raises(switchboard.ApiError) as unknown:
        client.reports.forecast(str(uuid.uuid4()))
    assert unknown.value.status == 404
    with pytest.raises(switchboard.ApiError) as target:
        client.reports.forecast(queue.id, target=(100, 20))
    assert target.value.status == 422 and "target" in target.value.message

    key = client.api_key or ""
    cli = run_cli(api_server, key, "report", "forecast", "--queue", queue.name, "--days", "1", "--json")
    assert cli.returncode == 0, cli.stderr
    assert [r["agents"] for r in json.loads(cli.stdout)["rows"] if r["offered"]] == [need]
    staffing_cli = run_cli(api_server, key, "staffing", "--queue", queue.name, "--date", tomorrow.isoformat())
    assert staffing_cli.returncode == 0, staffing_cli.stderr
    assert "10:00" in staffing_cli.stdout and "forecast" in staffing_cli.stdout
    table = run_cli(
        api_server,
        key,
        "report",
        "replay",
        "--queue",
        queue.name,
        "--agents",
        "1",
        "--agents",
        "20",
        "--from",
        start.isoformat(),
        "--to",
        (start + timedelta(days=1)).isoformat(),
    )
    assert table.returncode == 0, table.stderr
    assert "100.0%" in table.stdout and "what happened" in table.stdout
    refused = run_cli(api_server, key, "report", "replay", "--queue", queue.name, "--agents", "0")
    assert refused.returncode == 2 and "--agents" in refused.stderr
    client.close()
