"""Tenants as code (switchboard.tenant_as_code) against the real API of the test session (`api_server`).

The Pulumi CLI cannot be installed here (PyPI's pulumi has no engine; npm's `pulumi` only downloads it from
get.pulumi.com at first use), so these tests call the dynamic providers' methods as the engine would:
check, create, read, diff, update and delete, in the order a program's `pulumi up` and `destroy` run them.
"""

from __future__ import annotations

import asyncio
import base64
import runpy
import uuid
from pathlib import Path
from typing import Any

import dill  # type: ignore[import-untyped]
import pulumi
import pytest
import switchboard
from switchboard.tenant_as_code import RefusedError
from switchboard.tenant_as_code import provider as p

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "tenant-as-code"
EXAMPLE_FLOW = EXAMPLE / "main-line.yaml"
# Pulumi's marker for a secret value in serialized resource inputs.
SECRET_SIG = "4dabf18193072939515e22adb298388d"


def new_tenant(api_server: str) -> tuple[dict[str, Any], switchboard.Client]:
    tag = uuid.uuid4().hex[:10]
    made = switchboard.signup(f"IaC {tag}", f"iac-{tag}@acme.example", base_url=api_server)
    connection = {"api_url": api_server, "api_key": made.api_key.key}
    return connection, switchboard.Client(api_key=made.api_key.key, base_url=api_server)


def e164() -> str:
    return "+1555" + str(uuid.uuid4().int)[:8]


