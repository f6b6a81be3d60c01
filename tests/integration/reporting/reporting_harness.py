"""Shared by the reporting integration tests: a tenant with a queue, one interval's worth of events with
known figures, and the three reports over it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import uuid_utils

from services.kernel import db
from services.kernel import events as ev
from services.kernel.ids import new_id
from services.kernel.messages import Event
from services.reporting import queries
from tests.service_procs import service_env

__all__ = ["T0", "contact_events", "id_at", "make_tenant", "reports", "scenario", "start_reporting"]

REPO = Path(__file__).resolve().parents[3]

T0 = datetime(2026, 9, 21, 9, 0, tzinfo=UTC).timestamp()


async def make_tenant(pool: asyncpg.Pool, *, sl_seconds: int = 20, short: int = 5) -> tuple[uuid.UUID, str]:
    tenant_id, queue_id = new_id(), new_id()
    async with db.tenant_tx(pool, tenant_id) as conn:
        await conn.execute(
            "INSERT INTO tenants (id, name, admin_email) VALUES ($1, 'T', 'a@b.example')", tenant_id
        )
        await conn.execute(
            "INSERT INTO queues (id, tenant_id, name, sl_seconds, short_abandon_seconds) VALUES ($1, $2, 'support', $3, $4)",
            queue_id,
            tenant_id,
            sl_seconds,
            short,
        )
    return tenant_id, str(queue_id)


def id_at(ts: float) -> uuid.UUID:
    """A UUIDv7 minted at `ts`, as media mints a call's id when it arrives."""
    return uuid.UUID(bytes=uuid_utils.uuid7(nanoseconds=int(ts * 1e9)).bytes)


def contact_events(
    tenant_id: uuid.UUID,
    queue_id: str,
    at: float,
    *,
    answer_after: float | None,
    abandon_after: float | None,
    agent_id: str = "",
    handle_s: float = 100.0,
) -> list[Event]:
    """One contact's routing events: queued, then answered (assigned, ended, wrapped up) or abandoned."""
    call = id_at(at - 5)
    out: list[Event] = [ev.ContactQueued(tenant_id=tenant_id, ts=at, call_id=call, queue=queue_id)]
    if answer_after is not None:
        common = {"tenant_id": tenant_id, "call_id": call, "queue_id": queue_id, "agent_id": agent_id}
        out.append(ev.ContactAssigned(**common, ts=at + answer_after, offer_id="o"))
        out.append(ev.ContactEnded(**common, ts=at + answer_after + 80, talk_s=80.0))
        out.append(ev.ContactWrappedUp(**common, ts=at + answer_after + handle_s, handle_s=handle_s))
    elif abandon_after is not None:
        out.append(
            ev.ContactAbandoned(
                tenant_id=tenant_id,
                ts=at + abandon_after,
                call_id=call,
                queue_id=queue_id,
                waited_s=abandon_after,
                reason="caller_hangup",
            )
        )
    return out


def scenario(tenant_id: uuid.UUID, queue_id: str, agent: str) -> list[Event]:
    """In the 09:00-09:30 interval: 3 answered within 20 s, 1 answered in 45 s, 1 abandoned after 3 s
    (short), 2 abandoned after 30 s (long). SL = 3 / (4 + 2) = 0.5."""
    events: list[Event] = []
    for i, wait in enumerate([2.0, 10.0, 19.0, 45.0]):
        events += contact_events(
            tenant_id, queue_id, T0 + 60 * i, answer_after=wait, abandon_after=None, agent_id=agent
        )
    events += contact_events(tenant_id, queue_id, T0 + 600, answer_after=None, abandon_after=3.0)
    events += contact_events(tenant_id, queue_id, T0 + 700, answer_after=None, abandon_after=30.0)
    events += contact_events(tenant_id, queue_id, T0 + 800, answer_after=None, abandon_after=31.0)
    # The agent: available at 08:50, on contact 09:00-09:10, wrap-up 09:10-09:15, available to 09:30.
    for at, state in [(-600, "available"), (0, "on_contact"), (600, "wrap_up"), (900, "available")]:
        events.append(
            ev.AgentStateChanged(tenant_id=tenant_id, ts=T0 + at, agent_id=agent, old="", new=state)
        )
    # The IVR: two callers through "welcome"; one self-served, one transferred.
    for outcome in ("self_served", "transferred"):
        call = id_at(T0 + 5)
        events.append(ev.CallArrived(tenant_id=tenant_id, ts=T0 + 5, call_id=call, from_uri="+15550001"))
        events.append(
            ev.IvrNodeExited(
                tenant_id=tenant_id,
                ts=T0 + 8,
                call_id=call,
                flow="main",
                version=1,
                node="welcome",
                seconds=3.0,
            )
        )
        events.append(
            ev.IvrCompleted(
                tenant_id=tenant_id, ts=T0 + 9, call_id=call, flow="main", version=1, outcome=outcome
            )
        )  # type: ignore[arg-type]
    events.append(
        ev.QueueStats(
            tenant_id=tenant_id,
            ts=T0 + 1000,
            queue_id=queue_id,
            waiting=2,
            longest_wait_s=12.0,
            agents={"available": 1},
            ready=1,
        )
    )
    return events


async def reports(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> dict[str, object]:
    start, end = datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + 1800, UTC)
    async with db.tenant_tx(pool, tenant_id, readonly=True) as conn:
        return {
            "queues": await queries.queue_report(conn, start, end, "30m"),
            "agents": await queries.agent_report(conn, start, end, "30m", now=end + timedelta(hours=1)),
            "ivr": await queries.ivr_report(conn, start, end, "30m"),
        }


def start_reporting(infra, durable: str, **extra: str) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    """`python -m services.reporting` against the session's servers, with its own durable consumer."""
    log = open(infra.data_dir / f"reporting-{durable}.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "services.reporting"],
        cwd=REPO,
        # Its own NATS user, as under `switchboard up`.
        env=service_env(infra, SB_SERVICE_NAME="reporting", SB_REPORTING_DURABLE=durable, **extra),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
