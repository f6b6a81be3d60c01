"""Recordings through the API: list and search, signed expiring URLs (tampering refused), the WAV verified,
deletion and legal hold, every access audited, and tenant B shut out of tenant A's recordings."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from services.api import create_app
from services.kernel import events as ev
from services.kernel.config import load_settings
from services.kernel.events import CallRecording
from services.kernel.waits import flushed

from ..api.conftest import Tenant, assert_problem, auth, insert_contact, serve, signup
from .conftest import Stack


@pytest.fixture
async def api(stack: Stack, infra: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(
        {},
        database_url=infra.app_url,
        nats_url=infra.nats_url,
        token_secret=infra.token_secret,
        signup_rate_per_minute=100_000,
        recording_key_file=str(stack.key_path),
        recording_store=f"file:{stack.store.root}",
        recording_url_ttl_s=60,
    )
    async with serve(create_app(settings, key_rate_per_minute=100_000)) as client:
        yield client


async def recorded(stack: Stack, infra: Any, tenant: Tenant, **contact: Any) -> str:
    """A contact and its recording, stored by the real pipeline."""
    contact_id = await insert_contact(infra, tenant.id, **contact)
    rid = await stack.record_call(uuid.UUID(tenant.id), 1.0, call_id=uuid.UUID(contact_id))
    await stack.wait_status(uuid.UUID(tenant.id), rid, "available")
    return contact_id


async def test_list_search_play_and_audit(stack: Stack, api: httpx.AsyncClient, infra: Any) -> None:
    await stack.start_pipeline()
    a = await signup(api)
    first = await recorded(stack, infra, a, caller="+15550001111", dialled="+15559990000", queue_name="sales")
    second = await recorded(
        stack, infra, a, caller="+15550002222", dialled="+15559990000", queue_name="support"
    )
    h = auth(a.key)

    listed = (await api.get("/v1/recordings", headers=h)).json()["items"]
    assert [r["id"] for r in listed] == [second, first]  # newest first
    assert listed[0]["status"] == "available" and listed[0]["duration_s"] == pytest.approx(1.0)
    by_number = (await api.get("/v1/recordings", params={"number": "+15550001111"}, headers=h)).json()[
        "items"
    ]
    assert [r["id"] for r in by_number] == [first]
    by_queue = (await api.get("/v1/recordings", params={"queue": "support"}, headers=h)).json()["items"]
    assert [r["id"] for r in by_queue] == [second]
    by_contact = (await api.get("/v1/recordings", params={"contact": first}, headers=h)).json()["items"]
    assert [r["id"] for r in by_contact] == [first]
    page = (await api.get("/v1/recordings", params={"limit": 1}, headers=h)).json()
    rest = (await api.get("/v1/recordings", params={"cursor": page["next_cursor"]}, headers=h)).json()
    assert [r["id"] for r in page["items"] + rest["items"]] == [second, first]

    contact = (await api.get(f"/v1/contacts/{first}", headers=h)).json()
    assert contact["recording"]["id"] == first and contact["recording"]["status"] == "available"

    issued = await api.get(f"/v1/recordings/{first}/url", headers=h)
    assert issued.status_code == 200, issued.text
    url = urlsplit(issued.json()["url"])
    audio = await api.get(f"{url.path}?{url.query}")  # no API key: the signature is the credential
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert audio.content[:4] == b"RIFF" and audio.headers["x-content-sha256"] == listed[1]["sha256"]

    actions = [e["action"] for e in (await api.get("/v1/audit", headers=h)).json()["items"]]
    assert actions.count("recording.url_issued") == 1 and actions.count("recording.downloaded") == 1


async def test_tampered_expired_or_other_tenant_urls_are_refused(
    stack: Stack, api: httpx.AsyncClient, infra: Any
) -> None:
    await stack.start_pipeline()
    a, b = await signup(api), await signup(api)
    rid = await recorded(stack, infra, a, caller="+15550003333")
    url = urlsplit((await api.get(f"/v1/recordings/{rid}/url", headers=auth(a.key))).json()["url"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}

    for changed in (
        {"tenant": b.id},
        {"expires": str(int(query["expires"]) + 3600)},
        {"sig": query["sig"][:-2] + "AA"},
    ):
        r = await api.get(f"{url.path}?{urlencode({**query, **changed})}")
        assert_problem(r, 403)
    other = await recorded(stack, infra, a, caller="+15550004444")
    assert_problem(await api.get(f"/v1/recording-audio/{other}?{url.query}"), 403)  # another recording
    from services.api.recordings import sign_audio_url

    expired = sign_audio_url(infra.token_secret, uuid.UUID(a.id), uuid.UUID(rid), int(time.time()) - 1)
    assert "expired" in assert_problem(await api.get(expired), 403)["detail"]

    hb = auth(b.key)
    assert (await api.get("/v1/recordings", headers=hb)).json()["items"] == []
    assert_problem(await api.get(f"/v1/recordings/{rid}", headers=hb), 404)
    assert_problem(await api.get(f"/v1/recordings/{rid}/url", headers=hb), 404)
    assert_problem(await api.delete(f"/v1/recordings/{rid}", headers=hb), 404)
    # B's own validly signed URL for A's recording id finds nothing under B's tenant.
    forged = sign_audio_url(infra.token_secret, uuid.UUID(b.id), uuid.UUID(rid), int(time.time()) + 60)
    assert_problem(await api.get(forged), 404)


async def test_hold_blocks_deletion_and_deletion_is_audited(
    stack: Stack, api: httpx.AsyncClient, infra: Any
) -> None:
    await stack.start_pipeline()
    a = await signup(api)
    rid = await recorded(stack, infra, a)
    h = auth(a.key)
    held = await api.post(f"/v1/recordings/{rid}/hold", headers=h)
    assert held.status_code == 200 and held.json()["legal_hold"] is True
    assert "legal hold" in assert_problem(await api.delete(f"/v1/recordings/{rid}", headers=h), 409)["detail"]
    assert (await api.delete(f"/v1/recordings/{rid}/hold", headers=h)).json()["legal_hold"] is False
    deleted: asyncio.Queue[ev.RecordingDeleted] = asyncio.Queue()
    listener = await stack.bus.listen([ev.RecordingDeleted], deleted.put, tenant_id=a.id)
    await flushed(stack.bus.nc)
    try:
        assert (await api.delete(f"/v1/recordings/{rid}", headers=h)).status_code == 204
        event = await asyncio.wait_for(deleted.get(), 10)  # recording.deleted, reason request
    finally:
        await listener.stop()
    assert (str(event.recording_id), event.reason) == (rid, "request")
    got = (await api.get(f"/v1/recordings/{rid}", headers=h)).json()
    assert got["status"] == "deleted" and got["deleted_reason"] == "request"
    assert not list(stack.store.root.rglob("*.sbrec"))  # the sealed file is gone
    assert (await api.get("/v1/recordings", headers=h)).json()["items"] == []
    assert (await api.get(f"/v1/contacts/{rid}", headers=h)).json()["recording"] is None
    assert_problem(await api.get(f"/v1/recordings/{rid}/url", headers=h), 409)
    actions = [e["action"] for e in (await api.get("/v1/audit", headers=h)).json()["items"]]
    assert ["recording.hold", "recording.release", "recording.deleted"] == [
        x for x in actions if x.startswith("recording.")
    ]
    supervisor = (await api.post("/v1/keys", json={"role": "supervisor"}, headers=h)).json()["key"]
    assert_problem(await api.post(f"/v1/recordings/{rid}/hold", headers=auth(supervisor)), 403)


async def test_queue_recording_policy_and_pause_without_a_live_call(
    stack: Stack, api: httpx.AsyncClient, infra: Any
) -> None:
    a = await signup(api)
    h = auth(a.key)
    queue = (await api.post("/v1/queues", json={"name": "rec", "recording_percent": 25}, headers=h)).json()
    assert queue["recording_percent"] == 25 and queue["recording_retention_days"] is None
    changed = await api.patch(
        f"/v1/queues/{queue['id']}",
        json={"recording_percent": 100, "recording_retention_days": 90},
        headers=h,
    )
    assert changed.status_code == 200 and changed.json()["recording_percent"] == 100
    assert changed.json()["recording_retention_days"] == 90
    cleared = await api.patch(f"/v1/queues/{queue['id']}", json={"recording_percent": None}, headers=h)
    assert cleared.json()["recording_percent"] is None  # the tenant's setting applies
    for bad in ({"recording_percent": 101}, {"recording_percent": -1}, {"recording_retention_days": 0}):
        assert_problem(await api.patch(f"/v1/queues/{queue['id']}", json=bad, headers=h), 422)
    # The queue's own announcement (null: the tenant's; "": none for this queue), checked like any text.
    assert queue["recording_announcement"] is None
    for told, kept in (("Calls here are recorded.", "Calls here are recorded."), ("  ", ""), (None, None)):
        r = await api.patch(f"/v1/queues/{queue['id']}", json={"recording_announcement": told}, headers=h)
        assert r.status_code == 200 and r.json()["recording_announcement"] == kept, r.text
    for bad in ("x" * 501, "bell\x07"):
        assert_problem(
            await api.patch(f"/v1/queues/{queue['id']}", json={"recording_announcement": bad}, headers=h), 422
        )

    await stack.start_pipeline()
    done = await recorded(stack, infra, a)
    assert (
        "available"
        in assert_problem(await api.post(f"/v1/recordings/{done}/pause", headers=h), 409)["detail"]
    )
    live = await insert_contact(infra, a.id)
    await stack.bus.publish(
        CallRecording(tenant_id=uuid.UUID(a.id), call_id=uuid.UUID(live), state="started", spool=live)
    )
    await stack.wait_status(uuid.UUID(a.id), uuid.UUID(live), "recording")
    # No media worker holds this call: the pause cannot be done and says so.
    assert (
        "not live" in assert_problem(await api.post(f"/v1/recordings/{live}/pause", headers=h), 409)["detail"]
    )


async def test_opus_copy_kept_by_policy_decodes_to_each_party_and_is_refused_without_one(
    stack: Stack, api: httpx.AsyncClient, infra: Any
) -> None:
    import io

    import av
    import numpy as np

    from .conftest import AGENT_HZ, CALLER_HZ

    await stack.start_pipeline()
    a = await signup(api)
    h = auth(a.key)
    without = await recorded(stack, infra, a, caller="+15550005555")
    assert_problem(await api.get(f"/v1/recordings/{without}/url", params={"format": "opus"}, headers=h), 409)
    assert_problem(await api.get(f"/v1/recordings/{without}/url", params={"format": "mp3"}, headers=h), 422)
    policy = {"recording_percent": 100, "retention_days": None, "opus_copy": True, "announcement": None}
    assert (await api.put("/v1/recording-settings", json=policy, headers=h)).json()["opus_copy"] is True
    rid = await recorded(stack, infra, a, caller="+15550006666")
    meta = (await api.get(f"/v1/recordings/{rid}", headers=h)).json()
    assert meta["formats"] == ["wav", "opus"]
    url = urlsplit(
        (await api.get(f"/v1/recordings/{rid}/url", params={"format": "opus"}, headers=h)).json()["url"]
    )
    ogg = await api.get(f"{url.path}?{url.query}")
    assert ogg.status_code == 200 and ogg.headers["content-type"] == "audio/ogg"
    assert (
        ogg.content[:4] == b"OggS" and len(ogg.content) < meta["size_bytes"] / 2
    )  # compressed (headers weigh on 1 s)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    # The format is signed: the Opus URL does not fetch the master, nor the master's URL the copy.
    assert_problem(await api.get(f"{url.path}?{urlencode({**query, 'format': 'wav'})}"), 403)

    # Decoded back (PyAV, libopus): one second, the caller's tone on the left, the agent's on the right.
    decoded = av.open(io.BytesIO(ogg.content))
    assert decoded.streams.audio[0].codec_context.name == "opus"
    pcm = np.concatenate([f.to_ndarray() for f in decoded.decode(audio=0)], axis=1)
    rate = decoded.streams.audio[0].rate
    assert pcm.shape[0] == 2 and pcm.shape[1] / rate == pytest.approx(1.0, abs=0.03)
    for channel, hz in ((0, CALLER_HZ), (1, AGENT_HZ)):
        part = pcm[channel, int(0.1 * rate) : int(0.9 * rate)]
        spectrum = np.abs(np.fft.rfft(part))
        assert np.fft.rfftfreq(len(part), 1 / rate)[int(np.argmax(spectrum[1:])) + 1] == pytest.approx(
            hz, abs=5
        )
    # Deleting the recording deletes the copy too.
    opus_file = stack.store.root / f"{a.id}/{rid}.opus.sbrec"
    assert opus_file.exists() and b"OggS" not in opus_file.read_bytes()  # sealed like the master
    assert (await api.delete(f"/v1/recordings/{rid}", headers=h)).status_code == 204
    assert not opus_file.exists()


async def test_a_transferred_contact_is_one_conversation_of_segments_in_order(
    stack: Stack, api: httpx.AsyncClient, infra: Any
) -> None:
    """As the coordinator names them at each bridge (tests/unit/contacts/test_consult.py): the first agent,
    the consultation of a second, the second agent with the caller; listed, searched and read as one."""
    await stack.start_pipeline()
    a = await signup(api)
    h = auth(a.key)
    contact = uuid.UUID(await insert_contact(infra, a.id, caller="+15550007777"))
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    labels = [
        {"kind": "talk", "agent_id": first},
        {"kind": "consult", "agent_id": first, "consulted_agent_id": second},
        {"kind": "talk", "agent_id": second},
    ]
    ids = []
    for n, label in enumerate(labels):
        rid = contact if n == 0 else uuid.uuid5(contact, f"segment:{n}")
        segment = {"recording_id": rid, "contact_id": contact, "segment": n, **label}
        await stack.record_call(uuid.UUID(a.id), 1.0 + n / 2, call_id=rid, segment=segment)
        await stack.wait_status(uuid.UUID(a.id), rid, "available")
        ids.append(str(rid))

    for by in (ids[0], ids[2]):  # by the contact's id or any segment's
        whole = (await api.get(f"/v1/recordings/{by}/conversation", headers=h)).json()
        assert whole["contact_id"] == str(contact) and whole["duration_s"] == pytest.approx(4.5)
        assert [
            (s["id"], s["segment"], s["kind"], s["agent_id"], s["consulted_agent_id"])
            for s in whole["segments"]
        ] == [
            (ids[0], 0, "talk", first, None),
            (ids[1], 1, "consult", first, second),
            (ids[2], 2, "talk", second, None),
        ]
        assert {s["caller"] for s in whole["segments"]} == {"+15550007777"}  # each with its contact's facts
    listed = (await api.get("/v1/recordings", params={"contact": str(contact)}, headers=h)).json()["items"]
    assert sorted(r["id"] for r in listed) == sorted(ids)
    by_second = (await api.get("/v1/recordings", params={"agent": second}, headers=h)).json()["items"]
    assert sorted(r["id"] for r in by_second) == sorted(ids[1:])  # consulted, then talked to the caller
    linked = (await api.get(f"/v1/contacts/{contact}", headers=h)).json()
    assert [r["id"] for r in linked["recordings"]] == ids and linked["recording"]["id"] == ids[0]
    for rid in ids:  # each segment plays
        url = urlsplit((await api.get(f"/v1/recordings/{rid}/url", headers=h)).json()["url"])
        assert (await api.get(f"{url.path}?{url.query}")).content[:4] == b"RIFF"
    other = await signup(api)
    assert_problem(await api.get(f"/v1/recordings/{ids[1]}/conversation", headers=auth(other.key)), 404)
