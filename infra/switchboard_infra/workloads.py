# The Switchboard services on Kubernetes: settings (ConfigMap, Secret), a Deployment per service, the api and
# SIP Services, autoscalers and disruption budgets. Plain manifests (dicts), no Pulumi: platform.py applies
# them and the tests read them. templates/ in charts/switchboard renders the same objects.

from __future__ import annotations

from typing import Any

from .config import SERVICES, PlatformConfig, ServiceConfig
from .naming import (
    APP_UID,
    checksum,
    container_security_context,
    labels,
    metadata,
    pod_security_context,
    secret_name,
    selector_labels,
)
from .natsusers import nats_url_key, service_nats_urls

__all__ = [
    "MIGRATE_SCRIPT",
    "SECRET_ENV",
    "api_service",
    "config_map",
    "deployment",
    "hpa",
    "pdb",
    "secret",
    "sip_service",
]

# The variables each service reads from the Secret (the others come from the ConfigMap, all via envFrom).
SECRET_ENV = ("SB_DATABASE_URL", "SB_NATS_URL", "SB_TOKEN_SECRET")

# Run by the api pods' init container, with the same meaning of SB_DATABASE_ADMIN_URL as `switchboard up`:
# create the database and the application role named by SB_DATABASE_URL if missing, then apply pending
# migrations as the admin and grant the role its rights. Safe from many pods at once: migrate() holds an
# advisory lock and skips what is applied.
MIGRATE_SCRIPT = """\
import asyncio, os
from urllib.parse import unquote, urlsplit
from services.kernel import db
app = urlsplit(os.environ['SB_DATABASE_URL'])
admin = urlsplit(os.environ['SB_DATABASE_ADMIN_URL'])
database, role = app.path.lstrip('/'), unquote(app.username or '')
asyncio.run(db.bootstrap(admin.geturl(), database=database, app_role=role, app_password=unquote(app.password or '')))
print('migrations applied:', asyncio.run(db.migrate(admin._replace(path='/' + database).geturl(), app_role=role)))"""


def config_map(cfg: PlatformConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(cfg, f"{cfg.name}-config", "config"),
        "data": {
            # Servers bind 127.0.0.1 by default (ARCHITECTURE.md). A pod has its own network namespace and
            # is reached on its pod IP (by Services, the kubelet's probes and load balancers), so inside a
            # pod 0.0.0.0 is the explicit, needed choice; NetworkPolicies decide who may connect.
            "SB_BIND_HOST": "0.0.0.0",
            "SB_HTTP_PORT": str(cfg.http_port),
            "SB_SIP_PORT": str(cfg.sip_port),
            "SB_LOG_LEVEL": cfg.log_level,
            "SB_DATA_DIR": cfg.data_dir,
            "SB_SIGNUP_RATE_PER_MINUTE": str(cfg.signup_rate_per_minute),
            "SB_TRUSTED_PROXIES": cfg.trusted_proxies,
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        },
    }


def secret(cfg: PlatformConfig) -> dict[str, Any]:
    data = {
        "SB_DATABASE_URL": cfg.database_url,
        "SB_TOKEN_SECRET": cfg.token_secret,
    }
    # Each service's own user (natsusers.py), each Deployment reading only its key; or one natsUrl for all.
    data |= service_nats_urls(cfg)
    if cfg.migrations_enabled:
        data["SB_DATABASE_ADMIN_URL"] = cfg.database_admin_url
    if cfg.internal_nats:
        data["NATS_TOKEN"] = cfg.nats_token
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(cfg, secret_name(cfg), "config"),
        "type": "Opaque",
        "stringData": data,
    }


def _secret_env(cfg: PlatformConfig, *names: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name(cfg), "key": name}}}
        for name in names
    ]


def _ports(cfg: PlatformConfig, svc: str) -> list[dict[str, Any]]:
    if svc == "api":
        return [{"name": "http", "containerPort": cfg.http_port, "protocol": "TCP"}]
    if svc == "media":
        return [
            {"name": "sip-udp", "containerPort": cfg.sip_port, "protocol": "UDP"},
            {"name": "sip-tcp", "containerPort": cfg.sip_port, "protocol": "TCP"},
        ]
    return []


