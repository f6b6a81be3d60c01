"""The demo tenant's flow (`switchboard up --demo`, services/runtime/demo.py) against the real API: the demo
number is routed to the demo flow, a second run deploys no new version, a changed current version is
replaced by the demo's again, and the flow does what its prompt says (simulator: 9 repeats, 1 queues)."""

from __future__ import annotations

from pathlib import Path

import httpx
from switchboard.flowdef.validate import validate_text

from services.ivr.simulator import simulate
from services.runtime.demo import DEMO_FLOW, DEMO_FLOW_NAME, ensure_demo


def _client(api: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=10, trust_env=False)


def _versions(client: httpx.Client) -> list[int]:
    r = client.get(f"/v1/flows/{DEMO_FLOW_NAME}/versions")
    assert r.status_code == 200, r.text
    return [v["version"] for v in r.json()["items"]]


async def test_demo_number_routes_to_the_demo_flow_and_runs_are_idempotent(
    api_server: str, tmp_path: Path
) -> None:
    first = await ensure_demo(api_server, tmp_path)
    assert f"flow {DEMO_FLOW_NAME} v1" in first.created
    assert f"route {first.number} -> {DEMO_FLOW_NAME}" in first.created
    assert first.flow == DEMO_FLOW_NAME and first.flow_version == 1
    with _client(api_server, first.api_key) as client:
        flow = client.get(f"/v1/flows/{DEMO_FLOW_NAME}").json()
        assert flow["version"] == 1 and flow["current"] and flow["source"] == DEMO_FLOW
        (number,) = client.get("/v1/numbers").json()["items"]
        flows = {f["name"]: f for f in client.get("/v1/flows").json()["items"]}
        assert number["e164"] == first.number and number["flow_id"] == flows[DEMO_FLOW_NAME]["id"]

        again = await ensure_demo(api_server, tmp_path)
        assert again.created == [] and again.api_key == first.api_key and again.flow_version == 1
        assert _versions(client) == [1]

        # Someone deployed another version: the next --demo puts the demo's back (as a new version).
        changed = DEMO_FLOW.replace("Thank you for calling Demo Co.", "Hello from a changed flow.")
        assert client.post("/v1/flows", json={"definition": changed}).status_code == 201
        third = await ensure_demo(api_server, tmp_path)
        assert third.created == [f"flow {DEMO_FLOW_NAME} v3"] and third.flow_version == 3
        assert _versions(client) == [1, 2, 3]
        assert client.get(f"/v1/flows/{DEMO_FLOW_NAME}").json()["source"] == DEMO_FLOW
        (number,) = client.get("/v1/numbers").json()["items"]
        assert number["flow_id"] == flows[DEMO_FLOW_NAME]["id"]


def test_demo_flow_repeats_on_9_and_queues_on_1() -> None:
    report = validate_text(DEMO_FLOW, queues={"Support"})
    assert report.flow is not None and report.issues == []  # no errors, and none of the practice warnings
    flow = report.flow
    heard = simulate(flow, digits=["9", "1"])
    assert heard.path == ["welcome", "menu", "welcome", "menu", "support"]
    assert heard.queue == "Support" and heard.outcome == "queued"
    assert simulate(flow, digits=[""] * 3).queue == "Support"  # silence also reaches a person
