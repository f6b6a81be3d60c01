"""The common life of a service process: settings, logs, bus, a health heartbeat, clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable

import msgspec

from .bus import Bus, connect
from .config import Settings, load_settings
from .diag import describe_tasks
from .log import configure_logging, get_logger
from .metrics import Family, figure_gauge, figures
from .subjects import HEALTH_BUCKET

__all__ = [
    "HEARTBEAT_S",
    "SHUTDOWN_DEADLINE_S",
    "Health",
    "freeze_startup_heap",
    "run_service",
    "until_stopped",
]

HEARTBEAT_S = 5.0
# Every step of a stop is bounded, but when PostgreSQL and NATS are gone too (the runtime killed -9 takes
# them all down at once) the bounds add up: a process still stopping after this long exits anyway.
SHUTDOWN_DEADLINE_S = 8.0


class Health(msgspec.Struct, kw_only=True):
    service: str
    pid: int
    host: str
    status: str
    started_at: float
    ts: float
    # The process's own Prometheus figures (kernel/metrics.py), re-exported by the API's /metrics.
    figures: list[Family] = msgspec.field(default_factory=list)


LOOP_LAG = figure_gauge(
    "event_loop_lag_seconds",
    "How late the heartbeat's timer fired: a process whose loop is blocked answers nothing meanwhile",
)


async def _heartbeat(bus: Bus, service: str, started: float, stop: asyncio.Event) -> None:
    kv = await bus.js.key_value(HEALTH_BUCKET)
    key = f"{service}.{socket.gethostname()}.{os.getpid()}".replace("/", "_")
    loop = asyncio.get_running_loop()
    due = loop.time()
    while not stop.is_set():
        LOOP_LAG.set(max(0.0, loop.time() - due))
        beat = Health(
            service=service,
            pid=os.getpid(),
            host=socket.gethostname(),
            status="ok",
            started_at=started,
            ts=time.time(),
            figures=figures(),
        )
        try:
            await kv.put(key, msgspec.json.encode(beat))
        except Exception as exc:  # the bus reconnects by itself; a missed beat is not fatal
            get_logger().warning("heartbeat_failed", error=str(exc))
        due = loop.time() + HEARTBEAT_S
        try:
            await asyncio.wait_for(stop.wait(), HEARTBEAT_S)
        except TimeoutError:
            pass
    try:
        await asyncio.wait_for(kv.delete(key), 1.0)  # the beat expires with the bucket's TTL anyway
    except Exception:
        pass


async def _serve(name: str, body: Callable[[Settings, Bus, asyncio.Event], Awaitable[None]]) -> None:
    settings = load_settings()
    configure_logging(name, settings.log_level)
    log = get_logger()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if not stop.is_set():
            stop.set()
            # A thread, so that it fires even if the event loop is stuck.
            timer = threading.Timer(SHUTDOWN_DEADLINE_S, _give_up, args=(name, loop))
            timer.daemon = True  # a stop that finishes in time exits without waiting for it
            timer.start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    bus = await connect(settings.nats_url, name=name)
    await bus.ensure_streams(settings.jetstream_replicas)
    started = time.time()
    log.info("service_started", pid=os.getpid())
    beat = asyncio.create_task(_heartbeat(bus, name, started, stop))
    try:
        # The body runs until SIGTERM (until_stopped) and stops what it started before the bus is closed.
        await body(settings, bus, stop)
        await stop.wait()
    finally:
        stop.set()
        await beat
        await bus.close()
        log.info("service_stopped")


async def until_stopped(stop: asyncio.Event) -> None:
    """A service's main once it is up: what start-up built leaves the collector's sight, then wait for
    SIGTERM. Every main waits here and then stops what it started itself: a stop left to a task of its own
    raced run_service's closing of the bus (media's BYEs and call.ended, routing's unsubscribes)."""
    freeze_startup_heap()
    await stop.wait()


def freeze_startup_heap() -> None:
    """Move what start-up built (modules, settings, pools: tens of thousands of objects that live as
    long as the process) out of the garbage collector's sight. Every full collection walked all of it,
    pausing the event loop: in the media worker the imports alone made one take 25 ms (73,000 objects,
    on a busy machine), and with 200 calls/s up they took 85-200 ms. Garbage made so far is collected
    first, so that none of it is kept for good."""
    gc.collect()
    gc.freeze()


def _give_up(name: str, loop: asyncio.AbstractEventLoop) -> None:
    try:
        # Read from this thread while the loop is stuck: racy, but only for the diagnosis.
        waiting = describe_tasks(loop)
        get_logger().error(
            "shutdown_deadline_exceeded", service=name, seconds=SHUTDOWN_DEADLINE_S, waiting_on=waiting
        )
    finally:
        # Whatever happened above: when the runtime that read our output is dead, the log write itself
        # raises BrokenPipeError (a service outlived a runtime killed -9 that way).
        os._exit(70)


def run_service(name: str, body: Callable[[Settings, Bus, asyncio.Event], Awaitable[None]]) -> None:
    """Run `body` (which starts the service's work and returns) until SIGTERM/SIGINT."""
    asyncio.run(_serve(name, body))
