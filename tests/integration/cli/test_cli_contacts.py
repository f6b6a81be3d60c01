"""`switchboard contacts`, `switchboard widget-keys`, agent endpoints, and the SDK's `contacts`, `widget_keys`
and `widget_token` (sync and async), against the real API (the `api_server` fixture)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import switchboard
from click.testing import CliRunner, Result
from switchboard_cli.main import cli

from services.contacts.records import ContactRecord, TimelineEntry, save_contact
from services.kernel import db
from services.kernel.waits import close_pool


def new_tenant(api_server: str) -> switchboard.SignupResult:
    tag = uuid.uuid4().hex[:10]
    return switchboard.signup(f"Contacts {tag}", f"contacts-{tag}@acme.example", base_url=api_server)


def add_contacts(infra: Any, tenant_id: str, records: list[dict[str, Any]]) -> list[str]:
    """Contacts written as the contact coordinator writes them (the API only reads them)."""

    async def write() -> list[str]:
        pool = await db.create_pool(infra.app_url, max_size=1)
        ids = []
        try:
            async with db.tenant_tx(pool, uuid.UUID(tenant_id)) as conn:
                for fields in records:
                    record = ContactRecord(id=uuid.uuid4(), tenant_id=uuid.UUID(tenant_id), **fields)
                    await save_contact(conn, record)
                    ids.append(str(record.id))
        finally:
            await close_pool(pool)
        return ids

    return asyncio.run(write())


@pytest.fixture
def run(api_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("SB_API_URL", "SB_API_KEY", "SB_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    tag = uuid.uuid4().hex[:10]
    signed = CliRunner().invoke(
        cli,
        ["signup", "--company", f"Cli {tag}", "--email", f"c-{tag}@acme.example", "--api-url", api_server],
        catch_exceptions=False,
    )
    assert signed.exit_code == 0, signed.stderr

    def invoke(*args: str, code: int = 0) -> Result:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
        if code:
            assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        return result

    return invoke


def test_contacts_list_and_show(run: Any, infra: Any) -> None:
    tenant_id = json.loads(run("whoami", "--json").stdout)["tenant"]["id"]
    queue = json.loads(run("queues", "create", "Support", "--json").stdout)
    agent = json.loads(
        run("agents", "add", "--name", "Ada Lovelace", "--email", "ada@acme.example", "--json").stdout
    )
    now = datetime.now(UTC).timestamp()
    old, recent, newest = add_contacts(
        infra,
        tenant_id,
        [
            {
                "caller": "+15550001111",
                "state": "ended",
                "outcome": "abandoned",
                "arrived_at": now - 3 * 86400,
            },
            {
                "caller": "+15550002222",
                "caller_name": "Grace Hopper",
                "dialled": "+15550100",
                "queue_id": uuid.UUID(queue["id"]),
                "queue_name": "Support",
                "state": "wrapped_up",
                "outcome": "handled",
                "disposition": "resolved",
                "notes": "reset the password",
                "ivr_path": ["welcome", "menu"],
                "ivr_digits": "2",
                "agent_id": uuid.UUID(agent["id"]),
                "attributes": {
                    "ivr.flow": "main@3",
                    "ivr.steps": '[{"node":"welcome","seconds":2.04,"digits":""},'
                    '{"node":"menu","seconds":4.5,"digits":"2"}]',
                    "account": "42",
                },
                "transfers": [{"to": "billing", "note": "invoice"}],
                "timeline": [
                    TimelineEntry(at=now - 3600, event="arrived", detail={"dialled": "+15550100"}),
                    TimelineEntry(at=now - 3595.5, event="queued", detail={"queue_id": queue["id"]}),
                    TimelineEntry(at=now - 3590, event="connected", detail={"agent_id": agent["id"]}),
                ],
                "arrived_at": now - 3600,
                "queue_s": 5.5,
                "talk_s": 125.0,
            },
            {"state": "in_ivr", "arrived_at": now - 60},
        ],
    )
    table = run("contacts", "list").stdout
    assert table.index(newest) < table.index(recent) < table.index(old)
    assert "anonymous" in table and "Support" in table and "2m05s" in table and "abandoned" in table
    # The agent by name, as in `contacts show`, not by email or id.
    assert "Ada Lovelace" in table and "ada@acme.example" not in table and agent["id"] not in table
    listed = json.loads(run("contacts", "list", "--json").stdout)
    assert [c["id"] for c in listed] == [newest, recent, old]
    assert [c["id"] for c in json.loads(run("contacts", "list", "--since", "2h", "--json").stdout)] == [
        newest,
        recent,
    ]
    assert [c["id"] for c in json.loads(run("contacts", "list", "--since", "30m", "--json").stdout)] == [
        newest
    ]
    day = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    assert len(json.loads(run("contacts", "list", "--since", day, "--json").stdout)) == 2
    assert [c["id"] for c in json.loads(run("contacts", "list", "--queue", "support", "--json").stdout)] == [
        recent
    ]
    assert [c["id"] for c in json.loads(run("contacts", "list", "--limit", "1", "--json").stdout)] == [newest]
    assert "no contacts" in run("contacts", "list", "--queue", "nothing like it").stdout
    for bad in ("yesterday", "5x", "2026-13-01"):
        assert "--since" in run("contacts", "list", "--since", bad, code=2).stderr

    shown = run("contacts", "show", recent).stdout
    assert "Grace Hopper <+15550002222>" in shown and "welcome > menu" in shown and "resolved" in shown
    assert "reset the password" in shown and "to=billing note=invoice" in shown
    # Names, not ids; the IVR's steps read as a path with times and keys, not as JSON.
    assert (
        "Ada Lovelace <ada@acme.example>" in shown and agent["id"] not in shown and queue["id"] not in shown
    )
    assert "welcome 2.0s > menu 4.5s pressed 2" in shown and "account=42" in shown and '"node"' not in shown
    lines = [line.strip() for line in shown.splitlines()]
    timeline = lines[lines.index("Timeline") + 1 :]
    assert [line.split(maxsplit=4)[2:] for line in timeline] == [
        ["+0.0s", "arrived", "dialled=+15550100"],
        ["+4.5s", "queued", "queue=Support"],
        ["+10.0s", "connected", "agent='Ada Lovelace <ada@acme.example>'"],
    ]
    assert timeline[0].split()[1].endswith("Z")
    body = json.loads(run("contacts", "show", recent, "--json").stdout)
    assert body["timeline"][1]["event"] == "queued" and body["disposition"] == "resolved"
    assert "no contact with this id" in run("contacts", "show", str(uuid.uuid4()), code=1).stderr
    assert "no contact with this id" in run("contacts", "show", "not-an-id", code=1).stderr


def test_widget_keys_and_agent_endpoints_from_the_cli(run: Any, api_server: str) -> None:
    run("queues", "create", "Sales")
    run("queues", "create", "Support")
    added = json.loads(
        run(
            "widget-keys", "add", "--queue", "sales", "--queue", "Support",
            "--origin", "https://Shop.example.com/", "--name", "shop", "--json",
        ).stdout
    )  # fmt: skip
    assert added["public_key"].startswith("pk_") and len(added["queue_ids"]) == 2
    assert added["origins"] == ["https://shop.example.com"]
    human = run("widget-keys", "add", "--queue", "Sales").stdout
    assert "public key: pk_" in human and "any origin" in human
    table = run("widget-keys", "list").stdout
    assert added["public_key"] in table and "Sales,Support" in table
    assert "no queue named 'Nope'" in run("widget-keys", "add", "--queue", "Nope", code=1).stderr
    assert "origins[0]" in run("widget-keys", "add", "--queue", "Sales", "--origin", "shop", code=1).stderr

    # The key works for a caller's page on its origin until it is revoked (by its public key or id).
    def ask() -> httpx.Response:
        body = {"key": added["public_key"], "queue": "Support"}
        return httpx.post(
            f"{api_server}/v1/widget/token", json=body, headers={"Origin": "https://shop.example.com"}
        )

    assert ask().json()["queue_id"] == added["queue_ids"][1]
    assert "Revoked widget key" in run("widget-keys", "revoke", added["public_key"]).stdout
    assert ask().status_code == 401
    listed = json.loads(run("widget-keys", "list", "--json").stdout)
    assert [k["revoked_at"] is not None for k in listed] == [True, False]

    desk = json.loads(
        run(
            "agents", "add", "--name", "Desk", "--email", "desk@acme.example",
            "--endpoint", "sip:desk@pbx.example.com", "--json",
        ).stdout
    )  # fmt: skip
    assert desk["endpoint"] == "sip:desk@pbx.example.com"
    assert "reached in the browser" in run("agents", "add", "--name", "B", "--email", "b@acme.example").stdout
    assert "at +15550199" in run("agents", "update", "desk@acme.example", "--endpoint", "+1 555 0199").stdout
    table = run("agents", "list").stdout
    assert "+15550199" in table and "browser" in table
    out = run("agents", "update", "DESK@acme.example", "--browser", "--name", "Desk 2").stdout
    assert "Updated agent Desk 2" in out and "in the browser" in out
    assert (
        "--endpoint"
        in run("agents", "add", "--name", "X", "--email", "x@a.example", "--endpoint", "tel:1", code=2).stderr
    )
    assert (
        "not both"
        in run("agents", "update", "b@acme.example", "--endpoint", "+15550100", "--browser", code=2).stderr
    )
    assert "endpoint" in run("agents", "update", "b@acme.example", "--endpoint", "sip:@", code=1).stderr


def test_sdk_contacts_widget_keys_and_endpoints_sync(api_server: str, infra: Any) -> None:
    signup = new_tenant(api_server)
    with switchboard.Client(api_key=signup.api_key.key, base_url=api_server) as client:
        ids = add_contacts(
            infra,
            signup.tenant.id,
            [
                {"caller": "+15550003333", "state": "ended", "arrived_at": 1_790_000_000.0 + i}
                for i in range(5)
            ],
        )
        page = client.contacts.list(limit=2)
        assert [c.id for c in page.items] == ids[::-1][:2] and page.next_cursor
        assert isinstance(page.items[0], switchboard.ContactSummary)
        assert [c.id for c in client.contacts.iter(page_size=2)] == ids[::-1]
        since = datetime.fromtimestamp(1_790_000_003, UTC)
        assert [c.id for c in client.contacts.iter(since=since)] == ids[::-1][:2]
        assert [c.id for c in client.contacts.iter(since="2026-09-21T14:13:23Z", caller="+15550003333")] == (
            ids[::-1][:2]
        )
        full = client.contacts.get(ids[0])
        assert isinstance(full, switchboard.Contact) and full.timeline == [] and full.state == "ended"
        with pytest.raises(switchboard.NotFoundError):
            client.contacts.get(str(uuid.uuid4()))

        queue = client.queues.create("Web")
        key = client.widget_keys.create([queue.id], origins=["https://shop.example.com"], name="web")
        assert isinstance(key, switchboard.WidgetKey) and client.widget_keys.get(key.id) == key
        assert [k.id for k in client.widget_keys.list().items] == [key.id]
        with pytest.raises(switchboard.PermissionDeniedError):
            client.widget_token(key.public_key, "Web")  # no Origin: this key names one
        client.widget_keys.revoke(key.id)
        assert client.widget_keys.get(key.id).revoked_at is not None

        agent = client.agents.create("Mobile", "m@acme.example", endpoint="+15550123")
        assert agent.endpoint == "+15550123"
        assert client.agents.update(agent.id, endpoint=None).endpoint is None
        with pytest.raises(switchboard.ValidationError):
            client.agents.update(agent.id, endpoint="sips:")


async def test_sdk_contacts_and_widget_keys_async(api_server: str, infra: Any) -> None:
    signup = new_tenant(api_server)
    ids = await asyncio.to_thread(
        add_contacts,
        infra,
        signup.tenant.id,
        [{"state": "ended", "arrived_at": 1_790_000_000.0 + i} for i in range(3)],
    )
    async with switchboard.AsyncClient(api_key=signup.api_key.key, base_url=api_server) as client:
        assert [c.id async for c in client.contacts.iter(page_size=2)] == ids[::-1]
        assert (await client.contacts.list(limit=1)).items[0].id == ids[-1]
        assert (await client.contacts.get(ids[1])).id == ids[1]
        queue = await client.queues.create("Async web")
        key = await client.widget_keys.create([queue.id])
        token = await client.widget_token(key.public_key, queue.id)
        assert token.queue_id == queue.id and token.expires_in <= 300
        await client.widget_keys.revoke(key.id)
        assert (await client.widget_keys.get(key.id)).revoked_at is not None
        agent = await client.agents.create("Desk", "d@acme.example", endpoint="sip:d@pbx.example.com")
        assert (await client.agents.get(agent.id)).endpoint == "sip:d@pbx.example.com"


def test_numbers_route_straight_to_a_queue(run: Any) -> None:
    queue = json.loads(run("queues", "create", "Support", "--offer-timeout", "12", "--json").stdout)
    assert queue["offer_timeout_seconds"] == 12
    run("numbers", "claim", "+15550107777")
    routed = json.loads(run("numbers", "route", "+15550107777", "--queue", "Support", "--json").stdout)
    assert routed["queue_id"] == queue["id"] and routed["flow_id"] is None
    assert (
        f"straight to queue {queue['id']}"
        in run("numbers", "route", "+15550107777", "--queue", queue["id"]).stdout
    )
    missing = run("numbers", "route", "+15550107777", "--queue", "Nope", code=1)
    assert "Nope" in missing.stderr
    both = CliRunner().invoke(cli, ["numbers", "route", "+15550107777", "--queue", "Support", "--none"])
    assert both.exit_code == 2 and "exactly one" in both.stderr
    bad = CliRunner().invoke(cli, ["queues", "create", "Fast", "--offer-timeout", "2"])
    assert bad.exit_code == 2
