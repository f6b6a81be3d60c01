"""`switchboard recordings ...` and the SDK's `client.recordings` against the real API server process (the
`api_server` fixture) and recordings stored by the real pipeline."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import switchboard
from click.testing import CliRunner, Result
from switchboard_cli.main import cli

from services.kernel import events as ev
from services.kernel.ids import new_id, voicemail_id
from services.recording.store import LocalStore
from services.recording.vault import KeyRing, LocalMasterKey

from ..api.conftest import insert_contact
from .conftest import Stack
from .test_voicemails import write_message


def run(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
    return result


@pytest.fixture
async def tenant(
    api_server: str, stack: Stack, infra: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    # The pipeline shares the API server's master key and store (its SB_DATA_DIR).
    stack.keys = KeyRing(LocalMasterKey.load_or_create(infra.data_dir / "keys" / "recording-master.key"))
    stack.store = LocalStore(infra.data_dir / "recordings")
    await stack.start_pipeline()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    tag = uuid.uuid4().hex[:10]
    signed = switchboard.signup(f"Rec {tag}", f"rec-{tag}@acme.example", base_url=api_server)
    monkeypatch.setenv("SB_API_URL", api_server)
    monkeypatch.setenv("SB_API_KEY", signed.api_key.key)
    monkeypatch.delenv("SB_PROFILE", raising=False)
    return signed


async def test_cli_list_get_hold_delete(
    tenant: Any, stack: Stack, infra: Any, tmp_path: Path, api_server: str
) -> None:
    tid = uuid.UUID(tenant.tenant.id)
    contact = await insert_contact(infra, str(tid), caller="+15550006666", queue_name="sales")
    rid = await stack.record_call(tid, 1.0, call_id=uuid.UUID(contact))
    row = await stack.wait_status(tid, rid, "available")

    listed = json.loads(run("recordings", "list", "--json").stdout)
    assert [r["id"] for r in listed] == [contact] and listed[0]["caller"] == "+15550006666"
    assert contact in run("recordings", "list", "--number", "+15550006666").stdout
    assert "no recordings" in run("recordings", "list", "--queue", "support").stdout

    out = tmp_path / "call.wav"
    got = json.loads(run("recordings", "get", contact, "-o", str(out), "--json").stdout)
    assert out.read_bytes()[:4] == b"RIFF" and hashlib.sha256(out.read_bytes()).hexdigest() == row["sha256"]
    assert got["sha256"] == row["sha256"] and not (tmp_path / "call.wav.part").exists()
    assert "legal hold" in run("recordings", "get", contact).stdout

    assert "legal hold on" in run("recordings", "hold", contact).stdout
    assert "legal hold" in run("recordings", "delete", contact, "--yes", code=1).stderr
    assert "pass --yes" in run("recordings", "delete", contact, code=2).stderr
    run("recordings", "hold", contact, "--release")
    assert "deleted recording" in run("recordings", "delete", contact, "--yes").stdout
    assert "is deleted" in run("recordings", "get", contact, "-o", str(tmp_path / "again.wav"), code=1).stderr
    assert "no recording" in run("recordings", "get", str(uuid.uuid4()), code=1).stderr

    # The async SDK sees the same, and its download reports progress.
    async with switchboard.AsyncClient(api_key=tenant.api_key.key, base_url=api_server) as client:
        rec = await client.recordings.get(contact)
        assert rec.status == "deleted" and rec.deleted_reason == "request"
        other = await insert_contact(infra, str(tid), caller="+15550007777")
        await stack.record_call(tid, 0.5, call_id=uuid.UUID(other))
        await stack.wait_status(tid, uuid.UUID(other), "available")
        seen: list[int] = []
        path = await client.recordings.download(
            other, tmp_path / "b.wav", progress=lambda n, _t: seen.append(n)
        )
        assert path.stat().st_size == seen[-1] > 8000


async def test_cli_tenant_settings_and_key_rotation(
    tenant: Any, stack: Stack, infra: Any, tmp_path: Path
) -> None:
    tid = uuid.UUID(tenant.tenant.id)
    shown = json.loads(run("recordings", "settings", "--json").stdout)
    assert shown == {"recording_percent": 0, "retention_days": None, "opus_copy": False, "announcement": None}
    changed = json.loads(
        run("recordings", "settings", "--recording", "30", "--retention", "90", "--json").stdout
    )
    assert changed == {
        "recording_percent": 30,
        "retention_days": 90,
        "opus_copy": False,
        "announcement": None,
    }
    told = json.loads(
        run(
            "recordings", "settings", "--opus-copy", "--announcement", "This call may be recorded.", "--json"
        ).stdout
    )
    assert told == {**changed, "opus_copy": True, "announcement": "This call may be recorded."}
    assert (
        "announcement  none"
        in run("recordings", "settings", "--no-opus-copy", "--announcement", "none").stdout
    )
    assert "until deleted" in run("recordings", "settings", "--retention", "none").stdout
    assert "expected" in run("recordings", "settings", "--recording", "150", code=2).stderr

    first = await insert_contact(infra, str(tid))
    await stack.record_call(tid, 0.5, call_id=uuid.UUID(first))
    row1 = await stack.wait_status(tid, uuid.UUID(first), "available")
    assert row1["retention_days"] is None  # "none" was the last setting
    rotated = json.loads(run("recordings", "rotate-key", "--json").stdout)
    stack.keys._cache.clear()  # the pipeline reads the key ring again, as a restarted service would
    second = await insert_contact(infra, str(tid))
    await stack.record_call(tid, 0.5, call_id=uuid.UUID(second))
    row2 = await stack.wait_status(tid, uuid.UUID(second), "available")
    assert str(row2["key_id"]) == rotated["id"] != str(row1["key_id"])
    for rid in (first, second):  # both keys still open what they sealed
        out = tmp_path / f"{rid}.wav"
        run("recordings", "get", rid, "-o", str(out))
        assert out.read_bytes()[:4] == b"RIFF"


async def test_cli_lists_a_voicemail_apart_and_downloads_it(
    tenant: Any, stack: Stack, tmp_path: Path
) -> None:
    """A caller's message is a recording of kind voicemail: listed with its KIND, filtered by `--kind` and
    by the contact it was left on, downloaded through its signed URL and checked against its SHA-256."""
    tid = uuid.UUID(tenant.tenant.id)
    call = new_id()
    plain = write_message(stack.data_dir, call, 1.0)
    await stack.bus.publish(
        ev.CallRecordFinished(
            tenant_id=tid, call_id=call, file=f"voicemail/{call}.wav", seconds=1.0, ts=1.0e9
        )
    )
    rid = str(voicemail_id(call))
    await stack.wait_status(tid, uuid.UUID(rid), "available")
    listed = json.loads(run("recordings", "list", "--kind", "voicemail", "--json").stdout)
    assert [(r["id"], r["kind"], r["left_on"], r["law"]) for r in listed] == [
        (rid, "voicemail", str(call), "L16")
    ]
    assert json.loads(run("recordings", "list", "--contact", str(call), "--json").stdout)[0]["id"] == rid
    assert "no recordings" in run("recordings", "list", "--kind", "talk").stdout
    table = run("recordings", "list").stdout
    assert "KIND" in table.splitlines()[0] and "voicemail" in table
    out = tmp_path / "message.wav"
    run("recordings", "get", rid, "-o", str(out))
    assert out.read_bytes() == plain
    assert "is not one of" in run("recordings", "list", "--kind", "song", code=2).stderr
