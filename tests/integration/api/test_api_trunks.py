"""SIP trunks through the API: CRUD, validation, HA1 as stored, roles, audit, events, and the media edge
accepting (and refusing) digest credentials set through the API."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import re
import secrets
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import nats
import pytest

from services.kernel.events import ConfigChanged
from services.kernel.subjects import evt_subject

from .conftest import Tenant, assert_problem, auth, signup, unique_e164

PASSWORD = "correct-horse-9"
_MEDIA = Path(__file__).resolve().parents[1] / "media"


def _load(name: str, path: Path) -> Any:
    # tests/ is not a package (importlib mode): the media helpers are loaded by path.
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def _row(infra: Any, trunk_id: str) -> asyncpg.Record:
    conn = await asyncpg.connect(infra.owner_url)
    try:
        return await conn.fetchrow("SELECT * FROM sip_trunks WHERE id = $1", uuid.UUID(trunk_id))
    finally:
        await conn.close()


def _no_secrets(text: str) -> None:
    assert PASSWORD not in text and "ha1" not in text and "password" not in text


async def test_trunk_lifecycle_and_stored_digest(client: httpx.AsyncClient, tenant: Tenant, infra) -> None:
    h = tenant.headers
    r = await client.post(
        "/v1/trunks",
        json={
            "name": " Carrier A ",
            "allowed_ips": ["203.0.113.7", "2001:db8::/32", "198.51.100.0/24", "203.0.113.7"],
            "username": "acme-trunk",
            "password": PASSWORD,
            "outbound_host": "SIP.Carrier.example",
            "outbound_port": 5080,
            "outbound_transport": "tcp",
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    _no_secrets(r.text)
    t = r.json()
    assert t["name"] == "Carrier A"
    assert t["allowed_ips"] == ["203.0.113.7", "2001:db8::/32", "198.51.100.0/24"]
    assert (t["username"], t["realm"], t["has_credentials"]) == ("acme-trunk", "switchboard", True)
    assert (t["outbound_host"], t["outbound_port"], t["outbound_transport"]) == (
        "sip.carrier.example",
        5080,
        "tcp",
    )

    # HA1 = H(username:realm:password), per algorithm, exactly as the edge verifies it.
    row = await _row(infra, t["id"])
    text = f"acme-trunk:switchboard:{PASSWORD}".encode()
    assert row["ha1_sha256"] == hashlib.sha256(text).hexdigest()
    assert row["ha1_md5"] == hashlib.md5(text).hexdigest()
    assert str(row["tenant_id"]) == tenant.id

    got = await client.get(f"/v1/trunks/{t['id']}", headers=h)
    assert got.status_code == 200 and got.json() == t
    listed = await client.get("/v1/trunks", headers=h)
    assert [i["id"] for i in listed.json()["items"]] == [t["id"]]
    _no_secrets(listed.text)

    # A new password under a realm of the carrier's own: new HA1; other fields kept.
    r = await client.patch(
        f"/v1/trunks/{t['id']}",
        json={"password": "another-pass-1", "realm": "carrier.example", "allowed_ips": []},
        headers=h,
    )
    assert r.status_code == 200, r.text
    _no_secrets(r.text)
    assert r.json()["realm"] == "carrier.example" and r.json()["allowed_ips"] == []
    assert r.json()["outbound_host"] == "sip.carrier.example"
    row = await _row(infra, t["id"])
    assert row["ha1_sha256"] == hashlib.sha256(b"acme-trunk:carrier.example:another-pass-1").hexdigest()
    assert row["ha1_md5"] == hashlib.md5(b"acme-trunk:carrier.example:another-pass-1").hexdigest()

    # Credentials removed: the outbound host alone keeps the trunk useful.
    r = await client.patch(f"/v1/trunks/{t['id']}", json={"username": None, "outbound_port": 5060}, headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()["username"], r.json()["realm"], r.json()["has_credentials"]) == (None, None, False)
    assert r.json()["outbound_port"] == 5060
    row = await _row(infra, t["id"])
    assert (row["username"], row["realm"], row["ha1_sha256"], row["ha1_md5"]) == (None, None, None, None)
    # ... and removing that too leaves a trunk that does nothing: refused, nothing changed.
    body = assert_problem(
        await client.patch(f"/v1/trunks/{t['id']}", json={"outbound_host": None}, headers=h), 422
    )
    assert "at least one of allowed_ips" in body["detail"]
    assert (await client.get(f"/v1/trunks/{t['id']}", headers=h)).json()[
        "outbound_host"
    ] == "sip.carrier.example"

    assert (await client.delete(f"/v1/trunks/{t['id']}", headers=h)).status_code == 204
    assert_problem(await client.get(f"/v1/trunks/{t['id']}", headers=h), 404)
    assert_problem(await client.delete(f"/v1/trunks/{t['id']}", headers=h), 404)

    audit = (await client.get("/v1/audit", params={"limit": 200}, headers=h)).json()["items"]
    entries = [a for a in audit if a["target_type"] == "trunk"]
    assert sorted(a["action"] for a in entries) == [
        "trunk.created",
        "trunk.deleted",
        "trunk.updated",
        "trunk.updated",
    ]
    assert all(a["target_id"] == t["id"] for a in entries)
    created = next(a for a in entries if a["action"] == "trunk.created")
    assert created["detail"]["has_credentials"] is True and created["detail"]["username"] == "acme-trunk"
    for a in entries:
        _no_secrets(str(a["detail"]))
        assert "another-pass-1" not in str(a["detail"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x"}, "at least one of"),
        ({"name": " ", "allowed_ips": ["192.0.2.1"]}, "name"),
        ({"name": "x", "allowed_ips": ["999.1.1.1"]}, "allowed_ips[0]"),
        ({"name": "x", "allowed_ips": ["192.0.2.1", "10.0.0.1/8"]}, "did you mean 10.0.0.0/8"),
        ({"name": "x", "allowed_ips": ["example.com"]}, "allowed_ips[0]"),
        ({"name": "x", "allowed_ips": [f"192.0.2.{i}" for i in range(51)]}, "allowed_ips"),
        ({"name": "x", "username": "u"}, "give both or neither"),
        ({"name": "x", "password": PASSWORD}, "give both or neither"),
        ({"name": "x", "username": "u", "password": "short"}, "8-128 printable"),
        ({"name": "x", "username": "a b", "password": PASSWORD}, "username"),
        ({"name": "x", "username": 'a"b', "password": PASSWORD}, "username"),
        ({"name": "x", "username": "u", "password": PASSWORD, "realm": "bad realm"}, "realm"),
        ({"name": "x", "allowed_ips": ["192.0.2.1"], "realm": "r"}, "realm"),
        ({"name": "x", "outbound_host": "bad host!"}, "outbound_host"),
        ({"name": "x", "outbound_host": "-lead.example"}, "outbound_host"),
        ({"name": "x", "outbound_host": "1.2.3.999"}, "outbound_host"),
        ({"name": "x", "outbound_host": "sip.example", "outbound_port": 0}, "outbound_port"),
        ({"name": "x", "outbound_host": "sip.example", "outbound_port": 70000}, "outbound_port"),
        (
            {"name": "x", "allowed_ips": ["192.0.2.1"], "outbound_port": 5060},
            "only applies with outbound_host",
        ),
        ({"name": "x", "outbound_host": "sip.example", "outbound_transport": "sctp"}, "outbound_transport"),
        ({"name": "x", "allowed_ips": ["192.0.2.1"], "ha1_md5": "00"}, "ha1_md5"),
    ],
)
async def test_bad_trunks_are_clear_422s(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    problem = assert_problem(await client.post("/v1/trunks", json=body, headers=tenant.headers), 422)
    assert field in problem["detail"], problem
    assert (await client.get("/v1/trunks", headers=tenant.headers)).json()["items"] == []


async def test_trunk_patch_rules_and_conflicts(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers
    a = (await client.post("/v1/trunks", json={"name": "a", "allowed_ips": ["192.0.2.1"]}, headers=h)).json()
    await client.post("/v1/trunks", json={"name": "b", "outbound_host": "192.0.2.9"}, headers=h)
    assert_problem(
        await client.post("/v1/trunks", json={"name": "a", "allowed_ips": ["192.0.2.2"]}, headers=h), 409
    )
    assert_problem(await client.patch(f"/v1/trunks/{a['id']}", json={"name": "b"}, headers=h), 409)
    url = f"/v1/trunks/{a['id']}"
    # The digest depends on username, realm and password together.
    assert (
        "password"
        in assert_problem(await client.patch(url, json={"username": "u"}, headers=h), 422)["detail"]
    )
    assert (
        "password" in assert_problem(await client.patch(url, json={"realm": "r"}, headers=h), 422)["detail"]
    )
    assert (
        "no username"
        in assert_problem(await client.patch(url, json={"password": PASSWORD}, headers=h), 422)["detail"]
    )
    assert_problem(await client.patch(url, json={"username": None, "password": PASSWORD}, headers=h), 422)
    assert_problem(await client.patch(url, json={"outbound_port": 5062}, headers=h), 422)
    r = await client.patch(url, json={"username": "u1", "password": PASSWORD}, headers=h)
    assert r.status_code == 200 and r.json()["has_credentials"] and r.json()["realm"] == "switchboard"
    r = await client.patch(
        url, json={"outbound_host": "[2001:db8::1]", "outbound_transport": "tcp"}, headers=h
    )
    assert (r.json()["outbound_host"], r.json()["outbound_port"], r.json()["outbound_transport"]) == (
        "2001:db8::1",
        5060,
        "tcp",
    )
    assert_problem(await client.patch("/v1/trunks/not-an-id", json={"name": "z"}, headers=h), 404)

    # An idempotent create answers the retry with the same trunk.
    key = {"Idempotency-Key": "trunk-" + secrets.token_hex(4)}
    body = {"name": "idem", "allowed_ips": ["192.0.2.3"]}
    first = await client.post("/v1/trunks", json=body, headers=h | key)
    again = await client.post("/v1/trunks", json=body, headers=h | key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.headers.get("idempotent-replayed") == "true"


async def test_only_admins_change_trunks(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers
    trunk = (
        await client.post("/v1/trunks", json={"name": "t", "allowed_ips": ["192.0.2.1"]}, headers=h)
    ).json()
    for role in ("supervisor", "developer"):
        key = (await client.post("/v1/keys", json={"role": role}, headers=h)).json()["key"]
        other = auth(key)
        assert (await client.get("/v1/trunks", headers=other)).status_code == 200
        assert (await client.get(f"/v1/trunks/{trunk['id']}", headers=other)).json() == trunk
        assert_problem(
            await client.post("/v1/trunks", json={"name": "x", "allowed_ips": ["192.0.2.2"]}, headers=other),
            403,
        )
        assert_problem(
            await client.patch(f"/v1/trunks/{trunk['id']}", json={"name": "y"}, headers=other), 403
        )
        assert_problem(await client.delete(f"/v1/trunks/{trunk['id']}", headers=other), 403)
    assert_problem(await client.get("/v1/trunks"), 401)
    assert [i["name"] for i in (await client.get("/v1/trunks", headers=h)).json()["items"]] == ["t"]


async def test_trunk_changes_are_published(client: httpx.AsyncClient, tenant: Tenant, infra) -> None:
    nc = await nats.connect(infra.nats_url)
    try:
        sub = await nc.subscribe(evt_subject(tenant.id, "config", "changed"))
        h = tenant.headers
        t = (
            await client.post("/v1/trunks", json={"name": "e", "allowed_ips": ["192.0.2.1"]}, headers=h)
        ).json()
        await client.patch(f"/v1/trunks/{t['id']}", json={"name": "e2"}, headers=h)
        await client.delete(f"/v1/trunks/{t['id']}", headers=h)
        seen = []
        for _ in range(3):
            msg = await sub.next_msg(timeout=5)
            change = msgspec.json.decode(msg.data, type=ConfigChanged)
            seen.append((change.kind, change.op, str(change.object_id)))
        assert seen == [("trunk", op, t["id"]) for op in ("created", "updated", "deleted")]
    finally:
        await nc.close()


# --- the media edge uses what the API stored ---------------------------------------------------------------


def _digest(challenge: str, *, user: str, password: str, uri: str) -> str:
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    alg = params.get("algorithm", "MD5")
    fn = hashlib.sha256 if alg == "SHA-256" else hashlib.md5

    def h(s: str) -> str:
        return fn(s.encode()).hexdigest()

    ha1, ha2 = h(f"{user}:{params['realm']}:{password}"), h(f"INVITE:{uri}")
    cnonce, nc = secrets.token_hex(4), "00000001"
    response = h(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", uri="{uri}", '
        f'response="{response}", algorithm={alg}, qop=auth, nc={nc}, cnonce="{cnonce}"'
    )


def _invite(port: int, number: str, *, user: str, password: str | None, algorithm: str) -> tuple[int, int]:
    """(first status, final status after answering the challenge with `password`; 0 when not tried)."""
    sip = _load("_trunk_sipclient", _MEDIA / "sipclient.py")
    client = sip.UdpSip(port)
    uri = f"sip:{number}@127.0.0.1:{port}"
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    try:
        client.send(
            sip.request(
                "INVITE", uri, local_port=client.local_port, call_id=call_id, from_tag=tag, body=sip.sdp(4030)
            )
        )
        first = client.recv_final(5.0)
        assert first is not None
        status = sip.status_of(first)
        to_tag = (sip.header(first, "To") or "").split("tag=")[-1]
        client.send(
            sip.request(
                "ACK", uri, local_port=client.local_port, call_id=call_id, from_tag=tag, to_tag=to_tag
            )
        )
        if status != 401 or password is None:
            return status, 0
        challenges = [
            line.split(":", 1)[1].strip()
            for line in first.decode().split("\r\n")
            if line.lower().startswith("www-authenticate")
        ]
        challenge = next(c for c in challenges if f"algorithm={algorithm}" in c)
        auth_value = _digest(challenge, user=user, password=password, uri=uri)
        client.send(
            sip.request(
                "INVITE",
                uri,
                local_port=client.local_port,
                call_id=call_id,
                from_tag=tag,
                cseq=2,
                body=sip.sdp(4030),
                extra=f"Authorization: {auth_value}\r\n",
            )
        )
        final = client.recv_final(5.0)
        assert final is not None
        return status, sip.status_of(final)
    finally:
        client.close()


async def test_media_edge_accepts_credentials_set_through_the_api(client: httpx.AsyncClient, infra) -> None:
    digest, allowlisted = await signup(client), await signup(client)
    numbers = {}
    for t in (digest, allowlisted):
        numbers[t.id] = unique_e164()
        r = await client.post("/v1/numbers", json={"e164": numbers[t.id]}, headers=t.headers)
        assert r.status_code == 201, r.text
    # Digest trunk plus an allowlist that does not hold the caller's address (127.0.0.1).
    r = await client.post(
        "/v1/trunks",
        json={
            "name": "carrier",
            "username": "pbx-1",
            "password": PASSWORD,
            "allowed_ips": ["198.51.100.0/24"],
        },
        headers=digest.headers,
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/trunks", json={"name": "office", "allowed_ips": ["127.0.0.0/8"]}, headers=allowlisted.headers
    )
    assert r.status_code == 201, r.text
    office = r.json()["id"]

    media = _load("_trunk_media_fixtures", _MEDIA / "conftest.py")

    def calls(port: int) -> list[tuple[int, int]]:
        n = numbers[digest.id]
        return [
            _invite(port, n, user="pbx-1", password=PASSWORD, algorithm="SHA-256"),
            _invite(port, n, user="pbx-1", password=PASSWORD, algorithm="MD5"),
            _invite(port, n, user="pbx-1", password="wrong-password", algorithm="SHA-256"),
            _invite(port, n, user="someone-else", password=PASSWORD, algorithm="MD5"),
            _invite(port, numbers[allowlisted.id], user="", password=None, algorithm="SHA-256"),
        ]

    with media.start_media(infra) as (port, _pid, _log):
        results = await asyncio.to_thread(calls, port)
        assert results == [(401, 200), (401, 200), (401, 401), (401, 401), (200, 0)]
        # The route (with its trunks) is cached now; a trunk change applies to the next calls all the
        # same, because media drops the tenant's cached routes on config.changed of kind trunk.
        r = await client.patch(
            f"/v1/trunks/{office}", json={"allowed_ips": ["192.0.2.0/24"]}, headers=allowlisted.headers
        )
        assert r.status_code == 200, r.text
        after = None
        for _ in range(50):  # the event reaches media asynchronously; well under the cache's 60 s
            after = await asyncio.to_thread(
                _invite, port, numbers[allowlisted.id], user="", password=None, algorithm="SHA-256"
            )
            if after[0] == 403:
                break
            await asyncio.sleep(0.1)
        assert after is not None and after[0] == 403, after
