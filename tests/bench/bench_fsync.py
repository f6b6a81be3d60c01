# The `fsync` benchmark (`make bench BENCH=fsync`, issue 23 item 4): what `sync_interval: always` costs a
# JetStream publish, the durability choice for the streams that hold contacts and recordings' metadata
# (docs/operators.md, "JetStream durability"). Three set-ups on this machine's disk, each a fresh store:
#
#   one server, default   -- nats-server's default: fsync every 2 minutes, after the acknowledgement
#   one server, always    -- sync_interval: always: every write fsynced before it is acknowledged
#   R3 cluster, default   -- three local servers, a quorum of two holds each write before the ack
#
# For each: the publish-ack latency of one publisher waiting for each ack in turn (p50, p99), then the
# throughput with 64 publishes in flight (acks per second). Events are 400 bytes, about a contact event.
#
#   python tests/bench/bench_fsync.py [--quick]
#
# Prints a table and writes .bench/fsync.json as [{"metric","value","unit","goal","better"}].
# Not a test: nothing here asserts a timing. The R3 servers share this machine's disk and cores, so the
# cluster figures show the protocol's cost, not that of three machines.
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import nats
from nats.js.api import StreamConfig

from tests.nats_cluster import nats_servers

PAYLOAD = b"x" * 400
IN_FLIGHT = 64


async def measure(urls: list[str], replicas: int, sequential: int, bulk: int) -> dict[str, float]:
    nc = await nats.connect(servers=urls)
    js = nc.jetstream(timeout=10)
    deadline = time.monotonic() + 30
    while True:  # a cluster elects its meta leader a moment after the servers listen
        try:
            await js.add_stream(StreamConfig(name="BENCH", subjects=["bench.>"], num_replicas=replicas))
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    for _ in range(50):  # warm-up
        await js.publish("bench.warm", PAYLOAD)
    latencies = []
    for _ in range(sequential):
        started = time.perf_counter()
        await js.publish("bench.seq", PAYLOAD)
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one() -> None:
        async with slots:
            await js.publish("bench.bulk", PAYLOAD)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(bulk)))
    rate = bulk / (time.perf_counter() - started)
    await nc.close()
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "acks_per_s": rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer publishes (a check, not figures)")
    args = parser.parse_args()
    sequential, bulk = (200, 2000) if args.quick else (2000, 20000)
    setups = [
        ("one server, default", 1, ""),
        ("one server, always", 1, "always"),
        ("R3 cluster, default", 3, ""),
    ]
    rows = []
    results = []
    for label, count, sync in setups:
        with tempfile.TemporaryDirectory(prefix="sbbench-fsync-", dir=Path.cwd() / ".bench") as root:
            with nats_servers(Path(root), count, sync_interval=sync) as cluster:
                got = asyncio.run(measure(cluster.urls, count, sequential, bulk))
        rows.append((label, got))
        key = label.replace(", ", "_").replace(" ", "_")
        results += [
            {
                "metric": f"{key}_p50_ms",
                "value": round(got["p50_ms"], 3),
                "unit": "ms",
                "goal": None,
                "better": "lower",
            },
            {
                "metric": f"{key}_p99_ms",
                "value": round(got["p99_ms"], 3),
                "unit": "ms",
                "goal": None,
                "better": "lower",
            },
            {
                "metric": f"{key}_acks_per_s",
                "value": round(got["acks_per_s"]),
                "unit": "1/s",
                "goal": None,
                "better": "higher",
            },
        ]
    print(f"{'set-up':<22} {'p50 ms':>8} {'p99 ms':>8} {'acks/s (64 in flight)':>22}")
    for label, got in rows:
        print(f"{label:<22} {got['p50_ms']:>8.3f} {got['p99_ms']:>8.3f} {got['acks_per_s']:>22,.0f}")
    out = Path(".bench") / "fsync.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    Path(".bench").mkdir(exist_ok=True)
    main()
