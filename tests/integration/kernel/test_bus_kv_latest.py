"""Bus.kv_latest against the real NATS: live keys with their latest values; deleted and purged keys left out;
an empty bucket is an empty list (nats-py's own keys() raises or waits there)."""

from __future__ import annotations

import uuid
from typing import Any

from nats.js.api import KeyValueConfig

from services.kernel.bus import connect


async def test_kv_latest_reads_live_keys_and_latest_values(infra: Any) -> None:
    bus = await connect(infra.nats_url, name="kv-latest-test")
    bucket = f"kvtest_{uuid.uuid4().hex[:8]}"
    kv = await bus.js.create_key_value(KeyValueConfig(bucket=bucket, history=1))
    try:
        assert await bus.kv_latest(bucket) == []
        await kv.put("a.one", b"1")
        await kv.put("a.two", b"2")
        await kv.put("a.two", b"22")
        await kv.put("b.gone", b"x")
        await kv.delete("b.gone")
        await kv.put("c.purged", b"y")
        await kv.purge("c.purged")
        assert sorted(await bus.kv_latest(bucket)) == [("a.one", b"1"), ("a.two", b"22")]
    finally:
        await bus.js.delete_key_value(bucket)
        await bus.close()
