"""The master key is an interface (services/recording/vault.py `MasterKey`): the key file is one
implementation, a cloud KMS another. A KMS here is a stand-in with the shape of a real client (AWS KMS's
Encrypt/Decrypt with an encryption context): its key material lives only inside it, each call blocks like a
network round trip, and it can be unreachable. Through it, with the real pipeline, PostgreSQL and NATS:
recordings are sealed and read, the event loop keeps running while the KMS answers, a data key is
unwrapped once per process, a move from the key file to the KMS keeps old recordings readable, a KMS outage
loses nothing, and SB_RECORDING_MASTER_KEY loads one from configuration."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.kernel.config import ConfigError, Settings, load_settings
from services.kernel.db import tenant_tx
from services.recording.records import read_audio
from services.recording.rewrap import rewrap_all
from services.recording.setup import keyring_from, master_key_from
from services.recording.vault import KeyRing, LocalMasterKey, MasterKey

from .conftest import Stack

ROUND_TRIP_S = 0.2


class StandInKms:
    """What a KMS client's MasterKey looks like: wrap = Encrypt(KeyId, Plaintext, EncryptionContext),
    unwrap = Decrypt(CiphertextBlob, EncryptionContext); both block for a round trip."""

    def __init__(self, alias: str = "alias/recordings") -> None:
        self._material = AESGCM.generate_key(bit_length=256)  # never leaves the "service"
        self.alias = alias
        self.calls: list[str] = []
        self.reachable = True

    @property
    def key_id(self) -> str:
        return f"kms:{self.alias}"

    def _call(self, what: str) -> None:
        self.calls.append(what)
        time.sleep(ROUND_TRIP_S)  # a blocking client, as boto3's is
        if not self.reachable:
            raise ConnectionError("KMS endpoint unreachable")

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        self._call("encrypt")
        nonce = os.urandom(12)
        return nonce + AESGCM(self._material).encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        self._call("decrypt")
        return AESGCM(self._material).decrypt(wrapped[:12], wrapped[12:], context)


_KMS = StandInKms("alias/from-config")


def make_kms(settings: Settings) -> StandInKms:
    """What SB_RECORDING_MASTER_KEY names: a factory taking the settings."""
    return _KMS


def not_a_key(settings: Settings) -> object:
    return object()


async def _ticks_while(awaitable: Any) -> tuple[Any, int]:
    """The awaitable's result, and how often a 10 ms ticker ran meanwhile (a blocked loop: 0 or 1)."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        return await awaitable, ticks
    finally:
        task.cancel()


async def test_a_kms_master_key_seals_and_reads_recordings_without_blocking_the_loop(stack: Stack) -> None:
    kms = StandInKms()
    assert isinstance(kms, MasterKey) and not isinstance(object(), MasterKey)
    stack.keys = KeyRing(kms)
    await stack.start_pipeline()
    tenant = await stack.tenant()
    rid = await stack.record_call(tenant, 1.0)
    row = await stack.wait_status(tenant, rid, "available")
    assert kms.calls == ["encrypt"]  # the tenant's new data key, wrapped once
    async with tenant_tx(stack.pool, tenant, readonly=True) as conn:
        master_id = await conn.fetchval(
            "SELECT master_key_id FROM recording_keys WHERE id = $1", row["key_id"]
        )
        assert master_id == "kms:alias/recordings"
        # Another process (a fresh ring): one Decrypt, on a worker thread while the loop runs on.
        fresh = KeyRing(kms)
        audio, ticks = await _ticks_while(read_audio(conn, fresh, stack.store, tenant, rid))
        assert ticks >= ROUND_TRIP_S / 0.01 / 2, ticks
        assert kms.calls == ["encrypt", "decrypt"] and audio.wav[:4] == b"RIFF"
        await read_audio(conn, fresh, stack.store, tenant, rid)
    assert kms.calls == ["encrypt", "decrypt"]  # kept unwrapped in memory: not asked again


async def test_moving_from_the_key_file_to_a_kms_keeps_old_recordings_and_survives_an_outage(
    stack: Stack,
) -> None:
    local = stack.keys.master
    await stack.start_pipeline()
    tenant = await stack.tenant()
    old = await stack.record_call(tenant, 0.5)
    await stack.wait_status(tenant, old, "available")
    await stack.stop_pipeline()

    kms = StandInKms()
    kms.reachable = False
    stack.keys = KeyRing(kms, [local])
    await stack.start_pipeline()
    other = await stack.tenant()  # its first data key must be wrapped by the unreachable KMS
    waiting = await stack.record_call(other, 0.5)
    await asyncio.sleep(1.0)
    async with tenant_tx(stack.pool, other, readonly=True) as conn:
        assert await conn.fetchval("SELECT status FROM recordings WHERE id = $1", waiting) == "recording"
    kms.reachable = True  # the end marker comes back and the recording is stored: nothing lost
    await stack.wait_status(other, waiting, "available", timeout=20)

    moved = await rewrap_all(stack.pool, KeyRing(kms, [local]), only={tenant})
    assert moved == {tenant: 1}
    async with tenant_tx(stack.pool, tenant, readonly=True) as conn:
        audio = await read_audio(conn, KeyRing(kms), stack.store, tenant, old)  # the KMS alone now
    assert audio.wav[:4] == b"RIFF"


def test_sb_recording_master_key_loads_a_kms_from_configuration(tmp_path: Path) -> None:
    here = "tests.integration.recording.test_master_key"
    settings = load_settings({"SB_DATA_DIR": str(tmp_path), "SB_RECORDING_MASTER_KEY": f"{here}:make_kms"})
    ring = keyring_from(settings)
    assert ring.master is _KMS and not (tmp_path / "keys").exists()  # no key file made
    for spec, why in (
        ("nomodule", "package.module:factory"),
        (f"{here}:missing", "cannot be loaded"),
        ("no_such_module_here:make", "cannot be loaded"),
        (f"{here}:not_a_key", "not a MasterKey"),
    ):
        with pytest.raises(ConfigError, match=why):
            master_key_from(spec, settings)
    # Without it, the key file (made 0600 on first use) is the master.
    plain = keyring_from(load_settings({"SB_DATA_DIR": str(tmp_path)}))
    assert isinstance(plain.master, LocalMasterKey)
    assert (tmp_path / "keys" / "recording-master.key").stat().st_mode & 0o077 == 0
