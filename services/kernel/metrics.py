"""Prometheus metrics: one registry per process, exposed as text by whoever serves HTTP."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "REGISTRY", "counter", "gauge", "histogram", "render"]

REGISTRY = CollectorRegistry(auto_describe=True)


def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
    return Counter(f"sb_{name}", doc, labels, registry=REGISTRY)


def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(f"sb_{name}", doc, labels, registry=REGISTRY)


def histogram(name: str, doc: str, labels: tuple[str, ...] = ()) -> Histogram:
    return Histogram(f"sb_{name}", doc, labels, registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)
