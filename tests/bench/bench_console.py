# The `console` benchmark (`make bench BENCH=console`, issue 19): how soon the supervisor console shows a
# caller queuing, being offered and answered, on the real processes (the first-call stack plus reporting,
# as tests/e2e/first_call/test_supervisor_console.py starts them; the fixtures are reused, run by pytest).
# A supervisor signs in to /supervisor/ in Debian's headless Chromium; N SIPp callers dial one after the
# other, each answered by its own headless agent (switchboard.AgentSession with audio):
#
#   queued   -> `contact.queued` on the bus           -> the Support tile's "waiting" shows 1
#   offered  -> `contact.offered`                      -> the agent's row shows "Ringing"
#   answered -> `contact.accepted` (the agent's accept) -> the agent's row shows "On a call"
#
# The latency is from the bus event's `ts` (the publisher's wall clock) to the DOM change, which a
# MutationObserver in the page stamps with Date.now() (the same machine's wall clock). Each agent is away
# while its caller queues and made available once the tile showed the caller, so that each event has its
# own moment on the page.
#
#   python tests/bench/bench_console.py [--calls N]
#
# Prints a table and writes .bench/console.json as [{"metric","value","unit","goal","better"}] (p50, p95 and
# max per event kind, goal 1,000 ms) with the load average. Not a test: nothing here asserts a timing.
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

GOAL_MS = 1000.0
OUT = ROOT / ".bench" / "console.json"
CALLS_ENV = "SB_BENCH_CONSOLE_CALLS"

# The page's own record of every change of the Support tile's "waiting" and of the agents' rows.
OBSERVER = """() => {
  window.__marks = [];
  const snap = () => {
    const tile = document.querySelector('article[data-queue="Support"] .waiting');
    const rows = {};
    for (const tr of document.querySelectorAll('tr[data-agent]')) rows[tr.dataset.agent] = tr.innerText;
    window.__marks.push({t: Date.now(), waiting: tile ? tile.textContent.trim() : "", rows});
  };
  new MutationObserver(snap).observe(document.body, {subtree: true, childList: true, characterData: true});
  snap();
}"""


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))] if s else float("nan")


def first_mark(marks: list[dict[str, Any]], since_ms: float, shown: Any) -> float | None:
    for mark in marks:
        if mark["t"] >= since_ms and shown(mark):
            return float(mark["t"])
    return None


