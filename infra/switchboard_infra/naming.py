# Object names, labels and the pod hardening shared by every Kubernetes object of a deployment.
#
# The Helm chart's _helpers.tpl says the same things; tests/unit/infra compares the two renderings.

from __future__ import annotations

import hashlib
import json
from typing import Any

from .config import SERVICES, PlatformConfig

__all__ = [
    "APP",
    "MANAGED_BY",
    "checksum",
    "container_security_context",
    "labels",
    "metadata",
    "pod_security_context",
    "secret_name",
    "selector_labels",
    "services_selector",
]

APP = "switchboard"
MANAGED_BY = "pulumi"
# The image's unprivileged user (uid/gid 10001); NATS's official image uses 1000.
APP_UID = 10001
NATS_UID = 1000


def checksum(obj: dict[str, Any]) -> str:
    """A pod-template annotation that changes with the settings, so that pods restart and read them again."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def selector_labels(cfg: PlatformConfig, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": cfg.name,
        "app.kubernetes.io/component": component,
    }


def labels(cfg: PlatformConfig, component: str) -> dict[str, str]:
    return {
        **selector_labels(cfg, component),
        "app.kubernetes.io/part-of": APP,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def metadata(cfg: PlatformConfig, name: str, component: str) -> dict[str, Any]:
    return {"name": name, "namespace": cfg.namespace, "labels": labels(cfg, component)}


def secret_name(cfg: PlatformConfig) -> str:
    return f"{cfg.name}-secrets"


def services_selector(cfg: PlatformConfig) -> dict[str, Any]:
    """Selects the pods of the six Switchboard services (not NATS)."""
    return {
        "matchLabels": {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": cfg.name},
        "matchExpressions": [
            {"key": "app.kubernetes.io/component", "operator": "In", "values": list(SERVICES)}
        ],
    }


def pod_security_context(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    # Meets the Kubernetes "restricted" Pod Security Standard, which the namespace enforces.
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
