# The bundled NATS: a StatefulSet with JetStream on a PersistentVolumeClaim per server, its config, its
# Services and disruption budget. Used only when no external natsUrl is configured.

from __future__ import annotations

from typing import Any

from .config import PlatformConfig
from .naming import (
    NATS_UID,
    checksum,
    container_security_context,
    labels,
    metadata,
    pod_security_context,
    secret_name,
    selector_labels,
)
from .natsusers import users_checksum, users_secret
from .workloads import pdb

__all__ = ["CLIENT_PORT", "CLUSTER_PORT", "MONITOR_PORT", "nats_conf", "nats_objects"]

# Routing partitions: the mapping below must agree with the routing service's SB_ROUTING_PARTITION_COUNT
# (its default); services/routing/partitions.py says why, and a test checks the two are the same.
ROUTING_PARTITIONS = 16
ROUTING_MAPPING_SOURCE = "sb.*.cmd.routing.*"
ROUTING_MAPPING_DESTINATION = (
    f"sb.sys.routing.cmd.{{{{partition({ROUTING_PARTITIONS},1)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}"
)
CLIENT_PORT = 4222
CLUSTER_PORT = 6222
MONITOR_PORT = 8222
COMPONENT = "nats"


def nats_conf(cfg: PlatformConfig) -> str:
    """nats-server's config file. $POD_NAME and $NATS_TOKEN (in users.conf) are read from the container's environment."""
    name = f"{cfg.name}-nats"
    lines = [
        "# Written by Switchboard (charts/switchboard or infra/); edit the deployment config, not this file.",
        # Inside a pod the server must listen on the pod IP; NetworkPolicies limit who connects.
        "server_name: $POD_NAME",
        f"listen: 0.0.0.0:{CLIENT_PORT}",
        f"http: 0.0.0.0:{MONITOR_PORT}",
        "max_payload: 4MB",
        # The users: sb_admin and one per service with its allow lists (the Secret <name>-nats-users).
        "include ./users.conf",
        "jetstream {",
        "  store_dir: /data/jetstream",
        # JetStream acknowledges before fsync and by default syncs every 2 minutes: a machine crash can
        # lose acknowledged contacts (STACK-NOTES.md). "always" syncs every write.
        f"  sync_interval: {cfg.nats.sync_interval}",
        "}",
        # Each routing worker receives only the commands of the tenant partitions it owns.
        "mappings {",
        f'  "{ROUTING_MAPPING_SOURCE}": "{ROUTING_MAPPING_DESTINATION}"',
        "}",
    ]
    if cfg.nats.replicas > 1:
        lines += [
            "cluster {",
            f"  name: {name}",
            f"  listen: 0.0.0.0:{CLUSTER_PORT}",
            "  routes: [",
            *(
                f"    nats://{name}-{i}.{name}-headless.{cfg.namespace}.svc:{CLUSTER_PORT}"
                for i in range(cfg.nats.replicas)
            ),
            "  ]",
            "}",
        ]
    return "\n".join(lines) + "\n"


def _probe(path: str, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "monitor"}, **timing}


def nats_objects(cfg: PlatformConfig) -> list[dict[str, Any]]:
    name = f"{cfg.name}-nats"
    headless = f"{name}-headless"
    conf = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(cfg, f"{name}-config", COMPONENT),
        "data": {"nats.conf": nats_conf(cfg)},
    }
    ports = [
        {"name": "client", "port": CLIENT_PORT, "targetPort": "client", "protocol": "TCP"},
        {"name": "cluster", "port": CLUSTER_PORT, "targetPort": "cluster", "protocol": "TCP"},
        {"name": "monitor", "port": MONITOR_PORT, "targetPort": "monitor", "protocol": "TCP"},
    ]
    client_service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cfg, name, COMPONENT),
        "spec": {"type": "ClusterIP", "selector": selector_labels(cfg, COMPONENT), "ports": ports[:1]},
    }
    headless_service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cfg, headless, COMPONENT),
        "spec": {
            "clusterIP": "None",
            # Servers must find each other's addresses before they are ready, to form the cluster.
            "publishNotReadyAddresses": True,
            "selector": selector_labels(cfg, COMPONENT),
            "ports": ports,
        },
    }
    container = {
        "name": "nats",
        "image": cfg.nats.image,
        "command": ["nats-server", "--config", "/etc/nats/nats.conf"],
        "ports": [
            {"name": "client", "containerPort": CLIENT_PORT, "protocol": "TCP"},
            {"name": "cluster", "containerPort": CLUSTER_PORT, "protocol": "TCP"},
            {"name": "monitor", "containerPort": MONITOR_PORT, "protocol": "TCP"},
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "NATS_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": secret_name(cfg), "key": "NATS_TOKEN"}},
            },
        ],
        "resources": cfg.nats.resources,
        # Recovering a large JetStream store can take minutes: the startup probe gives it 15.
        "startupProbe": _probe("/healthz", periodSeconds=10, failureThreshold=90),
        "livenessProbe": _probe("/healthz?js-enabled-only=true", periodSeconds=30, failureThreshold=3),
        "readinessProbe": _probe("/healthz?js-server-only=true", periodSeconds=10, failureThreshold=3),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/nats", "readOnly": True},
            {"name": "data", "mountPath": "/data"},
        ],
    }
    pod = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(NATS_UID),
        "terminationGracePeriodSeconds": 60,
        # JetStream replicas only protect data when they sit on different machines.
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": selector_labels(cfg, COMPONENT)},
                        },
                    }
                ]
            }
        },
        "containers": [container],
        # nats.conf and the users.conf it includes, side by side.
        "volumes": [
            {
                "name": "config",
                "projected": {
                    "sources": [
                        {"configMap": {"name": f"{name}-config"}},
                        {"secret": {"name": f"{name}-users"}},
                    ]
                },
            }
        ],
    }
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": cfg.nats.storage_size}},
    }
    if cfg.nats.storage_class:
        claim_spec["storageClassName"] = cfg.nats.storage_class
    stateful_set = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(cfg, name, COMPONENT),
        "spec": {
            "serviceName": headless,
            "replicas": cfg.nats.replicas,
            # Cluster members must start together to elect JetStream leaders.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(cfg, COMPONENT)},
            "template": {
                "metadata": {
                    "labels": labels(cfg, COMPONENT),
                    "annotations": {"checksum/config": checksum(conf), "checksum/users": users_checksum(cfg)},
                },
                "spec": pod,
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim_spec}],
        },
    }
    objects = [conf, users_secret(cfg), client_service, headless_service, stateful_set]
    if cfg.pdb_enabled:
        objects.append(pdb(cfg, COMPONENT))
    return objects
