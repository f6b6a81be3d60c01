"""`/healthz` (PostgreSQL, NATS and every service's heartbeat in the sb_health bucket) and `/metrics`."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time
from typing import Literal

import msgspec
from litestar import Controller, Response, get
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.kernel import metrics
from services.kernel.service import Health
from services.kernel.subjects import HEALTH_BUCKET
from services.kernel.waits import WaitTimeout, within

from .deps import ApiDep
from .problems import problem_responses
from .state import ApiState

__all__ = ["HealthController", "assess", "assess_services", "export_health"]

# Beats come every 5 s (kernel.service.HEARTBEAT_S) and the bucket keeps them 15 s.
FRESH_S = 15.0
CHECK_TIMEOUT_S = 2.0

GAUGE_REFRESH_S = 5.0  # the heartbeat period (kernel.service.HEARTBEAT_S): fresher readings tell nothing new
GAUGE_READ_S = 1.5


class _GaugeRefresh:
    """When this process last read the platform's health for /metrics (one per process, like the registry)."""

    at = -math.inf


# Module level: the kernel registry is per process and refuses a metric registered twice.
HEALTHY = metrics.gauge(
    "platform_healthy", "1 when /healthz would answer 200 (every expected service beating)"
)
COMPONENT_UP = metrics.gauge("component_up", "1 when PostgreSQL or NATS (JetStream) answers", ("component",))
COMPONENT_LATENCY = metrics.gauge(
    "component_check_seconds", "How long the last PostgreSQL or NATS check took", ("component",)
)
SERVICE_UP = metrics.gauge(
    "service_up", "1 when the service's newest heartbeat is fresh and ok", ("service",)
)
SERVICE_INSTANCES = metrics.gauge(
    "service_instances", "Processes of the service with a fresh heartbeat", ("service",)
)
SERVICE_BEAT_AGE = metrics.gauge(
    "service_heartbeat_age_seconds", "Age of the service's newest heartbeat (fresh: under 15 s)", ("service",)
)
# Every process's own figures (bus commands and events, CPU, memory, loop lag), from the fresh heartbeats
# of the last reading, and this api process's own.
FIGURES = metrics.BeatFigures("api", f"{socket.gethostname()}:{os.getpid()}")
metrics.REGISTRY.register(FIGURES)


class ComponentHealth(msgspec.Struct, kw_only=True):
    status: Literal["ok", "down"]
    latency_ms: float | None = None
    error: str | None = None


class NatsHealth(ComponentHealth, kw_only=True):
    connected: bool = False
    jetstream: bool = False


class ServiceHealth(msgspec.Struct, kw_only=True):
    status: Literal["ok", "down"]
    pid: int | None
    age_s: float | None
    instances: int = 0


class Healthz(msgspec.Struct, kw_only=True):
    status: Literal["ok", "degraded"]
    postgres: ComponentHealth
    nats: NatsHealth
    services: dict[str, ServiceHealth]


def assess_services(beats: list[Health], now: float, expected: tuple[str, ...]) -> dict[str, ServiceHealth]:
    """Each expected (or beating) service: ok when its newest beat is younger than FRESH_S."""
    newest: dict[str, Health] = {}
    fresh_count: dict[str, int] = {}
    for beat in beats:
        if beat.service not in newest or beat.ts > newest[beat.service].ts:
            newest[beat.service] = beat
        if now - beat.ts < FRESH_S:
            fresh_count[beat.service] = fresh_count.get(beat.service, 0) + 1
    out: dict[str, ServiceHealth] = {}
    for name in sorted(set(expected) | set(newest)):
        latest = newest.get(name)
        if latest is None:
            out[name] = ServiceHealth(status="down", pid=None, age_s=None)
            continue
        age = max(now - latest.ts, 0.0)
        out[name] = ServiceHealth(
            status="ok" if age < FRESH_S and latest.status == "ok" else "down",
            pid=latest.pid,
            age_s=round(age, 1),
            instances=fresh_count.get(name, 0),
        )
    return out


async def _check_postgres(state: ApiState) -> ComponentHealth:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), state.db().acquire() as conn:
            await conn.fetchval("SELECT 1")
    except Exception as exc:
        return ComponentHealth(status="down", error=type(exc).__name__)
    return ComponentHealth(status="ok", latency_ms=round((time.perf_counter() - started) * 1000, 2))


