"""Prometheus metrics: one registry per process, exposed as text by whoever serves HTTP.

Only the API serves HTTP. Every other service keeps its figures in `FIGURES` and ships them in its
heartbeat (kernel/service.py); the API re-exports the fresh ones with `service` and `instance` labels
(`BeatFigures`), so one scrape of any api pod sees the whole platform (docs/operators.md, "Monitoring").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import msgspec
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import Metric

__all__ = [
    "CONTENT_TYPE_LATEST",
    "FIGURES",
    "REGISTRY",
    "BeatFigures",
    "Family",
    "Sample",
    "counter",
    "figure_counter",
    "figure_gauge",
    "figure_histogram",
    "figures",
    "gauge",
    "histogram",
    "read_before_beats",
    "render",
]

REGISTRY = CollectorRegistry(auto_describe=True)
# A service process's own figures (commands answered, events consumed, CPU, memory): shipped in its beat.
FIGURES = CollectorRegistry(auto_describe=True)
ProcessCollector(namespace="sb", registry=FIGURES)


def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
    return Counter(f"sb_{name}", doc, labels, registry=REGISTRY)


def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(f"sb_{name}", doc, labels, registry=REGISTRY)


def histogram(name: str, doc: str, labels: tuple[str, ...] = ()) -> Histogram:
    return Histogram(f"sb_{name}", doc, labels, registry=REGISTRY)


def _own(labels: tuple[str, ...]) -> tuple[str, ...]:
    if {"service", "instance"} & set(labels):
        raise ValueError("`service` and `instance` are added by the API when it exports a process's figures")
    return labels


def figure_counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
    return Counter(f"sb_{name}", doc, _own(labels), registry=FIGURES)


def figure_gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(f"sb_{name}", doc, _own(labels), registry=FIGURES)


def figure_histogram(
    name: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] = Histogram.DEFAULT_BUCKETS
) -> Histogram:
    return Histogram(f"sb_{name}", doc, _own(labels), registry=FIGURES, buckets=buckets)


# Gauges that are counts of what a component holds (legs, agents, leases) are set just before each beat
# rather than at every change: the component registers how to read them while it runs.
_READERS: set[Callable[[], None]] = set()


def read_before_beats(read: Callable[[], None]) -> Callable[[], None]:
    """Run `read` before each heartbeat's figures are taken; call what this returns to stop."""
    _READERS.add(read)
    return lambda: _READERS.discard(read)


class Sample(msgspec.Struct, array_like=True, frozen=True):
    name: str
    labels: dict[str, str]
    value: float


class Family(msgspec.Struct, frozen=True):
    name: str
    type: str
    doc: str
    samples: list[Sample]


def figures() -> list[Family]:
    """This process's figures, as its heartbeat carries them (`_created` samples left out: a restart
    shows as a new `instance` already)."""
    for read in list(_READERS):
        read()
    return [
        Family(
            name=family.name,
            type=family.type,
            doc=family.documentation,
            samples=[
                Sample(s.name, dict(s.labels), float(s.value))
                for s in family.samples
                if not s.name.endswith("_created")
            ],
        )
        for family in FIGURES.collect()
    ]


class BeatFigures:
    """A collector for the API's registry: the figures of every process with a fresh heartbeat (set by
    whoever reads the beats), plus this process's own, each sample labelled with its service and instance."""

    def __init__(self, own_service: str, own_instance: str) -> None:
        self.own = (own_service, own_instance)
        self.beats: list[tuple[str, str, list[Family]]] = []

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for service, instance, families in [(*self.own, figures()), *self.beats]:
            for family in families:
                metric = merged.get(family.name)
                if metric is None:
                    metric = merged[family.name] = Metric(family.name, family.doc, family.type)
                elif metric.type != family.type:
                    continue  # two versions disagree during an upgrade: the first one seen wins
                for s in family.samples:
                    metric.add_sample(s.name, {**s.labels, "service": service, "instance": instance}, s.value)
        yield from merged.values()

    def describe(self) -> Iterable[Metric]:
        return ()  # what it yields depends on the beats: never checked for duplicates at registration


def render() -> bytes:
    return generate_latest(REGISTRY)
