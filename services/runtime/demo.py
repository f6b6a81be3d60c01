"""`switchboard up --demo`: make sure a demo tenant exists, through the public API like any client would.

Idempotent: the demo admin key is kept in `<data dir>/demo.json` (mode 0600); a later run checks it still
works (`GET /v1/me`), lists what exists and creates only what is missing, so the tenant always ends up with
exactly two agents, one queue, one number and the demo flow. The flow is deployed only when its current
version's source differs from DEMO_FLOW (so runs do not pile up versions), and the number is routed to it
unless it already points at a flow. DEMO_FLOW is docs/examples/demo-flow.yaml, as users copy it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "DEMO_AGENTS",
    "DEMO_COMPANY",
    "DEMO_EMAIL",
    "DEMO_FLOW",
    "DEMO_FLOW_NAME",
    "DEMO_QUEUE",
    "DemoError",
    "DemoTenant",
    "ensure_demo",
]

DEMO_COMPANY = "Demo Co"
DEMO_EMAIL = "demo@example.com"
DEMO_AGENTS: tuple[dict[str, Any], ...] = (
    {
        "name": "Ada Agent",
        "email": "ada@demo.example",
        "skills": {"support": 8, "sales": 5},
        "languages": ["en"],
    },
    {
        "name": "Bo Agent",
        "email": "bo@demo.example",
        "skills": {"support": 6, "billing": 7},
        "languages": ["en", "zh"],
    },
)
DEMO_QUEUE: dict[str, Any] = {"name": "Support", "skills": {"support": 3}, "sl_percent": 80, "sl_seconds": 20}
DEMO_FLOW_NAME = "demo-line"
# The flow users copy is the one the demo runs: greeting, a three-option menu (1 support, 2 sales within
# business hours or a voicemail, 3 account with a VIP branch by CRM lookup; 9 repeats, 0 a person), queues
# with position announcements and a callback offer.
DEMO_FLOW_PATH = Path(__file__).resolve().parents[2] / "docs" / "examples" / "demo-flow.yaml"


def _demo_flow() -> str:
    try:
        return DEMO_FLOW_PATH.read_text()
    except OSError:
        # An install without the repository's docs: a demo with no flow still has its queue behind the
        # number; ensure_demo says why it cannot deploy one.
        return ""


DEMO_FLOW = _demo_flow()
# Fictional North American numbers (555-01xx); the first one free on this platform is claimed.
DEMO_NUMBERS = tuple(f"+1555010000{i}" for i in range(10))


class DemoError(RuntimeError):
    pass


@dataclass
class DemoTenant:
    api_key: str
    tenant_id: str
    queue_id: str
    number: str
    agents: list[str]
    flow: str = DEMO_FLOW_NAME
    flow_version: int = 0
    created: list[str] = field(default_factory=list)  # what this run had to create


def _check(resp: httpx.Response, what: str) -> Any:
    if resp.is_success:
        return resp.json() if resp.content else None
    try:
        problem = resp.json()
        detail = problem.get("detail") or problem.get("title") or resp.text
    except ValueError:
        detail = resp.text[:200]
    raise DemoError(f"{what} failed: HTTP {resp.status_code}: {detail}")


async def _list(client: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"limit": 200}
    while True:
        page = _check(await client.get(path, params=params), f"GET {path}")
        items.extend(page["items"])
        if not page.get("next_cursor"):
            return items
        params["cursor"] = page["next_cursor"]


def _load_key(path: Path) -> str | None:
    try:
        key = json.loads(path.read_text()).get("api_key")
    except (OSError, ValueError, AttributeError):
        return None
    return key if isinstance(key, str) else None


def _save(path: Path, data: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


async def ensure_demo(
    api_url: str, data_dir: Path, timeout: float = 10.0, *, verify: bool = True
) -> DemoTenant:
    """Create (or complete) the demo tenant behind the API at `api_url`; returns its key and objects.
    `verify=False` for the runtime's own HTTPS API, whose certificate names the public host."""
    path = data_dir / "demo.json"
    created: list[str] = []
    async with httpx.AsyncClient(base_url=api_url, timeout=timeout, verify=verify) as client:
        key = _load_key(path)
        tenant_id: str | None = None
        if key is not None:
            resp = await client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
            if resp.status_code == 200:
                tenant_id = resp.json()["tenant"]["id"]
            elif resp.status_code == 401:
                key = None  # revoked or from another database: sign up afresh
            else:
                _check(resp, "GET /v1/me")
        if key is None or tenant_id is None:
            body = _check(
                await client.post("/v1/signup", json={"company": DEMO_COMPANY, "email": DEMO_EMAIL}),
                "demo signup",
            )
            key = body["api_key"]["key"]
            tenant_id = body["tenant"]["id"]
            _save(path, {"api_key": key, "tenant_id": tenant_id, "api_url": api_url})
            created.append("tenant")
        client.headers["Authorization"] = f"Bearer {key}"

        agents = {a["email"].lower(): a for a in await _list(client, "/v1/agents")}
        for agent in DEMO_AGENTS:
            if agent["email"] not in agents:
                made = _check(await client.post("/v1/agents", json=agent), f"creating agent {agent['name']}")
                agents[agent["email"]] = made
                created.append(f"agent {agent['name']}")

        queues = {q["name"]: q for q in await _list(client, "/v1/queues")}
        queue = queues.get(DEMO_QUEUE["name"])
        if queue is None:
            queue = _check(await client.post("/v1/queues", json=DEMO_QUEUE), "creating the Support queue")
            created.append(f"queue {DEMO_QUEUE['name']}")

        numbers = await _list(client, "/v1/numbers")
        number = numbers[0] if numbers else None
        for e164 in DEMO_NUMBERS if number is None else ():
            resp = await client.post("/v1/numbers", json={"e164": e164})
            if resp.status_code == 409:  # held by another tenant (an older demo tenant, say)
                continue
            number = _check(resp, f"claiming {e164}")
            created.append(f"number {e164}")
            break
        if number is None:
            raise DemoError(
                f"every demo number ({DEMO_NUMBERS[0]}..{DEMO_NUMBERS[-1]}) is held by another tenant"
            )
        if number.get("queue_id") is None:
            number = _check(
                await client.patch(f"/v1/numbers/{number['id']}", json={"queue_id": queue["id"]}),
                f"pointing {number['e164']} at the Support queue",
            )

        flow_version = await _ensure_flow(client, created)
        if number.get("flow_id") is None:
            number = _check(
                await client.post(f"/v1/numbers/{number['id']}/route", json={"flow": DEMO_FLOW_NAME}),
                f"routing {number['e164']} to the {DEMO_FLOW_NAME} flow",
            )
            created.append(f"route {number['e164']} -> {DEMO_FLOW_NAME}")
    return DemoTenant(
        api_key=key,
        tenant_id=tenant_id,
        queue_id=queue["id"],
        number=number["e164"],
        agents=[agents[a["email"]]["name"] for a in DEMO_AGENTS],
        flow_version=flow_version,
        created=created,
    )


async def _ensure_flow(client: httpx.AsyncClient, created: list[str]) -> int:
    """Deploy DEMO_FLOW unless it is already the current version; returns the current version number."""
    if not DEMO_FLOW:
        raise DemoError(f"the demo flow file {DEMO_FLOW_PATH} cannot be read")
    resp = await client.get(f"/v1/flows/{DEMO_FLOW_NAME}")
    if resp.status_code != 404:
        current = _check(resp, f"GET /v1/flows/{DEMO_FLOW_NAME}")
        if current.get("source") == DEMO_FLOW:
            return int(current["version"])
    deployed = _check(
        await client.post("/v1/flows", json={"definition": DEMO_FLOW}), f"deploying the {DEMO_FLOW_NAME} flow"
    )
    created.append(f"flow {DEMO_FLOW_NAME} v{deployed['version']}")
    return int(deployed["version"])
