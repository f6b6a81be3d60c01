"""Flows through the API: deploy (validated server-side, 422 with line numbers), immutable versions, current
version and rollback, delete, routing a number to a flow, and isolation between tenants."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from tests.integration.api.conftest import assert_problem, signup, unique_e164

FLOW = """\
name: {name}
start: menu
nodes:
  menu:
    type: menu
    prompt: {{say: "{greeting}"}}
    options: {{"1": sales, "0": sales}}
    on_fail: sales
  sales:
    type: queue
    queue: sales
"""


async def _tenant_with_queue(api: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    t = await signup(api)
    r = await api.post("/v1/queues", json={"name": "sales"}, headers=t.headers)
    assert r.status_code == 201, r.text
    return t


async def test_deploy_versions_rollback_and_delete(api: httpx.AsyncClient) -> None:
    t = await _tenant_with_queue(api)
    h = t.headers
    r = await api.post("/v1/flows", json={"definition": FLOW.format(name="main", greeting="v1")}, headers=h)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["version"] == 1 and body["flow"]["current_version"] == 1
    assert any("key 0" not in w["message"] for w in body["warnings"]) or body["warnings"] == []
    r = await api.post(
        "/v1/flows", json={"name": "main", "definition": FLOW.format(name="main", greeting="v2")}, headers=h
    )
    assert r.json()["version"] == 2
    current = (await api.get("/v1/flows/main", headers=h)).json()
    assert current["version"] == 2 and current["current"] and "v2" in current["source"]
    assert current["definition"]["nodes"]["menu"]["prompt"]["say"] == "v2"
    versions = (await api.get("/v1/flows/main/versions", headers=h)).json()["items"]
    assert [(v["version"], v["current"]) for v in versions] == [(1, False), (2, True)]
    one = (await api.get("/v1/flows/main/versions/1", headers=h)).json()
    assert "v1" in one["source"] and not one["current"]
    assert_problem(await api.get("/v1/flows/main/versions/9", headers=h), 404)

    r = await api.post("/v1/flows/main/rollback", json={"version": 1}, headers=h)
    assert r.status_code == 200 and r.json()["current_version"] == 1 and r.json()["latest_version"] == 2
    assert (await api.get("/v1/flows/main", headers=h)).json()["definition"]["nodes"]["menu"]["prompt"][
        "say"
    ] == "v1"
    assert_problem(await api.post("/v1/flows/main/rollback", json={"version": 7}, headers=h), 422)
    assert_problem(await api.post("/v1/flows/main/rollback", headers=h), 422)
    # A new deploy after a rollback is version 3 and current.
    r = await api.post("/v1/flows", json={"definition": FLOW.format(name="main", greeting="v3")}, headers=h)
    assert r.json()["version"] == 3 and r.json()["flow"]["current_version"] == 3
    listed = (await api.get("/v1/flows", headers=h)).json()["items"]
    assert [f["name"] for f in listed] == ["main"]

    assert (await api.delete("/v1/flows/main", headers=h)).status_code == 204
    assert_problem(await api.get("/v1/flows/main", headers=h), 404)
    assert_problem(await api.delete("/v1/flows/main", headers=h), 404)


async def test_versions_are_immutable_in_the_database(api: httpx.AsyncClient, infra) -> None:  # type: ignore[no-untyped-def]
    t = await _tenant_with_queue(api)
    r = await api.post(
        "/v1/flows", json={"definition": FLOW.format(name="frozen", greeting="x")}, headers=t.headers
    )
    assert r.status_code == 201
    owner = await asyncpg.connect(infra.owner_url)
    try:
        with pytest.raises(asyncpg.RaiseError, match="immutable"):
            await owner.execute(
                "UPDATE flow_versions SET source = 'changed' WHERE tenant_id = $1", uuid.UUID(t.id)
            )
    finally:
        await owner.close()


async def test_invalid_flow_is_a_422_with_line_numbers(api: httpx.AsyncClient) -> None:
    t = await _tenant_with_queue(api)
    bad = FLOW.format(name="bad", greeting="x").replace("queue: sales", "queue: nosuch")
    body = assert_problem(await api.post("/v1/flows", json={"definition": bad}, headers=t.headers), 422)
    assert body["errors"][0]["field"] == "definition"
    assert body["errors"][0]["message"].startswith("line 11: unknown queue 'nosuch'")
    schema_bad = FLOW.format(name="bad", greeting="x").replace(
        "on_fail: sales", "on_fail: sales\n    retries: -1"
    )
    body = assert_problem(
        await api.post("/v1/flows", json={"definition": schema_bad}, headers=t.headers), 422
    )
    assert body["errors"][0]["message"].startswith("line 9: Expected `int` >= 0")
    body = assert_problem(
        await api.post("/v1/flows", json={"definition": "name: [x"}, headers=t.headers), 422
    )
    assert "not valid YAML" in body["detail"]
    mismatch = {"name": "other", "definition": FLOW.format(name="bad", greeting="x")}
    assert_problem(await api.post("/v1/flows", json=mismatch, headers=t.headers), 422)
    # A JSON object works too; its lines are those of the pretty-printed JSON.
    obj = {"name": "jsonflow", "start": "q", "nodes": {"q": {"type": "queue", "queue": "sales"}}}
    r = await api.post("/v1/flows", json={"definition": obj}, headers=t.headers)
    assert r.status_code == 201, r.text
    assert (await api.get("/v1/flows", headers=t.headers)).json()["items"][0]["name"] == "jsonflow"


async def test_route_a_number_to_a_flow(api: httpx.AsyncClient) -> None:
    t = await _tenant_with_queue(api)
    h = t.headers
    await api.post("/v1/flows", json={"definition": FLOW.format(name="line", greeting="x")}, headers=h)
    e164 = unique_e164()
    number = (await api.post("/v1/numbers", json={"e164": e164}, headers=h)).json()
    r = await api.post(f"/v1/numbers/{e164}/route", json={"flow": "line"}, headers=h)
    assert r.status_code == 200, r.text
    flow_id = (await api.get("/v1/flows", headers=h)).json()["items"][0]["id"]
    assert r.json()["flow_id"] == flow_id
    assert (await api.get(f"/v1/numbers/{number['id']}", headers=h)).json()["flow_id"] == flow_id
    body = assert_problem(await api.delete("/v1/flows/line", headers=h), 409)
    assert e164 in body["detail"]
    assert_problem(await api.post(f"/v1/numbers/{e164}/route", json={"flow": "nope"}, headers=h), 422)
    r = await api.post(f"/v1/numbers/{number['id']}/route", json={"flow": None}, headers=h)
    assert r.json()["flow_id"] is None
    assert (await api.delete("/v1/flows/line", headers=h)).status_code == 204


async def test_other_tenants_flows_are_invisible(api: httpx.AsyncClient) -> None:
    a, b = await _tenant_with_queue(api), await _tenant_with_queue(api)
    await api.post(
        "/v1/flows", json={"definition": FLOW.format(name="secret", greeting="b")}, headers=b.headers
    )
    b_number = unique_e164()
    await api.post("/v1/numbers", json={"e164": b_number}, headers=b.headers)
    assert (await api.get("/v1/flows", headers=a.headers)).json()["items"] == []
    for method, path, body in [
        ("GET", "/v1/flows/secret", None),
        ("GET", "/v1/flows/secret/versions", None),
        ("GET", "/v1/flows/secret/versions/1", None),
        ("POST", "/v1/flows/secret/rollback", {"version": 1}),
        ("DELETE", "/v1/flows/secret", None),
        ("POST", f"/v1/numbers/{b_number}/route", {"flow": None}),
    ]:
        assert_problem(await api.request(method, path, json=body, headers=a.headers), 404)
    # A's flow with B's name is A's own: names are per tenant.
    r = await api.post(
        "/v1/flows", json={"definition": FLOW.format(name="secret", greeting="a")}, headers=a.headers
    )
    assert r.status_code == 201 and r.json()["version"] == 1
    assert (await api.get("/v1/flows/secret", headers=b.headers)).json()["definition"]["nodes"]["menu"][
        "prompt"
    ]["say"] == "b"
    # A cannot route its number to B's flow by name (it sees only its own).
    a_number = unique_e164()
    await api.post("/v1/numbers", json={"e164": a_number}, headers=a.headers)
    await api.delete("/v1/flows/secret", headers=a.headers)
    assert_problem(
        await api.post(f"/v1/numbers/{a_number}/route", json={"flow": "secret"}, headers=a.headers), 422
    )


async def test_roles_read_only_for_developers(api: httpx.AsyncClient) -> None:
    t = await _tenant_with_queue(api)
    key = (await api.post("/v1/keys", json={"role": "developer"}, headers=t.headers)).json()["key"]
    dev = {"Authorization": f"Bearer {key}"}
    assert_problem(
        await api.post("/v1/flows", json={"definition": FLOW.format(name="d", greeting="x")}, headers=dev),
        403,
    )
    assert (await api.get("/v1/flows", headers=dev)).status_code == 200


async def test_time_zone_defaults_to_the_tenants_site_and_lookup_secret(api: httpx.AsyncClient) -> None:
    t = await _tenant_with_queue(api)
    h = t.headers
    r = await api.patch(f"/v1/sites/{t.site_id}", json={"timezone": "America/New_York"}, headers=h)
    assert r.status_code == 200, r.text
    await api.post("/v1/flows", json={"definition": FLOW.format(name="tz", greeting="x")}, headers=h)
    assert (await api.get("/v1/flows/tz", headers=h)).json()["definition"]["timezone"] == "America/New_York"
    own = FLOW.format(name="tz", greeting="x").replace("start: menu", "start: menu\ntimezone: Asia/Tokyo")
    await api.post("/v1/flows", json={"definition": own}, headers=h)
    assert (await api.get("/v1/flows/tz", headers=h)).json()["definition"]["timezone"] == "Asia/Tokyo"

    from services.ivr.lookup import derive_secret

    dev_key = (await api.post("/v1/keys", json={"role": "developer"}, headers=h)).json()["key"]
    body = (await api.get("/v1/ivr/lookup-secret", headers={"Authorization": f"Bearer {dev_key}"})).json()
    other = await _tenant_with_queue(api)
    theirs = (await api.get("/v1/ivr/lookup-secret", headers=other.headers)).json()
    assert body["algorithm"] == "HMAC-SHA256" and body["secret"] != theirs["secret"]
    assert len(bytes.fromhex(body["secret"])) == 32
    assert body["secret"] == derive_secret(api_settings_secret(api), uuid.UUID(t.id)).hex()


def api_settings_secret(api: httpx.AsyncClient) -> str:
    app = api._transport.app  # type: ignore[attr-defined]
    return str(app.state.api.settings.token_secret)
