"""The API is not a single point: two API processes accept on one listening socket (as `switchboard up
--api-workers 2` runs them), and a kill -9 of one during 10 live calls leaves all 10 talking, with correct
records, and every agent whose socket it held reconnected (to the other process) within 5 s."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from switchboard import AgentSession
from switchboard.agent_events import ContactConnected, ContactEnded, ContactOffer, Reconnected, Session

from services.runtime.runtime import api_listener
from tests.e2e.first_call.conftest import (
    REPO,
    PhoneCaller,
    Stack,
    make_tenant,
    next_of,
    tone_power,
    tone_wav,
    wait_contact,
)
from tests.service_procs import free_port, service_env

CALLS = 10
AGENT_HZ = 1000.0


class Apis:
    def __init__(self, infra: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.listener = api_listener("127.0.0.1", self.port)
        fd = self.listener.fileno()
        env = service_env(
            infra,
            SB_SERVICE_NAME="api",
            SB_HTTP_PORT=str(self.port),
            SB_API_LISTEN_FD=str(fd),
            SB_SIGNUP_RATE_PER_MINUTE="1000",
            SB_DATA_DIR=str(infra.data_dir),
        )
        self.logs = [infra.data_dir / f"api-{self.port}-{k}.log" for k in (1, 2)]
        self.procs: list[subprocess.Popen[bytes]] = []
        for log in self.logs:
            with open(log, "ab") as out:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "services.api"],
                        cwd=REPO,
                        env=env,
                        pass_fds=(fd,),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        self.listener.close()  # the children hold it now
        # The socket listens from the start (the backlog waits): each process says when it serves.
        deadline = time.monotonic() + 60
        while not all("api_started" in log.read_text(errors="replace") for log in self.logs):
            assert all(p.poll() is None for p in self.procs), "an API process exited"
            assert time.monotonic() < deadline, "the API processes did not start"
            time.sleep(0.1)

    def holder(self, local_port: int) -> int | None:
        """Which API process (index) holds the client connection from `local_port`."""
        for k, proc in enumerate(self.procs):
            with contextlib.suppress(psutil.Error):
                for conn in psutil.Process(proc.pid).net_connections(kind="tcp"):
                    if conn.raddr and conn.raddr.port == local_port and conn.laddr.port == self.port:
                        return k
        return None

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()


@pytest.fixture(scope="module")
def apis(infra) -> Iterator[Apis]:  # type: ignore[no-untyped-def]
    running = Apis(infra)
    try:
        httpx.get(f"{running.url}/healthz", timeout=30)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def stack(first_call_stack: Stack, apis: Apis) -> Stack:
    # The folder's shared services (they reach each other over NATS, never through the API); its tests
    # reach the platform through these two API processes.
    return dataclasses.replace(first_call_stack, api=apis.url)


async def test_killing_one_api_process_keeps_every_call_talking(
    stack: Stack, apis: Apis, tmp_path: Path
) -> None:
    t = make_tenant(stack.api, agents=CALLS)
    play = tone_wav(tmp_path / "agent.wav", AGENT_HZ)
    agents: list[AgentSession] = []
    callers = [PhoneCaller(stack.sip_port, t.number) for _ in range(CALLS)]
    try:
        for k in range(CALLS):
            agent = AgentSession(
                stack.api,
                t.token(f"agent{k}@example.com"),
                auto_answer=True,
                play=play,
                play_loop=True,
                record=tmp_path / f"agent{k}-{{contact_id}}.wav",
            )
            await agent.connect()
            agents.append(agent)
            await next_of(agent, Session)
            await agent.login(state="available")
        contacts: dict[int, str] = {}
        for caller in callers:
            await caller.dial()
        for k, agent in enumerate(agents):
            offer = await next_of(agent, ContactOffer, timeout=20)
            await next_of(agent, ContactConnected, timeout=20)
            contacts[k] = offer.contact_id
        holders = {}
        for k, agent in enumerate(agents):
            assert agent._ws is not None
            holders[k] = apis.holder(agent._ws.local_address[1])
        counts = [sum(1 for h in holders.values() if h == i) for i in (0, 1)]
        victim = 0 if counts[0] >= counts[1] else 1
        cut = [k for k, h in holders.items() if h == victim]
        assert cut, holders
        await asyncio.sleep(1.0)
        apis.procs[victim].kill()  # kill -9
        killed = time.monotonic()
        back: dict[int, float] = {}
        for k in cut:
            event = await next_of(agents[k], Reconnected, timeout=10)
            back[k] = event.seconds
            session = await next_of(agents[k], Session, timeout=5)
            assert session.logged_in and [c.contact_id for c in session.contacts] == [contacts[k]]
        assert time.monotonic() - killed < 5.0 and max(back.values()) < 5.0, back
        # Every call still talking, both ways, on the same contact.
        marks = [c.mark() for c in callers]
        recorded = [agents[k].leg(contacts[k]).recorder.seconds for k in range(CALLS)]  # type: ignore[union-attr]
        await asyncio.sleep(1.5)
        by_contact = {contacts[k]: k for k in range(CALLS)}
        for caller, mark in zip(callers, marks, strict=True):
            assert tone_power(caller.pcm_since(mark), AGENT_HZ) > 0.5
        for k in range(CALLS):
            leg = agents[k].leg(contacts[k])
            assert leg is not None and leg.recorder is not None and leg.recorder.seconds > recorded[k] + 1.0
        for caller in callers:
            await caller.hang_up()
        durations = {}
        for k, agent in enumerate(agents):
            ended = await next_of(agent, ContactEnded, timeout=15)
            assert ended.contact_id == contacts[k] and ended.by == "caller"
            durations[k] = ended.duration
            await agent.wrap_up(contacts[k], "resolved")
        lines = []
        for k in range(CALLS):
            record = await wait_contact(t, contacts[k], "ended")
            assert record["outcome"] == "handled" and record["agent_id"] == t.agents[f"agent{k}@example.com"]
            assert 2.0 < record["talk_s"] < 60 and abs(record["talk_s"] - durations[k]) < 0.5
            events = [e["event"] for e in record["timeline"]]
            assert events.count("connected") == 1 and "queued" not in events[events.index("connected") :]
            what = (
                f"socket on the killed process, reconnected in {back[k]:.2f} s" if k in back else "untouched"
            )
            lines.append(f"call {k}: {what}; talk {record['talk_s']:.1f} s, handled by its agent")
        assert len(by_contact) == CALLS
        print("\nmeasured: kill -9 of one of 2 API processes with 10 live calls\n" + "\n".join(lines))
    finally:
        for caller in callers:
            caller.close()
        for agent in agents:
            with contextlib.suppress(Exception):
                await agent.close()
