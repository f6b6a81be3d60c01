"""The SDK against the real API (the `api_server` fixture): idempotent retries, pagination, typed errors,
and the async client's full CRUD round trip.
"""

from __future__ import annotations

import uuid

import pytest
import switchboard


def new_tenant(api_server: str) -> switchboard.SignupResult:
    tag = uuid.uuid4().hex[:10]
    return switchboard.signup(f"SDK {tag}", f"sdk-{tag}@acme.example", base_url=api_server)


def test_a_repeated_purchase_with_one_idempotency_key_is_applied_once(api_server: str) -> None:
    signup = new_tenant(api_server)
    assert signup.seats.purchased == 2 and signup.api_key.key.startswith("sbk_")
    with switchboard.Client(api_key=signup.api_key.key, base_url=api_server) as client:
        key = str(uuid.uuid4())
        first = client.seats.purchase(3, idempotency_key=key)
        again = client.seats.purchase(3, idempotency_key=key)
        assert first.purchased == again.purchased == 5
        assert client.seats.get().purchased == 5
        # Without a fixed key, each call is its own purchase.
        assert client.seats.purchase(1).purchased == 6
        assert client.seats.purchase(1).purchased == 7
        with pytest.raises(switchboard.ValidationError):
            # Same key, different body: the API refuses rather than guess.
            client.seats.purchase(2, idempotency_key=key)


def test_pagination_walks_every_page_in_creation_order(api_server: str) -> None:
    signup = new_tenant(api_server)
    with switchboard.Client(api_key=signup.api_key.key, base_url=api_server) as client:
        made = [
            client.agents.create(f"Agent {n}", f"p{n}@acme.example", skills={"sales": n}).id for n in range(5)
        ]
        page = client.agents.list(limit=2)
        assert [a.id for a in page.items] == made[:2] and page.next_cursor
        assert [a.id for a in client.agents.iter(page_size=2)] == made
        assert [a.id for a in client.agents.list(all=True, limit=3).items] == made


def test_api_errors_arrive_typed_with_their_problem_details(api_server: str) -> None:
    signup = new_tenant(api_server)
    with switchboard.Client(api_key=signup.api_key.key, base_url=api_server) as client:
        with pytest.raises(switchboard.NotFoundError) as missing:
            client.queues.get(str(uuid.uuid4()))
        assert missing.value.status == 404 and missing.value.slug == "not-found"
        with pytest.raises(switchboard.ValidationError) as invalid:
            client.agents.create("Ann", "not-an-email")
        assert "email" in [e.field for e in invalid.value.errors]
        with pytest.raises(switchboard.ConflictError):
            client.seats.release(10)
    with switchboard.Client(api_key="sbk_" + "z" * 43, base_url=api_server) as stranger:
        with pytest.raises(switchboard.AuthenticationError):
            stranger.me()


async def test_async_client_round_trip(api_server: str) -> None:
    tag = uuid.uuid4().hex[:10]
    signup = await switchboard.async_signup(f"Async {tag}", f"async-{tag}@acme.example", base_url=api_server)
    async with switchboard.AsyncClient(api_key=signup.api_key.key, base_url=api_server) as client:
        me = await client.me()
        assert me.tenant.id == signup.tenant.id
        site = await client.sites.create("Lisbon", timezone="Europe/Lisbon", kind="home")
        site = await client.sites.update(site.id, name="Lisboa")
        assert (await client.sites.get(site.id)).name == "Lisboa"
        queue = await client.queues.create("Support", skills={"support": 4}, sl_percent=90, sl_seconds=30)
        number = await client.numbers.claim("+1555" + str(uuid.uuid4().int)[:7])
        number = await client.numbers.update(number.id, queue_id=queue.id)
        assert number.queue_id == queue.id
        number = await client.numbers.update(number.id, queue_id=None)
        assert number.queue_id is None
        await client.numbers.release(number.id)
        assert [n async for n in client.numbers.iter()] == []
        await client.sites.delete(site.id)
        with pytest.raises(switchboard.NotFoundError):
            await client.sites.get(site.id)
        usage = await client.usage()
        assert usage.seat_seconds >= 0 and usage.from_ < usage.to
        entries = (await client.audit.list(all=True)).items
        assert {"site.created", "number.claimed"} <= {e.action for e in entries}
