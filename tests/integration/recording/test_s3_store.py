"""The S3 recording store against a real S3-compatible server on 127.0.0.1: moto's server mode
(`moto_server`, from the dev dependency moto[server]). moto keeps objects in memory and implements S3's API
surface, not its durability or consistency model; what is tested here is our store's use of that API."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from services.kernel.config import load_settings
from services.kernel.db import tenant_tx
from services.recording.records import RecordingError, delete_recording, read_audio
from services.recording.setup import store_from
from services.recording.store import BlobNotFound
from services.recording.store_s3 import S3Store
from services.runtime.embedded import free_port

from .conftest import Stack

MOTO = Path(sys.executable).with_name("moto_server")
pytestmark = pytest.mark.skipif(
    not MOTO.exists() and not shutil.which("moto_server"), reason="moto[server] missing"
)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(MOTO), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _bucket(endpoint: str) -> str:
    name = f"rec-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    ).create_bucket(Bucket=name)
    return name


async def test_pipeline_stores_reads_and_deletes_through_s3(
    stack: Stack, s3_endpoint: str, infra: Any
) -> None:
    bucket = _bucket(s3_endpoint)
    settings = load_settings(
        {},
        recording_store=f"s3://{bucket}/recs",
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id="k",
        s3_secret_access_key="s",
    )
    store = store_from(settings)
    assert isinstance(store, S3Store) and store.prefix == "recs"
    stack.store = store  # type: ignore[assignment]
    await stack.start_pipeline()
    tenant = await stack.tenant()
    rid = await stack.record_call(tenant, 1.0)
    row = await stack.wait_status(tenant, rid, "available")

    raw = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
    )
    listed = [o["Key"] for o in raw.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert listed == [f"recs/{tenant}/{rid}.sbrec"]
    sealed = raw.get_object(Bucket=bucket, Key=listed[0])["Body"].read()
    assert b"RIFF" not in sealed and len(sealed) == row["size_bytes"]
    async with tenant_tx(stack.pool, tenant, readonly=True) as conn:
        audio = await read_audio(conn, stack.keys, store, tenant, rid)
    assert audio.sha256 == row["sha256"]

    # A flipped byte in the bucket is caught on read.
    tampered = bytearray(sealed)
    tampered[-5] ^= 1
    raw.put_object(Bucket=bucket, Key=listed[0], Body=bytes(tampered))
    async with tenant_tx(stack.pool, tenant, readonly=True) as conn:
        with pytest.raises(RecordingError) as caught:
            await read_audio(conn, stack.keys, store, tenant, rid)
    assert caught.value.code == "corrupt"

    async with tenant_tx(stack.pool, tenant) as conn:
        assert await delete_recording(conn, store, tenant, rid, reason="request", now=time.time())
    assert raw.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    with pytest.raises(BlobNotFound):
        await store.get(listed[0].removeprefix("recs/"))
    await store.close()
