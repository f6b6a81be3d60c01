"""`client.flows` in the SDK (sync and async) against the real API server."""

from __future__ import annotations

import uuid

import pytest
import switchboard

FLOW = "name: sdk\nstart: q\nnodes:\n  q: {type: queue, queue: sales}\n"


async def test_async_flows_against_the_api(api_server: str) -> None:
    tag = uuid.uuid4().hex[:8]
    signed = await switchboard.async_signup(f"SDK {tag}", f"sdk-{tag}@acme.example", base_url=api_server)
    async with switchboard.AsyncClient(api_key=signed.api_key.key, base_url=api_server) as client:
        with pytest.raises(switchboard.ValidationError) as refused:
            await client.flows.deploy(FLOW)
        assert refused.value.errors[0].message.startswith("line 4: unknown queue 'sales'")
        await client.queues.create("sales")
        first = await client.flows.deploy(FLOW)
        second = await client.flows.deploy({"name": "sdk", "start": "q", "nodes": {"q": {"type": "hangup"}}})
        assert (first.version, second.version) == (1, 2)
        assert any("no path to a person" in w.message for w in second.warnings)
        assert [f.name for f in (await client.flows.list()).items] == ["sdk"]
        assert [v.version for v in (await client.flows.versions("sdk")).items] == [1, 2]
        assert (await client.flows.get("sdk")).definition["nodes"]["q"]["type"] == "hangup"
        assert (await client.flows.get("sdk", version=1)).source == FLOW
        assert (await client.flows.rollback("sdk", 1)).current_version == 1
        number = await client.numbers.claim("+1555" + str(uuid.uuid4().int)[:8])
        routed = await client.flows.route(number.e164, "sdk")
        assert routed.flow_id == first.flow.id
        with pytest.raises(switchboard.ConflictError):
            await client.flows.delete("sdk")
        await client.flows.route(number.id, None)
        await client.flows.delete("sdk")
        with pytest.raises(switchboard.NotFoundError):
            await client.flows.get("sdk")


def test_sync_flows_names_are_quoted(api_server: str) -> None:
    tag = uuid.uuid4().hex[:8]
    signed = switchboard.signup(f"SDK {tag}", f"sdk-{tag}@acme.example", base_url=api_server)
    with switchboard.Client(api_key=signed.api_key.key, base_url=api_server) as client:
        with pytest.raises(switchboard.NotFoundError):
            client.flows.get("../keys")
        with pytest.raises(ValueError):
            client.flows.get(" ")