def up(provider: p.TenantObjectProvider, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """What `pulumi up` does for a new resource: check, then create."""
    checked = provider.check({}, props)
    assert checked.failures == []
    made = provider.create(checked.inputs)
    assert made.outs is not None
    return made.id, made.outs


def change(
    provider: p.TenantObjectProvider, id_: str, olds: dict[str, Any], news: dict[str, Any]
) -> dict[str, Any]:
    """What `pulumi up` does for a changed resource that updates in place."""
    diff = provider.diff(id_, olds, news)
    assert diff.changes and not diff.replaces
    outs = provider.update(id_, olds, news).outs
    assert outs is not None
    return outs


def test_a_whole_tenant_program_comes_up_changes_in_place_and_goes_down(api_server: str) -> None:
    conn, client = new_tenant(api_server)
    tenant_id, tenant = up(p.TenantProvider(), conn | {"timezone": "Europe/Paris", "language": "fr"})
    assert tenant_id == client.me().tenant.id and client.settings.get().timezone == "Europe/Paris"
    seats_id, seats = up(p.SeatsProvider(), conn | {"count": 4})
    assert client.seats.get().purchased == 4
    site_id, site = up(p.SiteProvider(), conn | {"name": "Lyon", "timezone": "Europe/Paris"})
    queue_id, queue = up(
        p.QueueProvider(), conn | {"name": "Support", "skills": {"support": 1}, "sl_seconds": 30}
    )
    sales_id, sales = up(p.QueueProvider(), conn | {"name": "Sales", "skills": {"sales": 1}})
    agent_id, agent = up(
        p.AgentProvider(),
        conn | {"name": "Ann", "email": f"ann-{uuid.uuid4().hex[:6]}@acme.example", "site_id": site_id},
    )
    flow_id, flow = up(p.FlowProvider(), conn | {"name": "main-line", "source": EXAMPLE_FLOW.read_text()})
    number_id, number = up(p.NumberProvider(), conn | {"e164": e164(), "flow": "main-line"})
    trunk_id, trunk = up(p.TrunkProvider(), conn | {"name": "carrier", "allowed_ips": ["192.0.2.10"]})
    assert client.numbers.get(number_id).flow_id == flow_id and number["flow"] == "main-line"
    assert client.agents.get(agent_id).site_id == site_id and queue["sl_seconds"] == 30
    assert client.flows.get("main-line").current and trunk["allowed_ips"] == ["192.0.2.10"]

    # A second `up` with the same program changes nothing: read gives back what the program says.
    for prov, id_, outs in [
        (p.TenantProvider(), tenant_id, tenant),
        (p.SeatsProvider(), seats_id, seats),
        (p.SiteProvider(), site_id, site),
        (p.QueueProvider(), queue_id, queue),
        (p.AgentProvider(), agent_id, agent),
        (p.FlowProvider(), flow_id, flow),
        (p.NumberProvider(), number_id, number),
        (p.TrunkProvider(), trunk_id, trunk),
    ]:
        read = prov.read(id_, outs)
        assert read.id == id_ and read.outs == outs, prov.kind
        assert not prov.diff(id_, read.outs, outs).changes, prov.kind

    # In-place changes, each through the API.
    change(p.TenantProvider(), tenant_id, tenant, tenant | {"language": "de"})
    assert client.settings.get().language == "de"
    assert change(p.SeatsProvider(), seats_id, seats, seats | {"count": 3})["count"] == 3
    change(p.SiteProvider(), site_id, site, site | {"name": "Lyon 2"})
    assert client.sites.get(site_id).name == "Lyon 2"
    queue = change(p.QueueProvider(), queue_id, queue, queue | {"sl_seconds": 20, "strategy": "round_robin"})
    got = client.queues.get(queue_id)
    assert (got.sl_seconds, got.strategy) == (20, "round_robin") and queue["strategy"] == "round_robin"
    change(p.AgentProvider(), agent_id, agent, agent | {"skills": {"support": 7}})
    assert client.agents.get(agent_id).skills == {"support": 7}
    new_source = EXAMPLE_FLOW.read_text().replace("Thank you for calling", "Welcome to")
    flow = change(p.FlowProvider(), flow_id, flow, flow | {"source": new_source})
    assert "Welcome to" in client.flows.get("main-line").source
    assert sorted(v.version for v in client.flows.versions("main-line").items if not v.current) == [1]
    number = change(p.NumberProvider(), number_id, number, {**number, "flow": None, "queue_id": queue_id})
    assert client.numbers.get(number_id).queue_id == queue_id and number["flow"] is None
    change(p.TrunkProvider(), trunk_id, trunk, trunk | {"allowed_ips": ["192.0.2.11"]})
    assert client.trunks.get(trunk_id).allowed_ips == ["192.0.2.11"]

    # `pulumi destroy`, dependents first: every object the program made is gone.
    p.NumberProvider().delete(number_id, number)
    p.FlowProvider().delete(flow_id, flow)
    p.AgentProvider().delete(agent_id, agent)
    p.QueueProvider().delete(queue_id, queue)
    p.QueueProvider().delete(sales_id, sales)
    p.SiteProvider().delete(site_id, site)
    p.TrunkProvider().delete(trunk_id, trunk)
    p.SeatsProvider().delete(seats_id, seats)
    p.TenantProvider().delete(tenant_id, tenant)
    for getter, id_ in [
        (client.numbers.get, number_id),
        (client.agents.get, agent_id),
        (client.queues.get, queue_id),
        (client.sites.get, site_id),
        (client.trunks.get, trunk_id),
    ]:
        with pytest.raises(switchboard.NotFoundError):
            getter(id_)
    with pytest.raises(switchboard.NotFoundError):
        client.flows.get("main-line")
    # The tenant and its seats stay: a tenant's key can neither close the tenant nor should destroy sign
    # agents out by releasing every seat.
    assert client.me().tenant.id == tenant_id and client.seats.get().purchased == 3
    # A resource deleted by hand reads as gone (Pulumi then plans to create it again).
    assert p.QueueProvider().read(queue_id, queue).id == ""


def test_diff_says_what_replaces_and_what_updates_in_place(api_server: str) -> None:
    conn = {"api_url": api_server, "api_key": "sbk_unused"}
    number = conn | {"e164": "+15550100", "queue_id": "q1"}
    moved = p.NumberProvider().diff("n1", number, number | {"queue_id": "q2"})
    assert moved.changes and moved.replaces == [] and moved.stables == ["e164"]
    renumbered = p.NumberProvider().diff("n1", number, number | {"e164": "+15550101"})
    assert renumbered.changes and renumbered.replaces == ["e164"]
    flow = conn | {"name": "main-line", "source": "a"}
    assert p.FlowProvider().diff("f1", flow, flow | {"name": "other"}).replaces == ["name"]
    assert p.FlowProvider().diff("f1", flow, flow | {"source": "b"}).replaces == []
    # A rotated key or a moved API changes no object.
    rotated = p.QueueProvider().diff(
        "q1", conn | {"name": "Sales"}, {"api_url": "http://x", "api_key": "k", "name": "Sales"}
    )
    assert not rotated.changes
    # Leaving a property out stops managing it; that is a change Pulumi shows.
    assert (
        p.QueueProvider()
        .diff("q1", conn | {"name": "Sales", "priority": 3}, conn | {"name": "Sales"})
        .changes
    )
    failures = p.AgentProvider().check({}, {"api_url": api_server, "name": "Ann"}).failures
    assert sorted(f.property for f in failures) == ["api_key", "email"]
    both = p.NumberProvider().check({}, number | {"flow": "main-line"}).failures
    assert [(f.property, f.reason) for f in both] == [
        ("flow", "a number goes to a queue (queue_id) or to a flow, not both")
    ]


def test_a_trunks_password_is_kept_write_only_and_sent_again_with_a_new_username(api_server: str) -> None:
    conn, client = new_tenant(api_server)
    props = conn | {
        "name": "pbx",
        "allowed_ips": ["192.0.2.20"],
        "username": "pbx",
        "password": "s3cret-pass-1",
    }
    trunk_id, trunk = up(p.TrunkProvider(), props)
    assert client.trunks.get(trunk_id).has_credentials and trunk["password"] == "s3cret-pass-1"
    read = p.TrunkProvider().read(trunk_id, trunk).outs
    assert read == trunk  # the API never returns the password: read keeps the program's
    # A new username alone: the provider sends the password with it (the API needs both for the digest).
    renamed = change(p.TrunkProvider(), trunk_id, trunk, trunk | {"username": "pbx2"})
    got = client.trunks.get(trunk_id)
    assert (got.username, got.has_credentials, renamed["username"]) == ("pbx2", True, "pbx2")


def test_read_sees_a_queue_changed_by_hand(api_server: str) -> None:
    conn, client = new_tenant(api_server)
    queue_id, queue = up(p.QueueProvider(), conn | {"name": "Sales", "sl_percent": 80, "wrap_up_seconds": 10})
    client.queues.update(queue_id, sl_percent=65, priority=9)  # by hand, outside the program
    refreshed = p.QueueProvider().read(queue_id, queue).outs
    assert refreshed is not None and refreshed["sl_percent"] == 65
    # Only managed properties are compared: the hand-set priority is not the program's business.
    assert "priority" not in refreshed
    drift = p.QueueProvider().diff(queue_id, refreshed, queue)
    assert drift.changes and not drift.replaces
    p.QueueProvider().update(queue_id, refreshed, queue)
    assert client.queues.get(queue_id).sl_percent == 80


def test_delete_and_update_refusals_carry_the_apis_words(api_server: str) -> None:
    conn, client = new_tenant(api_server)
    queue_id, queue = up(p.QueueProvider(), conn | {"name": "Support"})
    up(p.QueueProvider(), conn | {"name": "Sales"})
    number = e164()
    number_id, _ = up(p.NumberProvider(), conn | {"e164": number, "queue_id": queue_id})
    with pytest.raises(RefusedError) as in_use:
        p.QueueProvider().delete(queue_id, queue)
    assert (
        "queue 'Support'" in str(in_use.value)
        and number in str(in_use.value)
        and "(409)" in str(in_use.value)
    )
    assert client.queues.get(queue_id).name == "Support"  # refused means kept
    # A flow a number points at.
    flow_id, flow = up(p.FlowProvider(), conn | {"name": "main-line", "source": EXAMPLE_FLOW.read_text()})
    client.flows.route(number_id, "main-line")
    with pytest.raises(RefusedError, match="numbers still point at flow 'main-line'"):
        p.FlowProvider().delete(flow_id, flow)
    # A flow the API finds wrong fails the `up` with its problems, and nothing is deployed.
    with pytest.raises(RefusedError, match="create flow 'broken'"):
        p.FlowProvider().create(
            conn | {"name": "broken", "source": "name: broken\nstart: nowhere\nnodes: {}\n"}
        )
    with pytest.raises(switchboard.NotFoundError):
        client.flows.get("broken")
    # A number another tenant holds.
    other_conn, _ = new_tenant(api_server)
    with pytest.raises(RefusedError, match=r"create number '\+1555"):
        p.NumberProvider().create(other_conn | {"e164": number})
    # Seats below what is held by agents: the seats call refuses; a wrong key fails clearly.
    with pytest.raises(RefusedError, match="seats"):
        p.SeatsProvider().create(conn | {"count": 100000})
    # The key of another tenant under this stack's tenant: refused, not read as gone (and re-created there).
    tenant_id, tenant = up(p.TenantProvider(), conn)
    with pytest.raises(RefusedError, match=f"belongs to tenant .*, not to this stack's tenant {tenant_id}"):
        p.TenantProvider().read(tenant_id, tenant | {"api_key": other_conn["api_key"]})
    with pytest.raises(RefusedError, match=r"\(401\)"):
        p.SiteProvider().create({"api_url": api_server, "api_key": "sbk_" + "z" * 43, "name": "HQ"})


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return plain(value["value"])
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class Engine(pulumi.runtime.Mocks):
    """The part of `pulumi up` a dynamic resource meets, without the CLI: each resource the program
    registers has its provider unpickled from its inputs (as the engine's dynamic-provider host does), then
    check, and create, or read + diff + update/replace against the state of the last run."""

    def __init__(self, state: dict[str, tuple[p.TenantObjectProvider, str, dict[str, Any]]]) -> None:
        self.state = state
        self.steps: dict[str, str] = {}
        self.secret_inputs: dict[str, bool] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.secret_inputs[args.name] = SECRET_SIG in args.inputs.get("api_key", {})
        inputs = plain(args.inputs)
        provider: p.TenantObjectProvider = dill.loads(base64.b64decode(inputs.pop("__provider")))
        checked = provider.check({}, inputs)
        assert checked.failures == [], (args.name, checked.failures)
        if args.name not in self.state:
            made = provider.create(checked.inputs)
            id_, outs, step = made.id, made.outs or {}, "create"
        else:
            _, id_, olds = self.state[args.name]
            read = provider.read(id_, olds)  # `pulumi up --refresh`: what the API holds now
            diff = provider.diff(id_, read.outs or {}, checked.inputs)
            if diff.replaces:
                made = provider.create(checked.inputs)
                provider.delete(id_, olds)
                id_, outs, step = made.id, made.outs or {}, "replace"
            elif diff.changes:
                outs, step = provider.update(id_, read.outs or {}, checked.inputs).outs or {}, "update"
            else:
                outs, step = read.outs or {}, "same"
        self.state[args.name] = (provider, id_, outs)
        self.steps[args.name] = step
        return id_, outs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


def run_example(engine: Engine, config: dict[str, str]) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.settings.set_root_resource(None)  # type: ignore[arg-type]
    try:
        pulumi.runtime.set_mocks(engine, project="acme-contact-center", stack="test", preview=False)
        pulumi.runtime.set_all_config(
            {f"acme-contact-center:{k}": v for k, v in config.items()},
            secret_keys=["acme-contact-center:apiKey"],
        )

        @pulumi.runtime.test
        def program() -> None:
            runpy.run_path(str(EXAMPLE / "__main__.py"), run_name="__main__")

        program()
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_the_example_program_comes_up_then_a_second_run_changes_only_what_changed(api_server: str) -> None:
    conn, client = new_tenant(api_server)
    config = {
        "apiUrl": api_server,
        "apiKey": conn["api_key"],
        "annEmail": f"ann-{uuid.uuid4().hex[:8]}@acme.example",
        "mainNumber": e164(),
        "salesNumber": e164(),
    }
    state: dict[str, tuple[p.TenantObjectProvider, str, dict[str, Any]]] = {}
    first = Engine(state)
    run_example(first, config)
    assert set(first.steps.values()) == {"create"} and len(first.steps) == 10
    assert all(first.secret_inputs.values())  # the key travels as a secret to every resource
    sales_id, support_id = state["sales"][1], state["support"][1]
    numbers = {n.e164: n for n in client.numbers.list(all=True).items}
    assert numbers[config["salesNumber"]].queue_id == sales_id
    assert numbers[config["mainNumber"]].flow_id == state["main-line"][1]
    sales = client.queues.get(sales_id)
    assert sales.closed_treatment == "queue" and sales.closed_queue_id == support_id
    assert client.agents.get(state["ann"][1]).site_id == state["paris"][1]
    assert client.settings.get().timezone == "Europe/Paris" and client.seats.get().purchased == 5

    # By hand: support's service level; in the program: more seats and another sales number.
    client.queues.update(support_id, sl_percent=50)
    second = Engine(state)
    run_example(second, config | {"seats": "6", "salesNumber": e164()})
    changed = {name: step for name, step in second.steps.items() if step != "same"}
    assert changed == {"support": "update", "seats": "update", "sales-direct": "replace"}
    assert client.queues.get(support_id).sl_percent == 80 and client.seats.get().purchased == 6
    assert config["salesNumber"] not in {n.e164 for n in client.numbers.list(all=True).items}

    # `pulumi destroy`: dependents first (the reverse of the order the program made them in).
    for name in reversed(list(second.steps)):
        provider, id_, outs = state[name]
        provider.delete(id_, outs)
    assert client.numbers.list().items == [] and client.flows.list().items == []
    assert [q.name for q in client.queues.list().items] == []
