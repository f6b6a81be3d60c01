# Every Kubernetes object of a Switchboard deployment, as plain manifests in apply order.

from __future__ import annotations

from typing import Any

from .config import PlatformConfig
from .naming import APP, MANAGED_BY
from .nats import nats_objects
from .network import network_policies
from .workloads import service_objects

__all__ = ["build_manifests", "namespace"]


def namespace(cfg: PlatformConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": cfg.namespace,
            "labels": {
                "app.kubernetes.io/part-of": APP,
                "app.kubernetes.io/managed-by": MANAGED_BY,
                # Every pod here is built to the "restricted" standard; the namespace refuses anything less.
                "pod-security.kubernetes.io/enforce": "restricted",
            },
        },
    }


def build_manifests(cfg: PlatformConfig, *, with_namespace: bool = True) -> list[dict[str, Any]]:
    """The namespace (optional), then settings, NATS (when bundled), services, budgets and policies."""
    objects: list[dict[str, Any]] = [namespace(cfg)] if with_namespace else []
    workloads = service_objects(cfg)
    # Settings first, then NATS, so that the services find the bus when they start.
    objects += workloads[:2]
    if cfg.internal_nats:
        objects += nats_objects(cfg)
    objects += workloads[2:]
    if cfg.network_policy.enabled:
        objects += network_policies(cfg)
    return objects