class BusTimes:
    """The `ts` of each call's queued, offered and accepted events (the tenant's events on NATS)."""

    def __init__(self) -> None:
        self.ts: dict[str, dict[str, float]] = {}

    async def start(self, url: str, tenant: uuid.UUID) -> None:
        import msgspec
        import nats

        self.nc = await nats.connect(url)

        async def on_event(msg: Any) -> None:
            name = ".".join(msg.subject.split(".")[3:5])
            data = msgspec.json.decode(msg.data)
            kinds = {"contact.queued": "queued", "contact.offered": "offered", "contact.accepted": "answered"}
            if name not in kinds:
                return
            kind = kinds[name]
            self.ts.setdefault(str(data.get("call_id") or data.get("contact_id")), {}).setdefault(
                kind, float(data["ts"])
            )

        await self.nc.subscribe(f"sb.{tenant}.evt.>", cb=on_event)
        from services.kernel.waits import flushed

        await flushed(self.nc)

    async def wait(self, kind: str, known: set[str], timeout: float = 15.0) -> tuple[str, float]:
        """The first call not in `known` with a `kind` event (callers dial one at a time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for call, seen in self.ts.items():
                if call not in known and kind in seen:
                    return call, seen[kind]
            await asyncio.sleep(0.02)
        raise RuntimeError(f"no {kind} event on the bus within {timeout} s")

    async def close(self) -> None:
        await self.nc.close()


async def run(stack: Any, infra: Any, tmp_path: Path, calls: int) -> dict[str, list[float]]:
    import httpx
    from switchboard import AgentSession
    from switchboard.agent_events import ContactConnected, ContactOffer

    from tests.e2e.first_call.conftest import make_tenant, next_of
    from tests.e2e.first_call.test_supervisor_console import PASSWORD, SippCaller, _chromium
    from tests.e2e.first_call.test_supervisor_monitor import switchboard_cli

    tenant = await asyncio.to_thread(make_tenant, stack.api, agents=calls)
    lead = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    invite = await switchboard_cli(stack.api, tenant.key, "supervisors", "invite", lead)
    async with httpx.AsyncClient(base_url=stack.api, timeout=10) as http:
        r = await http.post("/v1/auth/invite", json={"token": invite["token"], "password": PASSWORD})
        r.raise_for_status()
    bus = BusTimes()
    await bus.start(infra.nats_url, uuid.UUID(str(tenant.id)))
    agents: list[tuple[str, AgentSession]] = []
    for i in range(calls):
        email = f"agent{i}@example.com"
        agent = AgentSession(stack.api, tenant.token(email), auto_answer=False)
        await agent.connect()
        await agent.login(state="away")
        agents.append((email, agent))
    lags: dict[str, list[float]] = {"queued": [], "offered": [], "answered": []}
    starts: list[tuple[str, str, float, float]] = []  # (kind, agent email, since ms, event ts ms)
    try:
        async with _chromium(tmp_path) as browser:
            page = await browser.new_page()
            await page.goto(f"{stack.api}/supervisor/")
            await page.fill("#email", lead)
            await page.fill("#password", PASSWORD)
            await page.click("#signin-button")
            await page.wait_for_selector("#live.on", timeout=15000)
            tile = page.locator('article[data-queue="Support"]')
            await tile.wait_for()
            for email, _ in agents:
                await page.locator(f'tr[data-agent="{email}"]').filter(has_text="Away").wait_for()
            await page.evaluate(OBSERVER)
            known: set[str] = set()
            for i, (email, agent) in enumerate(agents):
                row = page.locator(f'tr[data-agent="{email}"]')
                folder = tmp_path / f"call{i}"
                folder.mkdir()
                since = time.time() * 1000
                caller = await SippCaller.dial(stack.sip_port, tenant.number, folder)
                try:
                    try:
                        call, ts = await bus.wait("queued", known)
                    except RuntimeError as exc:
                        sipp = caller.proc.returncode
                        raise RuntimeError(f"call {i + 1} of {calls} (SIPp exit {sipp}): {exc}") from None
                    known.add(call)
                    starts.append(("queued", email, since, ts * 1000))
                    await tile.locator(".waiting").filter(has_text="1").wait_for(timeout=15000)
                    since = time.time() * 1000
                    await agent.set_state("available")
                    offer = await next_of(agent, ContactOffer)
                    starts.append(("offered", email, since, bus.ts[offer.contact_id]["offered"] * 1000))
                    await row.filter(has_text="Ringing").wait_for(timeout=15000)
                    since = time.time() * 1000
                    await agent.accept(offer.contact_id)
                    await next_of(agent, ContactConnected)
                    _, answered = await bus.wait("answered", set(bus.ts) - {offer.contact_id})
                    starts.append(("answered", email, since, answered * 1000))
                    await row.filter(has_text="On a call").wait_for(timeout=15000)
                    await agent.hangup(offer.contact_id)
                    await tile.locator(".waiting").filter(has_text="0").wait_for(timeout=15000)
                finally:
                    await caller.hang_up()
            marks: list[dict[str, Any]] = await page.evaluate("window.__marks")
    finally:
        for _, agent in agents:
            await agent.close()
        await bus.close()
    shown = {
        "queued": lambda m, email: m["waiting"] == "1",
        "offered": lambda m, email: "Ringing" in m["rows"].get(email, ""),
        "answered": lambda m, email: "On a call" in m["rows"].get(email, ""),
    }
    for kind, email, since, event_ms in starts:
        at = first_mark(marks, since, lambda m, k=kind, e=email: shown[k](m, e))
        if at is None:
            raise RuntimeError(f"the page never showed {kind} for {email}")
        lags[kind].append(at - event_ms)
    return lags


def report(lags: dict[str, list[float]], calls: int) -> list[dict[str, Any]]:
    load = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for kind, values in lags.items():
        for name, value in (("p50", pct(values, 0.5)), ("p95", pct(values, 0.95)), ("max", max(values))):
            rows.append(
                {
                    "metric": f"console {kind} {name} (event ts -> DOM)",
                    "value": round(value, 1),
                    "unit": "ms",
                    "goal": GOAL_MS,
                    "better": "lower",
                }
            )
    rows.append({"metric": "calls", "value": calls, "unit": "calls", "goal": None, "better": None})
    rows.append(
        {
            "metric": "load average (1 min) at the end",
            "value": load[0],
            "unit": "",
            "goal": None,
            "better": None,
        }
    )
    return rows


def test_console_lag(console_stack: Any, infra: Any, tmp_path: Path) -> None:
    """Run by main() through pytest, for the fixtures; not collected by the suite (tests/bench/bench_*)."""
    calls = int(os.environ.get(CALLS_ENV, "10"))
    lags = asyncio.run(run(console_stack, infra, tmp_path, calls))
    rows = report(lags, calls)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=1) + "\n")
    for row in rows:
        print(f"{row['metric']:<48} {row['value']:>10} {row['unit']}")


def main() -> None:
    import pytest

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10, help="callers, one after the other (default 10)")
    args = parser.parse_args()
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    os.environ[CALLS_ENV] = str(args.calls)
    sys.exit(pytest.main([__file__, "-q", "-s", "-p", "no:cacheprovider", "-m", ""]))


# The fixtures of the first-call stack and its reporting service (tests/e2e/first_call).
if "pytest" in sys.modules:
    from tests.e2e.first_call.conftest import first_call_stack  # noqa: F401
    from tests.e2e.first_call.test_supervisor_console import console_stack  # noqa: F401

if __name__ == "__main__":
    main()