async def _check_nats(state: ApiState) -> NatsHealth:
    bus = state.bus
    if bus is None or not bus.nc.is_connected:
        return NatsHealth(status="down", error="not connected")
    started = time.perf_counter()
    try:
        await asyncio.wait_for(bus.js.account_info(), CHECK_TIMEOUT_S)
    except Exception as exc:
        return NatsHealth(status="down", connected=True, error=f"JetStream: {type(exc).__name__}")
    latency = round((time.perf_counter() - started) * 1000, 2)
    return NatsHealth(status="ok", connected=True, jetstream=True, latency_ms=latency)


async def _read_beats(state: ApiState) -> list[Health]:
    """The latest beat of every key in the health bucket.

    A pull consumer rather than a KV watcher: nothing is delivered before `fetch`, so the consumer's
    pending count is exact. nats-py's watcher can report "no more values" before it has handed over
    values the server already pushed (seen under load), which made /healthz miss live services.
    """
    if state.bus is None:
        return []
    sub = await state.bus.js.pull_subscribe(
        f"$KV.{HEALTH_BUCKET}.>",
        stream=f"KV_{HEALTH_BUCKET}",
        config=ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, ack_policy=AckPolicy.NONE),
    )
    beats: list[Health] = []
    try:
        pending = (await sub.consumer_info()).num_pending or 0
        while pending > 0:
            msgs = await sub.fetch(min(pending, 256), timeout=CHECK_TIMEOUT_S)
            pending -= len(msgs)
            for msg in msgs:
                if msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
                    continue
                try:
                    beats.append(msgspec.json.decode(msg.data, type=Health))
                except msgspec.DecodeError:
                    continue
    finally:
        await sub.unsubscribe()
    return beats


async def assess(state: ApiState) -> Healthz:
    """PostgreSQL, NATS and every service's newest heartbeat: what /healthz answers and /metrics exports."""
    postgres, nats_ = await asyncio.gather(_check_postgres(state), _check_nats(state))
    beats: list[Health] = []
    if nats_.status == "ok":
        try:
            beats = await _read_beats(state)
        except Exception as exc:
            nats_ = NatsHealth(status="down", connected=True, error=f"sb_health: {type(exc).__name__}")
    expected = state.settings.expected_service_names
    now = time.time()
    FIGURES.beats = [(b.service, f"{b.host}:{b.pid}", b.figures) for b in beats if now - b.ts < FRESH_S]
    services = assess_services(beats, now, expected)
    # This process answers, so the api is up whatever the bucket says.
    services["api"] = ServiceHealth(status="ok", pid=os.getpid(), age_s=0.0, instances=1)
    # Services beyond the expected ones are listed for information; only the expected ones count.
    healthy = (
        postgres.status == "ok"
        and nats_.status == "ok"
        and all(services[name].status == "ok" for name in expected)
    )
    return Healthz(status="ok" if healthy else "degraded", postgres=postgres, nats=nats_, services=services)


def export_health(body: Healthz) -> None:
    """Set the platform gauges from one assessment (docs/operators.md, "Monitoring")."""
    HEALTHY.set(1 if body.status == "ok" else 0)
    for component, health in (("postgres", body.postgres), ("nats", body.nats)):
        COMPONENT_UP.labels(component).set(1 if health.status == "ok" else 0)
        if health.latency_ms is not None:
            COMPONENT_LATENCY.labels(component).set(health.latency_ms / 1000)
    for name, service in body.services.items():
        SERVICE_UP.labels(name).set(1 if service.status == "ok" else 0)
        SERVICE_INSTANCES.labels(name).set(service.instances)
        if service.age_s is not None:
            SERVICE_BEAT_AGE.labels(name).set(service.age_s)


class HealthController(Controller):
    tags = ["platform"]

    @get(
        "/healthz",
        responses=problem_responses(503),
        exclude_from_auth=True,
        security=[],
        summary="PostgreSQL, NATS and every service",
    )
    async def healthz(self, api: ApiDep) -> Response[Healthz]:
        body = await assess(api)
        return Response(body, status_code=200 if body.status == "ok" else 503)

    @get(
        "/metrics", exclude_from_auth=True, security=[], summary="Prometheus metrics", media_type="text/plain"
    )
    async def metrics(self, api: ApiDep) -> Response[bytes]:
        # The platform gauges are read at scrape time, like /healthz, so one scrape of the API shows every
        # service. /metrics is also the api pods' readiness and liveness probe (3 s and 5 s timeouts, and it
        # must answer whatever PostgreSQL and NATS do): the reading is bounded, and done at most once per
        # heartbeat period however many probes and scrapers ask.
        now = time.monotonic()
        if now - _GaugeRefresh.at >= GAUGE_REFRESH_S:
            _GaugeRefresh.at = now
            try:
                export_health(await within(GAUGE_READ_S, "the platform's health", assess(api)))
            except WaitTimeout:
                HEALTHY.set(0)
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)