def _migrate_container(cfg: PlatformConfig, svc: ServiceConfig) -> dict[str, Any]:
    return {
        "name": "migrate",
        "image": cfg.image,
        "imagePullPolicy": cfg.pull_policy,
        "command": ["python", "-c", MIGRATE_SCRIPT],
        "envFrom": [{"configMapRef": {"name": f"{cfg.name}-config"}}],
        "env": _secret_env(cfg, "SB_DATABASE_URL", "SB_DATABASE_ADMIN_URL"),
        "resources": svc.resources,
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


PARTITIONED = ("contacts", "ivr", "routing")


def partition_env(svc: ServiceConfig) -> list[dict[str, str]]:
    """More than one pod of contacts, ivr or routing: they share the tenants by partition, each finding its
    share from the live pods (SB_WORKER_INDEX=auto; services/kernel/partitioned.py). The count is the most
    pods there can be (the autoscaler's maximum): an upper bound, not a schedule."""
    workers = svc.autoscaling.max_replicas if svc.autoscaling.enabled else svc.replicas
    if svc.name not in PARTITIONED or (workers <= 1 and not svc.autoscaling.enabled):
        return []
    return [{"name": "SB_WORKER_COUNT", "value": str(workers)}, {"name": "SB_WORKER_INDEX", "value": "auto"}]


def deployment(
    cfg: PlatformConfig, svc: ServiceConfig, config: dict[str, Any], sec: dict[str, Any]
) -> dict[str, Any]:
    name = f"{cfg.name}-{svc.name}"
    container: dict[str, Any] = {
        "name": svc.name,
        "image": cfg.image,
        "imagePullPolicy": cfg.pull_policy,
        "command": ["python", "-m", f"services.{svc.name}"],
    }
    ports = _ports(cfg, svc.name)
    if ports:
        container["ports"] = ports
    container["envFrom"] = [{"configMapRef": {"name": f"{cfg.name}-config"}}]
    container["env"] = [
        {"name": "SB_SERVICE_NAME", "value": svc.name},
        # SB_BIND_HOST is 0.0.0.0: SDP, Via and Contact announce the pod's own address instead.
        {"name": "SB_ADVERTISE_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        *_secret_env(cfg, "SB_DATABASE_URL"),
        # Its own NATS user: the bundled NATS refuses it every subject it has no part in.
        {
            "name": "SB_NATS_URL",
            "valueFrom": {"secretKeyRef": {"name": secret_name(cfg), "key": nats_url_key(cfg, svc.name)}},
        },
        *_secret_env(cfg, "SB_TOKEN_SECRET"),
        *partition_env(svc),
    ]
    container["resources"] = svc.resources
    if svc.readiness_probe:
        container["readinessProbe"] = svc.readiness_probe
    if svc.liveness_probe:
        container["livenessProbe"] = svc.liveness_probe
    container["securityContext"] = container_security_context()
    container["volumeMounts"] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "data", "mountPath": cfg.data_dir},
    ]

    pod: dict[str, Any] = {
        # The services never call the Kubernetes API: no token in the pod.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(APP_UID),
        "terminationGracePeriodSeconds": svc.termination_grace_seconds,
    }
    if cfg.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in cfg.image_pull_secrets]
    if svc.name == "api" and cfg.migrations_enabled:
        pod["initContainers"] = [_migrate_container(cfg, svc)]
    pod["containers"] = [container]
    # The root filesystem is read-only; these are the only writable places.
    pod["volumes"] = [{"name": "tmp", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]

    spec: dict[str, Any] = {}
    if not svc.autoscaling.enabled:
        spec["replicas"] = svc.replicas  # with an autoscaler, the autoscaler owns the count
    spec["revisionHistoryLimit"] = 5
    spec["selector"] = {"matchLabels": selector_labels(cfg, svc.name)}
    spec["template"] = {
        "metadata": {
            "labels": labels(cfg, svc.name),
            "annotations": {"checksum/config": checksum(config), "checksum/secret": checksum(sec)},
        },
        "spec": pod,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(cfg, name, svc.name),
        "spec": spec,
    }


def api_service(cfg: PlatformConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cfg, f"{cfg.name}-api", "api"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(cfg, "api"),
            "ports": [{"name": "http", "port": cfg.http_port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def sip_service(cfg: PlatformConfig) -> dict[str, Any]:
    meta = metadata(cfg, f"{cfg.name}-sip", "media")
    if cfg.sip.annotations:
        meta["annotations"] = dict(cfg.sip.annotations)
    ports: list[dict[str, Any]] = []
    for proto in ("UDP", "TCP"):
        port: dict[str, Any] = {
            "name": f"sip-{proto.lower()}",
            "port": cfg.sip_port,
            "targetPort": f"sip-{proto.lower()}",
            "protocol": proto,
        }
        if cfg.sip.node_port:
            port["nodePort"] = cfg.sip.node_port
        ports.append(port)
    spec: dict[str, Any] = {
        "type": cfg.sip.service_type,
        # Local keeps the caller's source address (SIP and its digest/ACL checks need it) and avoids a
        # second hop between nodes; only nodes running a media pod receive traffic.
        "externalTrafficPolicy": "Local",
        "selector": selector_labels(cfg, "media"),
        "ports": ports,
    }
    if cfg.sip.service_type == "LoadBalancer" and cfg.sip.load_balancer_source_ranges:
        spec["loadBalancerSourceRanges"] = list(cfg.sip.load_balancer_source_ranges)
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def hpa(cfg: PlatformConfig, svc: ServiceConfig) -> dict[str, Any]:
    name = f"{cfg.name}-{svc.name}"
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(cfg, name, svc.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": svc.autoscaling.min_replicas,
            "maxReplicas": svc.autoscaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": svc.autoscaling.target_cpu_percent,
                        },
                    },
                }
            ],
            # Scaling in removes pods that may carry calls: wait for the load to stay low a while.
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def pdb(cfg: PlatformConfig, component: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(cfg, f"{cfg.name}-{component}", component),
        "spec": {
            # maxUnavailable (not minAvailable) so that a single-replica service never blocks a node drain.
            "maxUnavailable": cfg.pdb_max_unavailable,
            "selector": {"matchLabels": selector_labels(cfg, component)},
        },
    }


def service_objects(cfg: PlatformConfig) -> list[dict[str, Any]]:
    """Settings, Deployments, Services, autoscalers and budgets of the six services, in apply order."""
    config, sec = config_map(cfg), secret(cfg)
    objects: list[dict[str, Any]] = [config, sec]
    for name in SERVICES:
        objects.append(deployment(cfg, cfg.services[name], config, sec))
    objects += [api_service(cfg), sip_service(cfg)]
    for name in SERVICES:
        if cfg.services[name].autoscaling.enabled:
            objects.append(hpa(cfg, cfg.services[name]))
    if cfg.pdb_enabled:
        objects += [pdb(cfg, name) for name in SERVICES]
    return objects
